//! An AVX-512 kernel for the one product shape that dominates the forward pass: `y = x · Wᵀ` for
//! a tile of freshly dequantized weight rows.
//!
//! Why by hand: the `gemm` crate enables its AVX-512 kernels only on a nightly compiler, so on
//! stable Rust it tops out at AVX2, half of what AVX-512 CPUs (most x86 servers) can do; no
//! other maintained crate offers stable AVX-512 f32 GEMM. The kernel is the classic
//! register-blocked design (as in BLIS and llm.c's matmul notes): the weight tile is packed
//! into panels of 32 output columns laid out `[k][32]`, and an 8 × 32 block of the output lives
//! in 16 zmm accumulators while the inner loop broadcasts one activation per row and issues 16
//! fused multiply-adds per step. The `k` loop is cut into blocks of [`KC`] so that a panel
//! block (32 KiB) stays in L1 while every row block of `x` streams past it.
//!
//! Availability is checked once at run time (`is_x86_feature_detected!`); other CPUs use the
//! `gemm` crate path.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output columns per panel (two zmm registers).
pub const NR: usize = 32;
/// Rows of `x` per register block.
const MR: usize = 8;
/// Depth of a k block: `KC × NR` floats = 32 KiB, the L1 data cache of current x86 cores.
const KC: usize = 256;

/// Whether this CPU can run the kernel (checked once).
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

/// Pack a `rows × k` row-major tile into `rows.div_ceil(NR)` panels of `[k][NR]`, zero-padding
/// the columns past `rows`. `panels` is resized to fit.
pub fn pack_panels(tile: &[f32], rows: usize, k: usize, panels: &mut Vec<f32>) {
    let n_panels = rows.div_ceil(NR);
    panels.clear();
    panels.resize(n_panels * k * NR, 0.0);
    for (j, row) in tile.chunks_exact(k).take(rows).enumerate() {
        let panel = &mut panels[(j / NR) * k * NR..(j / NR + 1) * k * NR];
        let col = j % NR;
        for (kk, &v) in row.iter().enumerate() {
            panel[kk * NR + col] = v;
        }
    }
}

/// `y[i][col0 + j] = Σ_kk x[i][kk] · panels[j][kk]` for i in 0..n, j in 0..cols, where the
/// output row stride is `ldy` and `x` is `n × k` row-major.
///
/// # Safety
/// [`available`] must be true; `x` holds `n × k` floats; `panels` was packed for `cols` columns
/// and depth `k`; `y` addresses `n` rows of stride `ldy` with `col0 + cols <= ldy`, and no one
/// else writes those elements during the call.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_panels(x: &[f32], n: usize, k: usize, panels: &[f32], cols: usize, y: *mut f32, ldy: usize, col0: usize) {
    let n_panels = cols.div_ceil(NR);
    // A zero-padded copy of the last partial row block, so the kernel always reads MR rows.
    let tail_rows = n % MR;
    let mut tail = Vec::new();
    if tail_rows != 0 {
        tail.resize(MR * k, 0.0);
        tail[..tail_rows * k].copy_from_slice(&x[(n - tail_rows) * k..n * k]);
    }
    let mut kc0 = 0;
    while kc0 < k {
        let kc = KC.min(k - kc0);
        for p in 0..n_panels {
            let panel = panels[p * k * NR + kc0 * NR..].as_ptr();
            let width = NR.min(cols - p * NR);
            let mut i0 = 0;
            while i0 < n {
                let rows = MR.min(n - i0);
                let a = if rows == MR { x[i0 * k + kc0..].as_ptr() } else { tail[kc0..].as_ptr() };
                // SAFETY: forwarded from this function's contract; `a` has MR readable rows.
                unsafe { kernel_8x32(kc, a, k, panel, y.add(i0 * ldy + col0 + p * NR), ldy, rows, width, kc0 > 0) };
                i0 += MR;
            }
        }
        kc0 += kc;
    }
}

/// One 8 × 32 output block over a k block: `c (+)= a[8 × kc] · panel[kc × 32]`, writing only
/// the first `rows` rows and `width` columns (masked stores), adding to `c` when `accumulate`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_8x32(kc: usize, a: *const f32, lda: usize, panel: *const f32, c: *mut f32, ldc: usize, rows: usize, width: usize, accumulate: bool) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..kc {
        // SAFETY (whole block): panel holds kc × NR floats; a holds MR rows of lda ≥ kc.
        let w0 = unsafe { _mm512_loadu_ps(panel.add(kk * NR)) };
        let w1 = unsafe { _mm512_loadu_ps(panel.add(kk * NR + 16)) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(unsafe { *a.add(r * lda + kk) });
            acc_r[0] = _mm512_fmadd_ps(xb, w0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(xb, w1, acc_r[1]);
        }
    }
    let lo: __mmask16 = if width >= 16 { 0xffff } else { ((1u32 << width) - 1) as __mmask16 };
    let hi: __mmask16 = if width >= 32 { 0xffff } else if width > 16 { ((1u32 << (width - 16)) - 1) as __mmask16 } else { 0 };
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        // SAFETY: row r < rows of the caller's output block; masks limit the columns.
        unsafe {
            let row = c.add(r * ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(lo, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(hi, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, lo, v0);
            _mm512_mask_storeu_ps(row.add(16), hi, v1);
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_product_on_ragged_shapes() {
        if !available() {
            return;
        }
        for &(n, cols, k) in &[(1usize, 1usize, 1usize), (7, 33, 300), (19, 64, 576), (8, 32, 256), (13, 5, 513)] {
            let x: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let w: Vec<f32> = (0..cols * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
            let mut panels = Vec::new();
            pack_panels(&w, cols, k, &mut panels);
            let ld = cols + 3;
            let mut y = vec![f32::NAN; n * ld];
            unsafe { matmul_panels(&x, n, k, &panels, cols, y.as_mut_ptr(), ld, 2) };
            for i in 0..n {
                for j in 0..cols {
                    let expect: f64 = (0..k).map(|kk| f64::from(x[i * k + kk]) * f64::from(w[j * k + kk])).sum();
                    let got = y[i * ld + 2 + j];
                    assert!((f64::from(got) - expect).abs() <= 1e-3 * (1.0 + expect.abs()), "n={n} cols={cols} k={k} ({i},{j}): {got} vs {expect}");
                }
                // Columns outside the block are untouched.
                assert!(y[i * ld].is_nan() && y[i * ld + 1].is_nan() && y[i * ld + ld - 1].is_nan());
            }
        }
    }
}
