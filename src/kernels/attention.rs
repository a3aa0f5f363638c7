//! Multi-head self-attention on burn-flex in f32, fused per block of queries: the block's scores
//! (all keys × `NR` queries, in L2) by the GEMM's register tile against keys packed once per
//! head, the softmax in place, the values by the same tile against values packed once per head,
//! then the softmax's division — no score matrix in memory and no packing per block (the heads of
//! width 16 of the VMAE gave a general GEMM call per block too little depth to amortise its own).

use super::gemm::{self, TileFn};
use super::isa::{self, CpuLevel};
use super::{applies, exp, norm_rope_row};
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
/// Each head's queries and keys are gathered (and rotated) into per-thread buffers and its values
/// read in place, so the projection is never permuted into head-major tensors. Gives `qkv` back
/// where the kernel does not apply.
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
    let head = Head { n, hd, scale: 1.0 / (hd as f32).sqrt() };
    let level = isa::level();
    let mut by_head = vec![0f32; b * n * d]; // [B, H, N, hd]
    by_head.par_chunks_mut(n * hd).enumerate().for_each_init(
        || (vec![0f32; n * hd], vec![0f32; n * hd]),
        |(q, k), (task, out)| {
            let col = (task % heads) * hd;
            let tokens = &qkv[task / heads * n * three_d..][..n * three_d];
            let rows = q.chunks_exact_mut(hd).zip(k.chunks_exact_mut(hd)).zip(tokens.chunks_exact(three_d));
            for (t, ((q, k), token)) in rows.enumerate() {
                q.copy_from_slice(&token[col..][..hd]);
                k.copy_from_slice(&token[d + col..][..hd]);
                if let Some(r) = &rotation {
                    let (cos, sin) = (&r.cos[t * hd..][..hd], &r.sin[t * hd..][..hd]);
                    norm_rope_row(q, norm_parts(&r.q_norm), cos, sin);
                    norm_rope_row(k, norm_parts(&r.k_norm), cos, sin);
                }
            }
            // The values in place: element (j, c) at tokens[2·D + col + j·3·D + c].
            head.attend(level, out, q, k, (&tokens[2 * d + col..], three_d));
        },
    );
    // [B, H, N, hd] → [B, N, H·hd]
    let mut out = vec![0f32; b * n * d];
    out.par_chunks_mut(d).enumerate().with_min_len(64).for_each(|(row, out)| {
        let (batch, t) = (row / n, row % n);
        for (head, out) in out.chunks_exact_mut(hd).enumerate() {
            out.copy_from_slice(&by_head[((batch * heads + head) * n + t) * hd..][..hd]);
        }
    });
    Ok(Tensor::from_data(TensorData::new(out, [b, n, d]), &device))
}

fn norm_parts(norm: &Option<(Vec<f32>, f32)>) -> Option<(&[f32], f32)> {
    norm.as_ref().map(|(w, eps)| (w.as_slice(), *eps))
}

/// One head's sizes: `n` tokens of `hd` values, scores scaled by `scale`.
#[derive(Clone, Copy)]
struct Head {
    n: usize,
    hd: usize,
    scale: f32,
}

