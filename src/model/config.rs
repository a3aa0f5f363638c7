//! Model configurations, the presets of the official LDMAE models, and [`ModelSpec`]: what a set
//! of weights says it is.

use crate::diffusion::{LatentStats, SamplerConfig};
use crate::error::{Error, Result};
use alloc::format;
use serde::{Deserialize, Serialize};

/// The model a set of weights is for, with what the weights record besides tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// A VMAE autoencoder.
    Vmae(VmaeConfig),
    /// A LightningDiT.
    Dit {
        /// Its sizes.
        config: DitConfig,
        /// The statistics of the latents it was trained on.
        stats: LatentStats,
        /// A recommended sampling schedule (e.g. a distilled model's), if recorded.
        sampling: Option<SamplerConfig>,
    },
}

impl ModelSpec {
    /// `vmae` or `dit`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Vmae(_) => "vmae",
            ModelSpec::Dit { .. } => "dit",
        }
    }
}

/// One transformer stack of the VMAE (encoder or decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackConfig {
    /// Token width.
    pub width: usize,
    /// Number of pre-norm blocks.
    pub depth: usize,
    /// Attention heads (`width` must be divisible by it).
    pub heads: usize,
    /// Hidden width of the GELU MLP.
    pub mlp_hidden: usize,
}

/// The VMAE autoencoder: ViT encoder → Gaussian latent → ViT decoder → conv smoother.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaeConfig {
    /// Square input size in pixels.
    pub image_size: usize,
    /// Patch (and latent stride) size.
    pub patch_size: usize,
    /// Latent channels per latent pixel (the posterior has twice as many parameters).
    pub latent_channels: usize,
    /// Encoder stack.
    pub encoder: StackConfig,
    /// Decoder stack.
    pub decoder: StackConfig,
}

/// LightningDiT with SwiGLU, 2-D RoPE and RMSNorm, predicting a velocity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DitConfig {
    /// Latent grid size (image size / VMAE stride).
    pub input_size: usize,
    /// Patch size on the latent grid.
    pub patch_size: usize,
    /// Latent channels.
    pub in_channels: usize,
    /// Token width.
    pub hidden: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// SwiGLU hidden width (`int(2/3 · 4 · hidden)` in the official models).
    pub mlp_hidden: usize,
    /// Number of real classes.
    pub num_classes: usize,
    /// Whether the label table has an extra last row for the null (unconditional) class.
    pub null_class: bool,
    /// RMS normalisation of queries and keys per head.
    pub qk_norm: bool,
}

/// Size of the sinusoidal timestep features.
pub const TIME_FEATURES: usize = 256;

impl StackConfig {
    fn validate(&self, what: &str) -> Result<()> {
        if self.width == 0 || self.depth == 0 || self.heads == 0 || self.mlp_hidden == 0 {
            return Err(Error::Config(format!("{what}: sizes must be positive: {self:?}")));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(Error::Config(format!(
                "{what}: width {} is not divisible by {} heads",
                self.width, self.heads
            )));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }
}

impl VmaeConfig {
    /// The official `mae_for_ldmae_f8d16_prev` model used by LDMAE (spec §1.2).
    pub fn f8d16() -> Self {
        let stack = StackConfig { width: 192, depth: 12, heads: 12, mlp_hidden: 768 };
        Self { image_size: 256, patch_size: 8, latent_channels: 16, encoder: stack, decoder: stack }
    }

    /// Latent grid side (tokens per row).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size == 0 || self.latent_channels == 0 || self.image_size == 0 {
            return Err(Error::Config(format!("VMAE sizes must be positive: {self:?}")));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::Config(format!(
                "VMAE image size {} is not a multiple of patch size {}",
                self.image_size, self.patch_size
            )));
        }
        self.encoder.validate("VMAE encoder")?;
        self.decoder.validate("VMAE decoder")
    }
}

impl DitConfig {
    /// LightningDiT-B/1 as configured for ImageNet 256 on the f8d16 latent (spec §2.1).
    pub fn b1_imagenet() -> Self {
        Self {
            input_size: 32,
            patch_size: 1,
            in_channels: 16,
            hidden: 768,
            depth: 12,
            heads: 12,
            mlp_hidden: 2048,
            num_classes: 1000,
            null_class: true,
            qk_norm: true,
        }
    }

    /// The CelebA-HQ variant: one class, no null class, no qk-norm.
    pub fn b1_celeba() -> Self {
        Self { num_classes: 1, null_class: false, qk_norm: false, ..Self::b1_imagenet() }
    }

    /// Token grid side.
    pub fn grid(&self) -> usize {
        self.input_size / self.patch_size
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Rows of the label table.
    pub fn label_rows(&self) -> usize {
        self.num_classes + usize::from(self.null_class)
    }

    /// Index of the null class, if the model has one.
    pub fn null_label(&self) -> Option<usize> {
        self.null_class.then_some(self.num_classes)
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            self.input_size,
            self.patch_size,
            self.in_channels,
            self.hidden,
            self.depth,
            self.heads,
            self.mlp_hidden,
            self.num_classes,
        ];
        if sizes.contains(&0) {
            return Err(Error::Config(format!("DiT sizes must be positive: {self:?}")));
        }
        if !self.input_size.is_multiple_of(self.patch_size) {
            return Err(Error::Config(format!(
                "DiT input size {} is not a multiple of patch size {}",
                self.input_size, self.patch_size
            )));
        }
        if !self.hidden.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(4) {
            return Err(Error::Config(format!(
                "DiT hidden {} over {} heads must give a head width divisible by 4 (2-D RoPE)",
                self.hidden, self.heads
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_match_the_spec() {
        let v = VmaeConfig::f8d16();
        v.validate().unwrap();
        assert_eq!((v.grid(), v.encoder.head_dim()), (32, 16));
        let d = DitConfig::b1_imagenet();
        d.validate().unwrap();
        assert_eq!((d.grid(), d.head_dim(), d.label_rows(), d.null_label()), (32, 64, 1001, Some(1000)));
        let c = DitConfig::b1_celeba();
        assert_eq!((c.label_rows(), c.null_label(), c.qk_norm), (1, None, false));
    }

    #[test]
    fn inconsistent_sizes_are_rejected() {
        let mut v = VmaeConfig::f8d16();
        v.encoder.heads = 7;
        assert!(matches!(v.validate(), Err(Error::Config(_))));
        let d = DitConfig { patch_size: 3, ..DitConfig::b1_imagenet() };
        assert!(matches!(d.validate(), Err(Error::Config(_))));
    }
}
