//! Multi-head self-attention on burn-flex in f32, fused per block of queries: the block's scores
//! (all keys × `NR` queries, in L2) by the GEMM's register tile against keys packed once per
//! head, the softmax in place, the values by the same tile against values packed once per head,
//! then the softmax's division — no score matrix in memory and no packing per block (the heads of
//! width 16 of the VMAE gave a general GEMM call per block too little depth to amortise its own).
//! Each task is one block of queries over all heads, writing its own rows of the output.

use super::gemm::{self, StripFn};
use super::isa::{self, CpuLevel};
use super::{applies, exp2, norm_rope_row, prefetch_line, zeros};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

/// Host copies of a `QkRotation` (model layers): qk-norm weights with their epsilon, and the
/// `[N, d]` RoPE tables.
pub(crate) struct Rotation<'a> {
    pub q_norm: Option<(Vec<f32>, f32)>,
    pub k_norm: Option<(Vec<f32>, f32)>,
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// Multi-head self-attention of a `[B, N, 3·D]` joint projection (q, k and v, each `H` heads of
/// `D/H` values per token), the queries and keys optionally rotated first (qk-norm, RoPE):
/// `softmax(q·kᵀ/√(D/H))·v` per head, heads concatenated → `[B, N, D]`, on burn-flex in f32.
/// Each head's queries, keys and values are packed (and rotated) once, straight from the
/// projection; then each block of queries is one task, which writes its rows of the output for
/// every head. Gives `qkv` back where the kernel does not apply.
pub(crate) fn self_attention(
    qkv: Tensor<3>,
    heads: usize,
    rotation: Option<Rotation<'_>>,
) -> Result<Tensor<3>, Box<Tensor<3>>> {
    let ([b, n, three_d], device) = (qkv.dims(), qkv.device());
    let d = three_d / 3;
    let hd = d.checked_div(heads).unwrap_or(0);
    let fits = |r: &Rotation| {
        let norm_fits = |w: &Option<(Vec<f32>, f32)>| w.as_ref().is_none_or(|(w, _)| w.len() == hd);
        r.cos.len() == n * hd && r.sin.len() == n * hd && norm_fits(&r.q_norm) && norm_fits(&r.k_norm)
    };
    if !applies(&qkv) || n == 0 || hd == 0 || three_d != 3 * heads * hd || !rotation.as_ref().is_none_or(fits) {
        return Err(Box::new(qkv));
    }
    let data = qkv.into_data();
    let Ok(qkv) = data.as_slice::<f32>() else {
        return Err(Box::new(Tensor::from_data(data, (&device, DType::F32))));
    };
    let shape = Shape { b, n, heads, hd, scale: 1.0 / (hd as f32).sqrt() };
    let out = attend_at(isa::level(), shape, qkv, rotation.as_ref());
    Ok(Tensor::from_data(TensorData::new(out, [b, n, d]), &device))
}

fn norm_parts(norm: &Option<(Vec<f32>, f32)>) -> Option<(&[f32], f32)> {
    norm.as_ref().map(|(w, eps)| (w.as_slice(), *eps))
}

/// Sizes: `b` sequences of `n` tokens, `heads` heads of `hd` values, scores scaled by `scale`.
#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    n: usize,
    heads: usize,
    hd: usize,
    scale: f32,
}

/// One head of one sequence, packed for the register tiles ([`gemm::StripFn`]).
struct Packed<const MR: usize, const NR: usize> {
    /// qᵀ·scale·log₂e (the scores then come out as the powers of 2 the softmax takes) by blocks
    /// of `NR` queries (`hd` rows each), zero past the last query.
    queries: Vec<[f32; NR]>,
    /// k by panels of `MR` keys (`hd` rows each), zero past the last key.
    keys: Vec<[f32; MR]>,
    /// v by panels of `MR` value columns (`n` rows each), zero past the last column.
    values: Vec<[f32; MR]>,
}

/// One block of queries for every head of its sequence ([`query_block`] at one level).
type BlockFn<const MR: usize, const NR: usize> = fn(Shape, &[Packed<MR, NR>], usize, &mut [f32], &mut Vec<[f32; NR]>);

