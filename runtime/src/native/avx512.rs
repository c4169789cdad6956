//! lamina's AVX-512 f32 GEMM: packing and the register-blocked micro-kernel behind every f32
//! product of the native engine on CPUs that have AVX-512 (see `gemm.rs` for the dispatch).
//!
//! Why by hand: the `gemm` crate enables its AVX-512 kernels only on a nightly compiler, so on
//! stable Rust it tops out at AVX2, half of what AVX-512 CPUs (most x86 servers) can do; no
//! other maintained crate offers stable AVX-512 f32 GEMM. The design is BLIS's (and llamafile's
//! sgemm's): both operands are packed so that the micro-kernel reads them sequentially.
//!
//! - The left operand is packed into blocks of [`MR`] rows laid out `[depth][MR]`: the kernel
//!   broadcasts one element per row and step.
//! - The right operand is packed into panels of [`NR`] columns laid out `[depth][NR]`: two zmm
//!   loads per step. Weight tiles are dequantized straight into this layout by `matmul.rs`.
//! - An `MR × NR` = 12 × 32 block of the output lives in 24 zmm accumulators while the
//!   inner loop issues 24 fused multiply-adds per 2 vector loads and 12 broadcasts: enough
//!   independent FMAs to cover their latency on two ports, and few enough loads that the FMA
//!   ports, not the load ports, are the limit.
//! - The depth is cut into blocks of at most [`KC`], evenly: each block re-reads and rewrites
//!   the output, so the blocks are as deep as the L2 cache allows (a panel block of 640 × 32
//!   floats is 80 KiB), which keeps the model's 576-deep products in one block.
//!
//! Everything here is single-threaded; callers split the output between rayon tasks.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output columns per panel (two zmm registers).
pub const NR: usize = 32;
/// Output rows per register block.
pub const MR: usize = 12;
/// Depth of a k block.
const KC: usize = 640;

/// Whether this CPU can run the kernel (checked once). `LAMINA_NO_AVX512` forces the portable
/// path, to test it on an AVX-512 machine.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f") && std::env::var_os("LAMINA_NO_AVX512").is_none())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The left operand of [`gemm_packed`]: packed by [`pack_a`], or a row-major matrix read in
/// place (the activations of the weight products, which packing would only copy).
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    Packed(&'a [f32]),
    /// Element (i, kk) at `ptr[i·ld + kk]`.
    Rows {
        ptr: *const f32,
        ld: usize,
    },
}

/// Which part of a square, causally masked product is needed or non-zero (attention: row i is
/// a query position, and keys j > i are masked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causal {
    /// A plain product.
    None,
    /// Only `C[i][j]` with `j <= i` is needed (scores); the blocks above are not computed and
    /// hold whatever they held.
    Cols,
    /// `A[i][kk]` is zero for `kk > i` (probabilities times values): the depth stops there.
    DepthTo,
    /// `A[i][kk]` is zero for `kk < i` (transposed probabilities): the depth starts there.
    DepthFrom,
}

/// The right operand of [`gemm_packed`]: packed by [`pack_b`], or a row-major matrix read in
/// place (row kk's columns with masked loads: the skinny LoRA products, whose packing would
/// cost more than their arithmetic).
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    Packed(&'a [f32]),
    /// Element (kk, j) at `ptr[kk·ld + j]`.
    Rows {
        ptr: *const f32,
        ld: usize,
    },
}

/// Floats a packed left operand of `rows × depth` takes.
pub fn packed_a_len(rows: usize, depth: usize) -> usize {
    rows.div_ceil(MR) * MR * depth
}

/// Floats a packed right operand of `depth × cols` takes.
pub fn packed_b_len(depth: usize, cols: usize) -> usize {
    cols.div_ceil(NR) * NR * depth
}

