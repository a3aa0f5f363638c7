//! LightningDiT as the released code computes it: adaLN-Zero blocks with RMSNorm, qk-norm,
//! 2-D RoPE and SwiGLU, conditioned on the flow time and the class label, predicting the
//! flow-matching velocity of a normalised latent.

use super::config::{DitConfig, ModelSpec, TIME_FEATURES};
use super::layers::{Conv2d, Linear, QkRotation, RmsNorm, Rope, SelfAttention, SwiGlu, to_tokens, unpatchify};
use super::source::{Loader, WeightSource};
use crate::diffusion::{LatentStats, SamplerConfig, VelocityModel};
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};

const RMS_EPS: f64 = 1e-6;

/// `h · (1 + scale) + shift`, with `[B, 1, D]` shift and scale.
fn modulate(h: Tensor<3>, shift: Tensor<3>, scale: Tensor<3>) -> Tensor<3> {
    h * (scale + 1.0) + shift
}

/// Splits `[B, k·D]` modulation into `k` tensors of `[B, 1, D]`.
fn split_modulation(m: Tensor<2>, k: usize) -> Vec<Tensor<3>> {
    m.unsqueeze_dim::<3>(1).chunk(k, 2)
}

#[derive(Debug, Clone)]
struct Block {
    norm1: RmsNorm,
    attn: SelfAttention,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    norm2: RmsNorm,
    mlp: SwiGlu,
    ada_ln: Linear,
}

impl Block {
    fn load(l: &mut Loader, name: &str, c: &DitConfig) -> Result<Self> {
        let d = c.hidden;
        let qk = |l: &mut Loader, which: &str| -> Result<Option<RmsNorm>> {
            c.qk_norm.then(|| RmsNorm::load(l, &format!("{name}.attn.{which}"), c.head_dim(), RMS_EPS)).transpose()
        };
        Ok(Self {
            norm1: RmsNorm::load(l, &format!("{name}.norm1"), d, RMS_EPS)?,
            attn: SelfAttention::load(l, &format!("{name}.attn"), d, c.heads)?,
            q_norm: qk(l, "q_norm")?,
            k_norm: qk(l, "k_norm")?,
            norm2: RmsNorm::load(l, &format!("{name}.norm2"), d, RMS_EPS)?,
            mlp: SwiGlu::load(l, &format!("{name}.mlp"), d, c.mlp_hidden)?,
            ada_ln: Linear::load(l, &format!("{name}.adaLN_modulation.1"), d, 6 * d, true)?,
        })
    }

    fn forward(&self, x: Tensor<3>, c: Tensor<2>, rope: &Rope) -> Tensor<3> {
        let m = split_modulation(self.ada_ln.forward(silu(c)), 6);
        let [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] = m.try_into().expect("six chunks");
        let rotation = QkRotation { q_norm: self.q_norm.as_ref(), k_norm: self.k_norm.as_ref(), rope };
        let h = self.attn.forward(norm_modulate(&self.norm1, x.clone(), shift_msa, scale_msa), Some(rotation));
        let x = gated_residual(x, gate_msa, h);
        let h = self.mlp.forward(norm_modulate(&self.norm2, x.clone(), shift_mlp, scale_mlp));
        gated_residual(x, gate_mlp, h)
    }
}

/// `x + gate·h`; one pass on the rayon pool on the CPU.
#[cfg(all(feature = "flex", feature = "std"))]
fn gated_residual(x: Tensor<3>, gate: Tensor<3>, h: Tensor<3>) -> Tensor<3> {
    crate::kernels::gated_residual(x, gate, h)
}

/// `x + gate·h`.
#[cfg(not(all(feature = "flex", feature = "std")))]
fn gated_residual(x: Tensor<3>, gate: Tensor<3>, h: Tensor<3>) -> Tensor<3> {
    x + gate * h
}

/// `modulate(norm(x), shift, scale)`; one fused pass on the CPU.
fn norm_modulate(norm: &RmsNorm, x: Tensor<3>, shift: Tensor<3>, scale: Tensor<3>) -> Tensor<3> {
    #[cfg(all(feature = "flex", feature = "std"))]
    if crate::kernels::applies(&x)
        && let Some(y) = crate::kernels::rms_norm_modulate(&x, norm.parts(), &shift, &scale)
    {
        return y;
    }
    modulate(norm.forward(x), shift, scale)
}

/// Sinusoidal features `[cos(t·f_k) | sin(t·f_k)]`, `f_k = exp(-ln(10⁴)·k/128)`, in f32 on
/// the host, for raw flow times `t ∈ [0, 1]`.
pub fn timestep_features(t: &[f32]) -> Vec<f32> {
    let half = TIME_FEATURES / 2;
    let log_max = libm::log(10000.0) as f32;
    let freqs: Vec<f32> = (0..half).map(|k| libm::expf(-log_max * k as f32 / half as f32)).collect();
    let mut out = Vec::with_capacity(t.len() * TIME_FEATURES);
    for &ti in t {
        out.extend(freqs.iter().map(|&f| libm::cosf(ti * f)));
        out.extend(freqs.iter().map(|&f| libm::sinf(ti * f)));
    }
    out
}

