//! lamina's AVX-512 kernel for narrow f32 products: `C = A · Bᵀ` where C has at most a few
//! dozen columns and both A's rows and B's rows run along the depth. These are the LoRA
//! branch's down-projections: `u = x̃ · Aᵀ` in the forward pass (n tokens × rank, over the
//! model width) and `du = dy · B` in the backward pass (over the projection's output width).
//!
//! Why not the panel kernel of `avx512.rs`: it vectorises along the output's columns, 32 at a
//! time, so a rank-8 product fills a quarter of its lanes, and the 1,024 × 576 activations
//! would have to be packed (transposed) to swap the operands, which costs more than the
//! product. Here the lanes run along the depth instead: each step loads 16 consecutive depth
//! elements of [`ROWS`] rows of A and of [`COLS`] rows of B, and multiplies every pair, so
//! the register tile of `ROWS × COLS` accumulators issues 24 fused multiply-adds per 11
//! loads whatever the rank. Each accumulator is summed across its lanes once at the end.
//!
//! Each output element is one dot product with a fixed order (16 running lane sums, then the
//! lane reduction), so the result does not depend on where the element falls in a tile, on
//! the other columns of the product or on how callers split the rows between threads.
//!
//! Single-threaded, like `avx512.rs`: callers split the rows.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of A per register tile.
pub const ROWS: usize = 3;
/// Rows of B (columns of C) per register tile: with [`ROWS`], 24 accumulators, the A
/// vectors of the step and one B vector, in the 32 zmm registers.
pub const COLS: usize = 8;

/// The widest product this kernel takes: wider ones fill the panel kernel's lanes.
pub const MAX_COLS: usize = 48;

/// `C[i][j] (+)= alpha · Σ_kk A[i][kk] · B[j][kk]` for i < rows, j < cols: A's row i at
/// `a + i·lda`, B's row j at `b + j·ldb`, each `depth` contiguous elements; C's row stride is
/// `ldc`. C is overwritten unless `accumulate`.
///
/// # Safety
/// AVX-512F must be available; A and B address `rows` and `cols` readable rows of `depth`
/// elements, C addresses `rows` rows of `cols <= ldc` writable elements that no one else
/// writes during the call, and C overlaps neither A nor B.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_narrow(
    rows: usize,
    cols: usize,
    depth: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    accumulate: bool,
) {
    // Rows outer: a tile's rows of A (3 × depth floats) stay in L1 while every column group
    // reads them, and B (a rank × width matrix) stays in L2 for the whole product.
    for i0 in (0..rows).step_by(ROWS) {
        let live_rows = ROWS.min(rows - i0);
        for j0 in (0..cols).step_by(COLS) {
            let live_cols = COLS.min(cols - j0);
            // SAFETY: the tile's rows and columns lie inside the caller's sizes.
            unsafe {
                tile(live_rows, live_cols, depth, a.add(i0 * lda), lda, b.add(j0 * ldb), ldb, c.add(i0 * ldc + j0), ldc, alpha, accumulate)
            };
        }
    }
}

/// Dispatch on the tile's live rows and columns, so each variant keeps exactly its
/// accumulators in registers.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile(
    live_rows: usize,
    live_cols: usize,
    depth: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    add: bool,
) {
    macro_rules! dispatch {
        ($($r:literal: $($c:literal)*;)*) => {
            match (live_rows, live_cols) {
                // SAFETY (every arm): forwarded from `gemm_narrow`.
                $($(($r, $c) => unsafe { kernel::<$r, $c>(depth, a, lda, b, ldb, c, ldc, alpha, add) },)*)*
                _ => unreachable!("a tile has 1..=ROWS rows and 1..=COLS columns"),
            }
        };
    }
    dispatch! {
        1: 1 2 3 4 5 6 7 8;
        2: 1 2 3 4 5 6 7 8;
        3: 1 2 3 4 5 6 7 8;
    }
}

/// One `R × C` tile over the whole depth.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn kernel<const R: usize, const C: usize>(
    depth: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    add: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for kk in (0..depth).step_by(16) {
        // A full step, or the depth's tail under a mask (a masked load of all lanes costs
        // the same as a plain one).
        let mask = if depth - kk >= 16 { 0xffff } else { ((1u32 << (depth - kk)) - 1) as __mmask16 };
        // SAFETY: depth elements kk..kk+16 of R rows of A and C rows of B, the mask keeping
        // the loads inside the depth; the caller vouches for the rows.
        let mut av = [_mm512_setzero_ps(); R];
        for (r, v) in av.iter_mut().enumerate() {
            *v = unsafe { _mm512_maskz_loadu_ps(mask, a.add(r * lda + kk)) };
        }
        for j in 0..C {
            let bv = unsafe { _mm512_maskz_loadu_ps(mask, b.add(j * ldb + kk)) };
            for r in 0..R {
                acc[r][j] = _mm512_fmadd_ps(av[r], bv, acc[r][j]);
            }
        }
    }
    let scale = _mm512_set1_ps(alpha);
    let mask = ((1u32 << C) - 1) as __mmask16;
    for (r, acc_r) in acc.iter().enumerate() {
        let mut lanes = [_mm512_setzero_ps(); COLS];
        lanes[..C].copy_from_slice(acc_r);
        let mut v = _mm512_mul_ps(sum_lanes(lanes), scale);
        // SAFETY: columns 0..C of row r of the caller's tile of C; the mask keeps the
        // accesses to them.
        unsafe {
            let dst = c.add(r * ldc);
            if add {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
            }
            _mm512_mask_storeu_ps(dst, mask, v);
        }
    }
}

