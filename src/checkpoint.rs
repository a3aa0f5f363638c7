//! Converting the official PyTorch checkpoints into weight packs, without Python.
//!
//! Accepted files (spec §1.7, §2.4, §3):
//! - VMAE: the training script's `{'model', 'optimizer', 'epoch', 'scaler', 'args'}` or a bare
//!   `{'model': …}`; the 33 `perceptual_loss.*` LPIPS tensors are ignored.
//! - LightningDiT: `{'model', 'ema', 'opt', 'config'}` — the `ema` weights are used — or a bare
//!   state dict; a `module.` prefix is stripped.
//! - `latents_stats.pt`: `{'mean', 'std'}` of shape `(1, C, 1, 1)`.
//!
//! The configuration is read off the tensor shapes. Attention heads are not visible in the
//! shapes of the VMAE: they default to a head width of 16 (the f8d16 model) unless given.
//! For the DiT the head width is the RoPE table's width. A label table of more than one row
//! is taken as `rows − 1` classes plus the null class; a single row is one class without a
//! null class (the CelebA model).

use crate::config::{DitConfig, StackConfig, VmaeConfig};
use crate::error::{Error, Result};
use crate::pack::{LatentStats, Pack, PackDtype, PackModel, PackWriter, pack_layout};
use crate::{Dit, Vmae};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use pytorch_reader::{DType, PytorchReader};
use std::path::Path;

/// Tensor-name prefixes in VMAE checkpoints that are not part of the model.
const VMAE_IGNORED: &[&str] = &["perceptual_loss."];

/// The tensors of one state dict inside a checkpoint file, by official name.
pub struct StateDict {
    path: String,
    /// Which entry of the file was used (`model`, `ema` or the root).
    pub entry: String,
    tensors: BTreeMap<String, pytorch_reader::Tensor>,
}

impl StateDict {
    /// Opens `path` and selects the first of `entries` present (else the root dict).
    pub fn open(path: &Path, entries: &[&str]) -> Result<Self> {
        let shown = path.display().to_string();
        let err = |reason: String| Error::Checkpoint {
            path: shown.clone(),
            reason,
        };
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        // Parse the file once per candidate entry; only the selected entry is flattened, so
        // optimizer state and other objects beside the weights never matter.
        let mut found = None;
        for e in entries {
            match PytorchReader::with_top_level_key(path, e) {
                Ok(r) => {
                    found = Some((e.to_string(), r));
                    break;
                }
                Err(pytorch_reader::PytorchError::KeyNotFound(_)) => continue,
                Err(other) => return Err(err(other.to_string())),
            }
        }
        let (entry, reader) = match found {
            Some(f) => f,
            None => (
                "<root>".to_string(),
                PytorchReader::new(path).map_err(|e| err(e.to_string()))?,
            ),
        };
        let tensors: BTreeMap<String, pytorch_reader::Tensor> =
            reader.into_tensors().into_iter().collect();
        let tensors = tensors
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), t))
            .collect();
        Ok(Self {
            path: shown,
            entry,
            tensors,
        })
    }

    /// Tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    fn error(&self, reason: String) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            reason,
        }
    }

    /// Shape of tensor `name`, or an error naming it and guessing what the file is.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        match self.tensors.get(name) {
            Some(t) => Ok(t.shape()),
            None => Err(self.error(format!(
                "no tensor `{name}` in entry `{}` (this looks like {})",
                self.entry,
                self.guess_kind()
            ))),
        }
    }

    fn dim(&self, name: &str, axis: usize, rank: usize) -> Result<usize> {
        let shape = self.shape(name)?;
        if shape.len() != rank {
            return Err(self.error(format!(
                "tensor `{name}` has shape {shape:?}, expected rank {rank}"
            )));
        }
        Ok(shape[axis])
    }

    /// Number of consecutive `{prefix}.{i}.` blocks.
    fn depth(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.names()
                    .any(|n| n.starts_with(&format!("{prefix}.{i}.")))
            })
            .count()
    }

    fn guess_kind(&self) -> &'static str {
        if self.tensors.contains_key("x_embedder.proj.weight") {
            "a LightningDiT checkpoint"
        } else if self.tensors.contains_key("patch_embed.proj.weight") {
            "a VMAE checkpoint"
        } else {
            "neither a VMAE nor a LightningDiT checkpoint"
        }
    }

    /// Tensor `name` as f32 values.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| self.error(format!("no tensor `{name}`")))?;
        let bytes = t.read().map_err(|e| self.error(e.to_string()))?;
        let values: Vec<f32> = match t.dtype() {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.error(format!("tensor `{name}` has non-float type {other:?}")));
            }
        };
        if values.len() != t.num_elements() {
            return Err(self.error(format!(
                "tensor `{name}` holds {} values for shape {:?}",
                values.len(),
                t.shape()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.error(format!("tensor `{name}` contains NaN or infinite values")));
        }
        Ok(values)
    }

    /// Writes every tensor not under an `ignored` prefix into a pack, transposing linear
    /// weights into the pack layout.
    fn to_pack(&self, model: PackModel, dtype: PackDtype, ignored: &[&str]) -> Result<Vec<u8>> {
        let source = format!("{} (entry `{}`)", self.path, self.entry);
        let mut writer = PackWriter::new(model, dtype, source);
        for (name, t) in &self.tensors {
            if ignored.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let values = self.read_f32(name)?;
            let shape = t.shape();
            if pack_layout(name, shape) {
                let (rows, cols) = (shape[0], shape[1]);
                let transposed: Vec<f32> = (0..cols * rows)
                    .map(|i| values[(i % rows) * cols + i / rows])
                    .collect();
                writer.add(name.clone(), &[cols, rows], &transposed)?;
            } else {
                writer.add(name.clone(), shape, &values)?;
            }
        }
        writer.to_bytes()
    }
}