/// The attention at `level`: tiles of `MR × NR` (AVX-512 8 × 32, AVX2 6 × 16, SSE2 4 × 8, NEON
/// 8 × 8).
fn attend_at(level: CpuLevel, shape: Shape, qkv: &[f32], rotation: Option<&Rotation>) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512(s: Shape, p: &[Packed<8, 32>], block: usize, out: &mut [f32], scores: &mut Vec<[f32; 32]>) {
            query_block::<8, 32, true>(gemm::strip_avx512, s, p, block, out, scores)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(s: Shape, p: &[Packed<6, 16>], block: usize, out: &mut [f32], scores: &mut Vec<[f32; 16]>) {
            query_block::<6, 16, true>(gemm::strip_avx2, s, p, block, out, scores)
        }
        match level {
            // SAFETY (both): the level never exceeds what the CPU has (isa::cpu_kernels).
            CpuLevel::Avx512 => attend::<8, 32>(shape, qkv, rotation, |s, p, b, o, t| unsafe { avx512(s, p, b, o, t) }),
            CpuLevel::Avx2 => attend::<6, 16>(shape, qkv, rotation, |s, p, b, o, t| unsafe { avx2(s, p, b, o, t) }),
            CpuLevel::Baseline => baseline(shape, qkv, rotation),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = level;
        baseline(shape, qkv, rotation)
    }
}

/// The attention as compiled for the target (SSE2 on x86-64, NEON on aarch64).
fn baseline(shape: Shape, qkv: &[f32], rotation: Option<&Rotation>) -> Vec<f32> {
    const MR: usize = gemm::BASELINE_MR;
    attend::<MR, 8>(shape, qkv, rotation, |s, p, b, o, t| {
        query_block::<MR, 8, { cfg!(target_arch = "aarch64") }>(gemm::strip_baseline, s, p, b, o, t)
    })
}

/// Packs every head (in parallel), then runs `block` on every block of queries (in parallel).
fn attend<const MR: usize, const NR: usize>(
    shape: Shape,
    qkv: &[f32],
    rotation: Option<&Rotation>,
    block: BlockFn<MR, NR>,
) -> Vec<f32> {
    let Shape { b, n, heads, hd, .. } = shape;
    let d = heads * hd;
    let packed: Vec<Packed<MR, NR>> = (0..b * heads)
        .into_par_iter()
        .map(|task| pack(shape, &qkv[task / heads * n * 3 * d..][..n * 3 * d], task % heads * hd, rotation))
        .collect();
    let mut out = zeros(b * n * d);
    out.par_chunks_mut(n * d).zip(packed.par_chunks(heads)).for_each(|(out, heads)| {
        out.par_chunks_mut(NR * d)
            .enumerate()
            .for_each_init(Vec::new, |scores, (i, rows)| block(shape, heads, i, rows, scores));
    });
    out
}

/// Tokens ahead of the one being packed whose values [`pack`] asks the cache for.
const PACK_AHEAD: usize = 4;

