//! The VMAE autoencoder, `mae_for_ldmae_f8d16_prev` as LDMAE uses it: a ViT encoder of
//! pre-norm blocks over 8×8 patches, a linear map to the Gaussian posterior's parameters, and a
//! ViT decoder whose patch predictions are smoothed by a 3×3 convolution.

use super::config::{ModelSpec, StackConfig, VmaeConfig};
use super::layers::{Conv2d, GeluMlp, LayerNorm, Linear, SelfAttention, from_tokens, to_tokens, unpatchify};
use super::source::{Loader, WeightSource};
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use burn::tensor::{Device, Tensor};

const LN_EPS: f64 = 1e-6;

/// Pre-norm ViT block: `x + attn(LN(x))`, then `x + MLP(LN(x))`.
#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    mlp: GeluMlp,
}

impl Block {
    fn load(l: &mut Loader, name: &str, c: &StackConfig) -> Result<Self> {
        Ok(Self {
            norm1: LayerNorm::load(l, &format!("{name}.norm1"), c.width, LN_EPS)?,
            attn: SelfAttention::load(l, &format!("{name}.attn"), c.width, c.heads)?,
            norm2: LayerNorm::load(l, &format!("{name}.norm2"), c.width, LN_EPS)?,
            mlp: GeluMlp::load(l, &format!("{name}.mlp"), c.width, c.mlp_hidden)?,
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x), None);
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}

fn load_stack(l: &mut Loader, prefix: &str, c: &StackConfig) -> Result<Vec<Block>> {
    (0..c.depth).map(|i| Block::load(l, &format!("{prefix}.{i}"), c)).collect()
}

/// The diagonal Gaussian posterior of an encoded image, each `[B, C, h, w]`.
#[derive(Debug, Clone)]
pub struct Posterior {
    /// Mean (the latent the codec and the CLI's `encode` use).
    pub mean: Tensor<4>,
    /// Log-variance, clamped to `[-30, 20]`.
    pub logvar: Tensor<4>,
}

impl Posterior {
    /// Splits raw encoder output `[B, 2C, h, w]` into mean (first C) and clamped log-variance.
    pub fn from_params(params: Tensor<4>) -> Self {
        let c = params.dims()[1] / 2;
        let mean = params.clone().narrow(1, 0, c);
        let logvar = params.narrow(1, c, c).clamp(-30.0, 20.0);
        Self { mean, logvar }
    }

    /// Standard deviation `exp(logvar / 2)`.
    pub fn std(&self) -> Tensor<4> {
        (self.logvar.clone() * 0.5).exp()
    }

    /// `mean + std · eps` for caller-given standard normal `eps` of the mean's shape.
    pub fn sample_with(&self, eps: Tensor<4>) -> Result<Tensor<4>> {
        if eps.dims() != self.mean.dims() {
            return Err(Error::InputShape {
                what: "posterior noise",
                expected: format!("{:?}", self.mean.dims()),
                found: eps.dims().to_vec(),
            });
        }
        Ok(self.mean.clone() + self.std() * eps)
    }