/// Pack rows `0..rows` × depth `0..depth` of A, whose element (i, kk) is at `a[i·rs + kk·cs]`,
/// into `out[..packed_a_len(rows, depth)]`: row block `ib` at `ib·MR·depth`, laid out
/// `[depth][MR]`, rows past `rows` zero.
///
/// # Safety
/// Every addressed element of `a` must be readable.
pub unsafe fn pack_a(a: *const f32, rs: usize, cs: usize, rows: usize, depth: usize, out: &mut [f32]) {
    let blocks = rows.div_ceil(MR);
    assert!(out.len() >= blocks * MR * depth, "pack_a: output too small");
    for ib in 0..blocks {
        let block = &mut out[ib * MR * depth..(ib + 1) * MR * depth];
        let live = MR.min(rows - ib * MR);
        // Depth outer, rows inner: the writes are sequential, and for a transposed A (rs = 1)
        // so are the reads.
        for kk in 0..depth {
            let dst = &mut block[kk * MR..(kk + 1) * MR];
            for (r, d) in dst.iter_mut().enumerate() {
                // SAFETY: row ib·MR + r < rows and kk < depth are addressed; the caller vouches.
                *d = if r < live { unsafe { *a.add((ib * MR + r) * rs + kk * cs) } } else { 0.0 };
            }
        }
    }
}

/// Pack depth `0..depth` × columns `0..cols` of B, whose element (kk, j) is at
/// `b[kk·rs + j·cs]`, into `out[..packed_b_len(depth, cols)]`: panel `p` at `p·NR·depth`,
/// laid out `[depth][NR]`, columns past `cols` zero.
///
/// # Safety
/// Every addressed element of `b` must be readable.
pub unsafe fn pack_b(b: *const f32, rs: usize, cs: usize, depth: usize, cols: usize, out: &mut [f32]) {
    let panels = cols.div_ceil(NR);
    assert!(out.len() >= panels * NR * depth, "pack_b: output too small");
    for p in 0..panels {
        let panel = &mut out[p * NR * depth..(p + 1) * NR * depth];
        let width = NR.min(cols - p * NR);
        if cs == 1 {
            // Rows of B are contiguous: copy runs of `width`.
            for kk in 0..depth {
                let dst = &mut panel[kk * NR..(kk + 1) * NR];
                // SAFETY: columns p·NR .. p·NR + width of row kk; the caller vouches.
                let src = unsafe { std::slice::from_raw_parts(b.add(kk * rs + p * NR), width) };
                dst[..width].copy_from_slice(src);
                dst[width..].fill(0.0);
            }
        } else {
            // Columns of B are contiguous (B is a transposed row-major matrix, the forward
            // pass's weight tile). Whole 16 × 16 blocks go through registers; the rest is
            // walked column by column below.
            #[cfg(target_arch = "x86_64")]
            let done = if rs == 1 && available() {
                // SAFETY: the caller's contract covers the columns and depth read; this
                // thread's CPU has AVX-512 (checked).
                unsafe { pack_b_transposed_blocks(b.add(p * NR * cs), cs, depth, width, panel) }
            } else {
                0
            };
            #[cfg(not(target_arch = "x86_64"))]
            let done = 0;
            for j in 0..NR {
                if j >= width {
                    for kk in 0..depth {
                        panel[kk * NR + j] = 0.0;
                    }
                    continue;
                }
                // SAFETY: as above.
                let col = unsafe { b.add((p * NR + j) * cs) };
                for kk in done..depth {
                    panel[kk * NR + j] = unsafe { *col.add(kk * rs) };
                }
            }
        }
    }
}

/// The first depth rows of one panel whose columns are contiguous (column j at `b[j·cs..]`),
/// packed 16 × 16 at a time through registers: each block is 16 vector loads down 16
/// columns, an in-register transpose and 16 vector stores, where the element-wise walk makes
/// one scalar store per element (7% of a LoRA training step on an Intel Xeon). Returns how
/// many depth rows it packed (a multiple of 16; 0 unless the panel is full, `width == NR`).
///
/// # Safety
/// Columns 0..NR of `b` are readable for `depth` elements each; AVX-512 is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_transposed_blocks(b: *const f32, cs: usize, depth: usize, width: usize, panel: &mut [f32]) -> usize {
    if width != NR {
        return 0;
    }
    let blocks = depth / 16;
    for kb in 0..blocks {
        let kk0 = kb * 16;
        for half in 0..2 {
            let mut r = [_mm512_setzero_si512(); 16];
            for (j, v) in r.iter_mut().enumerate() {
                // SAFETY: column half·16 + j, elements kk0..kk0+16 < depth.
                *v = _mm512_castps_si512(unsafe { _mm512_loadu_ps(b.add((half * 16 + j) * cs + kk0)) });
            }
            for (i, v) in transpose_16x16(r).iter().enumerate() {
                let at = (kk0 + i) * NR + half * 16;
                // SAFETY: row kk0 + i < depth of the panel, 16 of its NR columns.
                unsafe { _mm512_storeu_ps(panel.as_mut_ptr().add(at), _mm512_castsi512_ps(*v)) };
            }
        }
    }
    blocks * 16
}

