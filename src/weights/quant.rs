//! How a pack stores its tensors ([`Storage`]) and the integer schemes: **int8** with one scale per
//! output channel and **int4** in blocks of 32 values of one output channel with one scale per
//! block. Both are symmetric (code × scale, no offset) with f16 scales, and cover the matrices and
//! convolutions; biases, norms, embeddings and position tables stay f16.
//!
//! Codes keep the layout of the tensor for int8 (one byte per value); int4 packs two codes per
//! byte (low nibble first, stored as code + 8), 16 bytes per block, blocks ordered by channel and
//! then by position along the channel. Dequantisation writes straight into the device's float type.

use crate::error::{Error, Result};
use crate::io::floats::DeviceFloat;
use crate::model::is_linear_weight;
use crate::precision::Precision;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;
use half::f16;

/// How a weight pack stores its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Every tensor f32.
    F32,
    /// Every tensor f16.
    F16,
    /// Matrices and convolutions int8 (a scale per output channel), the rest f16.
    Int8,
    /// Matrices and convolutions int4 (a scale per block of 32), the rest f16.
    Int4,
}

/// Values per int4 block.
pub(crate) const BLOCK: usize = 32;

impl Storage {
    /// The spelling used in packs and on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::Int8 => "int8",
            Storage::Int4 => "int4",
        }
    }

    /// The float type of the tensors that are not quantised.
    pub fn float(self) -> Precision {
        match self {
            Storage::F32 => Precision::F32,
            _ => Precision::F16,
        }
    }

    /// Whether matrices and convolutions are stored as integers.
    pub fn is_quantized(self) -> bool {
        matches!(self, Storage::Int8 | Storage::Int4)
    }
}

impl From<Precision> for Storage {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F16 => Storage::F16,
            Precision::F32 => Storage::F32,
        }
    }
}

impl FromStr for Storage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Storage::F32),
            "f16" => Ok(Storage::F16),
            "int8" => Ok(Storage::Int8),
            "int4" => Ok(Storage::Int4),
            _ => Err(Error::InputValue {
                what: "weight storage",
                reason: format!("unknown dtype `{s}` (expected f16, f32, int8 or int4)"),
            }),
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a quantised pack stores tensor `name` (model layout `shape`) as integers: linear
/// weights and convolution kernels.
pub(crate) fn quantizable(name: &str, shape: &[usize]) -> bool {
    is_linear_weight(name, shape) || (shape.len() == 4 && name.ends_with(".weight"))
}

/// A quantisable tensor seen as output channels: linear weights `[in, out]` (model layout) have
/// the channel on the last axis, convolutions `[out, in, kh, kw]` on the first.
#[derive(Clone, Copy)]
struct Channels {
    count: usize,
    len: usize,
    last_axis: bool,
}

impl Channels {
    fn of(shape: &[usize]) -> Self {
        match shape {
            [rows, cols] => Self { count: *cols, len: *rows, last_axis: true },
            [out, rest @ ..] => Self { count: *out, len: rest.iter().product(), last_axis: false },
            [] => Self { count: 1, len: 1, last_axis: false },
        }
    }

    /// Position in the tensor of value `j` of channel `c`.
    fn index(self, c: usize, j: usize) -> usize {
        if self.last_axis { j * self.count + c } else { c * self.len + j }
    }

    fn blocks(self) -> usize {
        self.len.div_ceil(BLOCK)
    }
}

/// Stored bytes of a quantised tensor: its codes and f16 scales.
pub(crate) struct Quantized {
    pub codes: Vec<u8>,
    pub scales: Vec<f16>,
    /// Shape of the codes tensor in the pack.
    pub codes_shape: Vec<usize>,
}