/// The head whose values start at column `col` of the sequence's `tokens` (`n` rows of `3·D`).
fn pack<const MR: usize, const NR: usize>(
    Shape { n, heads, hd, scale, .. }: Shape,
    tokens: &[f32],
    col: usize,
    rotation: Option<&Rotation>,
) -> Packed<MR, NR> {
    let (d, c) = (heads * hd, scale * core::f32::consts::LOG2_E);
    let mut p = Packed {
        queries: vec![[0.0; NR]; n.div_ceil(NR) * hd],
        keys: vec![[0.0; MR]; n.div_ceil(MR) * hd],
        values: vec![[0.0; MR]; hd.div_ceil(MR) * n],
    };
    let (mut rotated_q, mut rotated_k) = (vec![0f32; hd], vec![0f32; hd]);
    for (t, token) in tokens.chunks_exact(3 * d).enumerate() {
        // The head's values of a later token (rows `3·D` apart, often further than a page).
        if let Some(ahead) = tokens.get((t + PACK_AHEAD) * 3 * d..(t + PACK_AHEAD + 1) * 3 * d) {
            for part in 0..3 {
                let values = &ahead[part * d + col..][..hd];
                (0..hd).step_by(16).for_each(|i| prefetch_line(&values[i]));
                if let Some(last) = values.last() {
                    prefetch_line(last);
                }
            }
        }
        let (mut q, mut k) = (&token[col..][..hd], &token[d + col..][..hd]);
        if let Some(r) = rotation {
            let (cos, sin) = (&r.cos[t * hd..][..hd], &r.sin[t * hd..][..hd]);
            norm_rope_row(&mut rotated_q, q, norm_parts(&r.q_norm), cos, sin);
            norm_rope_row(&mut rotated_k, k, norm_parts(&r.k_norm), cos, sin);
            (q, k) = (&rotated_q, &rotated_k);
        }
        // Row `t` of each panel: by iterators and lanes below `NR` or `MR`, without a division
        // or a bounds check per value (this packing took a twentieth of the VMAE's time).
        let (queries, keys) = (&mut p.queries[t / NR * hd..][..hd], &mut p.keys[t / MR * hd..][..hd]);
        let (q_lane, k_lane) = (t % NR, t % MR);
        for ((queries, keys), (&q, &k)) in queries.iter_mut().zip(keys.iter_mut()).zip(q.iter().zip(k)) {
            queries[q_lane] = q * c;
            keys[k_lane] = k;
        }
        let v = &token[2 * d + col..][..hd];
        for (panel, v) in p.values.chunks_exact_mut(n).zip(v.chunks(MR)) {
            panel[t].iter_mut().zip(v).for_each(|(x, &v)| *x = v);
        }
    }
    p
}

/// Rows `block·NR..` of the output (`out`, rows of `D`) for every head of their sequence, all
/// computed transposed so that every product is a strip of `MR × NR` register tiles and the
/// softmax runs down columns (lanes = queries): scoresᵀ (n × NR) = k · qᵀ by panels of `MR` keys,
/// each column's maximum taken in the tiles, the softmax down each column, then outᵀ (hd × NR) =
/// vᵀ · exp(scoresᵀ) by panels of `MR` value columns, divided by the column sums on the way out.
/// `scratch` holds the scores and outᵀ (allocated once per thread).
#[inline(always)]
fn query_block<const MR: usize, const NR: usize, const F: bool>(
    strip: StripFn<MR, NR>,
    Shape { n, heads, hd, .. }: Shape,
    packed: &[Packed<MR, NR>],
    block: usize,
    out: &mut [f32],
    scratch: &mut Vec<[f32; NR]>,
) {
    let (d, cols) = (heads * hd, NR.min(n - block * NR));
    scratch.resize(n + hd, [0.0; NR]);
    let (scores, result) = scratch.split_at_mut(n);
    for (h, p) in packed.iter().enumerate() {
        let mut max = [f32::NEG_INFINITY; NR];
        strip(&p.keys, &p.queries[block * hd..][..hd], scores, Some(&mut max));
        let inverse_sums = softmax_columns::<NR, F>(scores, &max);
        strip(&p.values, scores, result, None);
        for (c, column) in result.iter().enumerate() {
            for (i, (&x, inv)) in column.iter().zip(&inverse_sums).enumerate().take(cols) {
                out[i * d + h * hd + c] = x * inv;
            }
        }
    }
}

