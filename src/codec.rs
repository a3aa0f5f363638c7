//! The `.ldz` image codec: the VMAE latent of a tiled image ([`crate::tiling`]), quantised
//! uniformly (per-channel offset and step in the file; this encoder uses one step for all
//! channels, which measured better than per-channel steps) and entropy-coded with `constriction`'s ANS coder under discretised
//! Laplace models (one scale per channel and neighbourhood context, [`ldz::context`]).
//!
//! ```no_run
//! # fn main() -> ldmae::Result<()> {
//! use ldmae::{Codec, Pack, device, image};
//! let codec = Codec::new(&Pack::from_file("vmae-photo.pack".as_ref())?, &device::cpu())?.with_quality(60)?;
//! let bytes = codec.compress(&image::read_png("photo.png".as_ref())?)?;
//! let back = codec.decompress(&bytes)?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::image::RgbImage;
use crate::ldz::{self, CONTEXTS, ChannelCoding, Header, LdzFile};
use crate::pack::Pack;
use crate::tiling::{self, Latent, TileOptions};
use crate::vmae::Vmae;
use alloc::format;
use alloc::vec::Vec;
use burn::tensor::Device;
use constriction::stream::model::DefaultContiguousCategoricalEntropyModel as Model;
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};
use half::f16;

/// Quality used unless set otherwise (1 = smallest files … 100 = best pictures).
pub const DEFAULT_QUALITY: u8 = 50;
/// Largest symbol magnitude; values further out are clamped (only reachable at extreme quality).
const MAX_SYMBOL: i32 = (ldz::MAX_LEVELS as i32 - 2) / 2;

/// Compresses images to `.ldz` bytes and back with one VMAE.
pub struct Codec {
    vmae: Vmae,
    fingerprint: u64,
    quality: u8,
    /// Tiling used when compressing (the overlap is recorded in the file) and the batch size.
    pub tiles: TileOptions,
}

impl Codec {
    /// A codec on the VMAE in `pack`, identified by the pack's [`Pack::fingerprint`].
    pub fn new(pack: &Pack, device: &Device) -> Result<Self> {
        let vmae = Vmae::load(pack, device)?;
        let tiles = TileOptions::for_model(&vmae);
        Ok(Self { vmae, fingerprint: pack.fingerprint()?, quality: DEFAULT_QUALITY, tiles })
    }

    /// The same codec at quality `q` in `1..=100`.
    pub fn with_quality(mut self, q: u8) -> Result<Self> {
        if !(1..=100).contains(&q) {
            return Err(Error::InputValue { what: "quality", reason: format!("{q} is outside 1..=100") });
        }
        self.quality = q;
        Ok(self)
    }

    pub fn vmae(&self) -> &Vmae {
        &self.vmae
    }

    /// The fingerprint written into (and required of) `.ldz` files.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Compresses an image of any size.
    pub fn compress(&self, image: &RgbImage) -> Result<Vec<u8>> {
        self.compress_with(image, |_, _| {})
    }

    /// [`Self::compress`], reporting `(tiles done, tiles)`.
    pub fn compress_with(&self, image: &RgbImage, progress: impl FnMut(usize, usize)) -> Result<Vec<u8>> {
        let latent = tiling::encode(&self.vmae, image, &self.tiles, progress)?;
        let (channels, symbols) = quantize(&latent, self.quality);
        let c = self.vmae.config();
        let header = Header {
            fingerprint: self.fingerprint,
            width: image.width as u32,
            height: image.height as u32,
            patch: c.patch_size as u16,
            tile: c.grid() as u16,
            overlap: self.tiles.overlap as u16,
            quality: self.quality,
            channels,
        };
        let payload = entropy_code(&header, &symbols)?;
        LdzFile { header, payload }.to_bytes()
    }

    /// Decompresses `.ldz` bytes made with this codec's weights.
    pub fn decompress(&self, bytes: &[u8]) -> Result<RgbImage> {
        self.decompress_with(bytes, |_, _| {})
    }

