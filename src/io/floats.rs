//! Little-endian float storage formats, decoded to f32 (shared by every file reader).

use alloc::vec::Vec;

/// How floats are stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    F16,
    /// Only the checkpoint and ONNX readers meet bfloat16.
    #[cfg_attr(not(any(feature = "checkpoint", feature = "onnx")), allow(dead_code))]
    BF16,
    F32,
    F64,
}

impl Stored {
    /// Bytes per value.
    pub(crate) fn width(self) -> usize {
        match self {
            Stored::F16 | Stored::BF16 => 2,
            Stored::F32 => 4,
            Stored::F64 => 8,
        }
    }

    /// The values in `bytes` (a trailing partial value is ignored; callers check lengths).
    pub(crate) fn decode(self, bytes: &[u8]) -> Vec<f32> {
        let values = bytes.chunks_exact(self.width());
        match self {
            Stored::F16 => values.map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Stored::BF16 => values.map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Stored::F32 => values.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Stored::F64 => {
                values.map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32).collect()
            }
        }
    }
}

/// A float type models are loaded as (f32 or f16), with bulk conversions that use the CPU's
/// conversion instructions (F16C, NEON) where it has them, appending to a vector without
/// first zeroing it.
pub(crate) trait DeviceFloat: Copy + burn::tensor::Element + bytemuck::Pod {
    /// Appends `src` converted to `Self`.
    fn extend_from_f32(dst: &mut Vec<Self>, src: &[f32]);
    /// Appends `src` converted to `Self`.
    fn extend_from_f16(dst: &mut Vec<Self>, src: &[half::f16]);
}

/// Converts `src` in chunks that stay in the L1 cache, appending each to `dst`.
fn extend_converted<S: Copy, D: Copy + Default>(dst: &mut Vec<D>, src: &[S], convert: impl Fn(&[S], &mut [D])) {
    dst.reserve(src.len());
    let mut buf = [D::default(); 1024];
    for chunk in src.chunks(buf.len()) {
        let converted = &mut buf[..chunk.len()];
        convert(chunk, converted);
        dst.extend_from_slice(converted);
    }
}

impl DeviceFloat for f32 {
    fn extend_from_f32(dst: &mut Vec<Self>, src: &[f32]) {
        dst.extend_from_slice(src);
    }
    fn extend_from_f16(dst: &mut Vec<Self>, src: &[half::f16]) {
        use half::slice::HalfFloatSliceExt;
        extend_converted(dst, src, |s, d| s.convert_to_f32_slice(d));
    }
}

impl DeviceFloat for half::f16 {
    fn extend_from_f32(dst: &mut Vec<Self>, src: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        extend_converted(dst, src, |s, d| d.convert_from_f32_slice(s));
    }
    fn extend_from_f16(dst: &mut Vec<Self>, src: &[half::f16]) {
        dst.extend_from_slice(src);
    }
}