/// `2^(x − max)` down each of the `NR` columns of `scores` (n rows, powers of 2: the queries
/// were scaled by `scale·log₂e` when packed) whose maxima are `max`, in place, giving the
/// reciprocals of the column sums (the softmax without its division): a subtraction and
/// [`exp2`] per score (a multiply-add there before: 4 % more time in this pass on Zen 3).
#[inline(always)]
fn softmax_columns<const NR: usize, const F: bool>(scores: &mut [[f32; NR]], max: &[f32; NR]) -> [f32; NR] {
    let mut sums = [0f32; NR];
    for row in scores.iter_mut() {
        for ((x, s), &max) in row.iter_mut().zip(&mut sums).zip(max) {
            *x = exp2::<F>(*x - max);
            *s += *x;
        }
    }
    sums.map(|s| 1.0 / s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level this CPU runs, against softmax(q·kᵀ·s)·v in f64: token counts that leave
    /// partial tiles and blocks, head widths narrower than, equal to and wider than a panel.
    #[test]
    fn every_level_matches_f64() {
        let detected = isa::cpu_kernels().detected;
        let value = |i: usize| ((i * 7919 + 104_729) % 4001) as f32 / 1000.25 - 2.0;
        let (b, heads) = (2, 3);
        for (n, hd) in [(1, 8), (13, 8), (70, 16), (37, 24), (41, 64)] {
            let d = heads * hd;
            let qkv: Vec<f32> = (0..b * n * 3 * d).map(value).collect();
            let shape = Shape { b, n, heads, hd, scale: 1.0 / (hd as f32).sqrt() };
            let at = |batch: usize, t: usize, part: usize, h: usize, c: usize| {
                qkv[(batch * n + t) * 3 * d + part * d + h * hd + c] as f64
            };
            let mut want = vec![0f64; b * n * d];
            for (batch, h, i) in (0..b).flat_map(|x| (0..heads).flat_map(move |h| (0..n).map(move |i| (x, h, i)))) {
                let s: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..hd).map(|c| at(batch, i, 0, h, c) * at(batch, j, 1, h, c)).sum::<f64>() * shape.scale as f64
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
                let total: f64 = e.iter().sum();
                for c in 0..hd {
                    want[(batch * n + i) * d + h * hd + c] =
                        (0..n).map(|j| e[j] * at(batch, j, 2, h, c)).sum::<f64>() / total;
                }
            }
            for level in [CpuLevel::Baseline, CpuLevel::Avx2, CpuLevel::Avx512].into_iter().filter(|&l| l <= detected) {
                let out = attend_at(level, shape, &qkv, None);
                for (a, w) in out.iter().zip(&want) {
                    // Weights summing to 1 over values of at most 2: f32 rounding of the scores
                    // (hd products of at most 4) and sums leaves ~1e-6 (a wrong tile is off by O(1)).
                    assert!((*a as f64 - w).abs() <= 1e-5, "{level} n={n} hd={hd}: {a} vs {w}");
                }
            }
        }
    }

    /// Each column's maximum, NaN passed over, as the score tiles take it.
    fn column_max(scores: &[[f32; 8]]) -> [f32; 8] {
        let mut max = [f32::NEG_INFINITY; 8];
        for row in scores {
            for (m, &x) in max.iter_mut().zip(row) {
                *m = if x > *m { x } else { *m };
            }
        }
        max
    }

    #[test]
    fn softmax_columns_match_f64_and_keep_nan() {
        // Powers of 2 in [−5, 5]: the spread of e^(±3.75) that scaled scores had before.
        let mut scores: Vec<[f32; 8]> =
            (0..1000).map(|j| core::array::from_fn(|i| ((j * 37 + i * 11) % 101) as f32 * 0.1 - 5.0)).collect();
        let given = scores.clone();
        let inverse = softmax_columns::<8, true>(&mut scores, &column_max(&given));
        for i in 0..8 {
            let m = given.iter().fold(f64::NEG_INFINITY, |m, row| m.max(row[i] as f64));
            let e: Vec<f64> = given.iter().map(|row| (row[i] as f64 - m).exp2()).collect();
            let total: f64 = e.iter().sum();
            for (row, e) in scores.iter().zip(&e) {
                let (got, want) = ((row[i] * inverse[i]) as f64, e / total);
                assert!((got - want).abs() <= 1e-6 * want + 1e-9, "{got} vs {want}");
            }
        }
        // A NaN score makes its whole column NaN (which the caller then detects), no other; the
        // tiles' maximum passes over it.
        let mut scores = given;
        scores[333][3] = f32::NAN;
        let max = column_max(&scores);
        let inverse = softmax_columns::<8, false>(&mut scores, &max);
        assert!(scores.iter().all(|row| (row[3] * inverse[3]).is_nan() && (row[2] * inverse[2]).is_finite()));
    }
}
