//! The f32 matrix product of the CPU kernels, dispatched by [`CpuLevel`]: the `gemm` crate's
//! own kernels at AVX-512 and on aarch64 (NEON), and below AVX-512 on x86 this crate's blocked
//! GEMM, compiled for AVX2+FMA or for SSE2 — so that `LDMAE_CPU` selects the GEMM too (the
//! `gemm` crate always takes the widest the CPU has).
//!
//! The blocked GEMM is the classic one (Goto; BLIS): blocks of `KC` rows of the right-hand side
//! are packed into panels of `NR` columns, blocks of `MC` rows of the left-hand side into panels
//! of `MR` rows, and a register-tiled kernel adds one `MR × NR` tile of the product per pair of
//! panels. Blocks of rows run on the rayon pool.

use super::isa::CpuLevel;

/// The GEMM that runs at `level`, for [`super::isa::CpuKernels`].
pub(super) fn name(level: CpuLevel) -> &'static str {
    match level {
        _ if cfg!(not(target_arch = "x86_64")) => "gemm crate (NEON)",
        CpuLevel::Avx512 => "gemm crate (AVX-512)",
        CpuLevel::Avx2 => "ldmae 6×16 (AVX2+FMA)",
        CpuLevel::Baseline => "ldmae 4×8 (SSE2)",
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, for row-major `dst` (m × n) and
/// `lhs` (m × k), and `rhs` (k × n) with element (i, j) at `rhs[i·rs + j·cs]`; on the rayon pool
/// when `threads`.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: &[f32],
    [m, n, k]: [usize; 3],
    [rs, cs]: [usize; 2],
    accumulate: bool,
    threads: bool,
    level: CpuLevel,
) {
    let rhs_end = if k == 0 || n == 0 { 0 } else { (k - 1) * rs + (n - 1) * cs + 1 };
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= rhs_end, "matmul extents");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if level < CpuLevel::Avx512 {
        let rhs = blocked::Strided { values: rhs, rs, cs };
        return if level == CpuLevel::Avx2 {
            blocked::blocked::<6, 16>(dst, lhs, rhs, [m, n, k], accumulate, threads, blocked::block_avx2)
        } else {
            blocked::blocked::<4, 8>(dst, lhs, rhs, [m, n, k], accumulate, threads, blocked::block_baseline)
        };
    }
    let _ = level;
    let parallelism = if threads { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the assertion keeps every access of the three strided matrices inside its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            cs as isize,
            rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The blocked GEMM (x86-64 below AVX-512).
#[cfg(target_arch = "x86_64")]
mod blocked {
    use super::tile;
    use alloc::vec;
    use alloc::vec::Vec;
    use rayon::prelude::*;

    /// Depth of a packed block: an `NR`-column panel of it (32 KiB at `NR` = 16) is what the kernel
    /// reads from L1 again for every `MR` rows.
    const KC: usize = 512;
    /// Rows of a packed left-hand block (96 KiB at `KC`, in L2); one block is one task for a thread.
    const MC: usize = 48;

    /// A matrix with element (i, j) at `values[i·rs + j·cs]`.
    #[derive(Clone, Copy)]
    pub(super) struct Strided<'a> {
        pub values: &'a [f32],
        pub rs: usize,
        pub cs: usize,
    }

    /// One `MC`-row block of the product for one `KC`-deep block of `rhs` (see [`Block`]).
    pub(super) type BlockFn<const MR: usize, const NR: usize> =
        fn(&Block<'_, NR>, &mut [f32], &[f32], &mut Vec<[f32; MR]>);

    /// What every row block of one `KC`-deep step shares: the packed `rhs` panels and the sizes.
    pub(super) struct Block<'a, const NR: usize> {
        panels: &'a [[f32; NR]],
        /// Columns (`n`), the step's depth and offset into `lhs`'s rows, and `lhs`'s row length.
        n: usize,
        kc: usize,
        pc: usize,
        k: usize,
        /// Whether the tiles are added to `dst` (a later step, or `accumulate`).
        add: bool,
    }

    pub(super) fn blocked<const MR: usize, const NR: usize>(
        dst: &mut [f32],
        lhs: &[f32],
        rhs: Strided<'_>,
        [m, n, k]: [usize; 3],
        accumulate: bool,
        threads: bool,
        block: BlockFn<MR, NR>,
    ) {
        let mut panels = vec![[0f32; NR]; KC.min(k) * n.div_ceil(NR)];
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let panels = &mut panels[..kc * n.div_ceil(NR)];
            let pack = |(j, panel): (usize, &mut [[f32; NR]])| pack_rhs(panel, rhs, pc, j * NR, n);
            if threads {
                panels.par_chunks_mut(kc).enumerate().for_each(pack);
            } else {
                panels.chunks_mut(kc).enumerate().for_each(pack);
            }
            let step = Block { panels, n, kc, pc, k, add: accumulate || pc > 0 };
            let (dst, lhs) = (&mut dst[..m * n], &lhs[..m * k]);
            if threads {
                let step = &step;
                let blocks = dst.par_chunks_mut(MC * n).zip(lhs.par_chunks(MC * k));
                blocks.for_each_init(Vec::new, |buf, (dst, lhs)| block(step, dst, lhs, buf));
            } else {
                let mut buf = Vec::new();
                for (dst, lhs) in dst.chunks_mut(MC * n).zip(lhs.chunks(MC * k)) {
                    block(&step, dst, lhs, &mut buf);
                }
            }
        }
    }

    /// Columns `j0..j0 + NR` of rows `pc..pc + panel.len()` of `rhs`, zero beyond column `n`.
    fn pack_rhs<const NR: usize>(panel: &mut [[f32; NR]], rhs: Strided<'_>, pc: usize, j0: usize, n: usize) {
        let width = NR.min(n - j0);
        for (p, row) in panel.iter_mut().enumerate() {
            let start = (pc + p) * rhs.rs + j0 * rhs.cs;
            if rhs.cs == 1 {
                row[..width].copy_from_slice(&rhs.values[start..][..width]);
            } else {
                for (j, v) in row[..width].iter_mut().enumerate() {
                    *v = rhs.values[start + j * rhs.cs];
                }
            }
            row[width..].fill(0.0);
        }
    }

    pub(super) fn block_avx2(step: &Block<'_, 16>, dst: &mut [f32], lhs: &[f32], buf: &mut Vec<[f32; 6]>) {
        #[target_feature(enable = "avx2,fma")]
        fn compiled(step: &Block<'_, 16>, dst: &mut [f32], lhs: &[f32], buf: &mut Vec<[f32; 6]>) {
            row_block::<6, 16, true>(step, dst, lhs, buf)
        }
        assert!(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
        // SAFETY: the CPU has the features the function is compiled for (asserted).
        unsafe { compiled(step, dst, lhs, buf) }
    }

    pub(super) fn block_baseline(step: &Block<'_, 8>, dst: &mut [f32], lhs: &[f32], buf: &mut Vec<[f32; 4]>) {
        row_block::<4, 8, false>(step, dst, lhs, buf)
    }

    /// One block of rows of `dst` (row-major, `step.n` columns) and of `lhs` (`step.k` columns):
    /// packs the block's slice of `lhs` into `buf`, then adds every tile.
    #[inline(always)]
    fn row_block<const MR: usize, const NR: usize, const F: bool>(
        step: &Block<'_, NR>,
        dst: &mut [f32],
        lhs: &[f32],
        buf: &mut Vec<[f32; MR]>,
    ) {
        let (n, kc) = (step.n, step.kc);
        let mc = lhs.len() / step.k;
        buf.clear();
        buf.resize(kc * mc.div_ceil(MR), [0.0; MR]);
        for (i, panel) in buf.chunks_exact_mut(kc).enumerate() {
            let rows = MR.min(mc - i * MR);
            for (r, row) in lhs[i * MR * step.k..].chunks(step.k).take(rows).enumerate() {
                for (p, &v) in row[step.pc..][..kc].iter().enumerate() {
                    panel[p][r] = v;
                }
            }
        }
        for (j, rhs) in step.panels.chunks_exact(kc).enumerate() {
            let cols = NR.min(n - j * NR);
            for (i, lhs) in buf.chunks_exact(kc).enumerate() {
                let rows = MR.min(mc - i * MR);
                tile::<MR, NR, F>(lhs, rhs, &mut dst[i * MR * n + j * NR..], n, [rows, cols], step.add);
            }
        }
    }
}

