//! Image compression on the VMAE latent, the `.ldz` codec: images of any size cut into
//! overlapping tiles of the model's native size ([`tiling`]), their latent quantised uniformly
//! (`quantize`), entropy-coded (`entropy`) and stored in the `.ldz` container ([`ldz`]).
//!
//! ```no_run
//! # fn main() -> ldmae::Result<()> {
//! use ldmae::{Codec, Pack, device, io::image};
//! let codec = Codec::new(&Pack::from_file("vmae-photo.pack".as_ref())?, &device::cpu())?.with_quality(60)?;
//! let bytes = codec.compress(&image::read_png("photo.png".as_ref())?)?;
//! let back = codec.decompress(&bytes)?;
//! # Ok(()) }
//! ```

mod entropy;
pub mod ldz;
mod quantize;
pub mod tiling;

use crate::error::{Error, Result};
use crate::io::image::RgbImage;
use crate::model::{Vmae, WeightSource};
use crate::progress::Progress;
use alloc::format;
use alloc::vec::Vec;
use burn::tensor::Device;
use entropy::{entropy_code, entropy_decode};
use ldz::{Header, LdzFile};
use quantize::quantize;
use tiling::{Latent, TileOptions};

/// Quality used unless set otherwise (1 = smallest files … 100 = best pictures).
pub const DEFAULT_QUALITY: u8 = 50;

/// Compresses images to `.ldz` bytes and back with one VMAE.
pub struct Codec {
    vmae: Vmae,
    fingerprint: u64,
    quality: u8,
    /// Tiling used when compressing (the overlap is recorded in the file) and the batch size.
    pub tiles: TileOptions,
}

impl Codec {
    /// A codec on the VMAE that `weights` describe, identified by their [`fingerprint`].
    pub fn new(weights: &dyn WeightSource, device: &Device) -> Result<Self> {
        let vmae = Vmae::load(weights, device)?;
        let tiles = TileOptions::for_model(&vmae);
        Ok(Self { vmae, fingerprint: fingerprint(weights)?, quality: DEFAULT_QUALITY, tiles })
    }

    /// The same codec at quality `q` in `1..=100`.
    pub fn with_quality(mut self, q: u8) -> Result<Self> {
        check_quality(q)?;
        self.quality = q;
        Ok(self)
    }

    /// The network.
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

    /// [`Self::compress`], reporting `(tiles done, tiles)` to `progress`, which may cancel.
    pub fn compress_with(&self, image: &RgbImage, progress: impl Progress) -> Result<Vec<u8>> {
        self.compress_at(image, self.quality, progress)
    }

    /// [`Self::compress_with`] at quality `quality` in `1..=100` instead of the codec's.
    pub fn compress_at(&self, image: &RgbImage, quality: u8, progress: impl Progress) -> Result<Vec<u8>> {
        check_quality(quality)?;
        let latent = tiling::encode(&self.vmae, image, &self.tiles, progress)?;
        let (channels, symbols) = quantize(&latent, quality);
        let c = self.vmae.config();
        let header = Header {
            fingerprint: self.fingerprint,
            width: image.width as u32,
            height: image.height as u32,
            patch: c.patch_size as u16,
            tile: c.grid() as u16,
            overlap: self.tiles.overlap as u16,
            quality,
            channels,
        };
        let payload = entropy_code(&header, &symbols)?;
        LdzFile { header, payload }.to_bytes()
    }

    /// Decompresses `.ldz` bytes made with this codec's weights.
    pub fn decompress(&self, bytes: &[u8]) -> Result<RgbImage> {
        self.decompress_with(bytes, |_, _| {})
    }

    /// [`Self::decompress`], reporting `(tiles done, tiles)` to `progress`, which may cancel.
    pub fn decompress_with(&self, bytes: &[u8], progress: impl Progress) -> Result<RgbImage> {
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

fn check_quality(q: u8) -> Result<()> {
    if !(1..=100).contains(&q) {
        return Err(Error::InputValue { what: "quality", reason: format!("{q} is outside 1..=100") });
    }
    Ok(())
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

/// A 64-bit fingerprint of VMAE weights (XXH3 over names, shapes and values rounded to f16, in
/// name order, in the model layout), written into every `.ldz` file so that it is decoded only
/// with the weights that made it. Equal for the f16 and f32 packs of one model and for the
/// checkpoint they came from. Reads and checks every tensor.
pub fn fingerprint(weights: &dyn WeightSource) -> Result<u64> {
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    for name in weights.tensor_names() {
        let shape = weights.tensor_shape(&name).unwrap_or_default();
        hash.update(name.as_bytes());
        for &d in &shape {
            hash.update(&(d as u64).to_le_bytes());
        }
        for v in weights.read_tensor(&name, &shape)? {
            hash.update(&half::f16::from_f32(v).to_bits().to_le_bytes());
        }
    }
    Ok(hash.digest())
}
// A codec and a generator can be shared between threads and moved into thread pools (see the
// crate docs on threads); this fails to compile if a field ever stops allowing it.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Codec>();
    send_sync::<crate::Generator>();
};