/// Quantises `values` (model layout `shape`) with `storage`'s scheme (int8 or int4).
pub(crate) fn quantize(storage: Storage, shape: &[usize], values: &[f32]) -> Quantized {
    let ch = Channels::of(shape);
    let absmax = |c: usize, js: core::ops::Range<usize>| js.map(|j| values[ch.index(c, j)].abs()).fold(0f32, f32::max);
    if storage == Storage::Int4 {
        let mut codes = vec![0x88u8; ch.count * ch.blocks() * BLOCK / 2];
        let mut scales = Vec::with_capacity(ch.count * ch.blocks());
        for c in 0..ch.count {
            for k in 0..ch.blocks() {
                let js = k * BLOCK..((k + 1) * BLOCK).min(ch.len);
                let scale = best_int4_scale(js.clone().map(|j| values[ch.index(c, j)]), absmax(c, js.clone()));
                let block = scales.len();
                for (t, j) in js.enumerate() {
                    let q = code(values[ch.index(c, j)], scale, -8, 7);
                    let byte = &mut codes[block * BLOCK / 2 + t / 2];
                    let nibble = (q + 8) as u8;
                    *byte = if t.is_multiple_of(2) { (*byte & 0xf0) | nibble } else { (*byte & 0x0f) | (nibble << 4) };
                }
                scales.push(scale);
            }
        }
        let codes_shape = vec![scales.len(), BLOCK / 2];
        Quantized { codes, scales, codes_shape }
    } else {
        let mut codes = vec![0u8; values.len()];
        let mut scales = Vec::with_capacity(ch.count);
        for c in 0..ch.count {
            let scale = f16::from_f32(absmax(c, 0..ch.len) / 127.0);
            for j in 0..ch.len {
                let i = ch.index(c, j);
                codes[i] = code(values[i], scale, -127, 127) as i8 as u8;
            }
            scales.push(scale);
        }
        Quantized { codes, scales, codes_shape: shape.to_vec() }
    }
}

fn code(v: f32, scale: f16, lo: i32, hi: i32) -> i32 {
    let s = scale.to_f32();
    if s == 0.0 { 0 } else { (libm::roundf(v / s) as i32).clamp(lo, hi) }
}

/// The int4 scale of a block with the least squared error among a few clippings of its
/// largest magnitude (clipping outliers lowers the error of the other 31 values).
fn best_int4_scale(block: impl Iterator<Item = f32> + Clone, absmax: f32) -> f16 {
    let error = |scale: f16| -> f32 {
        block.clone().map(|v| v - code(v, scale, -8, 7) as f32 * scale.to_f32()).map(|e| e * e).sum()
    };
    [1.0f32, 0.95, 0.9, 0.85, 0.8, 0.75]
        .iter()
        .map(|f| f16::from_f32(absmax * f / 7.0))
        .min_by(|a, b| error(*a).total_cmp(&error(*b)))
        .unwrap_or(f16::ZERO)
}

/// The byte length of the codes and the number of scales a tensor of `shape` has under
/// `storage`; `None` when a hostile shape overflows.
pub(crate) fn stored_sizes(storage: Storage, shape: &[usize]) -> Option<(usize, usize)> {
    let len = shape.get(1..)?.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    let (count, len) = if shape.len() == 2 { (shape[1], shape[0]) } else { (shape[0], len) };
    match storage {
        Storage::Int4 => {
            let blocks = count.checked_mul(len.div_ceil(BLOCK))?;
            Some((blocks.checked_mul(BLOCK / 2)?, blocks))
        }
        _ => Some((count.checked_mul(len)?, count)),
    }
}

