//! Reading the official PyTorch checkpoints, without Python (spec §1.7, §2.4, §3):
//! - VMAE: the training script's `{'model', 'optimizer', 'epoch', 'scaler', 'args'}` or a bare
//!   `{'model': …}`; the 33 `perceptual_loss.*` LPIPS tensors are ignored by the conversion.
//! - LightningDiT: `{'model', 'ema', 'opt', 'config'}` — the `ema` weights are used — or a bare
//!   state dict; a `module.` prefix is stripped.
//! - `latents_stats.pt`: `{'mean', 'std'}` of shape `(1, C, 1, 1)`.

use super::state_dict::{SourceTensor, StateDict};
use crate::diffusion::LatentStats;
use crate::error::{Error, Result};
use crate::io::floats::Stored;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use pytorch_reader::{DType, PytorchReader};
use std::path::Path;

/// Opens `path` and selects the first of `entries` present (else the root dict).
pub fn open(path: &Path, entries: &[&str]) -> Result<StateDict> {
    let shown = path.display().to_string();
    let err = |reason: String| Error::Checkpoint { path: shown.clone(), reason };
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    // Parse the file once per candidate entry; only the selected entry is flattened, so
    // optimizer state and other objects beside the weights never matter.
    let mut found = None;
    for e in entries {
        match PytorchReader::with_top_level_key(path, e) {
            Ok(r) => {
                found = Some((format!("entry `{e}`"), r));
                break;
            }
            Err(pytorch_reader::PytorchError::KeyNotFound(_)) => continue,
            Err(other) => return Err(err(other.to_string())),
        }
    }
    let (entry, reader) = match found {
        Some(f) => f,
        None => ("the root dict".to_string(), PytorchReader::new(path).map_err(|e| err(e.to_string()))?),
    };
    let tensors: BTreeMap<String, SourceTensor> = reader
        .into_tensors()
        .into_iter()
        .map(|(k, t)| {
            let name = k.strip_prefix("module.").unwrap_or(&k).to_string();
            let shown = shown.clone();
            let tensor = SourceTensor::lazy(t.shape().to_vec(), move || decode(&t, &shown));
            (name, tensor)
        })
        .collect();
    Ok(StateDict::new(path, entry, tensors))
}

fn decode(t: &pytorch_reader::Tensor, path: &str) -> Result<Vec<f32>> {
    let err = |reason: String| Error::Checkpoint { path: path.into(), reason };
    let bytes = t.read().map_err(|e| err(e.to_string()))?;
    let stored = match t.dtype() {
        DType::F32 => Stored::F32,
        DType::F64 => Stored::F64,
        DType::F16 => Stored::F16,
        DType::BF16 => Stored::BF16,
        other => return Err(err(format!("tensor `{}` has non-float type {other:?}", t.name))),
    };
    Ok(stored.decode(&bytes))
}

/// Reads `latents_stats.pt`.
pub fn latent_stats(path: &Path) -> Result<LatentStats> {
    let sd = open(path, &[])?;
    let read = |name: &str| -> Result<Vec<f32>> {
        let shape = sd.shape(name)?;
        if shape.len() != 4 || shape[0] != 1 || shape[2] != 1 || shape[3] != 1 {
            return Err(sd.error(format!("`{name}` has shape {shape:?}, expected (1, C, 1, 1)")));
        }
        sd.read_f32(name)
    };
    let stats = LatentStats { mean: read("mean")?, std: read("std")? };
    stats.validate(stats.mean.len()).map_err(|e| sd.error(e.to_string()))?;
    Ok(stats)
}
