//! Layers shared by the VMAE and the DiT, loaded under their official names; on burn-flex in f32
//! their forwards run the fused CPU kernels of [`crate::kernels`].

use super::source::Loader;
use crate::error::Result;
use alloc::format;
use burn::tensor::activation::{gelu, silu};
use burn::tensor::module::{attention, conv2d, layer_norm, linear};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{DType, Tensor};

/// `y = x·W + b` with `W` stored `[in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor<1>>,
}

// One per layer: the size of the tensor variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum LinearWeight {
    Tensor(Tensor<2>),
    /// Packed at load for the CPU kernels' GEMM, in place of the tensor.
    #[cfg(all(feature = "flex", feature = "std"))]
    Packed(crate::kernels::PackedWeight),
}

impl Linear {
    pub(crate) fn load(l: &mut Loader, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let weight = l.tensor(&format!("{name}.weight"), [d_in, d_out])?;
        #[cfg(all(feature = "flex", feature = "std"))]
        let weight = match crate::kernels::PackedWeight::new(&weight) {
            Some(packed) => LinearWeight::Packed(packed),
            None => LinearWeight::Tensor(weight),
        };
        #[cfg(not(all(feature = "flex", feature = "std")))]
        let weight = LinearWeight::Tensor(weight);
        let bias = if bias { Some(l.tensor(&format!("{name}.bias"), [d_out])?) } else { None };
        Ok(Self { weight, bias })
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let weight = match &self.weight {
            LinearWeight::Tensor(weight) => {
                #[cfg(all(feature = "flex", feature = "std"))]
                if let Some(y) = crate::kernels::linear(&x, weight, self.bias.as_ref()) {
                    return y;
                }
                weight.clone()
            }
            #[cfg(all(feature = "flex", feature = "std"))]
            LinearWeight::Packed(packed) => match crate::kernels::linear_packed(&x, packed, self.bias.as_ref()) {
                Some(y) => return y,
                None => packed.to_tensor(&x.device()),
            },
        };
        linear(x, weight, self.bias.clone())
    }
}

/// 2-D convolution with bias, square kernel, unit dilation.
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        l: &mut Loader,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = l.tensor(&format!("{name}.weight"), [c_out, c_in, kernel, kernel])?;
        let bias = l.tensor(&format!("{name}.bias"), [c_out])?;
        Ok(Self { weight, bias, stride, padding })
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        conv2d(x, self.weight.clone(), Some(self.bias.clone()), options)
    }
}

/// LayerNorm over the last axis with affine weight and bias.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn load(l: &mut Loader, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let weight = l.tensor(&format!("{name}.weight"), [dim])?;
        let bias = l.tensor(&format!("{name}.bias"), [dim])?;
        Ok(Self { weight, bias, eps })
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        #[cfg(all(feature = "flex", feature = "std"))]
        if let Some(y) = crate::kernels::layer_norm(&x, &self.weight, &self.bias, self.eps) {
            return y;
        }
        with_f32(x, |x| {
            layer_norm(x, self.weight.clone().cast(DType::F32), Some(self.bias.clone().cast(DType::F32)), self.eps)
        })
    }
}

/// RMSNorm over the last axis, computed in f32: `x · rsqrt(mean(x²) + eps) · w`.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor<1>,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn load(l: &mut Loader, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: l.tensor(&format!("{name}.weight"), [dim])?, eps })
    }

    /// The weight and epsilon, for fused kernels.
    #[cfg(all(feature = "flex", feature = "std"))]
    pub(crate) fn parts(&self) -> (&Tensor<1>, f64) {
        (&self.weight, self.eps)
    }

    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let normed = with_f32(x, |x| {
            let ms = x.clone().square().mean_dim(D - 1);
            x * (ms + self.eps).sqrt().recip()
        });
        normed * self.weight.clone().unsqueeze()
    }
}