/// A LightningDiT with its latent statistics.
#[derive(Debug, Clone)]
pub struct Dit {
    config: DitConfig,
    stats: LatentStats,
    sampling: Option<SamplerConfig>,
    x_embedder: Conv2d,
    pos_embed: Tensor<3>,
    t_mlp0: Linear,
    t_mlp2: Linear,
    label_table: Tensor<2>,
    rope: Rope,
    blocks: Vec<Block>,
    norm_final: RmsNorm,
    final_ada_ln: Linear,
    final_linear: Linear,
}

impl Dit {
    /// Builds the DiT that `weights` describe on `device`, strictly (see [`crate::Vmae::load`]).
    pub fn load(weights: &dyn WeightSource, device: &Device) -> Result<Self> {
        let spec = weights.spec()?;
        let found = spec.kind();
        let ModelSpec::Dit { config: c, stats, sampling } = spec else {
            return Err(weights.context(Error::WrongKind { expected: "dit", found: found.into() }));
        };
        c.validate()?;
        let (d, p, n, hd) = (c.hidden, c.patch_size, c.grid() * c.grid(), c.head_dim());
        Loader::strict(weights, device, |l| {
            Ok(Self {
                config: c,
                stats,
                sampling,
                x_embedder: Conv2d::load(l, "x_embedder.proj", c.in_channels, d, p, p, 0)?,
                pos_embed: l.tensor("pos_embed", [1, n, d])?,
                t_mlp0: Linear::load(l, "t_embedder.mlp.0", TIME_FEATURES, d, true)?,
                t_mlp2: Linear::load(l, "t_embedder.mlp.2", d, d, true)?,
                label_table: l.tensor("y_embedder.embedding_table.weight", [c.label_rows(), d])?,
                rope: Rope::load(l, "feat_rope", n, hd)?,
                blocks: (0..c.depth).map(|i| Block::load(l, &format!("blocks.{i}"), &c)).collect::<Result<_>>()?,
                norm_final: RmsNorm::load(l, "final_layer.norm_final", d, RMS_EPS)?,
                final_ada_ln: Linear::load(l, "final_layer.adaLN_modulation.1", d, 2 * d, true)?,
                final_linear: Linear::load(l, "final_layer.linear", d, p * p * c.in_channels, true)?,
            })
        })
    }

    /// Sizes of the model.
    pub fn config(&self) -> &DitConfig {
        &self.config
    }

    /// Per-channel latent statistics stored with the model.
    pub fn stats(&self) -> &LatentStats {
        &self.stats
    }

    /// Sampling settings recommended by the pack, if it records any.
    pub fn recorded_sampling(&self) -> Option<&SamplerConfig> {
        self.sampling.as_ref()
    }

    /// Velocity `[B, C, H, W]` for normalised latents `x` at flow times `t` (0 = noise,
    /// 1 = data) with class labels `y` (the null class is [`DitConfig::null_label`]).
    pub fn forward(&self, x: Tensor<4>, t: &[f32], y: &[usize]) -> Result<Tensor<4>> {
        let c = &self.config;
        let dims = x.dims();
        let b = dims[0];
        if dims[1..] != [c.in_channels, c.input_size, c.input_size] {
            return Err(Error::InputShape {
                what: "DiT latent",
                expected: format!("[B, {}, {s}, {s}]", c.in_channels, s = c.input_size),
                found: dims.to_vec(),
            });
        }
        if t.len() != b || y.len() != b {
            return Err(Error::InputValue {
                what: "DiT conditioning",
                reason: format!("{b} latents but {} times and {} labels", t.len(), y.len()),
            });
        }
        if let Some(bad) = y.iter().find(|&&label| label >= c.label_rows()) {
            return Err(Error::InputValue {
                what: "class label",
                reason: format!("{bad} is outside the model's {} label rows", c.label_rows()),
            });
        }
        if t.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "DiT time input" });
        }
        let device = x.device();
        let features = Tensor::<2>::from_data(TensorData::new(timestep_features(t), [b, TIME_FEATURES]), &device);
        let t_emb = self.t_mlp2.forward(silu(self.t_mlp0.forward(features)));
        let labels: Vec<i64> = y.iter().map(|&v| v as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), &device);
        let cond = t_emb + self.label_table.clone().select(0, labels);

        // The input takes the weights' float type (an f32 tensor on an f16 device would not mix).
        let x = x.cast(self.pos_embed.dtype());
        let mut h = to_tokens(self.x_embedder.forward(x)) + self.pos_embed.clone();
        for block in &self.blocks {
            h = block.forward(h, cond.clone(), &self.rope);
        }
        let [shift, scale]: [Tensor<3>; 2] =
            split_modulation(self.final_ada_ln.forward(silu(cond)), 2).try_into().expect("two chunks");
        let h = self.final_linear.forward(modulate(self.norm_final.forward(h), shift, scale));
        Ok(unpatchify(h, c.grid(), c.patch_size, c.in_channels))
    }
}

impl VelocityModel for Dit {
    fn velocity(&self, x: Tensor<4>, t: &[f32], y: &[usize]) -> Result<Tensor<4>> {
        self.forward(x, t, y)
    }
    fn null_label(&self) -> Option<usize> {
        self.config.null_label()
    }
    fn latent_stats(&self) -> &LatentStats {
        &self.stats
    }
}
