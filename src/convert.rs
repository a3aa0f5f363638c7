//! Trained weights → weight packs: a set of named tensors (from a PyTorch checkpoint or an
//! ONNX graph), the configuration read off their shapes, and the strict conversion.
//!
//! The configuration is read off the tensor shapes. Attention heads are not visible in the
//! shapes of the VMAE: they default to a head width of 16 (the f8d16 model) unless given (an
//! ONNX export records them). For the DiT the head width is the RoPE table's width. A label
//! table of more than one row is taken as `rows − 1` classes plus the null class; a single
//! row is one class without a null class (the CelebA model).

use crate::config::{DitConfig, StackConfig, VmaeConfig};
use crate::error::{Error, Result};
use crate::pack::{LatentStats, Pack, PackDtype, PackModel, PackWriter, pack_layout};
use crate::{Dit, Vmae};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::path::Path;

/// A named tensor whose f32 values are produced on demand.
pub struct SourceTensor {
    pub shape: Vec<usize>,
    read: Box<dyn Fn() -> Result<Vec<f32>>>,
}

impl SourceTensor {
    /// A tensor read lazily by `read`.
    pub fn lazy(shape: Vec<usize>, read: impl Fn() -> Result<Vec<f32>> + 'static) -> Self {
        Self { shape, read: Box::new(read) }
    }
}

/// The tensors of one model inside a file, by official state-dict name.
pub struct StateDict {
    path: String,
    /// Which part of the file was used (`model`, `ema`, the root, ONNX graphs).
    pub entry: String,
    tensors: BTreeMap<String, SourceTensor>,
    /// Attention heads recorded by the file, if any (encoder, decoder).
    pub(crate) heads: (Option<usize>, Option<usize>),
    /// Latent statistics recorded by the file, if any (ONNX DiT exports may carry them).
    pub(crate) stats: Option<LatentStats>,
}

impl StateDict {
    pub fn new(path: &Path, entry: impl Into<String>, tensors: BTreeMap<String, SourceTensor>) -> Self {
        let path = path.display().to_string();
        Self { path, entry: entry.into(), tensors, heads: (None, None), stats: None }
    }

    /// Tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub(crate) fn error(&self, reason: String) -> Error {
        Error::Checkpoint { path: self.path.clone(), reason }
    }

    /// Shape of tensor `name`, or an error naming it and guessing what the file is.
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

    /// Tensor `name` as f32 values, which must be finite.
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

    /// Writes every tensor not under an `ignored` prefix into a pack, transposing linear
    /// weights into the pack layout.
    fn to_pack(&self, model: PackModel, dtype: PackDtype, ignored: &[&str]) -> Result<Vec<u8>> {
        let source = format!("{} ({})", self.path, self.entry);
        let mut writer = PackWriter::new(model, dtype, source);
        for (name, t) in &self.tensors {
            if ignored.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let values = self.read_f32(name)?;
            if pack_layout(name, &t.shape) {
                let (rows, cols) = (t.shape[0], t.shape[1]);
                let transposed: Vec<f32> = (0..cols * rows).map(|i| values[(i % rows) * cols + i / rows]).collect();
                writer.add(name.clone(), &[cols, rows], &transposed)?;
            } else {
                writer.add(name.clone(), &t.shape, &values)?;
            }
        }
        writer.to_bytes()
    }
}

/// Optional VMAE settings that the tensor shapes do not reveal.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmaeOverrides {
    /// Encoder heads (default: recorded in the file, else width / 16).
    pub heads: Option<usize>,
    /// Decoder heads (default: recorded in the file, else width / 16).
    pub decoder_heads: Option<usize>,
}

/// Reads the VMAE configuration off the tensor shapes.
pub fn vmae_config(sd: &StateDict, o: VmaeOverrides) -> Result<VmaeConfig> {
    let width = sd.dim("patch_embed.proj.weight", 0, 4)?;
    let patch = sd.dim("patch_embed.proj.weight", 2, 4)?;
    let grid = sd.grid("pos_embed")?;
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
        encoder: stack("blocks", width, o.heads.or(sd.heads.0))?,
        decoder: stack("decoder_blocks", dec_width, o.decoder_heads.or(sd.heads.1))?,
    };
    config.validate()?;
    Ok(config)
}

/// Reads the DiT configuration off the tensor shapes.
pub fn dit_config(sd: &StateDict) -> Result<DitConfig> {
    let hidden = sd.dim("x_embedder.proj.weight", 0, 4)?;
    let in_channels = sd.dim("x_embedder.proj.weight", 1, 4)?;
    let patch = sd.dim("x_embedder.proj.weight", 2, 4)?;
    let grid = sd.grid("pos_embed")?;
    let head_dim = sd.dim("feat_rope.freqs_cos", 1, 2)?;
    if head_dim == 0 || !hidden.is_multiple_of(head_dim) {
        return Err(sd.error(format!("RoPE width {head_dim} does not divide hidden width {hidden}")));
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

/// What a weights file holds, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A ldmae weight pack (burnpack).
    Pack,
    /// A `.npy` array.
    Npy,
    /// A `.ldz` compressed image.
    Ldz,
    /// A `torch.save` file (zip or legacy pickle).
    Torch,
    /// Anything else: tried as an ONNX protobuf.
    Onnx,
}

/// Sniffs the kind of `path` from its first bytes.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut head).map_err(|e| Error::io(path, e))?;
    let head = &head[..n];
    Ok(if head.starts_with(&burn_pack::MAGIC_NUMBER.to_le_bytes()) {
        FileKind::Pack
    } else if head.starts_with(b"\x93NUMPY") {
        FileKind::Npy
    } else if head.starts_with(&crate::ldz::MAGIC) {
        FileKind::Ldz
    } else if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
        FileKind::Torch
    } else {
        FileKind::Onnx
    })
}

