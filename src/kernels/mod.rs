//! Kernels for the burn-flex CPU device in f32 where burn-flex's generic ones took most of the
//! time (docs/performance.md): linear layers on one GEMM ([`gemm`]), multi-head attention fused
//! per tile of query rows ([`attention`]), the exact GELU, SwiGLU, RMSNorm with modulation, and
//! qk-norm with RoPE. burn-flex runs `exp` / `erf` one scalar at a time; here the element loops
//! are written so that the compiler vectorises them, and each kernel is compiled for every level
//! of [`isa::CpuLevel`] and runs the one [`isa::level`] picks.

use alloc::sync::Arc;
use alloc::vec::Vec;
use burn::tensor::{DType, Device, Tensor, TensorData};
use core::mem::MaybeUninit;
use rayon::prelude::*;

mod attention;
mod gemm;
pub(crate) mod isa;

pub(crate) use attention::{Rotation, self_attention};

#[cfg(target_arch = "x86_64")]
use isa::CpuLevel;

/// Defines `$name`, which runs `$portable` compiled for the kernels' level ([`isa::level`]):
/// AVX-512 or AVX2+FMA, else as compiled for the target (SSE2 on x86-64, NEON on aarch64).
macro_rules! on_widest_vectors {
    ($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $portable:ident) => {
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $portable::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $portable::<true>($($arg),*)
                }
                match isa::level() {
                    // SAFETY: the level never exceeds what the CPU has (isa::cpu_kernels).
                    CpuLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    CpuLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    CpuLevel::Baseline => {}
                }
            }
            $portable::<{ cfg!(any(target_feature = "fma", target_arch = "aarch64")) }>($($arg),*)
        }
    };
}

/// Whether `t` is an f32 tensor on burn-flex, where these kernels apply.
pub(crate) fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && matches!(t.device().as_dispatch(), burn_dispatch::DispatchDevice::Flex(_))
}

/// Lanes of the running maximum and sum: independent accumulators let the compiler vectorise
/// the reductions (a single float accumulator must add in order).
const LANES: usize = 16;

/// The exact (erf) GELU, `x·Φ(x)`, of an f32 tensor on burn-flex, in place when the tensor's
/// buffer is not shared.
pub(crate) fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let (device, dtype) = (x.device(), x.dtype());
    let mut data = x.into_data();
    if let Ok(values) = data.as_mut_slice::<f32>() {
        values.par_chunks_mut(1 << 14).for_each(gelu_in_place);
        return Tensor::from_data(data, (&device, dtype));
    }
    burn::tensor::activation::gelu(Tensor::from_data(data, (&device, dtype)))
}

on_widest_vectors!(gelu_in_place(xs: &mut [f32]) -> () = gelu_portable);

// Plain `for` loops in these bodies: a `for_each` closure may be compiled out of line, without
// the caller's target features.
#[inline(always)]
fn gelu_portable<const F: bool>(xs: &mut [f32]) {
    for x in xs {
        *x = gelu_exact::<F>(*x);
    }
}

