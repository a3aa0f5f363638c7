//! Official checkpoints and ONNX exports → weight packs, as `ldmae-export` runs them: read, written
//! into a pack of the chosen storage (f32, f16, int8, int4) ([`PackWriter::from_weights`]) and proved to load strictly.

use super::pack::{Pack, PackWriter};
use super::quant::Storage;
use super::state_dict::{StateDict, VmaeOverrides};
use crate::diffusion::LatentStats;
use crate::error::Result;
use crate::model::{Dit, Vmae, WeightSource};
use alloc::format;
use alloc::vec::Vec;
use std::path::Path;

/// Converts a VMAE checkpoint or ONNX export into pack bytes, and proves the pack loads strictly.
pub fn convert_vmae(path: &Path, storage: impl Into<Storage>, o: VmaeOverrides) -> Result<Vec<u8>> {
    let sd = super::vmae_state_dict(path, o)?;
    checked_pack(&sd, path, storage.into(), |pack| Vmae::load(pack, &crate::device::cpu()).map(drop))
}

/// Converts a LightningDiT checkpoint (its `ema` weights) or ONNX export and its latent
/// statistics into pack bytes, and proves the pack loads strictly. Without `stats`, the
/// statistics recorded in the file (ONNX metadata) are used.
pub fn convert_dit(path: &Path, stats: Option<LatentStats>, storage: impl Into<Storage>) -> Result<Vec<u8>> {
    let sd = super::dit_state_dict(path, stats)?;
    checked_pack(&sd, path, storage.into(), |pack| Dit::load(pack, &crate::device::cpu()).map(drop))
}

/// The pack of `sd`, once `load` has built its model from it.
fn checked_pack(
    sd: &StateDict,
    path: &Path,
    storage: Storage,
    load: impl FnOnce(&Pack) -> Result<()>,
) -> Result<Vec<u8>> {
    let source = format!("{} ({})", path.display(), sd.entry());
    let bytes = PackWriter::from_weights(sd, sd.spec()?, storage, source)?.to_bytes()?;
    load(&Pack::from_bytes(&bytes)?).map_err(|e| sd.context(e))?;
    Ok(bytes)
}
