//! # ldmae
//!
//! The models of *Latent Diffusion Models with Masked AutoEncoders* (ICCV 2025) on
//! [burn](https://burn.dev), for edge devices: the VMAE autoencoder (256² image ↔ 16×32×32
//! Gaussian latent) and LightningDiT with its flow-matching sampler, computed exactly as the
//! released PyTorch code computes them, and an image codec on the VMAE latent.
//!
//! The data flow, and the module that owns each part:
//!
//! ```text
//! weights (pack | checkpoint | ONNX) ──► model::{Vmae, Dit}
//! image ─► io ─► Vmae::encode ─► latent ─► codec (.ldz)
//! noise ─► diffusion::sample(Dit) ─► latent ─► Vmae::decode ─► io ─► image   (pipeline::Generator)
//! ```
//!
//! ```no_run
//! # fn main() -> ldmae::Result<()> {
//! use ldmae::{Generator, SamplerOverrides, Vmae, Dit, device, weights};
//! let device = device::cpu();
//! let vmae = Vmae::load(&*weights::open_vmae("vmae.pack".as_ref())?, &device)?;
//! let dit = Dit::load(&*weights::open_dit("dit.pack".as_ref(), None)?, &device)?;
//! let generator = Generator::new(dit, vmae)?;
//! let settings = generator.sampling(&SamplerOverrides { steps: Some(32), ..Default::default() });
//! let images = generator.generate(&[207, 360], 0, &settings, |_, _| {})?;
//! # Ok(()) }
//! ```
//!
//! Threads: a model holds its weights on one device and is used from one thread at a time;
//! separate models on separate threads run independently and give the same results as one
//! thread. The library never changes process-wide settings ([`process`] is an explicit opt-in
//! for programs). On the CPU, work runs on the calling thread's rayon pool, so the thread count
//! of one model or one call is the pool it is called in ([`Codec`], [`Generator`] and the models
//! are `Send + Sync`):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (codec, image): (ldmae::Codec, ldmae::RgbImage) = todo!();
//! let two_threads = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
//! let bytes = two_threads.install(|| codec.compress(&image))?;
//! # Ok(()) }
//! ```
//!
//! Without the default `std` feature the crate is `#![no_std]` + `alloc`: models, sampler and
//! packs from byte slices work; files, PNG, checkpoints, ONNX and the CLI need `std`.
#![no_std]
#![warn(missing_docs)]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod codec;
pub mod device;
pub mod diffusion;
mod error;
pub mod io;
#[cfg(all(feature = "flex", feature = "std"))]
mod kernels;
pub mod model;
mod pipeline;
mod precision;
#[cfg(feature = "std")]
pub mod process;
mod progress;
pub mod weights;

pub use codec::Codec;
pub use device::{DeviceChoice, Selected};
pub use diffusion::{LatentStats, SamplerConfig, SamplerOverrides};
pub use error::{Error, Result};
pub use io::image::{PixelFormat, RgbImage};
pub use model::{Dit, DitConfig, ModelSpec, Posterior, StackConfig, Vmae, VmaeConfig, WeightSource};
pub use pipeline::Generator;
pub use precision::Precision;
pub use progress::{Cancellable, Progress};
pub use weights::{Pack, PackWriter, Storage};