/// `x·Φ(x) = ½x·erfc(−x/√2)`. erfc(z) for z ≥ 0 is `t·exp(P(t) − z²)` with `t = 1/(1 + z/2)` and
/// P the degree-9 Chebyshev fit of Numerical Recipes §6.2 (relative error below 1.2e-7), and
/// erfc(−z) = 2 − erfc(z), so Φ keeps its relative accuracy in the negative tail, where
/// `1 + erf(x/√2)` in f32 (burn's formula) loses it: within 2e-6 of f64 relative to
/// max(|gelu(x)|, |x|·2⁻²⁴) on [−10, 10], where the erf-based formula is off by 0.25 (tested).
#[inline(always)]
fn gelu_exact<const F: bool>(x: f32) -> f32 {
    /// Highest degree first.
    const P: [f32; 10] = [
        0.170_872_77,
        -0.822_152_2,
        1.488_515_9,
        -1.135_204,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_7,
        -1.265_512_2,
    ];
    let z = (x * core::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / fma::<F>(0.5, z, 1.0);
    let p = horner::<F, 10>(P, t);
    // e^(P − z²) as e^(−h² + (h−z)(z+h) + P) with h = z cut to 12 significant bits, so h² is
    // exact in f32 (Cody's split) and reduced exactly by `exp_sum`: the rounding of z² would
    // otherwise cost ~1e-6 relative for |z| > 2.
    let h = f32::from_bits(z.to_bits() & 0xFFFF_F000);
    let erfc = t * exp_sum::<F>(-(h * h), fma::<F>(h - z, z + h, p));
    x * if x >= 0.0 { 1.0 - 0.5 * erfc } else { 0.5 * erfc }
}

/// The values of an f32 tensor on burn-flex, row-major (`None` elsewhere).
pub(crate) fn host_values<const D: usize>(t: &Tensor<D>) -> Option<Vec<f32>> {
    if applies(t) { host(t) } else { None }
}

/// The values of an f32 tensor, row-major (a copy when the buffer is shared or strided).
fn host<const D: usize>(t: &Tensor<D>) -> Option<Vec<f32>> {
    t.clone().into_data().convert::<f32>().try_into_vec::<f32>().ok()
}

/// Runs `f` on the values of an f32 tensor on burn-flex: borrowed in place where the tensor is
/// contiguous, else a row-major copy (`None` on other devices).
fn with_values<const D: usize, R>(t: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let flex = t.clone().try_into_primitive::<burn_flex::Flex>().ok()?;
    match flex.as_slice::<f32>() {
        Some(values) => Some(f(values)),
        None => host(t).map(|values| f(&values)),
    }
}

/// `x·W + b` over the last axis of an f32 tensor on burn-flex, `W` stored `[in, out]`: one GEMM
/// that reads `x` and `W` in place and adds the bias in its register tiles (burn's `linear`
/// zeroes a fresh output, then adds the bias in a second pass).
pub(crate) fn linear<const D: usize>(x: &Tensor<D>, w: &Tensor<2>, b: Option<&Tensor<1>>) -> Option<Tensor<D>> {
    if !applies(w) {
        return None;
    }
    with_values(w, |values| product(x, gemm::Rhs::RowMajor(values, w.dims()), b))?
}

/// A linear layer's weight (`[in, out]`, f32 on burn-flex) packed once at load for the GEMM
/// where it is this crate's own (x86-64 below AVX-512): [`linear_packed`] then skips the packing
/// that [`linear`] does on every call. Holds the only copy of the weight.
#[derive(Clone)]
pub(crate) struct PackedWeight(Arc<gemm::PackedRhs>);

impl core::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PackedWeight({:?})", self.0.dims())
    }
}

impl PackedWeight {
    /// `w` packed, where [`linear`] with it would pack it on every call; `None` elsewhere (other
    /// devices and dtypes, AVX-512, aarch64).
    pub(crate) fn new(w: &Tensor<2>) -> Option<Self> {
        if !applies(w) {
            return None;
        }
        let packed = with_values(w, |values| gemm::PackedRhs::new(values, w.dims(), isa::level()))??;
        Some(Self(Arc::new(packed)))
    }

    /// The weight as a tensor again, on `device`.
    pub(crate) fn to_tensor(&self, device: &Device) -> Tensor<2> {
        let dims = self.0.dims();
        Tensor::from_data(TensorData::new(self.0.to_row_major(), dims), device)
    }
}

/// [`linear`] with a packed weight.
pub(crate) fn linear_packed<const D: usize>(
    x: &Tensor<D>,
    w: &PackedWeight,
    b: Option<&Tensor<1>>,
) -> Option<Tensor<D>> {
    product(x, gemm::Rhs::Packed(&w.0), b)
}

/// `x·rhs + b` over the last axis of `x` (f32 on burn-flex).
fn product<const D: usize>(x: &Tensor<D>, rhs: gemm::Rhs<'_>, b: Option<&Tensor<1>>) -> Option<Tensor<D>> {
    let (mut dims, [k, n]) = (x.dims(), rhs.dims());
    let m = dims[..D - 1].iter().product::<usize>();
    if !applies(x) || dims[D - 1] != k || m == 0 || k == 0 || n == 0 {
        return None;
    }
    let bias = match b {
        Some(b) => Some(host_values(b).filter(|b| b.len() == n)?),
        None => None,
    };
    let onto = bias.as_deref().map_or(gemm::Onto::Zero, gemm::Onto::Bias);
    // Threads only where the product is big enough to share out (burn-flex's threshold).
    let (threads, level) = (m * n * k >= 192 * 192 * 192, isa::level());
    let mut out = zeros(m * n);
    with_values(x, |x| gemm::matmul(&mut out, x, rhs, m, onto, threads, level))?;
    dims[D - 1] = n;
    Some(Tensor::from_data(TensorData::new(out, dims), &x.device()))
}

