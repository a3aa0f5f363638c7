//! Official checkpoints and ONNX exports → weight packs, as `ldmae-export` runs them: read, written
//! into a pack of the chosen precision ([`PackWriter::from_weights`]) and proved to load strictly.

use super::pack::{Pack, PackWriter};
use super::state_dict::VmaeOverrides;
use crate::diffusion::LatentStats;
use crate::error::Result;
use crate::model::{Dit, Vmae, WeightSource};
use crate::precision::Precision;
use alloc::format;
use alloc::vec::Vec;
use std::path::Path;

/// Converts a VMAE checkpoint or ONNX export into pack bytes, and proves the pack loads strictly.
pub fn convert_vmae(path: &Path, dtype: Precision, o: VmaeOverrides) -> Result<Vec<u8>> {
    let sd = super::vmae_state_dict(path, o)?;
    let spec = sd.spec()?;
    let bytes =
        PackWriter::from_weights(&sd, spec, dtype, format!("{} ({})", path.display(), sd.entry()))?.to_bytes()?;
    Vmae::load(&Pack::from_bytes(&bytes)?, &crate::device::cpu()).map_err(|e| sd.context(e))?;
    Ok(bytes)
}

/// Converts a LightningDiT checkpoint (its `ema` weights) or ONNX export and its latent
/// statistics into pack bytes, and proves the pack loads strictly. Without `stats`, the
/// statistics recorded in the file (ONNX metadata) are used.
pub fn convert_dit(path: &Path, stats: Option<LatentStats>, dtype: Precision) -> Result<Vec<u8>> {
    let sd = super::dit_state_dict(path, stats)?;
    let spec = sd.spec()?;
    let bytes =
        PackWriter::from_weights(&sd, spec, dtype, format!("{} ({})", path.display(), sd.entry()))?.to_bytes()?;
    Dit::load(&Pack::from_bytes(&bytes)?, &crate::device::cpu()).map_err(|e| sd.context(e))?;
    Ok(bytes)
}
