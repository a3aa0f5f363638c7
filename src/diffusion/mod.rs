//! Flow-matching diffusion in the latent space, independent of any network: the sampling
//! settings and their time grid ([`SamplerConfig`]), the Euler sampler with classifier-free
//! guidance over any [`VelocityModel`] ([`sample`]), seeded noise ([`noise`]) and the per-channel
//! statistics that normalise latents ([`LatentStats`]).

mod latent_stats;
pub mod noise;
mod sampler;
mod schedule;

pub use latent_stats::LatentStats;
pub use sampler::{VelocityModel, sample};
pub use schedule::{SamplerConfig, SamplerOverrides};