/// `len` zeros, written on the rayon pool: a kernel's output buffer (`vec![0.0; len]` zeroes a
/// reused heap block on one thread; the zeroing is 2 % of a DiT profile).
fn zeros(len: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len].par_chunks_mut(1 << 14).for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: the loop above initialised the first `len` elements.
    unsafe { values.set_len(len) };
    values
}

/// `(x / rms(x))·w·(1 + scale) + shift` over the last axis of `[B, N, D]` (RMSNorm then adaLN
/// modulation, in one pass), `scale` and `shift` `[B, 1, D]`.
pub(crate) fn rms_norm_modulate(
    x: &Tensor<3>,
    (w, eps): (&Tensor<1>, f64),
    shift: &Tensor<3>,
    scale: &Tensor<3>,
) -> Option<Tensor<3>> {
    let [_, n, d] = x.dims();
    let (w, shift, scale) = (host(w)?, host(shift)?, host(scale)?);
    let y = with_values(x, |x| {
        let mut y = zeros(x.len());
        y.par_chunks_mut(d).zip(x.par_chunks(d)).enumerate().for_each(|(row, (y, x))| {
            let b = row / n;
            rms_norm_modulate_row(y, x, &w, eps as f32, &shift[b * d..][..d], &scale[b * d..][..d]);
        });
        y
    })?;
    Some(Tensor::from_data(TensorData::new(y, x.dims()), &x.device()))
}

on_widest_vectors!(rms_norm_modulate_row(y: &mut [f32], x: &[f32], w: &[f32], eps: f32, shift: &[f32], scale: &[f32]) -> () = rms_norm_modulate_portable);

#[inline(always)]
fn rms_norm_modulate_portable<const F: bool>(
    y: &mut [f32],
    x: &[f32],
    w: &[f32],
    eps: f32,
    shift: &[f32],
    scale: &[f32],
) {
    let inv = inverse_rms::<F>(x, eps);
    for ((((y, &x), &w), &sh), &sc) in y.iter_mut().zip(x).zip(w).zip(shift).zip(scale) {
        *y = fma::<F>(x * inv * w, sc + 1.0, sh);
    }
}

/// `1 / √(mean(x²) + eps)`.
#[inline(always)]
fn inverse_rms<const F: bool>(x: &[f32], eps: f32) -> f32 {
    let sum = lane_fold(x, |acc, v| fma::<F>(v, v, acc));
    1.0 / (sum / x.len() as f32 + eps).sqrt()
}

/// `acc = add(acc, v)` over the values `v` of `x` from 0, in [`LANES`] independent accumulators
/// (so that the loop vectorises) that are summed at the end.
#[inline(always)]
fn lane_fold(x: &[f32], add: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let (body, tail) = x.split_at(x.len() - x.len() % LANES);
    for chunk in body.chunks_exact(LANES) {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = add(*l, v);
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().fold(0.0, |acc, &v| add(acc, v))
}

/// LayerNorm over the last axis of an f32 tensor on burn-flex: `(x − mean)/√(var + eps)·w + b`
/// with the biased variance of the centred values (two passes over each row), one row per
/// task (burn's `layer_norm` makes a pass over the whole tensor per elementwise step).
pub(crate) fn layer_norm<const D: usize>(x: &Tensor<D>, w: &Tensor<1>, b: &Tensor<1>, eps: f64) -> Option<Tensor<D>> {
    let d = x.dims()[D - 1];
    if !applies(x) || d == 0 {
        return None;
    }
    let (w, b) = (host_values(w)?, host_values(b)?);
    if w.len() != d || b.len() != d {
        return None;
    }
    let y = with_values(x, |x| {
        let mut y = zeros(x.len());
        y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(y, x)| layer_norm_row(y, x, &w, &b, eps as f32));
        y
    })?;
    Some(Tensor::from_data(TensorData::new(y, x.dims()), &x.device()))
}

on_widest_vectors!(layer_norm_row(y: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) -> () = layer_norm_portable);