/// The values of a quantised tensor of `shape` as `T`, converted a row at a time. `codes` and
/// `scales` must have the lengths [`stored_sizes`] gives.
pub(crate) fn dequantize<T: DeviceFloat>(
    storage: Storage,
    shape: &[usize],
    codes: &[u8],
    scales: &[f16],
) -> Result<Vec<T>> {
    let ch = Channels::of(shape);
    let (n_codes, n_scales) = stored_sizes(storage, shape).unwrap_or((usize::MAX, usize::MAX));
    if codes.len() != n_codes || scales.len() != n_scales {
        return Err(Error::PackFormat(format!(
            "quantised tensor of shape {shape:?} has {} code bytes and {} scales (expected {n_codes} and {n_scales})",
            codes.len(),
            scales.len()
        )));
    }
    let scales: Vec<f32> = scales.iter().map(|s| s.to_f32()).collect();
    let int4 = |c: usize, j: usize| {
        let block = c * ch.blocks() + j / BLOCK;
        let t = j % BLOCK;
        let byte = codes[block * BLOCK / 2 + t / 2];
        let nibble = if t.is_multiple_of(2) { byte & 0x0f } else { byte >> 4 };
        (nibble as i32 - 8) as f32 * scales[block]
    };
    let mut out = Vec::with_capacity(ch.count * ch.len);
    // Rows of the tensor as stored: `[in, out]` rows hold one value of every channel, kernel
    // rows are one channel each.
    let (rows, row_len) = if ch.last_axis { (ch.len, ch.count) } else { (ch.count, ch.len) };
    let mut row = vec![0f32; row_len];
    for r in 0..rows {
        let int8 = &codes[(r * row_len).min(codes.len())..];
        match (storage, ch.last_axis) {
            (Storage::Int4, true) => row.iter_mut().enumerate().for_each(|(c, v)| *v = int4(c, r)),
            (Storage::Int4, false) => row.iter_mut().enumerate().for_each(|(j, v)| *v = int4(r, j)),
            (_, true) => row.iter_mut().zip(int8).zip(&scales).for_each(|((v, &q), s)| *v = q as i8 as f32 * s),
            (_, false) => row.iter_mut().zip(int8).for_each(|(v, &q)| *v = q as i8 as f32 * scales[r]),
        }
        T::extend_from_f32(&mut out, &row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| libm::sinf(i as f32 * 0.37) * (1.0 + (i % 7) as f32)).collect()
    }

    /// Every value comes back within half a step of its channel's (int8) or block's (int4)
    /// scale, for a linear weight (channel on the last axis) and a convolution (first axis).
    #[test]
    fn round_trip_error_is_half_a_step() {
        for shape in [vec![40usize, 6], vec![5, 3, 4, 4]] {
            let v = values(shape.iter().product());
            let ch = Channels::of(&shape);
            for storage in [Storage::Int8, Storage::Int4] {
                let q = quantize(storage, &shape, &v);
                let back = dequantize::<f32>(storage, &shape, &q.codes, &q.scales).unwrap();
                for c in 0..ch.count {
                    for j in 0..ch.len {
                        let i = ch.index(c, j);
                        let s = match storage {
                            Storage::Int4 => q.scales[c * ch.blocks() + j / BLOCK].to_f32(),
                            _ => q.scales[c].to_f32(),
                        };
                        // int4 clips to its codes' range; int8's scale covers the channel.
                        let target = if storage == Storage::Int4 { v[i].clamp(-8.0 * s, 7.0 * s) } else { v[i] };
                        let err = (back[i] - target).abs();
                        assert!(
                            err <= 0.5 * s * 1.001 + 1e-7,
                            "{storage} {shape:?} c{c} j{j}: {} vs {}",
                            back[i],
                            v[i]
                        );
                    }
                }
            }
        }
    }

    /// int8 keeps a channel's largest magnitude (code ±127) and its relative error is small;
    /// int4 with clipping search is no worse than plain absmax scaling.
    #[test]
    fn int8_is_close_and_int4_search_helps() {
        let shape = [64usize, 8];
        let v = values(512);
        let rel = |storage| {
            let q = quantize(storage, &shape, &v);
            let back = dequantize::<f32>(storage, &shape, &q.codes, &q.scales).unwrap();
            let e: f32 = v.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
            libm::sqrtf(e / v.iter().map(|a| a * a).sum::<f32>())
        };
        assert!(rel(Storage::Int8) < 0.006, "int8 relative error {}", rel(Storage::Int8));
        assert!(rel(Storage::Int4) < 0.1, "int4 relative error {}", rel(Storage::Int4));
        let absmax = f16::from_f32(v[..32].iter().fold(0f32, |m, x| m.max(x.abs())) / 7.0);
        let plain: f32 =
            v[..32].iter().map(|x| x - code(*x, absmax, -8, 7) as f32 * absmax.to_f32()).map(|e| e * e).sum();
        let best = best_int4_scale(v[..32].iter().copied(), absmax.to_f32() * 7.0);
        let searched: f32 =
            v[..32].iter().map(|x| x - code(*x, best, -8, 7) as f32 * best.to_f32()).map(|e| e * e).sum();
        assert!(searched <= plain);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let q = quantize(Storage::Int4, &[40, 6], &values(240));
        assert!(dequantize::<f32>(Storage::Int4, &[40, 6], &q.codes[1..], &q.scales).is_err());
        assert!(dequantize::<f32>(Storage::Int8, &[40, 6], &q.codes, &q.scales).is_err());
        assert!(matches!("int3".parse::<Storage>(), Err(Error::InputValue { .. })));
    }
}