impl Head {
    /// `out = softmax(q·kᵀ·scale)·v` for row-major `out`, `q` and `k` (n × hd each), and `v`
    /// (n × hd) with its rows `v_stride` apart, compiled for `level`.
    fn attend(self, level: CpuLevel, out: &mut [f32], q: &[f32], k: &[f32], v: (&[f32], usize)) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,fma")]
            fn avx512(h: Head, out: &mut [f32], q: &[f32], k: &[f32], v: (&[f32], usize)) {
                h.attend_tiles::<8, 32, true>(gemm::tile_avx512, out, q, k, v)
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2(h: Head, out: &mut [f32], q: &[f32], k: &[f32], v: (&[f32], usize)) {
                h.attend_tiles::<6, 16, true>(gemm::tile_avx2, out, q, k, v)
            }
            match level {
                // SAFETY: the level never exceeds what the CPU has (isa::cpu_kernels).
                CpuLevel::Avx512 => return unsafe { avx512(self, out, q, k, v) },
                // SAFETY: as above.
                CpuLevel::Avx2 => return unsafe { avx2(self, out, q, k, v) },
                CpuLevel::Baseline => {}
            }
            self.attend_tiles::<4, 8, false>(gemm::tile_baseline, out, q, k, v)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = level;
            // NEON's 32 registers of 4 lanes: 16 accumulators.
            self.attend_tiles::<8, 8, { cfg!(target_arch = "aarch64") }>(gemm::tile_baseline, out, q, k, v)
        }
    }

    /// [`Head::attend`] by blocks of `NR` queries, all computed transposed so that every
    /// product is the GEMM's `MR × NR` register tile and the softmax runs down columns (lanes =
    /// queries): scoresᵀ (n × NR) = k · qᵀ by tiles of `MR` keys, then the softmax over each
    /// column, then outᵀ (hd × NR) = vᵀ · exp(scoresᵀ) by tiles of `MR` value columns.
    #[inline(always)]
    fn attend_tiles<const MR: usize, const NR: usize, const F: bool>(
        self,
        tile: TileFn<MR, NR>,
        out: &mut [f32],
        q: &[f32],
        k: &[f32],
        (v, v_stride): (&[f32], usize),
    ) {
        let Head { n, hd, scale } = self;
        // k in panels of MR keys and vᵀ in panels of MR value columns, zero-padded, once per head.
        let mut keys = vec![[0f32; MR]; hd * n.div_ceil(MR)];
        for (panel, k) in keys.chunks_exact_mut(hd).zip(k.chunks(MR * hd)) {
            for (r, key) in k.chunks_exact(hd).enumerate() {
                for (c, &x) in key.iter().enumerate() {
                    panel[c][r] = x;
                }
            }
        }
        let mut values = vec![[0f32; MR]; n * hd.div_ceil(MR)];
        for (p, panel) in values.chunks_exact_mut(n).enumerate() {
            let width = MR.min(hd - p * MR);
            for (j, row) in panel.iter_mut().enumerate() {
                row[..width].copy_from_slice(&v[j * v_stride + p * MR..][..width]);
            }
        }
        let mut queries = vec![[0f32; NR]; hd]; // qᵀ of the block
        let mut scores = vec![[0f32; NR]; n]; // scoresᵀ of the block, then their exponentials
        let mut result = [[0f32; NR]; MR];
        for start in (0..n).step_by(NR) {
            let cols = NR.min(n - start);
            for (c, row) in queries.iter_mut().enumerate() {
                for (i, x) in row.iter_mut().enumerate() {
                    *x = if i < cols { q[(start + i) * hd + c] } else { 0.0 };
                }
            }
            for (j, panel) in keys.chunks_exact(hd).enumerate() {
                let rows = MR.min(n - j * MR);
                tile(panel, &queries, scores[j * MR..].as_flattened_mut(), NR, [rows, NR], false);
            }
            let inverse_sums = softmax_columns::<NR, F>(&mut scores, scale);
            for (p, panel) in values.chunks_exact(n).enumerate() {
                let rows = MR.min(hd - p * MR);
                tile(panel, &scores, result.as_flattened_mut(), NR, [rows, NR], false);
                // outᵀ back to row-major, with the softmax's division (on hd × NR outputs
                // instead of n × NR scores).
                for (c, column) in result.iter().enumerate().take(rows) {
                    for (i, (&x, inv)) in column.iter().zip(&inverse_sums).enumerate().take(cols) {
                        out[(start + i) * hd + p * MR + c] = x * inv;
                    }
                }
            }
        }
    }
}

