//! The networks, exactly as the released PyTorch code computes them: the VMAE autoencoder
//! ([`Vmae`]: ViT encoder → Gaussian latent → ViT decoder) and LightningDiT ([`Dit`]: the
//! velocity model of the diffusion), their configurations and official presets, and the
//! [`WeightSource`] trait they are built from (packs, checkpoints and ONNX graphs implement it).

mod config;
mod dit;
mod layers;
mod source;
mod vmae;

pub use config::{DitConfig, ModelSpec, StackConfig, TIME_FEATURES, VmaeConfig};
pub use dit::{Dit, timestep_features};
pub use source::WeightSource;
pub(crate) use source::is_linear_weight;
pub use vmae::{Posterior, Vmae};