    /// [`Self::decompress`], reporting `(tiles done, tiles)`.
    pub fn decompress_with(&self, bytes: &[u8], progress: impl FnMut(usize, usize)) -> Result<RgbImage> {
        let file = LdzFile::parse(bytes)?;
        let h = &file.header;
        if h.fingerprint != self.fingerprint {
            return Err(Error::LdzModel { expected: self.fingerprint, found: h.fingerprint });
        }
        let c = self.vmae.config();
        if (h.patch as usize, h.tile as usize, h.channels.len()) != (c.patch_size, c.grid(), c.latent_channels) {
            return Err(Error::Ldz(format!(
                "tiling {}/{} with {} channels does not fit the VMAE (patch {}, grid {}, {} channels)",
                h.patch,
                h.tile,
                h.channels.len(),
                c.patch_size,
                c.grid(),
                c.latent_channels
            )));
        }
        let latent = decode_latent(&file)?;
        let tiles = TileOptions { overlap: h.overlap as usize, batch: self.tiles.batch };
        tiling::decode(&self.vmae, &latent, h.width as usize, h.height as usize, &tiles, progress)
    }
}

/// The dequantised latent of a parsed `.ldz` file (no network involved).
pub fn decode_latent(file: &LdzFile) -> Result<Latent> {
    let h = &file.header;
    let symbols = entropy_decode(h, file.payload.clone())?;
    let (rows, cols) = h.latent_size();
    let plane = rows * cols;
    let values = symbols
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let ch = &h.channels[i / plane];
            ch.offset.to_f32() + ch.step.to_f32() * s as f32
        })
        .collect();
    Ok(Latent { channels: h.channels.len(), height: rows, width: cols, values })
}

/// Quantisation step at quality `q` for a latent whose channels have RMS deviation `spread`:
/// one step for all channels, so that each channel gets bits in proportion to its variance.
fn step(spread: f64, q: u8) -> f16 {
    let step = spread * 0.5 * libm::exp2((50.0 - q as f64) / 12.5);
    f16::from_f64(step.max(1e-3))
}

/// Uniform quantisation of a latent with one step for all channels (around each channel's
/// mean); entropy-model scales fitted per channel and context.
fn quantize(latent: &Latent, q: u8) -> (Vec<ChannelCoding>, Vec<i32>) {
    let plane = latent.height * latent.width;
    let n = plane as f64;
    let moments: Vec<(f64, f64)> = latent
        .values
        .chunks_exact(plane)
        .map(|values| {
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
            (mean, values.iter().map(|&v| (v as f64 - mean) * (v as f64 - mean)).sum::<f64>() / n)
        })
        .collect();
    let spread = libm::sqrt(moments.iter().map(|m| m.1).sum::<f64>() / moments.len() as f64);
    let step = step(spread, q);
    let mut codings = Vec::with_capacity(latent.channels);
    let mut symbols = Vec::with_capacity(latent.values.len());
    for (values, &(mean, _)) in latent.values.chunks_exact(plane).zip(&moments) {
        let offset = f16::from_f64(mean);
        let start = symbols.len();
        symbols.extend(
            values
                .iter()
                .map(|&v| (libm::roundf((v - offset.to_f32()) / step.to_f32()) as i32).clamp(-MAX_SYMBOL, MAX_SYMBOL)),
        );
        let channel = &symbols[start..];
        let (mut sum, mut count) = ([0f64; CONTEXTS], [0f64; CONTEXTS]);
        for (i, &s) in channel.iter().enumerate() {
            let ctx = context_at(channel, i, latent.width);
            sum[ctx] += s.unsigned_abs() as f64;
            count[ctx] += 1.0;
        }
        let scales = core::array::from_fn(|k| f16::from_f64((sum[k] / count[k].max(1.0)).max(0.05)));
        let (lo, hi) = channel.iter().fold((0, 0), |(l, h), &s| (s.min(l), s.max(h)));
        codings.push(ChannelCoding { offset, step, lo: lo as i16, hi: hi as i16, scales });
    }
    (codings, symbols)
}

/// Context of symbol `i` of a channel plane `width` cells wide.
fn context_at(channel: &[i32], i: usize, width: usize) -> usize {
    let left = if !i.is_multiple_of(width) { channel[i - 1] } else { 0 };
    let up = if i >= width { channel[i - width] } else { 0 };
    ldz::context(left, up)
}

/// The entropy models of a channel, one per context; `None` when the channel has one level.
fn models(c: &ChannelCoding) -> Result<Option<Vec<Model>>> {
    if c.lo == c.hi {
        return Ok(None);
    }
    let models = c.scales.iter().map(|&scale| {
        let b = scale.to_f64();
        let probabilities: Vec<f64> = (c.lo..=c.hi)
            .map(|s| {
                let a = s.unsigned_abs() as f64;
                if s == 0 {
                    1.0 - libm::exp(-0.5 / b)
                } else {
                    0.5 * (libm::exp(-(a - 0.5) / b) - libm::exp(-(a + 0.5) / b))
                }
            })
            .collect();
        Model::from_floating_point_probabilities_fast(&probabilities, None)
            .map_err(|()| Error::Ldz(format!("entropy model of scale {b} over {}..={} is degenerate", c.lo, c.hi)))
    });
    models.collect::<Result<Vec<_>>>().map(Some)
}

