//! The f32 matrix product of the CPU kernels, dispatched by [`CpuLevel`]: the `gemm` crate's
//! own kernels at AVX-512 and on aarch64 (NEON), and below AVX-512 on x86 this crate's blocked
//! GEMM, compiled for AVX2+FMA or for SSE2 — so that `LDMAE_CPU` selects the GEMM too (the
//! `gemm` crate always takes the widest the CPU has).
//!
//! The blocked GEMM is the classic one (Goto; BLIS): steps of `KC` rows of the right-hand side
//! (or all of them, up to 768) are packed into panels of `NR` columns — once, at load, for a
//! layer's weight ([`PackedRhs`]) —, blocks of `MC` rows of the left-hand side into panels of
//! `MR` rows, and a register-tiled kernel adds one `MR × NR` tile of the product per pair of
//! panels. Blocks of rows run on the rayon pool; a wide right-hand side in chunks of columns, all
//! blocks through one chunk before the next.

use super::isa::CpuLevel;
use alloc::vec::Vec;

/// The GEMM that runs at `level`, for [`super::isa::CpuKernels`].
pub(super) fn name(level: CpuLevel) -> &'static str {
    match level {
        _ if cfg!(not(target_arch = "x86_64")) => "gemm crate (NEON)",
        CpuLevel::Avx512 => "gemm crate (AVX-512)",
        CpuLevel::Avx2 => "ldmae 6×16 (AVX2+FMA)",
        CpuLevel::Baseline => "ldmae 4×8 (SSE2)",
    }
}

/// The right-hand side of [`matmul`].
#[derive(Clone, Copy)]
pub(super) enum Rhs<'a> {
    /// Row-major `k × n` values.
    RowMajor(&'a [f32], [usize; 2]),
    /// Packed once ([`PackedRhs::new`]).
    Packed(&'a PackedRhs),
}

impl Rhs<'_> {
    /// `[k, n]`.
    pub(super) fn dims(self) -> [usize; 2] {
        match self {
            Rhs::RowMajor(_, dims) => dims,
            Rhs::Packed(packed) => packed.dims(),
        }
    }
}

/// A `k × n` right-hand side packed into the blocked GEMM's panels for one level (x86-64 below
/// AVX-512), once: a linear layer's weight, so that its products skip the packing (the DiT-B
/// moved 28 MB of weights per block and step for it).
pub(crate) struct PackedRhs {
    k: usize,
    n: usize,
    panels: Panels,
}

/// Every depth step's `NR`-column panels, one step after the other.
enum Panels {
    #[cfg(target_arch = "x86_64")]
    Avx2(Vec<[f32; 16]>),
    #[cfg(target_arch = "x86_64")]
    Baseline(Vec<[f32; 8]>),
}

