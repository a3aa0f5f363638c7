//! Per-channel statistics that normalise VMAE latents for the DiT (`latents_stats.pt`).

use crate::error::{Error, Result};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Mean and standard deviation of each latent channel: the DiT sees `(z − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentStats {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (positive).
    pub std: Vec<f32>,
}

impl LatentStats {
    /// Checks the channel count and that every value is finite (and every std positive).
    pub fn validate(&self, channels: usize) -> Result<()> {
        let bad = |reason: String| Error::PackMetadata { key: "ldmae.latent_stats".into(), reason };
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(bad(format!(
                "{} means and {} stds for {channels} latent channels",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.mean.iter().any(|v| !v.is_finite()) || self.std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(bad("statistics must be finite with positive std".into()));
        }
        Ok(())
    }
}
