//! `y = x · Wᵀ` with W kept in its stored type (quantized, f16, bf16 or f32) in the memory map.
//!
//! W is `rows × cols` (one output per row, the layout of both GGUF and PyTorch linear weights).
//! Its rows are cut into tiles; each rayon task dequantizes one tile into a small per-thread f32
//! buffer and multiplies it with the whole activation matrix, writing its own block of output
//! columns: with lamina's AVX-512 kernel where the CPU has it (see `avx512`), else through the
//! `gemm` crate. So peak memory is the activations plus one tile per thread,
//! never an f32 copy of the model, and each weight is dequantized once per call however many
//! tokens the call carries: with hundreds of tokens per call the dequantization cost is small
//! next to the multiplication.

use std::cell::RefCell;
use std::ops::Range;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::avx512;
use crate::weights::dequant::dequantize_row;
use crate::weights::GgmlType;

/// Output rows per tile. Small enough that a tile (and the part of `x` it meets) stays in L2,
/// large enough that the multiplication amortises `gemm`'s packing; and a large weight splits
/// into many more tiles than threads, which keeps the threads evenly loaded.
const TILE_ROWS: usize = 64;

/// A weight matrix as stored in its file: `rows` outputs × `cols` inputs, row-major, each row
/// encoded as `ty` (a whole number of blocks). `range` locates its bytes in the mapped file.
#[derive(Debug, Clone)]
pub struct WeightMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub range: Range<usize>,
}

impl WeightMatrix {
    /// Bytes of one encoded row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.type_size()
    }

    /// The encoded bytes of row `r` within `file` (the mapped file the range refers to).
    pub fn row<'a>(&self, file: &'a [u8], r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        let start = self.range.start + r * rb;
        &file[start..start + rb]
    }

    /// Dequantize row `r` into `out` (`cols` long).
    pub fn dequantize_row_into(&self, file: &[u8], r: usize, out: &mut [f32]) {
        // The loader checked the type, the block multiple and the byte length of the matrix.
        dequantize_row(self.ty, self.row(file, r), out).expect("weight rows are validated at load");
    }
}

/// A raw pointer that rayon tasks may share because each task writes a disjoint part of the
/// buffer behind it (a block of columns, or one head's slice). Whoever creates one states
/// which parts each task owns.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub *mut f32);
// SAFETY: see the type's contract: concurrent users write disjoint elements only.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer `offset` elements in. A method rather than field access so that closures
    /// capture the whole (Send + Sync) wrapper, not the bare pointer.
    ///
    /// # Safety
    /// `offset` must stay inside the buffer.
    pub unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: forwarded to the caller's contract.
        unsafe { self.0.add(offset) }
    }
}

thread_local! {
    /// Per-thread buffers, reused across calls: the dequantized tile and its packed panels.
    static TILE: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `y[n × w.rows] = x[n × w.cols] · Wᵀ` (row-major, overwriting `y`), run on the current rayon
/// pool. `file` is the mapped file `w.range` refers to.
pub fn matmul_wt(x: &[f32], n: usize, w: &WeightMatrix, file: &[u8], y: &mut [f32]) {
    let (k, m) = (w.cols, w.rows);
    assert_eq!(x.len(), n * k, "matmul_wt: x is not n × cols");
    assert_eq!(y.len(), n * m, "matmul_wt: y is not n × rows");
    if n == 0 || m == 0 {
        return;
    }
    let out = SharedMut(y.as_mut_ptr());
    let tiles = m.div_ceil(TILE_ROWS);
    (0..tiles).into_par_iter().for_each(|t| {
        let r0 = t * TILE_ROWS;
        let r1 = (r0 + TILE_ROWS).min(m);
        let rows = r1 - r0;
        TILE.with(|cell| {
            let (tile, panels) = &mut *cell.borrow_mut();
            tile.resize(rows * k, 0.0);
            for (i, dst) in tile.chunks_exact_mut(k).enumerate() {
                w.dequantize_row_into(file, r0 + i, dst);
            }
            #[cfg(target_arch = "x86_64")]
            if avx512::available() {
                avx512::pack_panels(tile, rows, k, panels);
                // SAFETY: the kernel is available; x is n × k; the panels were packed for
                // `rows` columns of depth k; columns r0..r1 of y (n × m) belong to this task.
                unsafe { avx512::matmul_panels(x, n, k, panels, rows, out.at(0), m, r0) };
                return;
            }
            let _ = panels;
            // SAFETY: dst is columns r0..r1 of y (n × m, row stride m), owned by this task
            // alone; x is n × k with row stride k; the tile is rows × k, read transposed
            // (element (kk, j) at j*k + kk). All index ranges are within the asserted sizes.
            unsafe {
                gemm(
                    n,
                    rows,
                    k,
                    out.at(r0),
                    1,
                    m as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    tile.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
    });
}

/// `dx[n × w.cols] += dy[n × w.rows] · W`: the product the backward pass needs to carry a
/// gradient through a frozen weight. Tiles of W rows are dequantized as in [`matmul_wt`]; each
/// contributes to every column of `dx`, so rayon tasks fold into private accumulators that
/// are summed at the end (a handful of `n × cols` buffers, not one per tile).
pub fn matmul_w_acc(dy: &[f32], n: usize, w: &WeightMatrix, file: &[u8], dx: &mut [f32]) {
    let (k, m) = (w.cols, w.rows);
    assert_eq!(dy.len(), n * m, "matmul_w_acc: dy is not n × rows");
    assert_eq!(dx.len(), n * k, "matmul_w_acc: dx is not n × cols");
    if n == 0 || m == 0 {
        return;
    }
    let tiles = m.div_ceil(TILE_ROWS);
    let partial = (0..tiles)
        .into_par_iter()
        .fold(
            || vec![0.0f32; n * k],
            |mut acc, t| {
                let r0 = t * TILE_ROWS;
                let rows = (r0 + TILE_ROWS).min(m) - r0;
                TILE.with(|cell| {
                    let (tile, _) = &mut *cell.borrow_mut();
                    tile.resize(rows * k, 0.0);
                    for (i, dst) in tile.chunks_exact_mut(k).enumerate() {
                        w.dequantize_row_into(file, r0 + i, dst);
                    }
                    // SAFETY: acc is n × k (row stride k); dy's columns r0..r0+rows with row
                    // stride m; the tile is rows × k row-major. All within the asserted sizes.
                    unsafe { gemm_strided(n, k, rows, acc.as_mut_ptr(), k, dy.as_ptr().add(r0), m, 1, tile.as_ptr(), k, 1, 1.0, true) };
                });
                acc
            },
        )
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        });
    if let Some(p) = partial {
        dx.par_iter_mut().zip(p.par_iter()).for_each(|(d, p)| *d += p);
    }
}

/// `c[m × n] = a[m × k] · b[k × n]` (all row-major, overwriting `c`), single-threaded: the
/// building block for attention and the backward pass, which parallelise over heads or rows.
pub fn gemm_nn(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm_nn: operand too small");
    // SAFETY: sizes asserted above; row-major strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Strided single-threaded product for views into larger buffers: `dst = scale · lhs · rhs`
/// (or `dst += ...` when `accumulate`), each operand described by a pointer and (row stride,
/// column stride) in elements.
///
/// # Safety
/// Every addressed element must lie inside a live allocation, and `dst` must not overlap the
/// inputs or be written by anyone else during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    scale: f32,
    accumulate: bool,
) {
    // SAFETY: forwarded to the caller's contract.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