/// The transpose of a 16 × 16 matrix of 32-bit elements (f32 or bf16 pairs) held one row per
/// register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose_16x16(r: [__m512i; 16]) -> [__m512i; 16] {
    // Within each 128-bit lane L: t[2i] = (r[2i][4L], r[2i+1][4L], r[2i][4L+1], r[2i+1][4L+1]),
    // t[2i+1] the same for elements 4L+2, 4L+3.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4q + c], lane L: element 4L + c of rows 4q .. 4q + 4.
    let mut u = [_mm512_setzero_si512(); 16];
    for q in 0..4 {
        u[4 * q] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    // Gather the lanes: 0x88 takes lanes (0, 2) of each source, 0xdd lanes (1, 3).
    let mut out = [_mm512_setzero_si512(); 16];
    for c in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
        let v1 = _mm512_shuffle_i32x4::<0xdd>(u[c], u[4 + c]);
        let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
        let v3 = _mm512_shuffle_i32x4::<0xdd>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[8 + c] = _mm512_shuffle_i32x4::<0xdd>(v0, v2);
        out[4 + c] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + c] = _mm512_shuffle_i32x4::<0xdd>(v1, v3);
    }
    out
}

/// `C[i][j] (+)= alpha · Σ_kk A[i][kk] · B[kk][j]` for i < rows, j < cols, from A (packed by
/// [`pack_a`], or row-major) and B packed by [`pack_b`] (`depth × cols`). C's row stride is `ldc`; it is overwritten unless `accumulate`.
///
/// `causal` skips work that a causal mask makes useless (see [`Causal`]).
///
/// # Safety
/// [`available`] must be true; `a` and `b` hold these sizes (a row-major `a` addresses `rows`
/// readable rows of `depth` elements); C addresses `rows` rows
/// of stride `ldc` with `cols <= ldc`, and no one else writes them during the call.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_packed(
    rows: usize,
    cols: usize,
    depth: usize,
    a: Lhs,
    b: Rhs,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    accumulate: bool,
    causal: Causal,
) {
    let (blocks, panels) = (rows.div_ceil(MR), cols.div_ceil(NR));
    if let Rhs::Packed(b) = b {
        assert!(b.len() >= panels * NR * depth, "gemm_packed: B too small");
    }
    if let Lhs::Packed(a) = a {
        assert!(a.len() >= blocks * MR * depth, "gemm_packed: A too small");
    }
    if depth == 0 {
        if !accumulate {
            for i in 0..rows {
                // SAFETY: row i < rows of C, `cols` elements.
                unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols).fill(0.0) };
            }
        }
        return;
    }
    // Depth blocks of equal size, none over KC.
    let kc_max = depth.div_ceil(depth.div_ceil(KC));
    let mut kc0 = 0;
    while kc0 < depth {
        let kc = kc_max.min(depth - kc0);
        for p in 0..panels {
            let width = NR.min(cols - p * NR);
            for ib in 0..blocks {
                let (i0, live) = (ib * MR, MR.min(rows - ib * MR));
                // The depth range this row block needs, and whether it meets this panel.
                let (first, last) = match causal {
                    Causal::None => (0, depth),
                    Causal::Cols if p * NR > i0 + live - 1 => continue,
                    Causal::Cols => (0, depth),
                    Causal::DepthTo => (0, (i0 + live).min(depth)),
                    Causal::DepthFrom => (i0.min(depth), depth),
                };
                let (lo, hi) = (kc0.max(first), (kc0 + kc).min(last));
                if lo >= hi {
                    continue;
                }
                let add = accumulate || lo > first;
                // SAFETY: panel p at depth lo lies inside B for these sizes.
                let (panel, ldb) = match b {
                    Rhs::Packed(b) => (b[p * NR * depth + lo * NR..].as_ptr(), NR),
                    Rhs::Rows { ptr, ld } => (unsafe { ptr.add(lo * ld + p * NR) }, ld),
                };
                let packed_b = matches!(b, Rhs::Packed(_));
                // SAFETY: block (ib, p) of C lies inside the caller's rows and columns.
                let dst = unsafe { c.add(i0 * ldc + p * NR) };
                // SAFETY: forwarded from this function's contract.
                unsafe {
                    match a {
                        Lhs::Packed(a) => micro_kernel::<true>(
                            live,
                            hi - lo,
                            a[i0 * depth + lo * MR..].as_ptr(),
                            0,
                            panel,
                            ldb,
                            packed_b,
                            dst,
                            ldc,
                            width,
                            alpha,
                            add,
                        ),
                        Lhs::Rows { ptr, ld } => micro_kernel::<false>(
                            live,
                            hi - lo,
                            ptr.add(i0 * ld + lo),
                            ld,
                            panel,
                            ldb,
                            packed_b,
                            dst,
                            ldc,
                            width,
                            alpha,
                            add,
                        ),
                    }
                }
            }
        }
        kc0 += kc;
    }
}

