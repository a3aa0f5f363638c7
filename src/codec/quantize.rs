//! Uniform quantisation of a latent for the `.ldz` codec: one step for all channels (around each
//! channel's mean), set by the quality knob, which measured better than per-channel steps; and the
//! entropy-model scales fitted per channel and neighbourhood context.

use super::entropy::context_at;
use super::ldz::{self, CONTEXTS, ChannelCoding};
use super::tiling::Latent;
use alloc::vec::Vec;
use half::f16;

/// Largest symbol magnitude; values further out are clamped (only reachable at extreme quality).
const MAX_SYMBOL: i32 = (ldz::MAX_LEVELS as i32 - 2) / 2;

/// Quantisation step at quality `q` for a latent whose channels have RMS deviation `spread`:
/// one step for all channels, so that each channel gets bits in proportion to its variance.
fn step(spread: f64, q: u8) -> f16 {
    let step = spread * 0.5 * libm::exp2((50.0 - q as f64) / 12.5);
    f16::from_f64(step.max(1e-3))
}

/// Uniform quantisation of a latent with one step for all channels (around each channel's
/// mean); entropy-model scales fitted per channel and context.
pub(super) fn quantize(latent: &Latent, q: u8) -> (Vec<ChannelCoding>, Vec<i32>) {
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
