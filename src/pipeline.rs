//! The whole generation pipeline in one type: class labels → noise → DiT + sampler → latent →
//! VMAE decoder → images. [`Generator`] checks that its two models fit together and resolves the
//! sampling settings in one place, so the command line, the examples and the C ABI agree.

use crate::diffusion::{self, SamplerConfig, SamplerOverrides, noise};
use crate::error::{Error, Result};
use crate::io::image::{RgbImage, tensor_to_images};
use crate::model::{Dit, Vmae};
use crate::progress::Progress;
use alloc::format;
use alloc::vec::Vec;
use burn::tensor::Tensor;

/// A DiT and the VMAE that decodes its latents.
#[derive(Debug, Clone)]
pub struct Generator {
    dit: Dit,
    vmae: Vmae,
}

impl Generator {
    /// Pairs `dit` with `vmae`, which must decode latents of the shape the DiT makes.
    pub fn new(dit: Dit, vmae: Vmae) -> Result<Self> {
        let (c, v) = (dit.config(), vmae.config());
        if v.latent_channels != c.in_channels || v.grid() != c.input_size {
            return Err(Error::Config(format!(
                "the DiT makes {}x{s}x{s} latents but the VMAE decodes {}x{g}x{g}",
                c.in_channels,
                v.latent_channels,
                s = c.input_size,
                g = v.grid()
            )));
        }
        Ok(Self { dit, vmae })
    }

    /// The embedded Fashion-MNIST demo: the 2-step distilled DiT and its VMAE.
    #[cfg(feature = "embedded-models")]
    pub fn fashion_demo(device: &burn::tensor::Device) -> Result<Self> {
        use crate::weights::embedded;
        Self::new(Dit::load(&embedded::fashion_dit()?, device)?, Vmae::load(&embedded::fashion_vmae()?, device)?)
    }

    /// The DiT.
    pub fn dit(&self) -> &Dit {
        &self.dit
    }

    /// The VMAE.
    pub fn vmae(&self) -> &Vmae {
        &self.vmae
    }

    /// The settings to sample with: the DiT pack's recorded schedule, else the official ones (no
    /// guidance for a model without a null class), with the caller's `overrides` on top.
    pub fn sampling(&self, overrides: &SamplerOverrides) -> SamplerConfig {
        SamplerConfig::resolve(self.dit.recorded_sampling(), self.dit.config().null_class, overrides)
    }

    /// The shape of the initial noise for `count` images: `[count, C, h, w]`.
    pub fn noise_shape(&self, count: usize) -> [usize; 4] {
        let c = self.dit.config();
        [count, c.in_channels, c.input_size, c.input_size]
    }

    /// Seeded initial noise for `count` images (see [`noise`]).
    pub fn noise(&self, count: usize, seed: u64) -> Tensor<4> {
        noise::standard_normal(self.noise_shape(count), seed, &self.vmae.device())
    }

    /// The de-normalised latents of one image per class, sampled from initial noise `z0`
    /// (one latent per class); `progress` hears `(steps done, steps)` and may cancel.
    pub fn sample_latents(
        &self,
        classes: &[usize],
        z0: Tensor<4>,
        settings: &SamplerConfig,
        progress: impl Progress,
    ) -> Result<Tensor<4>> {
        let shape = self.noise_shape(classes.len());
        if z0.dims() != shape {
            return Err(Error::InputShape {
                what: "initial noise",
                expected: format!("{shape:?} (one latent per class)"),
                found: z0.dims().to_vec(),
            });
        }
        diffusion::sample(&self.dit, z0, classes, settings, progress)
    }

    /// Pixels `[B, 3, S, S]` of sampled latents (the decoder's output, before uint8 conversion).
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        self.vmae.decode(latents)
    }

    /// One image per class from noise drawn from `seed`.
    pub fn generate(
        &self,
        classes: &[usize],
        seed: u64,
        settings: &SamplerConfig,
        progress: impl Progress,
    ) -> Result<Vec<RgbImage>> {
        let z = self.sample_latents(classes, self.noise(classes.len(), seed), settings, progress)?;
        tensor_to_images(self.decode(z)?)
    }
}
