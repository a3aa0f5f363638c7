//! Official checkpoints, ONNX exports and packs → weight packs, as `ldmae-export` runs them: read,
//! written in the chosen storage (f32, f16, int8, int4; [`PackWriter::from_weights`]) and proved
//! to load strictly.

use super::pack::{Pack, PackWriter};
use super::quant::Storage;
use super::state_dict::{StateDict, VmaeOverrides};
use super::{FileKind, file_kind};
use crate::diffusion::LatentStats;
use crate::error::{Error, Result};
use crate::model::{Dit, Vmae, WeightSource};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::Path;

/// Converts a VMAE checkpoint, ONNX export or pack (into another storage) into pack bytes,
/// and proves the pack loads strictly.
pub fn convert_vmae(path: &Path, storage: impl Into<Storage>, o: VmaeOverrides) -> Result<Vec<u8>> {
    let load = |pack: &Pack| Vmae::load(pack, &crate::device::cpu()).map(drop);
    if file_kind(path)? == FileKind::Pack {
        return repack(path, storage.into(), load);
    }
    let sd = super::vmae_state_dict(path, o)?;
    checked_pack(&sd, checkpoint_source(path, &sd), storage.into(), load)
}

/// Converts a LightningDiT checkpoint (its `ema` weights), ONNX export or pack (into another
/// storage, keeping its statistics and schedule) into pack bytes, and proves the pack loads
/// strictly. Without `stats`, the statistics recorded in the file are used.
pub fn convert_dit(path: &Path, stats: Option<LatentStats>, storage: impl Into<Storage>) -> Result<Vec<u8>> {
    let load = |pack: &Pack| Dit::load(pack, &crate::device::cpu()).map(drop);
    if file_kind(path)? == FileKind::Pack {
        if stats.is_some() {
            return Err(Error::InputValue {
                what: "latent statistics",
                reason: format!("{} is a pack, which records its own", path.display()),
            });
        }
        return repack(path, storage.into(), load);
    }
    let sd = super::dit_state_dict(path, stats)?;
    checked_pack(&sd, checkpoint_source(path, &sd), storage.into(), load)
}

fn checkpoint_source(path: &Path, sd: &StateDict) -> String {
    format!("{} ({})", path.display(), sd.entry())
}

/// The pack at `path` stored anew as `storage` (its source text kept).
fn repack(path: &Path, storage: Storage, load: impl FnOnce(&Pack) -> Result<()>) -> Result<Vec<u8>> {
    let pack = Pack::from_file(path)?;
    let source = pack.source().map_or_else(|| path.display().to_string(), String::from);
    checked_pack(&pack, source, storage, load)
}

/// The pack of `weights` in `storage`, once `load` has built its model from it.
fn checked_pack(
    weights: &dyn WeightSource,
    source: String,
    storage: Storage,
    load: impl FnOnce(&Pack) -> Result<()>,
) -> Result<Vec<u8>> {
    let bytes = PackWriter::from_weights(weights, weights.spec()?, storage, source)?.to_bytes()?;
    load(&Pack::from_bytes(&bytes)?).map_err(|e| weights.context(e))?;
    Ok(bytes)
}