fn entropy_code(h: &Header, symbols: &[i32]) -> Result<Vec<u32>> {
    let (rows, cols) = h.latent_size();
    let mut coder = DefaultAnsCoder::new();
    for (c, channel) in h.channels.iter().zip(symbols.chunks_exact(rows * cols)).rev() {
        let Some(models) = models(c)? else { continue };
        for i in (0..channel.len()).rev() {
            let model = &models[context_at(channel, i, cols)];
            coder
                .encode_symbol((channel[i] - c.lo as i32) as usize, model)
                .map_err(|e| Error::Ldz(format!("entropy coding failed: {e}")))?;
        }
    }
    coder.into_compressed().map_err(|_| Error::Ldz("entropy coder could not be sealed".into()))
}

fn entropy_decode(h: &Header, payload: Vec<u32>) -> Result<Vec<i32>> {
    let (rows, cols) = h.latent_size();
    let mut coder = DefaultAnsCoder::from_compressed(payload)
        .map_err(|_| Error::Ldz("payload is not a valid ANS stream".into()))?;
    let mut symbols = Vec::with_capacity(h.channels.len() * rows * cols);
    for c in &h.channels {
        let start = symbols.len();
        let Some(models) = models(c)? else {
            symbols.resize(start + rows * cols, c.lo as i32);
            continue;
        };
        for i in 0..rows * cols {
            let model = &models[context_at(&symbols[start..], i, cols)];
            let s = coder.decode_symbol(model).map_err(|_| Error::Ldz("payload ends early".into()))?;
            symbols.push(c.lo as i32 + s as i32);
        }
    }
    if !coder.is_empty() {
        return Err(Error::Ldz("payload has data left after the last symbol".into()));
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latent() -> Latent {
        let (channels, height, width) = (3, 9, 11);
        let values = (0..channels * height * width)
            .map(|i| libm::sinf(i as f32 * 0.37) * (1 + i / (height * width)) as f32 + 0.1 * (i % 7) as f32)
            .collect();
        Latent { channels, height, width, values }
    }

    fn header(latent: &Latent, channels: Vec<ChannelCoding>) -> Header {
        Header {
            fingerprint: 7,
            width: latent.width as u32 * 8,
            height: latent.height as u32 * 8,
            patch: 8,
            tile: 8,
            overlap: 2,
            quality: 50,
            channels,
        }
    }

    #[test]
    fn symbols_survive_entropy_coding_and_error_shrinks_with_quality() {
        let latent = latent();
        let mut last = (f32::INFINITY, 0);
        for q in [30, 60, 90] {
            let (channels, symbols) = quantize(&latent, q);
            let h = header(&latent, channels);
            let payload = entropy_code(&h, &symbols).unwrap();
            assert_eq!(entropy_decode(&h, payload.clone()).unwrap(), symbols);
            let plane = latent.height * latent.width;
            let err = latent
                .values
                .iter()
                .zip(&symbols)
                .enumerate()
                .map(|(i, (v, &s))| {
                    let c = &h.channels[i / plane];
                    (v - c.offset.to_f32() - c.step.to_f32() * s as f32).abs()
                })
                .fold(0f32, f32::max);
            let max_step = h.channels.iter().map(|c| c.step.to_f32()).fold(0f32, f32::max);
            assert!(err <= 0.5 * max_step * 1.001, "q {q}: error {err} above half a step {max_step}");
            assert!(err < last.0 && payload.len() > last.1, "q {q}: {err} / {} words", payload.len());
            last = (err, payload.len());
        }
    }

    #[test]
    fn damaged_payloads_never_panic() {
        let latent = latent();
        let (channels, symbols) = quantize(&latent, 60);
        let h = header(&latent, channels);
        let payload = entropy_code(&h, &symbols).unwrap();
        for i in 0..payload.len() * 32 {
            let mut p = payload.clone();
            p[i / 32] ^= 1 << (i % 32);
            if let Ok(decoded) = entropy_decode(&h, p) {
                assert_eq!(decoded.len(), symbols.len());
            }
        }
        for n in 0..payload.len() {
            let _ = entropy_decode(&h, payload[..n].to_vec());
        }
    }
}