    /// A posterior sample with noise drawn from `seed` (see [`crate::diffusion::noise`]).
    pub fn sample(&self, seed: u64) -> Result<Tensor<4>> {
        let eps = crate::diffusion::noise::standard_normal(self.mean.dims(), seed, &self.mean.device());
        self.sample_with(eps)
    }
}

/// The VMAE: `encode` images in `[-1, 1]` to a posterior, `decode` latents to pixels.
#[derive(Debug, Clone)]
pub struct Vmae {
    config: VmaeConfig,
    patch_embed: Conv2d,
    pos_embed: Tensor<3>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    to_latent: Linear,
    from_latent: Linear,
    decoder_embed: Linear,
    decoder_pos_embed: Tensor<3>,
    decoder_blocks: Vec<Block>,
    decoder_norm: LayerNorm,
    linear_pred: Linear,
    conv_smoother: Conv2d,
}

impl Vmae {
    /// Builds the VMAE that `weights` describe on `device`, strictly: every tensor must be
    /// present with the right shape and type, and nothing else may be there.
    pub fn load(weights: &dyn WeightSource, device: &Device) -> Result<Self> {
        let spec = weights.spec()?;
        let found = spec.kind();
        let ModelSpec::Vmae(c) = spec else {
            return Err(weights.context(Error::WrongKind { expected: "vmae", found: found.into() }));
        };
        c.validate()?;
        let (e, d, n, p) = (c.encoder.width, c.decoder.width, c.grid() * c.grid(), c.patch_size);
        Loader::strict(weights, device, |l| {
            Ok(Self {
                config: c,
                patch_embed: Conv2d::load(l, "patch_embed.proj", 3, e, p, p, 0)?,
                pos_embed: l.tensor("pos_embed", [1, n, e])?,
                blocks: load_stack(l, "blocks", &c.encoder)?,
                norm: LayerNorm::load(l, "norm", e, LN_EPS)?,
                to_latent: Linear::load(l, "to_latent", e, 2 * c.latent_channels, true)?,
                from_latent: Linear::load(l, "from_latent", c.latent_channels, e, true)?,
                decoder_embed: Linear::load(l, "decoder_embed", e, d, true)?,
                decoder_pos_embed: l.tensor("decoder_pos_embed", [1, n, d])?,
                decoder_blocks: load_stack(l, "decoder_blocks", &c.decoder)?,
                decoder_norm: LayerNorm::load(l, "decoder_norm", d, LN_EPS)?,
                linear_pred: Linear::load(l, "decoder_pred.linear_pred", d, p * p * 3, true)?,
                conv_smoother: Conv2d::load(l, "decoder_pred.conv_smoother", 3, 3, 3, 1, 1)?,
            })
        })
    }

    /// Sizes of the model.
    pub fn config(&self) -> &VmaeConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.pos_embed.device()
    }

    /// Raw posterior parameters `[B, 2C, h, w]` (mean channels first) of images
    /// `[B, 3, S, S]` in `[-1, 1]`.
    pub fn encode_params(&self, images: Tensor<4>) -> Result<Tensor<4>> {
        let s = self.config.image_size;
        let dims = images.dims();
        if dims[1] != 3 || dims[2] != s || dims[3] != s {
            return Err(Error::InputShape {
                what: "VMAE input image",
                expected: format!("[B, 3, {s}, {s}] (this model's fixed input size)"),
                found: dims.to_vec(),
            });
        }
        // Inputs take the weights' float type (an f32 tensor on an f16 device would not mix).
        let images = images.cast(self.pos_embed.dtype());
        let mut x = to_tokens(self.patch_embed.forward(images)) + self.pos_embed.clone();
        for block in &self.blocks {
            x = block.forward(x);
        }
        let params = self.to_latent.forward(self.norm.forward(x));
        Ok(from_tokens(params, self.config.grid()))
    }

    /// The posterior of images `[B, 3, S, S]` in `[-1, 1]`.
    pub fn encode(&self, images: Tensor<4>) -> Result<Posterior> {
        Ok(Posterior::from_params(self.encode_params(images)?))
    }

    /// Pixels `[B, 3, S, S]` (nominally `[-1, 1]`, not clamped) of latents `[B, C, h, w]`.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        let (g, c) = (self.config.grid(), self.config.latent_channels);
        let dims = latents.dims();
        if dims[1] != c || dims[2] != g || dims[3] != g {
            return Err(Error::InputShape {
                what: "VMAE latent",
                expected: format!("[B, {c}, {g}, {g}]"),
                found: dims.to_vec(),
            });
        }
        let latents = latents.cast(self.decoder_pos_embed.dtype());
        let x = self.decoder_embed.forward(self.from_latent.forward(to_tokens(latents)));
        let mut x = x + self.decoder_pos_embed.clone();
        for block in &self.decoder_blocks {
            x = block.forward(x);
        }
        let patches = self.linear_pred.forward(self.decoder_norm.forward(x));
        let pixels = unpatchify(patches, g, self.config.patch_size, 3);
        Ok(self.conv_smoother.forward(pixels))
    }
}
