//! Where weights come from: ldmae weight packs ([`Pack`], the format apps ship), official PyTorch
//! checkpoints ([`checkpoint`]) and ONNX exports ([`onnx`]) read into a [`StateDict`], the
//! conversion of either into packs ([`convert`]), and the demo models embedded in the crate
//! ([`embedded`]). Every one of them is a [`crate::WeightSource`] that networks are built from.
//!
//! ```no_run
//! # fn main() -> ldmae::Result<()> {
//! use ldmae::{Vmae, device, weights};
//! // A pack, a `.pth` checkpoint or an ONNX export: read once, loaded once.
//! let vmae = Vmae::load(&*weights::open_vmae("vmaef8d16.pth".as_ref())?, &device::cpu())?;
//! # Ok(()) }
//! ```

#[cfg(feature = "checkpoint")]
pub mod checkpoint;
#[cfg(feature = "std")]
pub mod convert;
#[cfg(feature = "embedded-models")]
pub mod embedded;
#[cfg(feature = "onnx")]
pub mod onnx;
mod pack;
mod quant;
#[cfg(feature = "std")]
mod state_dict;

pub use pack::{FORMAT_VERSION, Pack, PackWriter};
pub use quant::Storage;
#[cfg(feature = "std")]
pub use state_dict::{SourceTensor, StateDict, VmaeOverrides};

#[cfg(feature = "std")]
pub use files::*;

#[cfg(feature = "std")]
mod files {
    use super::{Pack, StateDict, VmaeOverrides};
    use crate::diffusion::LatentStats;
    use crate::error::{Error, Result};
    use crate::model::WeightSource;
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::string::ToString;
    use std::path::Path;

    /// What a file holds, judged by its first bytes.
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
        } else if head.starts_with(crate::io::npy::MAGIC) {
            FileKind::Npy
        } else if head.starts_with(&crate::codec::ldz::MAGIC) {
            FileKind::Ldz
        } else if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
            FileKind::Torch
        } else {
            FileKind::Onnx
        })
    }

    /// The VMAE tensors of a checkpoint (its `model` entry) or of an ONNX encoder/decoder pair.
    pub fn vmae_state_dict(path: &Path, o: VmaeOverrides) -> Result<StateDict> {
        let sd: Result<StateDict> = match file_kind(path)? {
            #[cfg(feature = "checkpoint")]
            FileKind::Torch => super::checkpoint::open(path, &["model"]),
            #[cfg(feature = "onnx")]
            FileKind::Onnx => super::onnx::open_vmae(path),
            kind => Err(unsupported(path, kind)),
        };
        Ok(sd?.as_vmae(o))
    }

    /// The DiT tensors of a checkpoint (`ema` first) or of an ONNX graph, with latent statistics
    /// (`stats`, else those the file records).
    pub fn dit_state_dict(path: &Path, stats: Option<LatentStats>) -> Result<StateDict> {
        let sd: Result<StateDict> = match file_kind(path)? {
            #[cfg(feature = "checkpoint")]
            FileKind::Torch => super::checkpoint::open(path, &["ema", "model"]),
            #[cfg(feature = "onnx")]
            FileKind::Onnx => super::onnx::open_dit(path),
            kind => Err(unsupported(path, kind)),
        };
        Ok(sd?.as_dit(stats))
    }

    /// The model in a checkpoint or ONNX export: its VMAE if it holds one, else its DiT.
    pub fn model_state_dict(path: &Path) -> Result<StateDict> {
        match vmae_state_dict(path, VmaeOverrides::default()) {
            Ok(sd) if sd.vmae_config().is_ok() => Ok(sd),
            _ => dit_state_dict(path, None),
        }
    }

    fn unsupported(path: &Path, kind: FileKind) -> Error {
        let reason = match kind {
            FileKind::Pack => "is already a weight pack".to_string(),
            FileKind::Npy => "is a .npy array, not model weights".to_string(),
            FileKind::Ldz => "is a .ldz compressed image, not model weights".to_string(),
            _ => {
                format!("is a {kind:?} file, which this build cannot read (enable the `checkpoint` / `onnx` features)")
            }
        };
        Error::Checkpoint { path: path.display().to_string(), reason }
    }

    /// VMAE weights from a pack, a PyTorch checkpoint or an ONNX export, read once.
    pub fn open_vmae(path: &Path) -> Result<Box<dyn WeightSource>> {
        Ok(match file_kind(path)? {
            FileKind::Pack => Box::new(Pack::from_file(path)?),
            _ => Box::new(vmae_state_dict(path, VmaeOverrides::default())?),
        })
    }

    /// DiT weights from a pack, a PyTorch checkpoint or an ONNX export, read once; `stats` are
    /// required for a checkpoint and for an ONNX export that does not record them.
    pub fn open_dit(path: &Path, stats: Option<LatentStats>) -> Result<Box<dyn WeightSource>> {
        Ok(match file_kind(path)? {
            FileKind::Pack => Box::new(Pack::from_file(path)?),
            _ => Box::new(dit_state_dict(path, stats)?),
        })
    }
}