/// Optional VMAE settings that the tensor shapes do not reveal.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmaeOverrides {
    /// Encoder heads (default: width / 16).
    pub heads: Option<usize>,
    /// Decoder heads (default: width / 16).
    pub decoder_heads: Option<usize>,
}

/// Reads the VMAE configuration off the checkpoint's shapes.
pub fn vmae_config(sd: &StateDict, o: VmaeOverrides) -> Result<VmaeConfig> {
    let width = sd.dim("patch_embed.proj.weight", 0, 4)?;
    let patch = sd.dim("patch_embed.proj.weight", 2, 4)?;
    let tokens = sd.dim("pos_embed", 1, 3)?;
    let grid = (0..=tokens).find(|g| g * g >= tokens).unwrap_or(0);
    if grid * grid != tokens {
        return Err(sd.error(format!(
            "`pos_embed` has {tokens} tokens, not a square grid"
        )));
    }
    let dec_width = sd.dim("decoder_embed.weight", 0, 2)?;
    let stack = |prefix: &str, width: usize, heads: Option<usize>| -> Result<StackConfig> {
        Ok(StackConfig {
            width,
            depth: sd.depth(prefix),
            heads: heads.unwrap_or(width / 16),
            mlp_hidden: sd.dim(&format!("{prefix}.0.mlp.fc1.weight"), 0, 2)?,
        })
    };
    let config = VmaeConfig {
        image_size: grid * patch,
        patch_size: patch,
        latent_channels: sd.dim("from_latent.weight", 1, 2)?,
        encoder: stack("blocks", width, o.heads)?,
        decoder: stack("decoder_blocks", dec_width, o.decoder_heads)?,
    };
    config.validate()?;
    Ok(config)
}

