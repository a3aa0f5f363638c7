//! Official checkpoints and ONNX exports → weight packs, as `ldmae-export` runs them: read, written
//! into a pack of the chosen precision ([`PackWriter::from_weights`]) and proved to load strictly.

use super::pack::{Pack, PackWriter};
use super::state_dict::{StateDict, VmaeOverrides};
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
    checked_pack(&sd, path, dtype, |pack| Vmae::load(pack, &crate::device::cpu()).map(drop))
}

/// Converts a LightningDiT checkpoint (its `ema` weights) or ONNX export and its latent
/// statistics into pack bytes, and proves the pack loads strictly. Without `stats`, the
/// statistics recorded in the file (ONNX metadata) are used.
pub fn convert_dit(path: &Path, stats: Option<LatentStats>, dtype: Precision) -> Result<Vec<u8>> {
    let sd = super::dit_state_dict(path, stats)?;
    checked_pack(&sd, path, dtype, |pack| Dit::load(pack, &crate::device::cpu()).map(drop))
}

/// The pack of `sd`, once `load` has built its model from it.
fn checked_pack(
    sd: &StateDict,
    path: &Path,
    dtype: Precision,
    load: impl FnOnce(&Pack) -> Result<()>,
) -> Result<Vec<u8>> {
    let source = format!("{} ({})", path.display(), sd.entry());
    let bytes = PackWriter::from_weights(sd, sd.spec()?, dtype, source)?.to_bytes()?;
    load(&Pack::from_bytes(&bytes)?).map_err(|e| sd.context(e))?;
    Ok(bytes)
}
