//! Strided f32 matrix products for the native engine, on the fastest path this CPU has:
//! lamina's AVX-512 kernel (`avx512.rs`) where the CPU reports AVX-512F, else the `gemm`
//! crate (AVX2/FMA or scalar, chosen by that crate at run time). Operands are strided views,
//! so transposed operands (Kᵀ in attention, Aᵀ and dyᵀ in the LoRA gradients) need no copy.
//!
//! [`sgemm`] is single-threaded, for callers that already run one task per head or sequence;
//! [`sgemm_par`] splits the output between the current rayon pool's threads (each task a
//! single-threaded product on its block, on either path). Both are
//! deterministic: each output element is summed in the same order whatever the thread count.

use std::cell::RefCell;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

pub(crate) use super::avx512::Causal;
use super::{avx512, avx512_narrow};

/// The path the native engine's f32 products take on this CPU, for reports (`lamina info`,
/// the benchmarks).
pub fn kernel_path() -> &'static str {
    if avx512::available() {
        "f32, AVX-512 (lamina's kernel)"
    } else if cfg!(target_arch = "x86_64") && std::env::var_os("LAMINA_NO_AVX512").is_some() {
        "f32, portable (the gemm crate; AVX-512 disabled by LAMINA_NO_AVX512)"
    } else {
        "f32, portable (the gemm crate: AVX2/FMA where present, else scalar)"
    }
}

/// A matrix operand: element (i, j) at `ptr[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: a View is a read-only pointer into a buffer the caller keeps alive and unwritten for
// the duration of the product; sharing it between tasks only reads.
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    /// A row-major matrix with row stride `ld`.
    pub fn rows(data: &[f32], ld: usize) -> View {
        View { ptr: data.as_ptr(), rs: ld, cs: 1 }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn transposed(data: &[f32], ld: usize) -> View {
        View { ptr: data.as_ptr(), rs: 1, cs: ld }
    }
    /// The view moved `i` rows and `j` columns in.
    ///
    /// # Safety
    /// The new origin must lie inside the buffer.
    pub unsafe fn at(self, i: usize, j: usize) -> View {
        // SAFETY: forwarded to the caller's contract.
        View { ptr: unsafe { self.ptr.add(i * self.rs + j * self.cs) }, ..self }
    }
}

/// The output: element (i, j) at `ptr[i·rs + j·cs]`, written (or added to) by one product.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Out {
    pub ptr: *mut f32,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: as for SharedMut: tasks of one product write disjoint elements.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    pub fn rows(data: &mut [f32], ld: usize) -> Out {
        Out { ptr: data.as_mut_ptr(), rs: ld, cs: 1 }
    }
    pub fn transposed(data: &mut [f32], ld: usize) -> Out {
        Out { ptr: data.as_mut_ptr(), rs: 1, cs: ld }
    }
    /// # Safety
    /// The new origin must lie inside the buffer.
    unsafe fn at(self, i: usize, j: usize) -> Out {
        // SAFETY: forwarded to the caller's contract.
        Out { ptr: unsafe { self.ptr.add(i * self.rs + j * self.cs) }, ..self }
    }
}

thread_local! {
    /// Per-thread packing buffers (A blocks, B panels, a transposed-output staging area),
    /// reused across calls. Never borrowed across a rayon call.
    static PACK: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// `C (+)= alpha · A[m × k] · B[k × n]`, single-threaded. `causal` lets the AVX-512 path skip
/// what a causal mask makes useless (see [`Causal`]); the portable path computes everything,
/// which gives the same result because the masked parts of A are zeros.
///
/// # Safety
/// Every element the views address for these sizes must be readable, C's must be writable
/// and written by no one else during the call, and C must not overlap A or B.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(m: usize, n: usize, k: usize, a: View, b: View, c: Out, alpha: f32, accumulate: bool, causal: Causal) {
    // SAFETY: forwarded.
    unsafe { sgemm_block(m, n, k, a, b, c, alpha, accumulate, causal, narrow(n, a, causal)) }
}

/// Whether a product of `n` output columns takes the narrow kernel (see [`sgemm_block`]):
/// decided on the whole product, so that the blocks [`sgemm_par`] gives its tasks are summed
/// by the same kernel whatever their widths, and the result does not depend on the thread
/// count.
fn narrow(n: usize, a: View, causal: Causal) -> bool {
    n <= avx512_narrow::MAX_COLS && !n.is_multiple_of(avx512::NR) && a.cs == 1 && causal == Causal::None
}

