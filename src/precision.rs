//! The float type of weights and of computation: one enum for weight packs (how tensors are
//! stored), devices (what the models compute in) and the command lines.

use crate::error::{Error, Result};
use alloc::format;
use core::fmt;
use core::str::FromStr;

/// Half or single precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// IEEE half precision (largest finite value ±65504).
    F16,
    /// IEEE single precision.
    F32,
}

impl Precision {
    /// The spelling used in packs and on command lines (`f16` / `f32`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F16 => "f16",
            Precision::F32 => "f32",
        }
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            _ => Err(Error::InputValue {
                what: "precision",
                reason: format!("unknown dtype `{s}` (expected f16 or f32)"),
            }),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