/// Runs `f` in f32 and casts back, so that statistics of half-precision activations
/// neither overflow nor lose their low bits.
fn with_f32<const D: usize>(x: Tensor<D>, f: impl FnOnce(Tensor<D>) -> Tensor<D>) -> Tensor<D> {
    let dtype = x.dtype();
    if dtype == DType::F32 { f(x) } else { f(x.cast(DType::F32)).cast(dtype) }
}

/// Rotary position embedding with `[N, d]` tables loaded from the checkpoint:
/// `x·cos + rotate_half(x)·sin`, `rotate_half` mapping adjacent pairs `(a, b)` to `(-b, a)`.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// The tables in f32 on the host, for the CPU attention kernel (loaded on burn-flex in f32).
    #[cfg(all(feature = "flex", feature = "std"))]
    host: Option<(alloc::vec::Vec<f32>, alloc::vec::Vec<f32>)>,
}

impl Rope {
    pub(crate) fn load(l: &mut Loader, name: &str, tokens: usize, head_dim: usize) -> Result<Self> {
        let mut table = |which: &str| -> Result<Tensor<4>> {
            Ok(l.tensor::<2>(&format!("{name}.freqs_{which}"), [tokens, head_dim])?.reshape([1, 1, tokens, head_dim]))
        };
        let (cos, sin) = (table("cos")?, table("sin")?);
        Ok(Self {
            #[cfg(all(feature = "flex", feature = "std"))]
            host: crate::kernels::host_values(&cos).zip(crate::kernels::host_values(&sin)),
            cos,
            sin,
        })
    }

    /// Rotates `[B, H, N, d]` queries or keys after the optional qk-norm.
    fn apply(&self, x: Tensor<4>, norm: Option<&RmsNorm>) -> Tensor<4> {
        let x = match norm {
            Some(n) => n.forward(x),
            None => x,
        };
        let [b, h, n, d] = x.dims();
        let pairs = x.clone().reshape([b, h, n, d / 2, 2]);
        let a = pairs.clone().narrow(4, 0, 1);
        let bb = pairs.narrow(4, 1, 1);
        let rotated = Tensor::cat(alloc::vec![bb.neg(), a], 4).reshape([b, h, n, d]);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

/// What the DiT does to queries and keys before their product: qk-norm (optional), then RoPE.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QkRotation<'a> {
    pub(crate) q_norm: Option<&'a RmsNorm>,
    pub(crate) k_norm: Option<&'a RmsNorm>,
    pub(crate) rope: &'a Rope,
}

impl<'a> QkRotation<'a> {
    /// The same in host values, for the CPU kernel (`None` where the tables are not on the host).
    #[cfg(all(feature = "flex", feature = "std"))]
    fn host(self) -> Option<crate::kernels::Rotation<'a>> {
        let (cos, sin) = self.rope.host.as_ref()?;
        let norm = |n: Option<&RmsNorm>| match n {
            Some(n) => crate::kernels::host_values(&n.weight).map(|w| Some((w, n.eps as f32))),
            None => Some(None),
        };
        Some(crate::kernels::Rotation { q_norm: norm(self.q_norm)?, k_norm: norm(self.k_norm)?, cos, sin })
    }
}

