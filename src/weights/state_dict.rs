//! The tensors of one model inside a checkpoint or an ONNX export, by official state-dict name,
//! as the readers produce them, and the configuration read off their shapes.
//!
//! Attention heads are not visible in the shapes of the VMAE: they default to a head width of 16
//! (the f8d16 model) unless given (an ONNX export records them). For the DiT the head width is
//! the RoPE table's width. A label table of more than one row is taken as `rows − 1` classes plus
//! the null class; a single row is one class without a null class (the CelebA model).

use crate::diffusion::LatentStats;
use crate::error::{Error, Result};
use crate::model::{DitConfig, ModelSpec, StackConfig, VmaeConfig, WeightSource, is_linear_weight};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::Path;

/// A named tensor in its file's layout whose f32 values are produced on demand.
pub struct SourceTensor {
    shape: Vec<usize>,
    read: Box<dyn Fn() -> Result<Vec<f32>>>,
}

impl SourceTensor {
    /// A tensor of `shape` read lazily by `read`.
    pub fn lazy(shape: Vec<usize>, read: impl Fn() -> Result<Vec<f32>> + 'static) -> Self {
        Self { shape, read: Box::new(read) }
    }
}

/// Which model the tensors are taken as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not decided (e.g. `latents_stats.pt`).
    Any,
    Vmae,
    Dit,
}

/// Tensor-name prefixes in VMAE checkpoints that are not part of the model (the LPIPS loss).
const VMAE_IGNORED: &[&str] = &["perceptual_loss."];

/// Optional VMAE settings that the tensor shapes do not reveal.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmaeOverrides {
    /// Encoder heads (default: recorded in the file, else width / 16).
    pub heads: Option<usize>,
    /// Decoder heads (default: recorded in the file, else width / 16).
    pub decoder_heads: Option<usize>,
}

/// The tensors of one model inside a file, by official state-dict name.
pub struct StateDict {
    path: String,
    entry: String,
    tensors: BTreeMap<String, SourceTensor>,
    role: Role,
    /// Attention heads (encoder, decoder): recorded by the file or given.
    heads: (Option<usize>, Option<usize>),
    /// Latent statistics: recorded by the file (ONNX DiT exports may carry them) or given.
    stats: Option<LatentStats>,
}

impl StateDict {
    /// The tensors found in `entry` (which part of the file: `model`, `ema`, the root, ONNX
    /// graphs) of the file at `path`.
    pub fn new(path: &Path, entry: impl Into<String>, tensors: BTreeMap<String, SourceTensor>) -> Self {
        let path = path.display().to_string();
        Self { path, entry: entry.into(), tensors, role: Role::Any, heads: (None, None), stats: None }
    }

    /// Which part of the file was used.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// Heads recorded by the file (encoder, decoder).
    #[cfg(feature = "onnx")]
    pub(crate) fn with_recorded_heads(mut self, heads: (Option<usize>, Option<usize>)) -> Self {
        self.heads = heads;
        self
    }

    /// Latent statistics recorded by the file.
    #[cfg(feature = "onnx")]
    pub(crate) fn with_recorded_stats(mut self, stats: Option<LatentStats>) -> Self {
        self.stats = stats;
        self
    }

    /// These tensors as a VMAE, with heads the shapes do not show (given ones win over recorded).
    pub fn as_vmae(mut self, o: VmaeOverrides) -> Self {
        self.role = Role::Vmae;
        self.heads = (o.heads.or(self.heads.0), o.decoder_heads.or(self.heads.1));
        self
    }

    /// These tensors as a DiT with its latent statistics (given ones win over recorded ones).
    pub fn as_dit(mut self, stats: Option<LatentStats>) -> Self {
        self.role = Role::Dit;
        self.stats = stats.or(self.stats);
        self
    }

