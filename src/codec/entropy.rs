//! Entropy coding of quantised latents with `constriction`'s ANS coder under discretised Laplace
//! models: one scale per channel and neighbourhood context ([`super::ldz::context`]).

use super::ldz::{self, ChannelCoding, Header};
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use constriction::stream::model::DefaultContiguousCategoricalEntropyModel as Model;
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};

/// Context of symbol `i` of a channel plane `width` cells wide.
pub(super) fn context_at(channel: &[i32], i: usize, width: usize) -> usize {
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

pub(super) fn entropy_code(h: &Header, symbols: &[i32]) -> Result<Vec<u32>> {
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

pub(super) fn entropy_decode(h: &Header, payload: Vec<u32>) -> Result<Vec<i32>> {
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
    use crate::codec::ldz::ChannelCoding;
    use crate::codec::quantize::quantize;
    use crate::codec::tiling::Latent;

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