/// Fused multi-head self-attention over `[B, N, D]` tokens with a joint `qkv` projection, with
/// an optional [`QkRotation`] of the queries and keys.
#[derive(Debug, Clone)]
pub(crate) struct SelfAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl SelfAttention {
    pub(crate) fn load(l: &mut Loader, name: &str, dim: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            qkv: Linear::load(l, &format!("{name}.qkv"), dim, 3 * dim, true)?,
            proj: Linear::load(l, &format!("{name}.proj"), dim, dim, true)?,
            heads,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<3>, rotation: Option<QkRotation>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.heads;
        let qkv = self.qkv.forward(x);
        // On burn-flex in f32, one kernel reads the heads straight from `qkv`.
        #[cfg(all(feature = "flex", feature = "std"))]
        let qkv = {
            let host = match rotation {
                Some(r) => r.host().map(Some),
                None => Some(None),
            };
            match host {
                Some(host) => match crate::kernels::self_attention(qkv, h, host) {
                    Ok(out) => return self.proj.forward(out),
                    Err(qkv) => *qkv,
                },
                None => qkv,
            }
        };
        // [B, N, 3·D] → [B, 3·H, N, hd]: rows are q heads, then k heads, then v heads.
        let qkv = qkv.reshape([b, n, 3 * h, d / h]).swap_dims(1, 2);
        let q = qkv.clone().narrow(1, 0, h);
        let k = qkv.clone().narrow(1, h, h);
        let v = qkv.narrow(1, 2 * h, h);
        let (q, k) = match rotation {
            Some(r) => (r.rope.apply(q, r.q_norm), r.rope.apply(k, r.k_norm)),
            None => (q, k),
        };
        // Scores and softmax in f32: q·k of f16 activations can pass f16's 65504, and the
        // softmax sum over 1024 keys loses the small weights.
        let dtype = v.dtype();
        let [q, k, v] = [q, k, v].map(|t| t.cast(DType::F32));
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default()).cast(dtype);
        self.proj.forward(out.swap_dims(1, 2).reshape([b, n, d]))
    }
}

/// `fc2(GELU(fc1(x)))` with exact (erf) GELU.
#[derive(Debug, Clone)]
pub(crate) struct GeluMlp {
    fc1: Linear,
    fc2: Linear,
}

impl GeluMlp {
    pub(crate) fn load(l: &mut Loader, name: &str, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            fc1: Linear::load(l, &format!("{name}.fc1"), dim, hidden, true)?,
            fc2: Linear::load(l, &format!("{name}.fc2"), hidden, dim, true)?,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(exact_gelu(self.fc1.forward(x)))
    }
}

/// GELU with erf: on burn-flex by the vectorised CPU kernel, elsewhere by burn's.
fn exact_gelu(x: Tensor<3>) -> Tensor<3> {
    #[cfg(all(feature = "flex", feature = "std"))]
    if crate::kernels::applies(&x) {
        return crate::kernels::gelu(x);
    }
    gelu(x)
}

/// `w3(SiLU(a) · b)` where `[a | b] = w12(x)`.
#[derive(Debug, Clone)]
pub(crate) struct SwiGlu {
    w12: Linear,
    w3: Linear,
    hidden: usize,
}

impl SwiGlu {
    pub(crate) fn load(l: &mut Loader, name: &str, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            w12: Linear::load(l, &format!("{name}.w12"), dim, 2 * hidden, true)?,
            w3: Linear::load(l, &format!("{name}.w3"), hidden, dim, true)?,
            hidden,
        })
    }

    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let ab = self.w12.forward(x);
        #[cfg(all(feature = "flex", feature = "std"))]
        if crate::kernels::applies(&ab) {
            return self.w3.forward(crate::kernels::swiglu(ab));
        }
        let a = ab.clone().narrow(2, 0, self.hidden);
        let b = ab.narrow(2, self.hidden, self.hidden);
        self.w3.forward(silu(a) * b)
    }
}

/// Tokens `[B, g·g, p·p·C]` (each token's values ordered `(p, q, c)`) → image `[B, C, g·p, g·p]`.
pub(crate) fn unpatchify(x: Tensor<3>, grid: usize, patch: usize, channels: usize) -> Tensor<4> {
    let b = x.dims()[0];
    x.reshape([b, grid, grid, patch, patch, channels]).permute([0, 5, 1, 3, 2, 4]).reshape([
        b,
        channels,
        grid * patch,
        grid * patch,
    ])
}

/// `[B, C, h, w]` → tokens `[B, h·w, C]` in row-major order.
pub(crate) fn to_tokens(x: Tensor<4>) -> Tensor<3> {
    x.flatten::<3>(2, 3).swap_dims(1, 2)
}

/// Tokens `[B, h·w, C]` → `[B, C, h, w]`.
pub(crate) fn from_tokens(x: Tensor<3>, grid: usize) -> Tensor<4> {
    let [b, _, c] = x.dims();
    x.swap_dims(1, 2).reshape([b, c, grid, grid])
}