    /// Every tensor name of the file, in the file's order of names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub(crate) fn error(&self, reason: String) -> Error {
        Error::Checkpoint { path: self.path.clone(), reason }
    }

    /// Shape of tensor `name` in the file, or an error naming it and guessing what the file is.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        match self.tensors.get(name) {
            Some(t) => Ok(&t.shape),
            None => {
                Err(self.error(format!("no tensor `{name}` in {} (this looks like {})", self.entry, self.guess_kind())))
            }
        }
    }

    fn dim(&self, name: &str, axis: usize, rank: usize) -> Result<usize> {
        let shape = self.shape(name)?;
        if shape.len() != rank {
            return Err(self.error(format!("tensor `{name}` has shape {shape:?}, expected rank {rank}")));
        }
        Ok(shape[axis])
    }

    /// Side of the square token grid of a `[1, N, D]` position table.
    fn grid(&self, name: &str) -> Result<usize> {
        let tokens = self.dim(name, 1, 3)?;
        let grid = tokens.isqrt();
        if grid * grid != tokens {
            return Err(self.error(format!("`{name}` has {tokens} tokens, not a square grid")));
        }
        Ok(grid)
    }

    /// Number of consecutive `{prefix}.{i}.` blocks.
    fn depth(&self, prefix: &str) -> usize {
        (0..).take_while(|i| self.names().any(|n| n.starts_with(&format!("{prefix}.{i}.")))).count()
    }

    fn guess_kind(&self) -> &'static str {
        if self.tensors.contains_key("x_embedder.proj.weight") {
            "a LightningDiT"
        } else if self.tensors.contains_key("patch_embed.proj.weight") {
            "a VMAE"
        } else {
            "neither a VMAE nor a LightningDiT"
        }
    }

    /// Tensor `name` as f32 values in the file's layout, which must be finite.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensors.get(name).ok_or_else(|| self.error(format!("no tensor `{name}`")))?;
        let values = (t.read)()?;
        if values.len() != t.shape.iter().product::<usize>() {
            return Err(self.error(format!("tensor `{name}` holds {} values for shape {:?}", values.len(), t.shape)));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.error(format!("tensor `{name}` contains NaN or infinite values")));
        }
        Ok(values)
    }

    /// The VMAE configuration read off the tensor shapes.
    pub fn vmae_config(&self) -> Result<VmaeConfig> {
        let width = self.dim("patch_embed.proj.weight", 0, 4)?;
        let patch = self.dim("patch_embed.proj.weight", 2, 4)?;
        let grid = self.grid("pos_embed")?;
        let dec_width = self.dim("decoder_embed.weight", 0, 2)?;
        let stack = |prefix: &str, width: usize, heads: Option<usize>| -> Result<StackConfig> {
            Ok(StackConfig {
                width,
                depth: self.depth(prefix),
                heads: heads.unwrap_or(width / 16),
                mlp_hidden: self.dim(&format!("{prefix}.0.mlp.fc1.weight"), 0, 2)?,
            })
        };
        let config = VmaeConfig {
            image_size: grid * patch,
            patch_size: patch,
            latent_channels: self.dim("from_latent.weight", 1, 2)?,
            encoder: stack("blocks", width, self.heads.0)?,
            decoder: stack("decoder_blocks", dec_width, self.heads.1)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The DiT configuration read off the tensor shapes.
    pub fn dit_config(&self) -> Result<DitConfig> {
        let hidden = self.dim("x_embedder.proj.weight", 0, 4)?;
        let in_channels = self.dim("x_embedder.proj.weight", 1, 4)?;
        let patch = self.dim("x_embedder.proj.weight", 2, 4)?;
        let grid = self.grid("pos_embed")?;
        let head_dim = self.dim("feat_rope.freqs_cos", 1, 2)?;
        if head_dim == 0 || !hidden.is_multiple_of(head_dim) {
            return Err(self.error(format!("RoPE width {head_dim} does not divide hidden width {hidden}")));
        }
        let rows = self.dim("y_embedder.embedding_table.weight", 0, 2)?;
        let config = DitConfig {
            input_size: grid * patch,
            patch_size: patch,
            in_channels,
            hidden,
            depth: self.depth("blocks"),
            heads: hidden / head_dim,
            mlp_hidden: self.dim("blocks.0.mlp.w3.weight", 1, 2)?,
            num_classes: if rows > 1 { rows - 1 } else { rows },
            null_class: rows > 1,
            qk_norm: self.tensors.contains_key("blocks.0.attn.q_norm.weight"),
        };
        config.validate()?;
        Ok(config)
    }

    /// What the tensors are: the model, where in the file, how many tensors, the configuration.
    pub fn summary(&self) -> Result<String> {
        let n = self.tensors.len();
        Ok(match self.role {
            Role::Dit => {
                format!("LightningDiT weights in {}, {n} tensors\nconfig: {:?}", self.entry, self.dit_config()?)
            }
            _ => format!("VMAE weights in {}, {n} tensors\nconfig: {:?}", self.entry, self.vmae_config()?),
        })
    }

    fn ignored(&self, name: &str) -> bool {
        self.role == Role::Vmae && VMAE_IGNORED.iter().any(|p| name.starts_with(p))
    }
}

impl WeightSource for StateDict {
    fn spec(&self) -> Result<ModelSpec> {
        match self.role {
            Role::Vmae => Ok(ModelSpec::Vmae(self.vmae_config()?)),
            Role::Dit => {
                let config = self.dit_config()?;
                let stats = self.stats.clone().ok_or_else(|| {
                    self.error("no latent statistics: give the `latents_stats.pt` of this model".into())
                })?;
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
                Ok(ModelSpec::Dit { config, stats, sampling: None })
            }
            Role::Any => Err(self.error(format!("{} is not opened as a model", self.entry))),
        }
    }

    fn tensor_names(&self) -> Vec<String> {
        self.names().filter(|n| !self.ignored(n)).map(String::from).collect()
    }

    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        let shape = &self.tensors.get(name).filter(|_| !self.ignored(name))?.shape;
        Some(if is_linear_weight(name, shape) { shape.iter().rev().copied().collect() } else { shape.clone() })
    }

    fn read_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let found = self.tensor_shape(name).ok_or_else(|| Error::MissingTensor(name.into()))?;
        if found != shape {
            return Err(Error::TensorShape { name: name.into(), expected: shape.to_vec(), found });
        }
        let values = self.read_f32(name)?;
        Ok(if is_linear_weight(name, shape) {
            // File `[rows, cols]` → model `[cols, rows]`.
            let (cols, rows) = (shape[0], shape[1]);
            (0..cols * rows).map(|i| values[(i % rows) * cols + i / rows]).collect()
        } else {
            values
        })
    }

    fn context(&self, error: Error) -> Error {
        match error {
            e @ Error::Checkpoint { .. } => e,
            e => self.error(e.to_string()),
        }
    }
}