/// Dispatch on the number of live rows so that each variant keeps exactly its accumulators in
/// registers (a partial row block does no wasted multiply-adds).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn micro_kernel<const PACKED: bool>(
    live: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    packed_b: bool,
    c: *mut f32,
    ldc: usize,
    width: usize,
    alpha: f32,
    add: bool,
) {
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match (live, packed_b) {
                // SAFETY (every arm): forwarded from `gemm_packed`.
                $(($n, true) => unsafe { kernel::<$n, PACKED, true>(kc, a, lda, b, ldb, c, ldc, width, alpha, add) },)*
                $(($n, false) => unsafe { kernel::<$n, PACKED, false>(kc, a, lda, b, ldb, c, ldc, width, alpha, add) },)*
                _ => unreachable!("a row block has 1..=MR live rows"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
}

/// One `R × NR` output block over a k block: `c (+)= alpha · a · b`, where `a` is a packed
/// block (`[kc][MR]`) or `R` rows of stride `lda`, and `b` a packed panel (`[kc][NR]`) or `kc`
/// rows of stride `ldb`; writes `R` rows and the first `width`
/// columns (masked stores).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize, const PACKED: bool, const PACKED_B: bool>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    width: usize,
    alpha: f32,
    add: bool,
) {
    let (lo, hi) = panel_masks(width);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..kc {
        // SAFETY (whole loop): b holds kc × NR floats (packed) or kc rows of stride ldb with
        // `width` readable columns (the masks keep the loads inside them); a holds kc × MR
        // (packed) or R rows of kc elements.
        let (b0, b1) = if PACKED_B {
            unsafe { (_mm512_loadu_ps(b.add(kk * NR)), _mm512_loadu_ps(b.add(kk * NR + 16))) }
        } else {
            unsafe { (_mm512_maskz_loadu_ps(lo, b.add(kk * ldb)), _mm512_maskz_loadu_ps(hi, b.add(kk * ldb + 16))) }
        };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let at = if PACKED { kk * MR + r } else { r * lda + kk };
            let av = _mm512_set1_ps(unsafe { *a.add(at) });
            acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
        }
    }
    let scale = _mm512_set1_ps(alpha);
    for (r, acc_r) in acc.iter().enumerate() {
        // SAFETY: row r < R of the caller's output block; the masks limit the columns.
        unsafe { store_row(c.add(r * ldc), _mm512_mul_ps(acc_r[0], scale), _mm512_mul_ps(acc_r[1], scale), lo, hi, add) };
    }
}

/// Lane masks of a panel's two zmm halves when only its first `width` (<= NR) columns exist.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn panel_masks(width: usize) -> (__mmask16, __mmask16) {
    let lo = if width >= 16 { 0xffff } else { ((1u32 << width) - 1) as __mmask16 };
    let hi = if width >= 32 {
        0xffff
    } else if width > 16 {
        ((1u32 << (width - 16)) - 1) as __mmask16
    } else {
        0
    };
    (lo, hi)
}