impl PackedRhs {
    /// Row-major `values` (`k × n`) packed for `level`, on the rayon pool; `None` where the
    /// `gemm` crate runs (AVX-512, aarch64), which packs by itself.
    pub(super) fn new(values: &[f32], [k, n]: [usize; 2], level: CpuLevel) -> Option<Self> {
        assert!(values.len() >= k * n, "matmul extents");
        if k == 0 || n == 0 {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        let panels = match level {
            CpuLevel::Avx2 => Some(Panels::Avx2(blocked::pack(values, [k, n]))),
            CpuLevel::Baseline => Some(Panels::Baseline(blocked::pack(values, [k, n]))),
            CpuLevel::Avx512 => None,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let panels: Option<Panels> = {
            let _ = level;
            None
        };
        Some(Self { k, n, panels: panels? })
    }

    /// `[k, n]`.
    pub(super) fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// The values back, row-major.
    pub(super) fn to_row_major(&self) -> Vec<f32> {
        match self.panels {
            #[cfg(target_arch = "x86_64")]
            Panels::Avx2(ref panels) => blocked::unpack(panels, [self.k, self.n]),
            #[cfg(target_arch = "x86_64")]
            Panels::Baseline(ref panels) => blocked::unpack(panels, [self.k, self.n]),
        }
    }
}

/// What [`matmul`] adds the product to.
#[derive(Clone, Copy)]
pub(super) enum Onto<'a> {
    /// Nothing: `dst = lhs · rhs`.
    Zero,
    /// A row of `n` values (a linear layer's bias) under every row: `dst = lhs · rhs + bias`,
    /// added in the register tiles where the GEMM is this crate's (no pass fills `dst` first).
    Bias(&'a [f32]),
}

/// `lhs · rhs` added to what `onto` says, for row-major `dst` (m × n) and `lhs` (m × k); on the
/// rayon pool when `threads`. Where the GEMM is this crate's, a row-major `rhs` is packed chunk by
/// chunk as the product goes (into one buffer: a whole packed copy cost 4–5 ms of a 2048² product's
/// ~100 on Zen 3, in a fresh 16 MB allocation and a pass through memory).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn matmul(
    dst: &mut [f32],
    lhs: &[f32],
    rhs: Rhs<'_>,
    m: usize,
    onto: Onto<'_>,
    threads: bool,
    level: CpuLevel,
) {
    let [k, n] = rhs.dims();
    assert!(dst.len() >= m * n && lhs.len() >= m * k, "matmul extents");
    if let Onto::Bias(bias) = onto {
        assert!(bias.len() == n, "bias length");
    }
    if m == 0 || n == 0 {
        return;
    }
    let values = match rhs {
        _ if k == 0 => return fill_start(&mut dst[..m * n], n, onto),
        Rhs::Packed(packed) => return packed.matmul(dst, lhs, m, onto, threads),
        Rhs::RowMajor(values, _) => values,
    };
    assert!(values.len() >= k * n, "matmul extents");
    #[cfg(target_arch = "x86_64")]
    {
        use blocked::{Source::RowMajor, block_avx2, block_baseline, blocked};
        let mnk = [m, n, k];
        match level {
            CpuLevel::Avx2 => return blocked::<6, 16>(dst, lhs, RowMajor(values), mnk, onto, threads, block_avx2),
            CpuLevel::Baseline => {
                return blocked::<4, 8>(dst, lhs, RowMajor(values), mnk, onto, threads, block_baseline);
            }
            CpuLevel::Avx512 => {}
        }
    }
    // The `gemm` crate adds to `dst` at most: a bias goes in first.
    let accumulate = matches!(onto, Onto::Bias(_));
    if accumulate {
        fill_start(&mut dst[..m * n], n, onto);
    }
    let parallelism = if threads { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the assertions keep every access of the three row-major matrices inside its slice.
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
            values.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dst` (rows of `n`) as the product's start: zeros, or the bias in every row.
fn fill_start(dst: &mut [f32], n: usize, onto: Onto<'_>) {
    match onto {
        Onto::Zero => dst.fill(0.0),
        Onto::Bias(bias) => dst.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias)),
    }
}

impl PackedRhs {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn matmul(&self, dst: &mut [f32], lhs: &[f32], m: usize, onto: Onto<'_>, threads: bool) {
        let mnk = [m, self.n, self.k];
        match self.panels {
            #[cfg(target_arch = "x86_64")]
            Panels::Avx2(ref panels) => {
                let source = blocked::Source::Packed(panels);
                blocked::blocked::<6, 16>(dst, lhs, source, mnk, onto, threads, blocked::block_avx2)
            }
            #[cfg(target_arch = "x86_64")]
            Panels::Baseline(ref panels) => {
                let source = blocked::Source::Packed(panels);
                blocked::blocked::<4, 8>(dst, lhs, source, mnk, onto, threads, blocked::block_baseline)
            }
        }
    }
}

/// The blocked GEMM (x86-64 below AVX-512).
#[cfg(target_arch = "x86_64")]
mod blocked {
    use super::{Onto, Out, tile};
    use alloc::vec;
    use alloc::vec::Vec;
    use core::ops::Range;
    use rayon::prelude::*;

    /// Depth of a step of a deep product (more than [`ONE_STEP`] rows of `rhs`): an `NR`-column
    /// panel of it (32 KiB at `NR` = 16) is what the kernel reads from L1 again for every `MR`
    /// rows.
    const KC: usize = 512;
    /// Depth up to which a product runs in one step: one pass over `dst` instead of two (512 +
    /// 256 for the DiT's 768-deep products) outweighs a panel (48 KiB) that spills from L1 into
    /// L2. On Zen 3, 2 threads, a scratch copy of the kernel, best of 25 runs: 1024 × 2304 × 768
    /// 131 → 141 GFLOP/s, 1024 × 768 × 768 129 → 145; deeper products were fastest in 512-deep
    /// steps (2048-deep: 147 against 130–143 in steps of 683 or 768).
    const ONE_STEP: usize = 768;
    /// Rows of a packed left-hand block (96 KiB at `KC`, in L2); one block is one task for a thread.
    const MC: usize = 48;
    /// Columns of `rhs` that every row block goes through before the next ones, where `rhs` is
    /// wider: a chunk of a 768-deep step (1.2 MB) stays in L3 while all row blocks use it, where a
    /// whole wide weight (7–13 MB for the DiT's) came from memory again for every row block.
    const NC: usize = 384;

    /// The depth of each step (the last may be shorter) of a `k`-deep product.
    fn depth(k: usize) -> usize {
        if k <= ONE_STEP { k.max(1) } else { KC }
    }

    /// One `MC`-row block of the product for one depth step of `rhs` and a range of its panels
    /// (see [`Block`]): the block's `lhs` packed into the buffer first when given, else the
    /// buffer as packed before.
    pub(super) type BlockFn<const MR: usize, const NR: usize> =
        fn(&Block<'_, NR>, &mut [f32], Option<&[f32]>, &mut Vec<[f32; MR]>, Range<usize>);

    /// What every row block of one depth step's chunk of columns shares: the packed `rhs` panels
    /// and the sizes.
    pub(super) struct Block<'a, const NR: usize> {
        /// Panels of `rhs` from panel `first` on.
        panels: &'a [[f32; NR]],
        first: usize,
        /// Columns (`n`), the step's depth and offset into `lhs`'s rows, and `lhs`'s row length.
        n: usize,
        kc: usize,
        pc: usize,
        k: usize,
        /// Whether the tiles are added to `dst` (a later step).
        add: bool,
        /// Added to the rows in the first step ([`Onto::Bias`]).
        bias: Option<&'a [f32]>,
    }

    /// Row-major `values` (`k × n`) as [`depth`]-deep steps of `NR`-column panels, zero beyond
    /// column `n`, in the order [`blocked`] reads them.
    pub(super) fn pack<const NR: usize>(values: &[f32], [k, n]: [usize; 2]) -> Vec<[f32; NR]> {
        let width = n.div_ceil(NR);
        let mut panels = vec![[0f32; NR]; k * width];
        let kc = depth(k);
        for (pc, step) in (0..k).step_by(kc).zip(panels.chunks_mut(kc * width)) {
            let kc = step.len() / width;
            step.par_chunks_mut(kc).enumerate().for_each(|(j, panel)| fill_panel(panel, values, n, pc, j));
        }
        panels
    }

    /// Panel `j` of the depth step from row `pc` of row-major `values` (`n` columns), zero beyond
    /// column `n`.
    fn fill_panel<const NR: usize>(panel: &mut [[f32; NR]], values: &[f32], n: usize, pc: usize, j: usize) {
        let (j0, cols) = (j * NR, NR.min(n - j * NR));
        for (p, row) in panel.iter_mut().enumerate() {
            row[..cols].copy_from_slice(&values[(pc + p) * n + j0..][..cols]);
            row[cols..].fill(0.0);
        }
    }

    /// The right-hand side as [`blocked`] reads it.
    #[derive(Clone, Copy)]
    pub(super) enum Source<'a, const NR: usize> {
        /// Packed before ([`pack`]).
        Packed(&'a [[f32; NR]]),
        /// Row-major `k × n` values, packed as they are needed: one depth step's chunk of columns
        /// at a time, into one buffer.
        RowMajor(&'a [f32]),
    }

    /// The row-major values of [`pack`]'s panels.
    pub(super) fn unpack<const NR: usize>(panels: &[[f32; NR]], [k, n]: [usize; 2]) -> Vec<f32> {
        let width = n.div_ceil(NR);
        let mut values = vec![0f32; k * n];
        let kc = depth(k);
        for (pc, step) in (0..k).step_by(kc).zip(panels.chunks(kc * width)) {
            let kc = step.len() / width;
            for (j, panel) in step.chunks(kc).enumerate() {
                let (j0, cols) = (j * NR, NR.min(n - j * NR));
                for (p, row) in panel.iter().enumerate() {
                    values[(pc + p) * n + j0..][..cols].copy_from_slice(&row[..cols]);
                }
            }
        }
        values
    }

    pub(super) fn blocked<const MR: usize, const NR: usize>(
        dst: &mut [f32],
        lhs: &[f32],
        source: Source<'_, NR>,
        [m, n, k]: [usize; 3],
        onto: Onto<'_>,
        threads: bool,
        block: BlockFn<MR, NR>,
    ) {
        // The row blocks of `dst` and `lhs`, the same for every depth step.
        let (mut dst, mut lhs) = (&mut dst[..m * n], &lhs[..m * k]);
        let mut blocks = Vec::new();
        for rows in block_rows::<MR>(m, if threads { rayon::current_num_threads() } else { 1 }) {
            let (block_dst, rest) = core::mem::take(&mut dst).split_at_mut(rows * n);
            let (block_lhs, rest_lhs) = lhs.split_at(rows * k);
            blocks.push((block_dst, block_lhs));
            (dst, lhs) = (rest, rest_lhs);
        }
        let (width, depth) = (n.div_ceil(NR), depth(k));
        let chunk = NC / NR;
        let (mut bufs, mut packed) = (Vec::new(), Vec::new());
        for pc in (0..k).step_by(depth) {
            let kc = depth.min(k - pc);
            let (add, bias) = match onto {
                _ if pc > 0 => (true, None),
                Onto::Zero => (false, None),
                Onto::Bias(bias) => (false, Some(bias)),
            };
            for start in (0..width).step_by(chunk) {
                let cols = start..width.min(start + chunk);
                let (panels, first) = match source {
                    Source::Packed(panels) => (&panels[pc * width..][..kc * width], 0),
                    Source::RowMajor(values) => {
                        let len = kc * cols.len();
                        if packed.len() < len {
                            packed.resize(len, [0.0; NR]);
                        }
                        let fill = |(i, panel)| fill_panel(panel, values, n, pc, start + i);
                        if threads {
                            packed[..len].par_chunks_mut(kc).enumerate().for_each(fill);
                        } else {
                            packed[..len].chunks_mut(kc).enumerate().for_each(fill);
                        }
                        (&packed[..len], start)
                    }
                };
                let step = Block { panels, first, n, kc, pc, k, add, bias };
                if width <= chunk {
                    // One chunk: each thread packs its blocks in turn into one buffer (in its L2).
                    if threads {
                        let blocks = blocks.par_iter_mut().with_max_len(1);
                        blocks
                            .for_each_init(Vec::new, |buf, (dst, lhs)| block(&step, dst, Some(lhs), buf, cols.clone()));
                    } else {
                        let mut buf = Vec::new();
                        for (dst, lhs) in &mut blocks {
                            block(&step, dst, Some(lhs), &mut buf, cols.clone());
                        }
                    }
                    continue;
                }
                // Chunk after chunk of `rhs`, all row blocks at once; each block packs its `lhs`
                // with the first chunk and keeps it for the others.
                bufs.resize_with(blocks.len(), Vec::new);
                let each = |dst: &mut [f32], lhs: &[f32], buf: &mut Vec<[f32; MR]>| {
                    block(&step, dst, (start == 0).then_some(lhs), buf, cols.clone())
                };
                if threads {
                    let blocks = blocks.par_iter_mut().zip(&mut bufs).with_max_len(1);
                    blocks.for_each(|((dst, lhs), buf)| each(dst, lhs, buf));
                } else {
                    blocks.iter_mut().zip(&mut bufs).for_each(|((dst, lhs), buf)| each(dst, lhs, buf));
                }
            }
        }
    }

    /// The rows of each block of an `m`-row product: whole `MR`-row panels (but the last), at
    /// most `MC` rows, and as many blocks as a multiple of `threads`, as even as whole panels
    /// allow, so that the threads' shares end together (blocks of `MC` had split 1024 rows 528 /
    /// 496 over 2 threads). Each block is its own rayon job: a thread that runs out takes one
    /// block from another, not a run of them.
    pub(super) fn block_rows<const MR: usize>(m: usize, threads: usize) -> impl Iterator<Item = usize> {
        let panels = m.div_ceil(MR);
        let blocks = panels.div_ceil(MC / MR).next_multiple_of(threads.max(1)).min(panels);
        let start = move |b: usize| (b * panels / blocks * MR).min(m);
        (0..blocks).map(move |b| start(b + 1) - start(b))
    }

    pub(super) fn block_avx2(
        step: &Block<'_, 16>,
        dst: &mut [f32],
        lhs: Option<&[f32]>,
        buf: &mut Vec<[f32; 6]>,
        panels: Range<usize>,
    ) {
        #[target_feature(enable = "avx2,fma")]
        fn compiled(
            step: &Block<'_, 16>,
            dst: &mut [f32],
            lhs: Option<&[f32]>,
            buf: &mut Vec<[f32; 6]>,
            panels: Range<usize>,
        ) {
            row_block::<6, 16, true>(step, dst, lhs, buf, panels)
        }
        assert!(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
        // SAFETY: the CPU has the features the function is compiled for (asserted).
        unsafe { compiled(step, dst, lhs, buf, panels) }
    }

    pub(super) fn block_baseline(
        step: &Block<'_, 8>,
        dst: &mut [f32],
        lhs: Option<&[f32]>,
        buf: &mut Vec<[f32; 4]>,
        panels: Range<usize>,
    ) {
        row_block::<4, 8, false>(step, dst, lhs, buf, panels)
    }

    /// One block of rows of `dst` (row-major, `step.n` columns) for some of `rhs`'s panels: packs
    /// the block's slice of `lhs` (`step.k` columns) into `buf` when given, then adds the tiles.
    #[inline(always)]
    fn row_block<const MR: usize, const NR: usize, const F: bool>(
        step: &Block<'_, NR>,
        dst: &mut [f32],
        lhs: Option<&[f32]>,
        buf: &mut Vec<[f32; MR]>,
        panels: Range<usize>,
    ) {
        let (n, kc) = (step.n, step.kc);
        let mc = dst.len() / n;
        if let Some(lhs) = lhs {
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
        }
        for j in panels {
            let rhs = &step.panels[(j - step.first) * kc..][..kc];
            let cols = NR.min(n - j * NR);
            let bias = step.bias.map(|bias| &bias[j * NR..][..cols]);
            for (i, lhs) in buf.chunks_exact(kc).enumerate() {
                let rows = MR.min(mc - i * MR);
                let out = Out::new(&mut dst[i * MR * n + j * NR..], n, rows, cols);
                tile::<MR, NR, F>(lhs, rhs, Out { add: step.add, bias, ..out });
            }
        }
    }
}

/// A strip of register tiles ([`strip`]) compiled on its own for one level: `tile` inlined into a
/// larger function (the fused attention) may lose its vectorisation there.
pub(super) type StripFn<const MR: usize, const NR: usize> =
    fn(&[[f32; MR]], &[[f32; NR]], &mut [[f32; NR]], Option<&mut [f32; NR]>);

/// Where [`tile`] puts its `MR × NR` sums: `rows × cols` of them into `dst`, rows `ld` apart.
pub(super) struct Out<'a, const NR: usize> {
    pub dst: &'a mut [f32],
    pub ld: usize,
    pub rows: usize,
    pub cols: usize,
    /// Whether the sums are added to what `dst` holds (else written over it).
    pub add: bool,
    /// Added to every row of the sums (the tile's `cols` values of a linear layer's bias).
    pub bias: Option<&'a [f32]>,
    /// Raised to each column's maximum over the rows of the sums (the softmax's scores).
    pub max: Option<&'a mut [f32; NR]>,
}

impl<'a, const NR: usize> Out<'a, NR> {
    /// The sums written over `rows × cols` of `dst`, rows `ld` apart.
    pub fn new(dst: &'a mut [f32], ld: usize, rows: usize, cols: usize) -> Self {
        Self { dst, ld, rows, cols, add: false, bias: None, max: None }
    }
}

/// Defines `$name`, [`strip`] of `$mr × $nr` tiles with fused multiply-adds compiled with
/// `$features` (checked at each call).
#[cfg(target_arch = "x86_64")]
macro_rules! strip_for {
    ($name:ident, $mr:literal, $nr:literal, $($features:tt),*) => {
        pub(super) fn $name(lhs: &[[f32; $mr]], rhs: &[[f32; $nr]], dst: &mut [[f32; $nr]], max: Option<&mut [f32; $nr]>) {
            #[target_feature($(enable = $features),*)]
            fn compiled(lhs: &[[f32; $mr]], rhs: &[[f32; $nr]], dst: &mut [[f32; $nr]], max: Option<&mut [f32; $nr]>) {
                strip::<$mr, $nr, true>(lhs, rhs, dst, max)
            }
            assert!(true $(&& std::arch::is_x86_feature_detected!($features))*, "CPU features");
            // SAFETY: the CPU has the features the function is compiled for (asserted).
            unsafe { compiled(lhs, rhs, dst, max) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
strip_for!(strip_avx512, 8, 32, "avx512f", "fma");
#[cfg(target_arch = "x86_64")]
strip_for!(strip_avx2, 6, 16, "avx2", "fma");

/// Rows of the baseline tile: SSE2's 16 registers hold 4 × 8 (without FMA) on x86-64, NEON's
/// 32 hold 8 × 8 (with FMA) on aarch64.
pub(super) const BASELINE_MR: usize = if cfg!(target_arch = "x86_64") { 4 } else { 8 };

/// The baseline strip, of [`BASELINE_MR`] × 8 tiles.
pub(super) fn strip_baseline(
    lhs: &[[f32; BASELINE_MR]],
    rhs: &[[f32; 8]],
    dst: &mut [[f32; 8]],
    max: Option<&mut [f32; 8]>,
) {
    strip::<BASELINE_MR, 8, { cfg!(target_arch = "aarch64") }>(lhs, rhs, dst, max)
}

/// `dst = lhs · rhs` down a strip of tiles: `lhs` holds `MR`-row panels as deep as `rhs` (a
/// panel of `NR` columns), one after the other; panel `i` makes rows `i·MR..` of `dst` (rows of
/// `NR`, as many as `dst` has). `max`, when given, is raised to each column's maximum over them.
#[inline(always)]
fn strip<const MR: usize, const NR: usize, const F: bool>(
    lhs: &[[f32; MR]],
    rhs: &[[f32; NR]],
    dst: &mut [[f32; NR]],
    mut max: Option<&mut [f32; NR]>,
) {
    let rows = dst.len();
    for (i, panel) in lhs.chunks_exact(rhs.len().max(1)).take(rows.div_ceil(MR)).enumerate() {
        let out = Out::new(dst[i * MR..].as_flattened_mut(), NR, MR.min(rows - i * MR), NR);
        tile::<MR, NR, F>(panel, rhs, Out { max: max.as_deref_mut(), ..out });
    }
}

/// `lhs · rhs` for one `MR × NR` tile, from an `MR`-row panel of `lhs` and an `NR`-column panel
/// of `rhs`, summed in registers and put where `out` says.
#[inline(always)]
fn tile<const MR: usize, const NR: usize, const F: bool>(lhs: &[[f32; MR]], rhs: &[[f32; NR]], out: Out<'_, NR>) {
    let Out { dst, ld, rows, cols, add, bias, max } = out;
    // The tile's rows of `dst` (often in L3 or memory: rows of a large output) start coming in
    // now, while the products are summed, instead of stalling the stores at the end (+20 % GEMM
    // throughput measured on Zen 3).
    for i in 0..rows {
        let row = dst.as_ptr().wrapping_add(i * ld);
        super::prefetch_line(row);
        super::prefetch_line(row.wrapping_add(cols.saturating_sub(1)));
    }
    let mut acc = [[0f32; NR]; MR];
    for (a, b) in lhs.iter().zip(rhs) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = super::fma::<F>(a[i], b[j], acc[i][j]);
            }
        }
    }
    if let Some(max) = max {
        // Fixed trip counts (a row past `rows` skipped whole), so that it stays in registers.
        let mut m = *max;
        for (i, acc) in acc.iter().enumerate() {
            if i < rows {
                for j in 0..NR {
                    m[j] = if acc[j] > m[j] { acc[j] } else { m[j] };
                }
            }
        }
        *max = m;
    }
    for (i, acc) in acc.iter().enumerate().take(rows) {
        let out = &mut dst[i * ld..][..cols];
        // A full row on a fixed number of lanes: vector stores rather than a call to `memcpy`
        // (which cost the attention's short score tiles a tenth of their time).
        match <&mut [f32; NR]>::try_from(&mut *out) {
            Ok(full) if add => (0..NR).for_each(|j| full[j] += acc[j]),
            Ok(full) => *full = *acc,
            Err(_) => out.iter_mut().zip(acc).for_each(|(o, a)| *o = if add { *o + a } else { *a }),
        }
        // The bias on the row just written (in L1): adding it to `acc` made the compiler keep
        // `acc` in memory rather than in registers.
        if let Some(bias) = bias {
            for (o, b) in out.iter_mut().zip(bias) {
                *o += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Row blocks cover the rows in whole panels of at most `MC` rows, as many as a multiple of
    /// the threads, and halve into halves a panel apart at most.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn row_blocks_share_rows_evenly() {
        for (m, threads) in [(1, 2), (5, 2), (7, 2), (97, 2), (1024, 2), (1025, 4), (4096, 3), (1024, 1)] {
            let rows: Vec<usize> = blocked::block_rows::<6>(m, threads).collect();
            assert_eq!(rows.iter().sum::<usize>(), m, "{m} rows");
            assert!(rows.iter().all(|&r| r > 0 && r <= 48), "{m}: {rows:?}");
            assert!(rows[..rows.len() - 1].iter().all(|r| r % 6 == 0), "{m}: {rows:?}");
            assert!(rows.len().is_multiple_of(threads) || rows.len() == m.div_ceil(6), "{m}: {rows:?}");
            let half: usize = rows[..rows.len() / 2].iter().sum();
            if rows.len().is_multiple_of(2) {
                // Blocks of 48 had split 1024 rows 528 / 496.
                assert!((2 * half).abs_diff(m) <= 12, "{m}: {half} of them in the first half");
            }
        }
    }

    /// Every level this CPU runs, against a product in f64: ragged sizes (edge tiles, three depth
    /// steps, fewer rows than a tile, no depth, column chunks with a ragged last one, chunks over
    /// three depth steps), row-major and packed right-hand sides, onto zeros
    /// and onto a bias (over a `dst` that holds other values), with and without threads.
    #[test]
    fn matches_f64_at_every_level() {
        let detected = super::super::isa::cpu_kernels().detected;
        let levels = [CpuLevel::Baseline, CpuLevel::Avx2, CpuLevel::Avx512];
        let value = |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 4001) as f32 / 1000.25 - 2.0;
        for &[m, n, k] in
            &[[1, 1, 1], [2, 300, 40], [7, 19, 5], [50, 33, 1700], [97, 130, 70], [3, 5, 0], [13, 790, 1100]]
        {
            let lhs: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
            let rhs: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
            let start: Vec<f32> = (0..m * n).map(|i| value(i, 3)).collect();
            let bias: Vec<f32> = (0..n).map(|j| value(j, 4)).collect();
            for level in levels.into_iter().filter(|&l| l <= detected) {
                let packed = PackedRhs::new(&rhs, [k, n], level);
                if let Some(packed) = &packed {
                    assert_eq!(packed.to_row_major(), rhs, "{level}: packing loses values");
                }
                let forms = [Some(Rhs::RowMajor(&rhs, [k, n])), packed.as_ref().map(Rhs::Packed)];
                for rhs_form in forms.into_iter().flatten() {
                    let ontos = [
                        (Onto::Zero, false),
                        (Onto::Bias(&bias), false),
                        (Onto::Bias(&bias), true),
                        (Onto::Zero, true),
                    ];
                    for (onto, threads) in ontos {
                        let mut dst = start.clone();
                        matmul(&mut dst, &lhs, rhs_form, m, onto, threads, level);
                        for (idx, &got) in dst.iter().enumerate() {
                            let (i, j) = (idx / n, idx % n);
                            let dot: f64 = (0..k).map(|p| lhs[i * k + p] as f64 * rhs[p * n + j] as f64).sum();
                            let want = dot
                                + match onto {
                                    Onto::Zero => 0.0,
                                    Onto::Bias(bias) => bias[j] as f64,
                                };
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