#[inline(always)]
fn layer_norm_portable<const F: bool>(y: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let len = x.len() as f32;
    let mean = lane_fold(x, |acc, v| acc + v) / len;
    let var = lane_fold(x, |acc, v| fma::<F>(v - mean, v - mean, acc)) / len;
    let inv = 1.0 / (var + eps).sqrt();
    for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
        *y = fma::<F>((x - mean) * inv, w, b);
    }
}

on_widest_vectors!(norm_rope_row(y: &mut [f32], x: &[f32], norm: Option<(&[f32], f32)>, cos: &[f32], sin: &[f32]) -> () = norm_rope_portable);

/// Rotary embedding of one query or key row `x` into `y` after an optional RMSNorm `(w, eps)`
/// over it (qk-norm): `x·cos + rotate_half(x)·sin`, adjacent pairs (a, b) → (−b, a).
#[inline(always)]
fn norm_rope_portable<const F: bool>(y: &mut [f32], x: &[f32], norm: Option<(&[f32], f32)>, cos: &[f32], sin: &[f32]) {
    match norm {
        Some((w, eps)) => {
            let inv = inverse_rms::<F>(x, eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * inv * w;
            }
        }
        None => y.copy_from_slice(x),
    }
    for ((pair, c), s) in y.chunks_exact_mut(2).zip(cos.chunks_exact(2)).zip(sin.chunks_exact(2)) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = fma::<F>(a, c[0], -b * s[0]);
        pair[1] = fma::<F>(b, c[1], a * s[1]);
    }
}

/// `x + gate·h` for `[B, N, D]` f32 tensors on burn-flex with `gate` `[B, 1, D]` (adaLN-Zero's
/// gated residual): one pass on the rayon pool, in `x`'s buffer where it is not shared, rounded
/// as burn rounds it (the product, then the sum); burn-flex makes two passes on one thread.
pub(crate) fn gated_residual(x: Tensor<3>, gate: Tensor<3>, h: Tensor<3>) -> Tensor<3> {
    let ([b, n, d], device) = (x.dims(), x.device());
    let shapes_fit = h.dims() == [b, n, d] && gate.dims() == [b, 1, d];
    let Some(g) = (shapes_fit && applies(&x) && applies(&h)).then(|| host(&gate)).flatten() else {
        return x + gate * h;
    };
    let mut data = x.into_data();
    let done = data.as_mut_slice::<f32>().ok().and_then(|xs| {
        with_values(&h, |hs| {
            let rows = xs.par_chunks_mut(d).zip(hs.par_chunks(d));
            rows.enumerate().for_each(|(row, (x, h))| gated_add_row(x, &g[row / n * d..][..d], h));
        })
    });
    let x = Tensor::from_data(data, (&device, DType::F32));
    if done.is_some() { x } else { x + gate * h }
}

on_widest_vectors!(gated_add_row(x: &mut [f32], gate: &[f32], h: &[f32]) -> () = gated_add_portable);

#[inline(always)]
fn gated_add_portable<const F: bool>(x: &mut [f32], gate: &[f32], h: &[f32]) {
    for ((x, &g), &h) in x.iter_mut().zip(gate).zip(h) {
        *x += g * h;
    }
}

/// `SiLU(a)·b` where `[a | b]` are the halves of the last axis of an f32 tensor on burn-flex.
pub(crate) fn swiglu(ab: Tensor<3>) -> Tensor<3> {
    let ([batch, n, two_h], device) = (ab.dims(), ab.device());
    let h = two_h / 2;
    let data = ab.into_data();
    let Ok(ab) = data.as_slice::<f32>() else {
        let ab = Tensor::<3>::from_data(data, (&device, DType::F32));
        let (a, b) = (ab.clone().narrow(2, 0, h), ab.narrow(2, h, h));
        return burn::tensor::activation::silu(a) * b;
    };
    let mut out = zeros(batch * n * h);
    out.par_chunks_mut(h).zip(ab.par_chunks(two_h)).for_each(|(out, ab)| swiglu_row(out, ab));
    Tensor::from_data(TensorData::new(out, [batch, n, h]), &device)
}

on_widest_vectors!(swiglu_row(out: &mut [f32], ab: &[f32]) -> () = swiglu_portable);

#[inline(always)]
fn swiglu_portable<const F: bool>(out: &mut [f32], ab: &[f32]) {
    let (a, b) = ab.split_at(out.len());
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        // a·σ(a) with e^(−|a|) ≤ 1, so the exponential never overflows.
        let e = exp::<F>(-a.abs());
        let sigmoid = if a >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
        *o = a * sigmoid * b;
    }
}