/// Store (or, with `add`, add) one output row of a panel: `v0` to columns 0..16, `v1` to
/// 16..32, masked by `lo` and `hi`.
///
/// # Safety
/// The columns the masks select must be writable at `row`, and written by no one else.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn store_row(row: *mut f32, mut v0: __m512, mut v1: __m512, lo: __mmask16, hi: __mmask16, add: bool) {
    // SAFETY: forwarded to the caller's contract; masked lanes are neither read nor written.
    unsafe {
        if add {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(lo, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(hi, row.add(16)));
        }
        _mm512_mask_storeu_ps(row, lo, v0);
        _mm512_mask_storeu_ps(row.add(16), hi, v1);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn transpose_16x16_transposes() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let rows: [__m512i; 16] = std::array::from_fn(|j| unsafe { _mm512_castps_si512(_mm512_loadu_ps(m.as_ptr().add(16 * j))) });
        let t = unsafe { transpose_16x16(rows) };
        for (i, v) in t.iter().enumerate() {
            let mut got = [0.0f32; 16];
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), _mm512_castsi512_ps(*v)) };
            let want: Vec<f32> = (0..16).map(|j| m[16 * j + i]).collect();
            assert_eq!(got.to_vec(), want, "row {i} of the transpose");
        }
    }

    /// A transposed source (columns contiguous) packs the same through the register blocks as
    /// element by element, for depths with and without a tail and panels full or not.
    #[test]
    fn transposed_pack_matches_the_element_walk() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        for (depth, cols) in [(16usize, 32usize), (576, 64), (37, 32), (100, 70), (15, 32), (48, 17)] {
            let ld = depth + 5;
            let b: Vec<f32> = (0..cols * ld).map(|i| value(i, 3)).collect();
            let mut fast = vec![f32::NAN; packed_b_len(depth, cols)];
            unsafe { pack_b(b.as_ptr(), 1, ld, depth, cols, &mut fast) };
            for p in 0..cols.div_ceil(NR) {
                for kk in 0..depth {
                    for j in 0..NR {
                        let col = p * NR + j;
                        let want = if col < cols { b[col * ld + kk] } else { 0.0 };
                        assert_eq!(fast[p * NR * depth + kk * NR + j], want, "depth {depth} cols {cols}: panel {p} row {kk} col {j}");
                    }
                }
            }
        }
    }

    fn value(i: usize, salt: usize) -> f32 {
        ((i * 37 + salt * 11) % 101) as f32 / 25.0 - 2.0
    }

    /// Every packing orientation and ragged size against an f64 reference, with untouched
    /// elements outside the output block.
    #[test]
    fn matches_a_plain_product_on_ragged_shapes() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let mut max_diff = 0.0f64;
        for &(m, n, k) in &[(1usize, 1usize, 1usize), (7, 33, 300), (19, 64, 576), (12, 32, 128), (13, 5, 513), (25, 70, 129)] {
            for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
                let a: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
                let b: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
                // Logical A (m × k) stored row-major or transposed; B (k × n) likewise.
                let (ars, acs) = if a_t { (1, m) } else { (k, 1) };
                let (brs, bcs) = if b_t { (1, k) } else { (n, 1) };
                let at = |i: usize, kk: usize| a[i * ars + kk * acs];
                let bt = |kk: usize, j: usize| b[kk * brs + j * bcs];
                let mut pa = vec![f32::NAN; packed_a_len(m, k)];
                let mut pb = vec![f32::NAN; packed_b_len(k, n)];
                unsafe {
                    pack_a(a.as_ptr(), ars, acs, m, k, &mut pa);
                    pack_b(b.as_ptr(), brs, bcs, k, n, &mut pb);
                }
                let ld = n + 3;
                for accumulate in [false, true] {
                    let mut c = vec![f32::NAN; m * ld];
                    for i in 0..m {
                        c[i * ld..i * ld + n].fill(if accumulate { 1.5 } else { f32::NAN });
                    }
                    unsafe { gemm_packed(m, n, k, Lhs::Packed(&pa), Rhs::Packed(&pb), c.as_mut_ptr(), ld, 0.5, accumulate, Causal::None) };
                    if !a_t {
                        let mut c2 = c.clone();
                        for i in 0..m {
                            c2[i * ld..i * ld + n].fill(if accumulate { 1.5 } else { f32::NAN });
                        }
                        unsafe {
                            gemm_packed(
                                m,
                                n,
                                k,
                                Lhs::Rows { ptr: a.as_ptr(), ld: k },
                                Rhs::Packed(&pb),
                                c2.as_mut_ptr(),
                                ld,
                                0.5,
                                accumulate,
                                Causal::None,
                            )
                        };
                        assert!(c2.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()), "row-major A gives the packed result");
                        if !b_t {
                            let mut c3 = c.clone();
                            for i in 0..m {
                                c3[i * ld..i * ld + n].fill(if accumulate { 1.5 } else { f32::NAN });
                            }
                            unsafe {
                                gemm_packed(
                                    m,
                                    n,
                                    k,
                                    Lhs::Rows { ptr: a.as_ptr(), ld: k },
                                    Rhs::Rows { ptr: b.as_ptr(), ld: n },
                                    c3.as_mut_ptr(),
                                    ld,
                                    0.5,
                                    accumulate,
                                    Causal::None,
                                )
                            };
                            assert!(c3.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()), "row-major B gives the packed result");
                        }
                    }
                    for i in 0..m {
                        for j in 0..n {
                            let dot: f64 = (0..k).map(|kk| f64::from(at(i, kk)) * f64::from(bt(kk, j))).sum();
                            let expect = 0.5 * dot + if accumulate { 1.5 } else { 0.0 };
                            let diff = (f64::from(c[i * ld + j]) - expect).abs();
                            max_diff = max_diff.max(diff);
                            assert!(diff <= 1e-3 * (1.0 + expect.abs()), "{m}x{n}x{k} ({i},{j}): {} vs {expect}", c[i * ld + j]);
                        }
                        assert!(c[i * ld + n].is_nan() && c[i * ld + ld - 1].is_nan(), "columns past the block are untouched");
                    }
                }
            }
        }
        println!("AVX-512 GEMM vs f64 reference: max abs diff {max_diff:.3e}");
    }

    #[test]
    fn causal_blocks_compute_the_lower_triangle() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (n, k) = (77usize, 16usize);
        let a: Vec<f32> = (0..n * k).map(|i| value(i, 3)).collect();
        let mut pa = vec![0.0; packed_a_len(n, k)];
        let mut pb = vec![0.0; packed_b_len(k, n)];
        unsafe {
            pack_a(a.as_ptr(), k, 1, n, k, &mut pa);
            pack_b(a.as_ptr(), 1, k, k, n, &mut pb);
        }
        let mut c = vec![f32::NAN; n * n];
        unsafe { gemm_packed(n, n, k, Lhs::Packed(&pa), Rhs::Packed(&pb), c.as_mut_ptr(), n, 1.0, false, Causal::Cols) };
        for i in 0..n {
            for j in 0..=i {
                let dot: f32 = (0..k).map(|kk| a[i * k + kk] * a[j * k + kk]).sum();
                assert!((c[i * n + j] - dot).abs() < 1e-3, "({i},{j})");
            }
        }
        // A triangular left operand (lower: zero for kk > i; upper: zero for kk < i), square,
        // deeper than one depth block: the shortened depth gives the full product's result.
        let n = 700usize;
        for (mode, zero) in
            [(Causal::DepthTo, (|i: usize, kk: usize| kk > i) as fn(usize, usize) -> bool), (Causal::DepthFrom, |i, kk| kk < i)]
        {
            let a: Vec<f32> = (0..n * n).map(|e| if zero(e / n, e % n) { 0.0 } else { value(e, 4) }).collect();
            let b: Vec<f32> = (0..n * 40).map(|e| value(e, 5)).collect();
            let mut pb = vec![0.0; packed_b_len(n, 40)];
            unsafe { pack_b(b.as_ptr(), 40, 1, n, 40, &mut pb) };
            let (mut full, mut short) = (vec![1.0f32; n * 40], vec![1.0f32; n * 40]);
            unsafe {
                gemm_packed(
                    n,
                    40,
                    n,
                    Lhs::Rows { ptr: a.as_ptr(), ld: n },
                    Rhs::Packed(&pb),
                    full.as_mut_ptr(),
                    40,
                    1.0,
                    true,
                    Causal::None,
                );
                gemm_packed(
                    n,
                    40,
                    n,
                    Lhs::Rows { ptr: a.as_ptr(), ld: n },
                    Rhs::Rows { ptr: b.as_ptr(), ld: 40 },
                    short.as_mut_ptr(),
                    40,
                    1.0,
                    true,
                    mode,
                );
            }
            let max_diff = full.iter().zip(&short).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(max_diff < 1e-3, "{mode:?}: max diff {max_diff}");
        }
    }
}