/// A register tile compiled on its own for one level ([`tile_at`]): `tile` inlined into a larger
/// function (the fused attention) may lose its vectorisation there.
pub(super) type TileFn<const MR: usize, const NR: usize> =
    fn(&[[f32; MR]], &[[f32; NR]], &mut [f32], usize, [usize; 2], bool);

/// Defines `$name`, [`tile`] of `$mr × $nr` with fused multiply-adds compiled with `$features`
/// (checked at each call).
#[cfg(target_arch = "x86_64")]
macro_rules! tile_for {
    ($name:ident, $mr:literal, $nr:literal, $($features:tt),*) => {
        pub(super) fn $name(lhs: &[[f32; $mr]], rhs: &[[f32; $nr]], dst: &mut [f32], ld: usize, shape: [usize; 2], add: bool) {
            #[target_feature($(enable = $features),*)]
            fn compiled(lhs: &[[f32; $mr]], rhs: &[[f32; $nr]], dst: &mut [f32], ld: usize, shape: [usize; 2], add: bool) {
                tile::<$mr, $nr, true>(lhs, rhs, dst, ld, shape, add)
            }
            assert!(true $(&& std::arch::is_x86_feature_detected!($features))*, "CPU features");
            // SAFETY: the CPU has the features the function is compiled for (asserted).
            unsafe { compiled(lhs, rhs, dst, ld, shape, add) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
tile_for!(tile_avx512, 8, 32, "avx512f", "fma");
#[cfg(target_arch = "x86_64")]
tile_for!(tile_avx2, 6, 16, "avx2", "fma");

/// Rows of the baseline tile: SSE2's 16 registers hold 4 × 8 (without FMA) on x86-64, NEON's
/// 32 hold 8 × 8 (with FMA) on aarch64.
pub(super) const BASELINE_MR: usize = if cfg!(target_arch = "x86_64") { 4 } else { 8 };

/// The baseline tile, [`BASELINE_MR`] × 8.
pub(super) fn tile_baseline(
    lhs: &[[f32; BASELINE_MR]],
    rhs: &[[f32; 8]],
    dst: &mut [f32],
    ld: usize,
    shape: [usize; 2],
    add: bool,
) {
    tile::<BASELINE_MR, 8, { cfg!(target_arch = "aarch64") }>(lhs, rhs, dst, ld, shape, add)
}

/// `dst (+)= lhs · rhs` for one `MR × NR` tile (`rows × cols` of it inside `dst`, rows `ld`
/// apart), from an `MR`-row panel of `lhs` and an `NR`-column panel of `rhs`, accumulated in
/// registers.
#[inline(always)]
fn tile<const MR: usize, const NR: usize, const F: bool>(
    lhs: &[[f32; MR]],
    rhs: &[[f32; NR]],
    dst: &mut [f32],
    ld: usize,
    [rows, cols]: [usize; 2],
    add: bool,
) {
    let mut acc = [[0f32; NR]; MR];
    for (a, b) in lhs.iter().zip(rhs) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = super::fma::<F>(a[i], b[j], acc[i][j]);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate().take(rows) {
        let out = &mut dst[i * ld..][..cols];
        if add {
            for (o, a) in out.iter_mut().zip(acc) {
                *o += a;
            }
        } else {
            out.copy_from_slice(&acc[..cols]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Every level this CPU runs, against a product in f64: ragged sizes (edge tiles, two depth
    /// steps), strided right-hand sides, accumulation, with and without threads.
    #[test]
    fn matches_f64_at_every_level() {
        let detected = super::super::isa::cpu_kernels().detected;
        let levels = [CpuLevel::Baseline, CpuLevel::Avx2, CpuLevel::Avx512];
        let value = |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 4001) as f32 / 1000.25 - 2.0;
        for &[m, n, k] in &[[1, 1, 1], [7, 19, 5], [50, 33, 600], [97, 130, 70]] {
            let lhs: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
            let rhs: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
            let start: Vec<f32> = (0..m * n).map(|i| value(i, 3)).collect();
            // rhs as given (row-major) and transposed (read with strides [1, k]).
            let transposed: Vec<f32> = (0..n * k).map(|i| rhs[(i % k) * n + i / k]).collect();
            for level in levels.into_iter().filter(|&l| l <= detected) {
                for (values, strides) in [(&rhs, [n, 1]), (&transposed, [1, k])] {
                    for (accumulate, threads) in [(false, false), (true, true), (false, true)] {
                        let mut dst = start.clone();
                        matmul(&mut dst, &lhs, values, [m, n, k], strides, accumulate, threads, level);
                        for (idx, &got) in dst.iter().enumerate() {
                            let (i, j) = (idx / n, idx % n);
                            let dot: f64 = (0..k).map(|p| lhs[i * k + p] as f64 * rhs[p * n + j] as f64).sum();
                            let want = dot + if accumulate { start[idx] as f64 } else { 0.0 };
                            // k products of at most 4 in f32: off by at most k·4·2⁻²³ (a wrong
                            // tile or stride is off by O(1)).
                            let tol = k as f64 * 4.0 * 2f64.powi(-23) + 1e-6;
                            assert!((got as f64 - want).abs() <= tol, "{level} {m}×{n}×{k}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