/// The VMAE tensors of a checkpoint or of an ONNX encoder/decoder pair.
pub fn vmae_state_dict(path: &Path) -> Result<StateDict> {
    match file_kind(path)? {
        #[cfg(feature = "checkpoint")]
        FileKind::Torch => crate::checkpoint::open(path, &["model"]),
        #[cfg(feature = "onnx")]
        FileKind::Onnx => crate::onnx::open_vmae(path),
        kind => Err(unsupported(path, kind)),
    }
}

/// The DiT tensors of a checkpoint (`ema` first) or of an ONNX graph.
pub fn dit_state_dict(path: &Path) -> Result<StateDict> {
    match file_kind(path)? {
        #[cfg(feature = "checkpoint")]
        FileKind::Torch => crate::checkpoint::open(path, &["ema", "model"]),
        #[cfg(feature = "onnx")]
        FileKind::Onnx => crate::onnx::open_dit(path),
        kind => Err(unsupported(path, kind)),
    }
}

fn unsupported(path: &Path, kind: FileKind) -> Error {
    let reason = match kind {
        FileKind::Pack => "is already a weight pack".to_string(),
        FileKind::Npy => "is a .npy array, not model weights".to_string(),
        FileKind::Ldz => "is a .ldz compressed image, not model weights".to_string(),
        _ => format!("is a {kind:?} file, which this build cannot read (enable the `checkpoint` / `onnx` features)"),
    };
    Error::Checkpoint { path: path.display().to_string(), reason }
}

/// Tensor-name prefixes in VMAE checkpoints that are not part of the model.
const VMAE_IGNORED: &[&str] = &["perceptual_loss."];

/// Converts a VMAE checkpoint or ONNX export into pack bytes, and proves the pack loads strictly.
pub fn convert_vmae(path: &Path, dtype: PackDtype, o: VmaeOverrides) -> Result<Vec<u8>> {
    let sd = vmae_state_dict(path)?;
    let config = vmae_config(&sd, o)?;
    let bytes = sd.to_pack(PackModel::Vmae(config), dtype, VMAE_IGNORED)?;
    Vmae::load(&Pack::from_bytes(&bytes)?, &crate::device::cpu()).map_err(|e| sd.error(format!("{e}")))?;
    Ok(bytes)
}

/// Converts a LightningDiT checkpoint (its `ema` weights) or ONNX export and its latent
/// statistics into pack bytes, and proves the pack loads strictly. Without `stats`, the
/// statistics recorded in the file (ONNX metadata) are used.
pub fn convert_dit(path: &Path, stats: Option<LatentStats>, dtype: PackDtype) -> Result<Vec<u8>> {
    let sd = dit_state_dict(path)?;
    let config = dit_config(&sd)?;
    let stats = stats
        .or_else(|| sd.stats.clone())
        .ok_or_else(|| sd.error("no latent statistics: give the `latents_stats.pt` of this model".into()))?;
    if stats.mean.len() != config.in_channels {
        return Err(Error::InputValue {
            what: "latent statistics",
            reason: format!("{} channels for a DiT with {} latent channels", stats.mean.len(), config.in_channels),
        });
    }
    let model = PackModel::Dit { config, stats, sampling: None };
    let bytes = sd.to_pack(model, dtype, &[])?;
    Dit::load(&Pack::from_bytes(&bytes)?, &crate::device::cpu()).map_err(|e| sd.error(format!("{e}")))?;
    Ok(bytes)
}

/// Weights for a VMAE from a pack, or converted in memory (f32) from an ONNX export or a
/// PyTorch checkpoint, with the same strict validation.
pub fn open_vmae_weights(path: &Path) -> Result<Pack> {
    match file_kind(path)? {
        FileKind::Pack => Pack::from_file(path),
        _ => Pack::from_bytes(&convert_vmae(path, PackDtype::F32, VmaeOverrides::default())?),
    }
}

/// Weights for a DiT from a pack, or converted in memory (f32) from an ONNX export or a
/// PyTorch checkpoint; `stats` are required unless the file records them.
pub fn open_dit_weights(path: &Path, stats: Option<LatentStats>) -> Result<Pack> {
    match file_kind(path)? {
        FileKind::Pack => Pack::from_file(path),
        _ => Pack::from_bytes(&convert_dit(path, stats, PackDtype::F32)?),
    }
}
