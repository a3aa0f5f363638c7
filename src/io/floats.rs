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