/// [`sgemm`] on a block of a product, with the kernel choice (`narrow`) made for the whole.
///
/// # Safety
/// As for [`sgemm`]; `narrow` only if A's rows run along the depth (`a.cs == 1`) and
/// `causal` is [`Causal::None`].
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_block(m: usize, n: usize, k: usize, a: View, b: View, c: Out, alpha: f32, accumulate: bool, causal: Causal, narrow: bool) {
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        PACK.with(|cell| {
            let bufs = &mut *cell.borrow_mut();
            let [pa, pb, staging] = bufs;
            // A narrow output over rows of A that run along the depth (the LoRA branch's
            // `x Aᵀ` and `dy B`): the depth-vectorised kernel, whose lanes do not depend on
            // the output's width, unless the width fills whole panels of the panel kernel
            // (which then runs at the peak; measured on Zen 4, one thread, depth 576: width 8
            // 27 vs 94 GFLOP/s, 24: 83 vs 95, 32: 111 vs 95, 48: 85 vs 95). B's columns are
            // read in place when they are contiguous, else copied out (B is then only
            // `k × n`, a rank's worth of columns).
            if narrow {
                // SAFETY: forwarded from this function's contract.
                unsafe {
                    let (b_rows, ldb) = if b.rs == 1 {
                        (b.ptr, b.cs)
                    } else {
                        grow(pb, n * k);
                        for j in 0..n {
                            for kk in 0..k {
                                pb[j * k + kk] = *b.ptr.add(kk * b.rs + j * b.cs);
                            }
                        }
                        (pb.as_ptr(), k)
                    };
                    store_through(m, n, c, accumulate, staging, |dst, ld, add| {
                        avx512_narrow::gemm_narrow(m, n, k, a.ptr, a.rs, b_rows, ldb, dst, ld, alpha, add)
                    });
                }
                return;
            }
            // SAFETY: forwarded from this function's contract.
            unsafe {
                // Row-major operands are read in place; anything else is packed.
                let lhs = if a.cs == 1 {
                    avx512::Lhs::Rows { ptr: a.ptr, ld: a.rs }
                } else {
                    grow(pa, avx512::packed_a_len(m, k));
                    avx512::pack_a(a.ptr, a.rs, a.cs, m, k, pa);
                    avx512::Lhs::Packed(pa)
                };
                let rhs = if b.cs == 1 {
                    avx512::Rhs::Rows { ptr: b.ptr, ld: b.rs }
                } else {
                    grow(pb, avx512::packed_b_len(k, n));
                    avx512::pack_b(b.ptr, b.rs, b.cs, k, n, pb);
                    avx512::Rhs::Packed(pb)
                };
                store_through(m, n, c, accumulate, staging, |dst, ld, add| {
                    avx512::gemm_packed(m, n, k, lhs, rhs, dst, ld, alpha, add, causal)
                });
            }
        });
        return;
    }
    let _ = (causal, narrow);
    // SAFETY: forwarded from this function's contract (the gemm crate takes arbitrary strides).
    unsafe { portable(m, n, k, a, b, c, alpha, accumulate) };
}

/// [`sgemm`] on the current rayon pool: the output's columns (or, when it has few, its rows)
/// are split between tasks.
///
/// # Safety
/// As for [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_par(m: usize, n: usize, k: usize, a: View, b: View, c: Out, alpha: f32, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let narrow = narrow(n, a, Causal::None);
    if threads == 1 || (m * n * k) < 64 * 64 * 64 {
        // SAFETY: forwarded.
        unsafe { sgemm_block(m, n, k, a, b, c, alpha, accumulate, Causal::None, narrow) };
        return;
    }
    // Chunks of whole register blocks: columns when there are enough of them, else rows.
    // A narrow product (at most 48 columns) is always split by rows.
    let (by_cols, unit, len) = if n.div_ceil(avx512::NR) >= 2 * threads { (true, avx512::NR, n) } else { (false, avx512::MR, m) };
    let per_task = len.div_ceil(unit).div_ceil(4 * threads).max(1) * unit;
    (0..len.div_ceil(per_task)).into_par_iter().for_each(|t| {
        let lo = t * per_task;
        let hi = (lo + per_task).min(len);
        // SAFETY: each task computes the block of C at its own rows or columns; the operand
        // views are offset to that block within the caller's sizes.
        unsafe {
            if by_cols {
                sgemm_block(m, hi - lo, k, a, b.at(0, lo), c.at(0, lo), alpha, accumulate, Causal::None, narrow);
            } else {
                sgemm_block(hi - lo, n, k, a.at(lo, 0), b, c.at(lo, 0), alpha, accumulate, Causal::None, narrow);
            }
        }
    });
}

fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// Run `kernel(dst, ld, add)`, which writes a row-major `m × n` block, into C: directly when
/// C's rows are contiguous, else through `staging` and a strided copy.
///
/// # Safety
/// C addresses `m × n` writable elements that no one else writes.
unsafe fn store_through(m: usize, n: usize, c: Out, accumulate: bool, staging: &mut Vec<f32>, kernel: impl FnOnce(*mut f32, usize, bool)) {
    if c.cs == 1 {
        kernel(c.ptr, c.rs, accumulate);
        return;
    }
    grow(staging, m * n);
    kernel(staging.as_mut_ptr(), n, false);
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) is inside C's block; the caller vouches.
            unsafe {
                let dst = c.ptr.add(i * c.rs + j * c.cs);
                *dst = if accumulate { *dst + staging[i * n + j] } else { staging[i * n + j] };
            }
        }
    }
}

/// The `gemm` crate, for CPUs without AVX-512.
///
/// # Safety
/// As for [`sgemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn portable(m: usize, n: usize, k: usize, a: View, b: View, c: Out, alpha: f32, accumulate: bool) {
    // SAFETY: forwarded; the crate reads and writes through the given strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.ptr,
            c.cs as isize,
            c.rs as isize,
            accumulate,
            a.ptr,
            a.cs as isize,
            a.rs as isize,
            b.ptr,
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            alpha,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both entry points, every orientation, against an f64 reference, on whichever path this
    /// CPU takes.
    #[test]
    fn strided_products_match_a_reference() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let mut max_diff = 0.0f64;
        for &(m, n, k) in &[(8usize, 1024usize, 576usize), (1000, 8, 64), (300, 24, 577), (70, 90, 33), (3, 5, 1)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 30.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 17 % 89) as f32 - 44.0) / 30.0).collect();
            for (ta, tb, tc) in [(false, false, false), (true, true, true), (true, false, false), (false, true, true)] {
                let av = if ta { View::transposed(&a, m) } else { View::rows(&a, k) };
                let bv = if tb { View::transposed(&b, k) } else { View::rows(&b, n) };
                let at = |i: usize, kk: usize| if ta { a[kk * m + i] } else { a[i * k + kk] };
                let bt = |kk: usize, j: usize| if tb { b[j * k + kk] } else { b[kk * n + j] };
                for par in [false, true] {
                    let mut c = vec![0.25f32; m * n];
                    let cv = if tc { Out::transposed(&mut c, m) } else { Out::rows(&mut c, n) };
                    pool.install(|| unsafe {
                        if par {
                            sgemm_par(m, n, k, av, bv, cv, 2.0, true);
                        } else {
                            sgemm(m, n, k, av, bv, cv, 2.0, true, Causal::None);
                        }
                    });
                    for i in 0..m {
                        for j in 0..n {
                            let expect = 0.25 + 2.0 * (0..k).map(|kk| f64::from(at(i, kk)) * f64::from(bt(kk, j))).sum::<f64>();
                            let got = f64::from(if tc { c[j * m + i] } else { c[i * n + j] });
                            max_diff = max_diff.max((got - expect).abs());
                            assert!(
                                (got - expect).abs() <= 1e-3 * (1.0 + expect.abs()),
                                "{m}x{n}x{k} {ta}{tb}{tc} par={par} ({i},{j}): {got} vs {expect}"
                            );
                        }
                    }
                }
            }
        }
        println!("sgemm (AVX-512: {}) vs f64 reference: max abs diff {max_diff:.3e}", avx512::available());
    }

    /// The parallel split does not change a single bit of the result.
    #[test]
    fn thread_count_does_not_change_the_result() {
        // A wide product (split by columns, its last task 8 columns wide) and a narrow one.
        for (m, n, k) in [(300usize, 200usize, 700usize), (300, 24, 577)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 30.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 17 % 89) as f32 - 44.0) / 30.0).collect();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut c = vec![0.0f32; m * n];
                pool.install(|| unsafe { sgemm_par(m, n, k, View::rows(&a, k), View::rows(&b, n), Out::rows(&mut c, n), 1.0, false) });
                c
            };
            let one = run(1);
            assert!(one == run(2) && one == run(5), "{m}x{n}x{k}: the thread count changed the result");
        }
    }
}