/// The lane sums of eight vectors, in lanes 0..8 of the result (lanes 8..16 repeat them): a
/// transposing tree of 14 shuffles and 14 adds instead of eight separate reductions. Every
/// input goes through the same tree, so each sum's order does not depend on its position.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn sum_lanes(v: [__m512; COLS]) -> __m512 {
    let (p01, p23, p45, p67) = (pair_sums(v[0], v[1]), pair_sums(v[2], v[3]), pair_sums(v[4], v[5]), pair_sums(v[6], v[7]));
    let (q0, q1) = (quad_sums(p01, p23), quad_sums(p45, p67));
    // Across the 128-bit lanes: [q0 L0+L1, q0 L2+L3, q1 L0+L1, q1 L2+L3], then the halves.
    let h = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(q0, q1), _mm512_shuffle_f32x4::<0xDD>(q0, q1));
    _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(h, h), _mm512_shuffle_f32x4::<0xDD>(h, h))
}

/// Per 128-bit lane: `[x 0+2, y 0+2, x 1+3, y 1+3]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn pair_sums(x: __m512, y: __m512) -> __m512 {
    _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y))
}

/// Per 128-bit lane, from two [`pair_sums`]: the lane's sums of the four vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn quad_sums(x: __m512, y: __m512) -> __m512 {
    let (x, y) = (_mm512_castps_pd(x), _mm512_castps_pd(y));
    // The unpacks move pairs of floats as 64-bit units; the add is in f32.
    _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn value(i: usize, salt: usize) -> f32 {
        ((i * 37 + salt * 11) % 101) as f32 / 25.0 - 2.0
    }

    /// Ragged rows, columns and depths (every tile variant, masked depth tails) against an
    /// f64 reference, with the elements outside the output block left alone.
    #[test]
    fn matches_a_plain_product_on_ragged_shapes() {
        if !super::super::avx512::available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let mut max_rel = 0.0f64;
        for &(m, n, k) in &[(1usize, 1usize, 1usize), (3, 8, 16), (7, 5, 300), (19, 24, 576), (13, 48, 513), (4, 17, 15), (25, 9, 1536)] {
            let (lda, ldb, ldc) = (k + 1, k + 3, n + 2);
            let a: Vec<f32> = (0..m * lda).map(|i| value(i, 1)).collect();
            let b: Vec<f32> = (0..n * ldb).map(|i| value(i, 2)).collect();
            for accumulate in [false, true] {
                let mut c = vec![f32::NAN; m * ldc];
                for i in 0..m {
                    c[i * ldc..i * ldc + n].fill(if accumulate { 1.5 } else { f32::NAN });
                }
                unsafe { gemm_narrow(m, n, k, a.as_ptr(), lda, b.as_ptr(), ldb, c.as_mut_ptr(), ldc, 0.5, accumulate) };
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert!(got.is_nan(), "({m},{n},{k}) wrote outside the block at ({i},{j})");
                            continue;
                        }
                        let dot: f64 = (0..k).map(|kk| a[i * lda + kk] as f64 * b[j * ldb + kk] as f64).sum();
                        let want = 0.5 * dot + if accumulate { 1.5 } else { 0.0 };
                        let scale: f64 = (0..k).map(|kk| (a[i * lda + kk] as f64 * b[j * ldb + kk] as f64).abs()).sum::<f64>() + 1.0;
                        let rel = (got as f64 - want).abs() / scale;
                        max_rel = max_rel.max(rel);
                        assert!(rel < 1e-6, "({m},{n},{k}) at ({i},{j}): {got} vs {want}");
                    }
                }
            }
        }
        eprintln!("narrow kernel vs f64: max difference {max_rel:.3e} of the sum of |products|");
    }

    /// An element's value does not depend on its tile: the product of a subset of the rows
    /// and columns gives the same bits as the whole product.
    #[test]
    fn an_element_is_the_same_in_any_tile() {
        if !super::super::avx512::available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let (m, n, k) = (10, 24, 577);
        let a: Vec<f32> = (0..m * k).map(|i| value(i, 3)).collect();
        let b: Vec<f32> = (0..n * k).map(|i| value(i, 4)).collect();
        let mut whole = vec![0.0f32; m * n];
        unsafe { gemm_narrow(m, n, k, a.as_ptr(), k, b.as_ptr(), k, whole.as_mut_ptr(), n, 1.0, false) };
        for (i0, j0) in [(1usize, 3usize), (4, 9), (7, 17)] {
            let (rows, cols) = (m - i0, n - j0);
            let mut part = vec![0.0f32; rows * cols];
            unsafe { gemm_narrow(rows, cols, k, a[i0 * k..].as_ptr(), k, b[j0 * k..].as_ptr(), k, part.as_mut_ptr(), cols, 1.0, false) };
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(part[i * cols + j].to_bits(), whole[(i0 + i) * n + j0 + j].to_bits(), "element ({}, {})", i0 + i, j0 + j);
                }
            }
        }
    }
}