/// `e^(scale·(x − max))` down each of the `NR` columns of `scores` (n rows), in place, giving
/// the reciprocals of the column sums (the softmax without its division).
#[inline(always)]
fn softmax_columns<const NR: usize, const F: bool>(scores: &mut [[f32; NR]], scale: f32) -> [f32; NR] {
    let mut max = [f32::NEG_INFINITY; NR];
    for row in scores.iter() {
        for (m, &x) in max.iter_mut().zip(row) {
            *m = if x > *m { x } else { *m };
        }
    }
    let mut sums = [0f32; NR];
    for row in scores.iter_mut() {
        for ((x, s), &m) in row.iter_mut().zip(&mut sums).zip(&max) {
            *x = exp::<F>((*x - m) * scale);
            *s += *x;
        }
    }
    sums.map(|s| 1.0 / s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level this CPU runs, against softmax(q·kᵀ·s)·v in f64: token counts that leave
    /// partial tiles and panels, head widths narrower than, equal to and wider than a panel.
    #[test]
    fn every_level_matches_f64() {
        let detected = isa::cpu_kernels().detected;
        let value = |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 4001) as f32 / 1000.25 - 2.0;
        for (n, hd) in [(1, 8), (13, 8), (70, 16), (37, 24), (41, 64)] {
            let (q, k): (Vec<f32>, Vec<f32>) = ((0..n * hd).map(|i| value(i, 1)).collect(), (0..n * hd).map(|i| value(i, 2)).collect());
            // The values strided as in a joint projection: rows 3·hd apart.
            let v: Vec<f32> = (0..n * 3 * hd).map(|i| value(i, 3)).collect();
            let head = Head { n, hd, scale: 1.0 / (hd as f32).sqrt() };
            let mut want = vec![0f64; n * hd];
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| (0..hd).map(|c| q[i * hd + c] as f64 * k[j * hd + c] as f64).sum::<f64>() * head.scale as f64)
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
                let total: f64 = e.iter().sum();
                for c in 0..hd {
                    want[i * hd + c] = (0..n).map(|j| e[j] * v[j * 3 * hd + c] as f64).sum::<f64>() / total;
                }
            }
            for level in [CpuLevel::Baseline, CpuLevel::Avx2, CpuLevel::Avx512].into_iter().filter(|&l| l <= detected) {
                let mut out = vec![f32::NAN; n * hd];
                head.attend(level, &mut out, &q, &k, (&v, 3 * hd));
                for (a, b) in out.iter().zip(&want) {
                    // Weights summing to 1 over values of at most 2: f32 rounding of the scores
                    // (hd products of at most 4) and sums leaves ~1e-6 (a wrong tile is off by O(1)).
                    assert!((*a as f64 - b).abs() <= 1e-5, "{level} n={n} hd={hd}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn softmax_columns_match_f64_and_keep_nan() {
        let mut scores: Vec<[f32; 8]> =
            (0..1000).map(|j| core::array::from_fn(|i| ((j * 37 + i * 11) % 101) as f32 * 0.3 - 15.0)).collect();
        let given = scores.clone();
        let inverse = softmax_columns::<8, true>(&mut scores, 0.25);
        for i in 0..8 {
            let m = given.iter().fold(f64::NEG_INFINITY, |m, row| m.max(row[i] as f64 * 0.25));
            let e: Vec<f64> = given.iter().map(|row| (row[i] as f64 * 0.25 - m).exp()).collect();
            let total: f64 = e.iter().sum();
            for (row, e) in scores.iter().zip(&e) {
                let (got, want) = ((row[i] * inverse[i]) as f64, e / total);
                assert!((got - want).abs() <= 1e-6 * want + 1e-9, "{got} vs {want}");
            }
        }
        // A NaN score makes its whole column NaN (which the caller then detects), no other.
        let mut scores = given;
        scores[333][3] = f32::NAN;
        let inverse = softmax_columns::<8, false>(&mut scores, 1.0);
        assert!(scores.iter().all(|row| (row[3] * inverse[3]).is_nan() && (row[2] * inverse[2]).is_finite()));
    }
}