/// Starts bringing the cache line at `at` in (on x86-64; elsewhere nothing), for accesses the
/// hardware prefetchers do not see coming: rows further apart than a page, or written at the end.
#[inline(always)]
fn prefetch_line(at: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64's baseline, and a prefetch never faults or writes.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// `a·b + c`: one rounding in kernels compiled for FMA (`F`), else two (without FMA hardware,
/// `mul_add` would be a slow software call).
#[inline(always)]
fn fma<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Adding it to an f32 of magnitude below 2²² rounds that to an integer (1.5·2²³).
const ROUND: f32 = 12_582_912.0;

/// `eˣ` for x ≤ 0 to about 2 ulp, branch-free so that it vectorises: x = n·ln2 + r with
/// |r| ≤ ln2/2, eʳ by a degree-5 polynomial (1.6e-7 relative in all, 1.8e-7 without FMA; the
/// degree-6 Taylor polynomial before it: 2.2e-7 and 2.5e-7), times 2ⁿ built from the exponent
/// bits. Arguments below −87 give 2⁻¹²⁶·eʳ (as good as 0 beside 1); NaN stays NaN (a NaN
/// activation must stay detectable).
#[inline(always)]
fn exp<const F: bool>(x: f32) -> f32 {
    // Adding −0 is exact and compiled away (adding +0 is not: −0 + 0 = +0).
    exp_sum::<F>(x, -0.0)
}

/// `eᵃ⁺ᵇ` as [`exp`] computes `eˣ`, for a large `a` that is exact and a small `b`: `a` is
/// reduced by n·ln2 exactly and `b` added to the remainder, so the sum's own rounding (a
/// relative 6e-8 of |a|, 3e-6 at a = −50) never enters the exponent.
#[inline(always)]
fn exp_sum<const F: bool>(a: f32, b: f32) -> f32 {
    /// eʳ on |r| ≤ ln2/2, highest degree first: fitted for the least largest relative error
    /// (9.3e-8 before f32 rounding).
    const POLY: [f32; 6] = [8.290_12e-3, 4.189_818_7e-2, 0.166_676_4, 0.499_991_48, 0.999_999_7, 1.0];
    let (a, b) = if a + b < -87.0 { (-87.0, -0.0) } else { (a, b) };
    let t = fma::<F>(a + b, core::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    // ln 2 as 355/512 (exact times any n here, so a − n·355/512 is exact) plus the remainder
    // (Cody and Waite).
    let r = fma::<F>(n, 2.121_944_4e-4, fma::<F>(n, -0.693_359_4, a)) + b;
    times_pow2(horner::<F, 6>(POLY, r), t)
}

/// `2ˣ` for x ≤ 0 to about 2 ulp, as [`exp`] without its change of base (the softmax folds
/// log₂e into its scale): x = n + r with |r| ≤ ½ exactly, 2ʳ by a degree-5 polynomial (1.6e-7
/// relative in all, 1.9e-7 without FMA; degree-6 Taylor: 2.2e-7 and 2.4e-7). Arguments below
/// −126 give 2⁻¹²⁶·2ʳ; NaN stays NaN (a NaN score must make a NaN row, which the caller then
/// detects).
#[inline(always)]
fn exp2<const F: bool>(x: f32) -> f32 {
    /// 2ʳ on |r| ≤ ½, highest degree first, fitted as in [`exp_sum`] (9.2e-8 before rounding).
    /// The linear term is the fit's, 3 ulp below ln 2 (ln 2 there: 2.9e-7 worst error).
    #[allow(clippy::approx_constant)]
    const POLY: [f32; 6] = [1.326_455_4e-3, 9.671_465_5e-3, 5.550_734e-2, 0.240_222_42, 0.693_147, 1.0];
    let x = if x < -126.0 { -126.0 } else { x };
    let t = x + ROUND;
    let r = x - (t - ROUND);
    times_pow2(horner::<F, 6>(POLY, r), t)
}

/// The polynomial with coefficients `c` (highest degree first) at `x`, by Horner's rule from
/// the leading coefficient (a fold from 0 would spend a multiply-add on `0·x + c₀`).
#[inline(always)]
fn horner<const F: bool, const N: usize>(c: [f32; N], x: f32) -> f32 {
    c[1..].iter().fold(c[0], |acc, &c| fma::<F>(acc, x, c))
}

/// `p·2ⁿ` for `t = n + ROUND` (n ≥ −126): t lies in [2²³, 2²⁴), where its low bits count
/// integers, so they hold n without a float→int conversion (which would not vectorise).
#[inline(always)]
fn times_pow2(p: f32, t: f32) -> f32 {
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// `exp` and `exp2` in both builds (with fused multiply-adds, as on AVX2/AVX-512 and NEON,
    /// and without) against f64, down to where each clamps.
    #[test]
    fn exp_and_exp2_are_within_two_ulp_of_f64_on_the_softmax_range() {
        let cases = [
            (exp::<true> as fn(f32) -> f32, f64::exp as fn(f64) -> f64, 870_000),
            (exp::<false>, f64::exp, 870_000),
            (exp2::<true>, f64::exp2, 1_255_000),
            (exp2::<false>, f64::exp2, 1_255_000),
        ];
        for (ours, exact, steps) in cases {
            let mut worst = 0f64;
            for i in 0..=steps {
                let x = -(i as f32) * 1e-4;
                worst = worst.max((ours(x) as f64 - exact(x as f64)).abs() / exact(x as f64));
            }
            assert!(worst < 2.5e-7, "relative error {worst:e}");
            assert_eq!(ours(0.0), 1.0);
            assert!(ours(-1000.0) < 1e-37 && ours(-1000.0) >= 0.0);
            assert!(ours(f32::NAN).is_nan());
        }
        assert_eq!(exp2::<true>(-3.0), 0.125);
    }

    #[test]
    fn gelu_is_close_to_f64_even_in_the_tail() {
        let exact = |x: f64| 0.5 * x * libm::erfc(-x / core::f64::consts::SQRT_2);
        // Error relative to max(|gelu(x)|, |x|·2^-24): ulps of the output where it is not tiny,
        // and of x·Φ's scale where it is (f32's erf-based GELU, 1 + erf(x/√2), loses all relative
        // accuracy there).
        for gelu in [gelu_exact::<true>, gelu_exact::<false>] {
            let (mut worst, mut burn_like) = (0f64, 0f64);
            for i in -200_000..=200_000 {
                let x = i as f32 * 5e-5;
                let e = exact(x as f64);
                let scale = e.abs().max(x.abs() as f64 * 2f64.powi(-24)).max(1e-38);
                worst = worst.max((gelu(x) as f64 - e).abs() / scale);
                let erf_based = 0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2));
                burn_like = burn_like.max((erf_based as f64 - e).abs() / scale);
            }
            assert!(worst < 2e-6 && burn_like > 0.2, "error {worst:e} (erf-based {burn_like:e})");
            // Non-finite in, non-finite out: overflow stays detectable downstream.
            assert!([f32::NAN, f32::INFINITY, f32::NEG_INFINITY].iter().all(|&x| !gelu(x).is_finite()));
        }
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.013).collect();
        let mut ys = xs.clone();
        gelu_in_place(&mut ys);
        let same = |(&x, &y): (&f32, &f32)| y == gelu_exact::<true>(x) || y == gelu_exact::<false>(x);
        assert!(xs.iter().zip(&ys).all(same), "the vectorised loop computes the same function");
    }

    #[test]
    fn swiglu_matches_f64() {
        let ab: Vec<f32> = (0..2 * 3 * 80).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.37).collect();
        let t = Tensor::<3>::from_data(TensorData::new(ab.clone(), [2, 3, 80]), &burn::tensor::Device::flex());
        let ours = swiglu(t).into_data().try_into_vec::<f32>().unwrap();
        for (r, row) in ab.chunks(80).enumerate() {
            for j in 0..40 {
                let (a, b) = (row[j] as f64, row[40 + j] as f64);
                let want = a / (1.0 + (-a).exp()) * b;
                assert!((ours[r * 40 + j] as f64 - want).abs() <= 1e-6 * want.abs() + 1e-30, "{a} {b}");
            }
        }
    }

    /// Deterministic values in [-2, 2) for an f32 tensor on flex, and the same values.
    fn filled<const D: usize>(shape: [usize; D], seed: usize) -> (Tensor<D>, Vec<f32>) {
        let n = shape.iter().product::<usize>();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 + seed * 104_729) % 4001) as f32 / 1000.25 - 2.0).collect();
        (Tensor::from_data(TensorData::new(v.clone(), shape), &burn::tensor::Device::flex()), v)
    }

    fn assert_close(ours: Tensor<3>, want: &[f64]) {
        assert_close_by(ours, want, 2e-6);
    }

    fn assert_close_by(ours: Tensor<3>, want: &[f64], tol: f64) {
        let ours = ours.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(ours.len(), want.len());
        for (a, b) in ours.iter().zip(want) {
            assert!((*a as f64 - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn linear_matches_f64_with_and_without_bias() {
        // 2 × 150 rows × 200 inputs × 170 outputs: big enough for the threaded GEMM.
        let ((x, xv), (w, wv), (b, bv)) = (filled([2, 150, 200], 1), filled([200, 170], 2), filled([170], 3));
        for bias in [None, Some(&b)] {
            let mut want = Vec::new();
            for row in xv.chunks(200) {
                for j in 0..170 {
                    let dot: f64 = row.iter().enumerate().map(|(i, &x)| x as f64 * wv[i * 170 + j] as f64).sum();
                    want.push(dot + bias.map_or(0.0, |_| bv[j] as f64));
                }
            }
            // An f32 sum of 200 products of at most 4 is off by at most 200·4·2⁻²⁴ ≈ 4.8e-5
            // (7.6e-6 seen); a wrong layout or a lost bias is off by O(1).
            assert_close_by(linear(&x, &w, bias).expect("applies on flex in f32"), &want, 5e-5);
        }
        // A strided input (rows 220 apart) is read through a copy, with the same result.
        let wide = filled([2, 150, 220], 1).0.narrow(2, 10, 200);
        let copy = Tensor::<3>::from_data(wide.clone().into_data(), &wide.device());
        let (a, b) = (linear(&wide, &w, Some(&b)).unwrap(), linear(&copy, &w, Some(&b)).unwrap());
        assert_eq!(a.into_data().try_into_vec::<f32>().unwrap(), b.into_data().try_into_vec::<f32>().unwrap());
        // Packed once (where this CPU's GEMM is ours): the products of packing on every call, and
        // the weight back unchanged.
        let values = |t: Tensor<3>| t.into_data().try_into_vec::<f32>().unwrap();
        let ours = cfg!(target_arch = "x86_64") && isa::level() < isa::CpuLevel::Avx512;
        assert_eq!(PackedWeight::new(&w).is_some(), ours);
        if let Some(packed) = PackedWeight::new(&w) {
            let bias = filled([170], 3).0;
            let (a, b) = (linear_packed(&x, &packed, Some(&bias)).unwrap(), linear(&x, &w, Some(&bias)).unwrap());
            assert_eq!(values(a), values(b));
            assert_eq!(packed.to_tensor(&w.device()).into_data().try_into_vec::<f32>().unwrap(), wv);
        }
    }

    #[test]
    fn rms_norm_modulate_matches_f64() {
        let ((x, xv), (w, wv)) = (filled([2, 3, 40], 1), filled([40], 2));
        let ((sh, shv), (sc, scv)) = (filled([2, 1, 40], 3), filled([2, 1, 40], 4));
        let ours = rms_norm_modulate(&x, (&w, 1e-6), &sh, &sc).unwrap();
        let mut want = Vec::new();
        for (row, r) in xv.chunks(40).enumerate() {
            let inv = 1.0 / (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 40.0 + 1e-6).sqrt();
            let b = row / 3;
            for j in 0..40 {
                let sc = scv[b * 40 + j] as f64;
                want.push(r[j] as f64 * inv * wv[j] as f64 * (1.0 + sc) + shv[b * 40 + j] as f64);
            }
        }
        assert_close(ours, &want);
    }

    #[test]
    fn gated_residual_matches_f64_and_leaves_a_shared_input_alone() {
        let ((x, xv), (g, gv), (h, hv)) = (filled([2, 3, 40], 1), filled([2, 1, 40], 2), filled([2, 3, 40], 3));
        let want: Vec<f64> =
            (0..xv.len()).map(|i| xv[i] as f64 + gv[i / 120 * 40 + i % 40] as f64 * hv[i] as f64).collect();
        // `x` is shared (its clone is kept): the sum goes to a copy.
        let ours = gated_residual(x.clone(), g.clone(), h.clone());
        assert_eq!(x.clone().into_data().try_into_vec::<f32>().unwrap(), xv);
        // Two roundings of values below 2 + 4: within 2⁻²³·8 of f64.
        assert_close_by(ours.clone(), &want, 1e-6);
        // The same bits as burn's two passes.
        let burn = (x + g * h).into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(ours.into_data().try_into_vec::<f32>().unwrap(), burn);
    }

    #[test]
    fn layer_norm_matches_f64() {
        // Rows of 37 (two lanes' worth and a tail) far from zero mean, where a one-pass variance
        // would cancel.
        let (_, xv) = filled([2, 3, 37], 1);
        let xv: Vec<f32> = xv.iter().map(|v| v + 50.0).collect();
        let x = Tensor::<3>::from_data(TensorData::new(xv.clone(), [2, 3, 37]), &burn::tensor::Device::flex());
        let ((w, wv), (b, bv)) = (filled([37], 2), filled([37], 3));
        let ours = layer_norm(&x, &w, &b, 1e-6).unwrap();
        let mut want = Vec::new();
        for r in xv.chunks(37) {
            let mean = r.iter().map(|&v| v as f64).sum::<f64>() / 37.0;
            let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 37.0;
            let inv = 1.0 / (var + 1e-6).sqrt();
            want.extend((0..37).map(|j| (r[j] as f64 - mean) * inv * wv[j] as f64 + bv[j] as f64));
        }
        // The mean of values near 50 is off by ~50·2⁻²⁴ in f32, which the normalised values
        // carry divided by the spread (~1).
        assert_close_by(ours, &want, 1e-5);
    }

    /// `self_attention` in f64, straight from its definition.
    fn self_attention_f64(qkv: &[f32], [b, n, heads, hd]: [usize; 4], rotation: Option<&Rotation>) -> Vec<f64> {
        let d = heads * hd;
        let rotate = |x: &[f32], norm: Option<&(Vec<f32>, f32)>, t: usize| -> Vec<f64> {
            let mut x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let Some(r) = rotation else { return x };
            if let Some((w, eps)) = norm {
                let inv = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / hd as f64 + *eps as f64).sqrt();
                x.iter_mut().zip(w).for_each(|(x, &w)| *x *= inv * w as f64);
            }
            let rotated = |j: usize| if j.is_multiple_of(2) { -x[j + 1] } else { x[j - 1] };
            (0..hd).map(|j| x[j] * r.cos[t * hd + j] as f64 + rotated(j) * r.sin[t * hd + j] as f64).collect()
        };
        let (q_norm, k_norm) = rotation.map_or((None, None), |r| (r.q_norm.as_ref(), r.k_norm.as_ref()));
        let mut out = vec![0f64; b * n * d];
        for batch in 0..b {
            for h in 0..heads {
                let token = |t: usize, part: usize| &qkv[(batch * n + t) * 3 * d + part * d + h * hd..][..hd];
                let k: Vec<Vec<f64>> = (0..n).map(|t| rotate(token(t, 1), k_norm, t)).collect();
                for i in 0..n {
                    let q = rotate(token(i, 0), q_norm, i);
                    let dot = |k: &Vec<f64>| q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt();
                    let s: Vec<f64> = k.iter().map(dot).collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..hd {
                        let weighted: f64 = (0..n).map(|j| e[j] * token(j, 2)[c] as f64).sum();
                        out[(batch * n + i) * d + h * hd + c] = weighted / total;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn self_attention_matches_f64_on_ragged_sizes() {
        // 70 tokens: a full block of 64 query rows and a tail; four 16-lane chunks of keys and a tail.
        let [b, n, heads, hd] = [2, 70, 3, 8];
        let (qkv, values) = filled([b, n, 3 * heads * hd], 9);
        let (cos, sin) = (filled([n, hd], 10).1, filled([n, hd], 11).1);
        let rotation = || Rotation { q_norm: Some((filled([hd], 12).1, 1e-6)), k_norm: None, cos: &cos, sin: &sin };
        for r in [None, Some(rotation())] {
            let want = self_attention_f64(&values, [b, n, heads, hd], r.as_ref());
            assert_close(self_attention(qkv.clone(), heads, r).expect("applies on flex in f32"), &want);
        }
        // Tables of the wrong size: the caller's generic path takes over.
        let short = Rotation { cos: &cos[hd..], ..rotation() };
        assert!(self_attention(qkv, heads, Some(short)).is_err());
    }
}
