//! # ldmae
//!
//! The models of *Latent Diffusion Models with Masked AutoEncoders* (ICCV 2025) on
//! [burn](https://burn.dev), for edge devices: the VMAE autoencoder (256² image ↔ 16×32×32
//! Gaussian latent) and LightningDiT with its flow-matching sampler, loaded from weight packs
//! converted from the official checkpoints by `ldmae-export`.
//!
//! ```no_run
//! # fn main() -> ldmae::Result<()> {
//! use ldmae::{Dit, Pack, SamplerConfig, Vmae, device, image, noise, sampler};
//! let device = device::cpu();
//! let vmae = Vmae::load(&Pack::from_file("vmae.pack".as_ref())?, &device)?;
//! let dit = Dit::load(&Pack::from_file("dit.pack".as_ref())?, &device)?;
//! let z0 = noise::standard_normal([1, 16, 32, 32], 0, &device);
//! let config = SamplerConfig { steps: 32, ..SamplerConfig::default() };
//! let latent = sampler::sample(&dit, z0, &[207], &config, |_, _| {})?;
//! let images = image::tensor_to_images(vmae.decode(latent)?)?;
//! # Ok(()) }
//! ```
//!
//! Without the default `std` feature the crate is `#![no_std]` + `alloc`: models, sampler and
//! packs from byte slices work; files, PNG and the CLI need `std`.
#![no_std]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "checkpoint")]
pub mod checkpoint;
pub mod codec;
pub mod config;
#[cfg(feature = "std")]
pub mod convert;
#[cfg(all(feature = "flex", feature = "std"))]
mod cpu_kernels;
pub mod device;
pub mod dit;
pub mod error;
mod floats;
pub mod image;
pub mod ldz;
#[cfg(feature = "std")]
pub mod malloc;
#[cfg(feature = "embedded-models")]
pub mod models;
pub mod nn;
pub mod noise;
pub mod npy;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod pack;
pub mod sampler;
pub mod tiling;
pub mod vmae;

pub use codec::Codec;
pub use config::{DitConfig, StackConfig, VmaeConfig};
pub use dit::Dit;
pub use error::{Error, Result};
pub use pack::{LatentStats, Pack, PackDtype, PackModel, PackWriter};
pub use sampler::SamplerConfig;
pub use vmae::{Posterior, Vmae};