/// Reads the DiT configuration off the checkpoint's shapes.
pub fn dit_config(sd: &StateDict) -> Result<DitConfig> {
    let hidden = sd.dim("x_embedder.proj.weight", 0, 4)?;
    let in_channels = sd.dim("x_embedder.proj.weight", 1, 4)?;
    let patch = sd.dim("x_embedder.proj.weight", 2, 4)?;
    let tokens = sd.dim("pos_embed", 1, 3)?;
    let grid = (0..=tokens).find(|g| g * g >= tokens).unwrap_or(0);
    if grid * grid != tokens {
        return Err(sd.error(format!(
            "`pos_embed` has {tokens} tokens, not a square grid"
        )));
    }
    let head_dim = sd.dim("feat_rope.freqs_cos", 1, 2)?;
    if head_dim == 0 || !hidden.is_multiple_of(head_dim) {
        return Err(sd.error(format!(
            "RoPE width {head_dim} does not divide hidden width {hidden}"
        )));
    }
    let rows = sd.dim("y_embedder.embedding_table.weight", 0, 2)?;
    let config = DitConfig {
        input_size: grid * patch,
        patch_size: patch,
        in_channels,
        hidden,
        depth: sd.depth("blocks"),
        heads: hidden / head_dim,
        mlp_hidden: sd.dim("blocks.0.mlp.w3.weight", 1, 2)?,
        num_classes: if rows > 1 { rows - 1 } else { rows },
        null_class: rows > 1,
        qk_norm: sd.tensors.contains_key("blocks.0.attn.q_norm.weight"),
    };
    config.validate()?;
    Ok(config)
}

/// Reads `latents_stats.pt`.
pub fn latent_stats(path: &Path) -> Result<LatentStats> {
    let sd = StateDict::open(path, &[])?;
    let read = |name: &str| -> Result<Vec<f32>> {
        let shape = sd.shape(name)?;
        if shape.len() != 4 || shape[0] != 1 || shape[2] != 1 || shape[3] != 1 {
            return Err(sd.error(format!(
                "`{name}` has shape {shape:?}, expected (1, C, 1, 1)"
            )));
        }
        sd.read_f32(name)
    };
    let stats = LatentStats {
        mean: read("mean")?,
        std: read("std")?,
    };
    stats
        .validate(stats.mean.len())
        .map_err(|e| sd.error(e.to_string()))?;
    Ok(stats)
}

/// Converts a VMAE checkpoint into pack bytes, and proves the pack loads strictly.
pub fn convert_vmae(path: &Path, dtype: PackDtype, o: VmaeOverrides) -> Result<Vec<u8>> {
    let sd = StateDict::open(path, &["model"])?;
    let config = vmae_config(&sd, o)?;
    let bytes = sd.to_pack(PackModel::Vmae(config), dtype, VMAE_IGNORED)?;
    Vmae::load(&Pack::from_bytes(&bytes)?, &crate::device::cpu())
        .map_err(|e| sd.error(format!("{e}")))?;
    Ok(bytes)
}

/// Converts a LightningDiT checkpoint (its `ema` weights) and its latent statistics into
/// pack bytes, and proves the pack loads strictly.
pub fn convert_dit(path: &Path, stats: &Path, dtype: PackDtype) -> Result<Vec<u8>> {
    let sd = StateDict::open(path, &["ema", "model"])?;
    let config = dit_config(&sd)?;
    let stats = latent_stats(stats)?;
    if stats.mean.len() != config.in_channels {
        return Err(Error::InputValue {
            what: "latent statistics",
            reason: format!(
                "{} channels for a DiT with {} latent channels",
                stats.mean.len(),
                config.in_channels
            ),
        });
    }
    let bytes = sd.to_pack(
        PackModel::Dit {
            config,
            stats,
            sampling: None,
        },
        dtype,
        &[],
    )?;
    Dit::load(&Pack::from_bytes(&bytes)?, &crate::device::cpu())
        .map_err(|e| sd.error(format!("{e}")))?;
    Ok(bytes)
}
