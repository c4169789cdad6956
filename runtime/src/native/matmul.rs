//! `y = x · Wᵀ` with W kept in its stored type (quantized, f16, bf16 or f32) in the memory map.
//!
//! W is `rows × cols` (one output per row, the layout of both GGUF and PyTorch linear weights).
//! Its rows are cut into tiles; each rayon task dequantizes one tile into a small per-thread f32
//! buffer and multiplies it with the whole activation matrix, writing its own block of output
//! columns: with lamina's AVX-512 kernel where the CPU has it (see `avx512`; the activations
//! are read in place), else through the `gemm` crate. The backward product
//! through W cuts W into blocks of columns instead, so that it too writes disjoint outputs and
//! sums in an order that does not depend on the thread count. Peak memory is the activations
//! plus one tile per thread, never an f32 copy of the model, and each weight is dequantized
//! once per call however many tokens the call carries. In bf16 a model may instead keep its
//! weights packed once ([`pack_weight_bf16`], see `packed.rs`): a product given those panels
//! reads its tiles from them and packs nothing.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::avx512;
use super::bf16;
use super::gemm::{sgemm, sgemm_par, Causal, Out, View};
use crate::weights::dequant::dequantize_row;
use crate::weights::GgmlType;

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

    /// Dequantize columns `c0 .. c0 + out.len()` of row `r` into `out`; `c0` and the length are
    /// whole quantization blocks.
    pub fn dequantize_segment_into(&self, file: &[u8], r: usize, c0: usize, out: &mut [f32]) {
        let (bs, ts) = (self.ty.block_size(), self.ty.type_size());
        debug_assert!(c0.is_multiple_of(bs) && out.len().is_multiple_of(bs) && c0 + out.len() <= self.cols);
        let row = self.row(file, r);
        let bytes = &row[c0 / bs * ts..(c0 + out.len()) / bs * ts];
        dequantize_row(self.ty, bytes, out).expect("weight rows are validated at load");
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

/// How the frozen-weight products compute (see `bf16.rs`). `Auto` is resolved when a model
/// loads: bf16 where the CPU has AVX512-BF16 and either usable AMX tiles (`amx.rs`) or a dot
/// product that, measured, retires enough more multiply-adds than the f32 FMA to pay for the
/// conversions ([`bf16::pays_off`]); else f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> crate::error::Result<Precision> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(crate::error::Error::invalid("precision", format!("unknown precision `{other}`: use auto, f32 or bf16"))),
        }
    }

    /// What this CPU runs for a request, and, when that is not what was asked, why. `Auto`
    /// follows `LAMINA_PRECISION` (auto, f32, bf16) when it is set: the switch for programs
    /// that reach the native engine through the C ABI or Python.
    pub fn resolve(self) -> (Precision, Option<String>) {
        let request = match (self, std::env::var("LAMINA_PRECISION")) {
            (Precision::Auto, Ok(v)) => match Precision::parse(&v) {
                Ok(p) => p,
                Err(_) => {
                    return (Precision::Auto.resolve_request().0, Some(format!("LAMINA_PRECISION={v} is not auto, f32 or bf16: ignored")))
                }
            },
            _ => self,
        };
        request.resolve_request()
    }

    fn resolve_request(self) -> (Precision, Option<String>) {
        match self {
            Precision::F32 => (Precision::F32, None),
            Precision::Auto if bf16::available() && bf16::pays_off() => (Precision::Bf16, None),
            Precision::Auto => (Precision::F32, None),
            Precision::Bf16 if bf16::available() => (Precision::Bf16, None),
            Precision::Bf16 => {
                (Precision::F32, Some("bf16 was asked for, but this CPU has no AVX512-BF16 (or AVX-512 is disabled): running f32".into()))
            }
        }
    }

    /// The precision attention's products take in a model of this (resolved) precision: bf16
    /// follows the weight products, except where those run on AMX tiles and the vector
    /// `vdpbf16ps` that attention's per-head causal products would run on retires fewer
    /// multiply-adds than the f32 FMA ([`bf16::vector_pays_off`] false). Measured on a 2-vCPU
    /// Sapphire Rapids (`vdpbf16ps` at 0.50x): with every attention product on `vdpbf16ps`, the
    /// native forward ran 3-5% slower than with f32 attention (2,097-2,138 against 2,201-2,213
    /// tokens/s); with the products whose left operand is rows on AMX tiles as well (the
    /// transposed-pair ones, dK and dV, cannot be), bf16 attention only drew level (forward
    /// 2,061-2,214 against 2,039-2,115; 5 LoRA steps 7.4-8.0 s against 7.3-7.6 s), so f32
    /// keeps attention exact at no cost.
    pub fn for_attention(self) -> Precision {
        match self {
            Precision::Bf16 if super::amx::available() && !bf16::vector_pays_off() => Precision::F32,
            other => other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Rows of W per sequential step of [`matmul_w`]: a multiple of every quantization block
/// (256). Each step's slice of dy is converted into bf16 rows of this many elements; at 1792
/// they need no padding against the L1 cache's aliasing (see [`bf16::row_stride`]). Measured
/// on Zen 4 for the LM head's backward product (`lamina bench-native --products`, `output
/// bwd`): 339-344 GFLOP/s, against 287-306 with steps of 2048 at an unpadded 4 KiB stride.
const DEPTH_BLOCK: usize = 1792;

/// Per-thread buffers, reused across calls: the dequantized tile, its f32 panels, its bf16
/// panels and its rows in bf16.
#[derive(Default)]
struct TileBuffers {
    tile: Vec<f32>,
    panels: Vec<f32>,
    panels_bf16: Vec<u16>,
    rows_bf16: Vec<u16>,
}

thread_local! {
    static TILE: RefCell<TileBuffers> = RefCell::new(TileBuffers::default());
    /// The packed input of the product this thread is running (see [`packed_lhs`]).
    static PACKED_LHS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` on the input of a weight product packed once for the whole product, in the layout
/// of lamina's f32 kernel: `n` rows of `depth` elements, element (i, kk) at `x[i·ld + kk]`.
/// The kernel also reads rows in place, but on Intel cores that costs a third of its speed: it
/// computes 12 row addresses per step where a packed block needs one, and the front end, not
/// the FMA ports, becomes the limit (measured single-threaded on a Xeon with AVX-512 on
/// 576-deep products: about 100 GFLOP/s in place against 150 packed, of a 167 peak). Packing
/// is one copy of x, 1/(2·output columns) of the product's arithmetic, shared by every task.
/// The values and the order of every sum are unchanged, and so is the result.
///
/// # Safety
/// Every addressed element of `x` must be readable.
#[cfg(target_arch = "x86_64")]
unsafe fn packed_lhs(x: *const f32, ld: usize, n: usize, depth: usize, f: impl FnOnce(&[f32])) {
    // Taken out of the thread-local while in use: a product that this thread runs while it
    // waits inside another one packs into a buffer of its own.
    let mut packed = PACKED_LHS.with(|cell| cell.try_borrow_mut().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default());
    packed.resize(avx512::packed_a_len(n, depth), 0.0);
    let x = SharedConst(x);
    packed.par_chunks_mut(avx512::MR * depth).enumerate().for_each(|(block, out)| {
        let rows = avx512::MR.min(n - block * avx512::MR);
        // SAFETY: rows block·MR.. of x, `depth` elements each, are readable (the caller's
        // contract); `out` is this block's part of the packed operand.
        unsafe { avx512::pack_a(x.get().add(block * avx512::MR * ld), ld, 1, rows, depth, out) };
    });
    f(&packed);
    PACKED_LHS.with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = packed;
        }
    });
}

/// A pointer that rayon tasks may share for reading.
#[derive(Clone, Copy)]
struct SharedConst(*const f32);
// SAFETY: only ever read, while the buffer it points into outlives the parallel loop.
unsafe impl Send for SharedConst {}
unsafe impl Sync for SharedConst {}
impl SharedConst {
    fn get(self) -> *const f32 {
        self.0
    }
}

/// Output rows (or columns) per task: a whole number of `unit`s (the quantization block) and
/// of kernel panels. Of two candidate widths, the one with the shorter critical path (tasks
/// per thread, rounded up, times the width) wins, the wider on a tie: the k/v projections of
/// a small model give too few wide tasks to keep every thread busy.
fn task_width(len: usize, unit: usize) -> usize {
    let threads = rayon::current_num_threads();
    let narrow = unit.max(avx512::NR);
    let wide = unit.max(2 * avx512::NR);
    let span = |w: usize| len.div_ceil(w).div_ceil(threads) * w;
    if span(narrow) < span(wide) {
        narrow
    } else {
        wide
    }
}

/// `y[n × w.rows] = x[n × w.cols] · Wᵀ` (row-major, overwriting `y`), run on the current rayon
/// pool, in `precision` (F32 or Bf16; a model resolves Auto at load). `file` is the mapped
/// file `w.range` refers to. Each task owns a block of output columns (a tile of W's rows), so
/// the result does not depend on the thread count.
pub fn matmul_wt(x: &[f32], n: usize, w: &WeightMatrix, file: &[u8], y: &mut [f32], precision: Precision) {
    matmul_wt_many(x, n, &mut [WtProduct { w, file, y, packed: None, low_rank: None }], precision);
}

/// A low-rank term added to a weight product's output, `out += scale · u · v`: u is `n × rank`
/// (row i at `u[i·ldu..]`), v `rank × out-columns` with element (q, j) at `v[q·vs.0 + j·vs.1]`. A LoRA branch's forward adds
/// `s · (x̃ Aᵀ) Bᵀ` this way, and its backward `du · A`. On the bf16 path the kernel adds it to
/// each output block in f32 before storing the block (see [`bf16::LowRank`]): the output is
/// written once. Elsewhere it is a second product after the frozen one, as a branch computed
/// alone would do it (the same result, bit for bit).
#[derive(Clone, Copy)]
pub(crate) struct LowRankTerm<'a> {
    pub u: &'a [f32],
    pub ldu: usize,
    pub v: &'a [f32],
    /// v's (row, column) strides.
    pub vs: (usize, usize),
    pub rank: usize,
    pub scale: f32,
}

impl LowRankTerm<'_> {
    /// Panics unless u holds `n × rank` and v `rank × cols` elements at their strides.
    fn check(&self, n: usize, cols: usize) {
        assert!(n == 0 || self.rank == 0 || self.u.len() >= (n - 1) * self.ldu + self.rank, "low-rank term: u is not n × rank");
        assert!(
            cols == 0 || self.rank == 0 || self.v.len() > (self.rank - 1) * self.vs.0 + (cols - 1) * self.vs.1,
            "low-rank term: v is not rank × cols"
        );
    }

    fn v_view(&self) -> View {
        View { ptr: self.v.as_ptr(), rs: self.vs.0, cs: self.vs.1 }
    }

    /// `out[n × cols] += the term`, as a product of its own.
    pub(crate) fn add_f32_into(&self, n: usize, cols: usize, out: &mut [f32]) {
        self.check(n, cols);
        assert_eq!(out.len(), n * cols, "low-rank term: out is not n × cols");
        let u = View { ptr: self.u.as_ptr(), rs: self.ldu, cs: 1 };
        // SAFETY: u is n × rank and v rank × cols (checked), out n × cols.
        unsafe { sgemm_par(n, cols, self.rank, u, self.v_view(), Out::rows(out, cols), self.scale, true) };
    }

    /// The term as the bf16 kernel adds it, v as rows it can load 16 columns at a time: in
    /// place when they already are, else copied into `copy` (which must outlive the result).
    /// Call [`check`](Self::check) for these `cols` first.
    fn kernel_term(&self, cols: usize, copy: &mut Vec<f32>) -> bf16::LowRank {
        let (v, ldv) = if self.vs.1 == 1 {
            (self.v.as_ptr(), self.vs.0)
        } else {
            copy.clear();
            copy.reserve(self.rank * cols);
            for q in 0..self.rank {
                copy.extend((0..cols).map(|j| self.v[q * self.vs.0 + j * self.vs.1]));
            }
            (copy.as_ptr(), cols)
        };
        bf16::LowRank { u: self.u.as_ptr(), ldu: self.ldu, v, ldv, rank: self.rank, scale: self.scale }
    }
}

/// A [`bf16::LowRank`] that rayon tasks may share: it only reads buffers that outlive the
/// parallel loop.
#[derive(Clone, Copy)]
struct SharedTerm(Option<bf16::LowRank>);
// SAFETY: as for SharedConst.
unsafe impl Send for SharedTerm {}
unsafe impl Sync for SharedTerm {}
impl SharedTerm {
    /// The term of the output columns from `c0` on.
    fn at_col(self, c0: usize) -> Option<bf16::LowRank> {
        self.0.map(|t| bf16::LowRank { v: t.v.wrapping_add(c0), ..t })
    }
}

/// One product of [`matmul_wt_many`]: `y = x · Wᵀ (+ low_rank)`, W read from `file`.
pub struct WtProduct<'a> {
    pub w: &'a WeightMatrix,
    pub file: &'a [u8],
    pub y: &'a mut [f32],
    /// W's bf16 panels packed once ([`pack_weight_bf16`]), used instead of packing each tile
    /// again when the product runs in bf16 (ignored in f32). The same values as the tiles the
    /// product would pack, so the same result, bit for bit.
    pub packed: Option<&'a [u16]>,
    /// A term added to y (see [`LowRankTerm`]); its v must be `rank × w.rows`.
    pub(crate) low_rank: Option<LowRankTerm<'a>>,
}

/// Rows of W per parallel step of [`pack_weight_bf16`]: a whole number of kernel panels.
const PACK_CHUNK: usize = 4 * avx512::NR;

/// W's forward operand (B = Wᵀ) as the bf16 kernel reads it, for the whole matrix: the panels
/// of [`NR`](avx512::NR) rows of W one after another, each `[kp/2][NR][2]`
/// ([`bf16::packed_b_len`]`(w.cols, w.rows)` elements, 2 bytes per weight). A tile of rows
/// `r0 .. r0 + rows` (r0 a multiple of NR) is then the contiguous run from `r0 · kp`, which
/// is what [`matmul_wt_many`] packs for that tile itself when it has no packed weight. Runs on
/// the current rayon pool.
pub fn pack_weight_bf16(w: &WeightMatrix, file: &[u8]) -> Vec<u16> {
    let kp = bf16::padded(w.cols);
    let mut out = vec![0u16; bf16::packed_b_len(w.cols, w.rows)];
    out.par_chunks_mut(PACK_CHUNK * kp).enumerate().for_each(|(c, dst)| {
        let r0 = c * PACK_CHUNK;
        let rows = PACK_CHUNK.min(w.rows - r0);
        with_tile(|b| {
            pack_tile_bf16(w, file, r0, rows, b);
            dst.copy_from_slice(&b.panels_bf16[..dst.len()]);
        });
    });
    out
}

/// Rows `r0 .. r0 + rows` of W as the bf16 kernel's B panels, into `b.panels_bf16`: straight
/// from the blocks where the type allows, else row by row through one f32 row that stays in
/// L1 into bf16 rows, then into panels.
fn pack_tile_bf16(w: &WeightMatrix, file: &[u8], r0: usize, rows: usize, b: &mut TileBuffers) {
    if bf16::pack_b_from_weight_rows(w, file, r0, rows, &mut b.panels_bf16) {
        return;
    }
    let k = w.cols;
    let kp = bf16::padded(k);
    b.tile.resize(k, 0.0);
    b.rows_bf16.clear();
    b.rows_bf16.resize(rows * kp, 0);
    for (i, dst) in b.rows_bf16.chunks_exact_mut(kp).enumerate() {
        w.dequantize_row_into(file, r0 + i, &mut b.tile);
        bf16::convert(&b.tile, &mut dst[..k]);
    }
    bf16::pack_b_from_bf16_rows(&b.rows_bf16, k, rows, &mut b.panels_bf16);
}

/// Several products of the same input (a layer's q, k and v projections, or its gate and
/// up), each as [`matmul_wt`] computes it, bit for bit: the input is converted once, and the
/// tiles of all the products form one parallel loop, so the threads meet once per group
/// rather than once per product and the small k/v products no longer leave a thread idle.
pub fn matmul_wt_many(x: &[f32], n: usize, products: &mut [WtProduct<'_>], precision: Precision) {
    let Some(k) = products.first().map(|p| p.w.cols) else { return };
    assert_eq!(x.len(), n * k, "matmul_wt: x is not n × cols");
    for p in products.iter() {
        assert_eq!(p.w.cols, k, "matmul_wt_many: the products do not share their input width");
        assert_eq!(p.y.len(), n * p.w.rows, "matmul_wt: y is not n × rows");
        if let Some(packed) = p.packed {
            assert_eq!(packed.len(), bf16::packed_b_len(p.w.cols, p.w.rows), "matmul_wt: packed panels of another shape");
        }
        if let Some(t) = &p.low_rank {
            t.check(n, p.w.rows);
        }
    }
    if n == 0 {
        return;
    }
    let (fast, use_bf16) = (avx512::available(), precision == Precision::Bf16 && bf16::available());
    let mut x_bf16 = bf16::Spare::take();
    if use_bf16 {
        bf16::convert_rows_par(x, n, k, 0, k, &mut x_bf16);
    }
    // Each product's low-rank term as the bf16 kernel adds it (v copied into rows if needed).
    let mut v_copies: Vec<Vec<f32>> = products.iter().map(|_| Vec::new()).collect();
    let terms: Vec<SharedTerm> = products
        .iter()
        .zip(&mut v_copies)
        .map(|(p, copy)| SharedTerm(p.low_rank.filter(|_| use_bf16).map(|t| t.kernel_term(p.w.rows, copy))))
        .collect();
    // (product, first row of W, rows): every product's tiles, one list.
    let outs: Vec<(&WeightMatrix, &[u8], SharedMut, Option<&[u16]>)> =
        products.iter_mut().map(|p| (p.w, p.file, SharedMut(p.y.as_mut_ptr()), p.packed)).collect();
    let tasks: Vec<(usize, usize, usize)> = outs
        .iter()
        .enumerate()
        .flat_map(|(i, (w, _, _, _))| {
            let width = task_width(w.rows, 1);
            (0..w.rows.div_ceil(width)).map(move |t| (i, t * width, width.min(w.rows - t * width)))
        })
        .collect();
    let run = |packed_x: Option<&[f32]>| {
        tasks.par_iter().for_each(|&(i, r0, rows)| {
            let (w, file, out, packed) = outs[i];
            let m = w.rows;
            with_tile(|b| {
                #[cfg(target_arch = "x86_64")]
                if use_bf16 {
                    let kp = bf16::padded(k);
                    // The tile's run of the panels packed once (r0 is a whole number of
                    // panels: see task_width), else the tile packed now.
                    let panels = match packed {
                        Some(all) => {
                            debug_assert!(r0.is_multiple_of(avx512::NR), "tiles start on a panel");
                            &all[r0 * kp..r0 * kp + bf16::packed_b_len(k, rows)]
                        }
                        None => {
                            pack_tile_bf16(w, file, r0, rows, b);
                            &b.panels_bf16[..]
                        }
                    };
                    // SAFETY: x_bf16 is n rows of row_stride(k); columns r0..r0+rows of this
                    // product's y (n × m) belong to this task.
                    // The low-rank term's columns r0.. are this tile's.
                    unsafe { bf16::gemm(n, rows, k, &x_bf16, bf16::row_stride(k), panels, out.at(r0), m, false, terms[i].at_col(r0)) };
                    return;
                }
                b.tile.resize(rows * k, 0.0);
                for (i, dst) in b.tile.chunks_exact_mut(k).enumerate() {
                    w.dequantize_row_into(file, r0 + i, dst);
                }
                #[cfg(target_arch = "x86_64")]
                if fast {
                    b.panels.resize(avx512::packed_b_len(k, rows), 0.0);
                    // SAFETY: the tile is rows × k row-major, read as its transpose (k × rows);
                    // x is n × k; columns r0..r0+rows of this product's y (n × m) belong to this
                    // task.
                    unsafe {
                        avx512::pack_b(b.tile.as_ptr(), 1, k, k, rows, &mut b.panels);
                        let lhs = match packed_x {
                            Some(packed) => avx512::Lhs::Packed(packed),
                            None => avx512::Lhs::Rows { ptr: x.as_ptr(), ld: k },
                        };
                        avx512::gemm_packed(
                            n,
                            rows,
                            k,
                            lhs,
                            avx512::Rhs::Packed(&b.panels),
                            out.at(r0),
                            m,
                            1.0,
                            false,
                            avx512::Causal::None,
                        );
                    }
                    return;
                }
                // SAFETY: as above, through the `gemm` crate with strides.
                unsafe {
                    sgemm(n, rows, k, View::rows(x, k), View::transposed(&b.tile, k), gemm_out(out.at(r0), m), 1.0, false, Causal::None)
                };
            });
        });
    };
    #[cfg(target_arch = "x86_64")]
    if fast && !use_bf16 {
        // SAFETY: x is n × k.
        unsafe { packed_lhs(x.as_ptr(), k, n, k, |packed| run(Some(packed))) };
    } else {
        run(None);
    }
    #[cfg(not(target_arch = "x86_64"))]
    run(None);
    if !use_bf16 {
        for p in products.iter_mut() {
            if let Some(t) = p.low_rank {
                t.add_f32_into(n, p.w.rows, p.y);
            }
        }
    }
}

/// `dx[n × w.cols] (+)= dy[n × w.rows] · W`, in `precision`: the product the backward pass
/// needs to carry a gradient through a frozen weight, added into `dx` with `accumulate`, else
/// overwriting it (so that callers need not zero it first). Each task owns a block of `dx`'s columns: it
/// dequantizes that block of every W row (whole quantization blocks) and multiplies it with
/// all of `dy`. No partial sums are reduced across threads, so the result does not depend on
/// the thread count, and memory beyond `dx` is one slab per thread.
pub fn matmul_w(dy: &[f32], n: usize, w: &WeightMatrix, file: &[u8], dx: &mut [f32], precision: Precision, accumulate: bool) {
    matmul_w_plus(dy, n, w, file, dx, precision, accumulate, None);
}

/// [`matmul_w`] with a low-rank term added to `dx` (see [`LowRankTerm`]; its v is
/// `rank × w.cols`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_w_plus(
    dy: &[f32],
    n: usize,
    w: &WeightMatrix,
    file: &[u8],
    dx: &mut [f32],
    precision: Precision,
    accumulate: bool,
    low_rank: Option<LowRankTerm<'_>>,
) {
    let (k, m) = (w.cols, w.rows);
    assert_eq!(dy.len(), n * m, "matmul_w: dy is not n × rows");
    assert_eq!(dx.len(), n * k, "matmul_w: dx is not n × cols");
    if let Some(t) = &low_rank {
        t.check(n, k);
    }
    if n == 0 {
        return;
    }
    if m == 0 {
        if !accumulate {
            dx.fill(0.0);
        }
        if let Some(t) = low_rank {
            t.add_f32_into(n, k, dx);
        }
        return;
    }
    let (fast, use_bf16) = (avx512::available(), precision == Precision::Bf16 && bf16::available());
    let mut v_copy = Vec::new();
    let term = SharedTerm(low_rank.filter(|_| use_bf16).map(|t| t.kernel_term(k, &mut v_copy)));
    let out = SharedMut(dx.as_mut_ptr());
    let bs = w.ty.block_size();
    // A whole number of quantization blocks and of kernel panels (block sizes are 1, 32, 256).
    let width = task_width(k, bs).min(k);
    // W's rows are taken in blocks of DEPTH_BLOCK, one after the other: the slice of dy that a
    // block meets is then read by every task while it is still in cache (the LM head's 49,152
    // rows would otherwise stream all of dy from memory once per task), and the order of the
    // sums stays fixed.
    let mut dy_bf16 = bf16::Spare::take();
    let mut d0 = 0;
    while d0 < m {
        let depth = DEPTH_BLOCK.min(m - d0);
        // The first depth block overwrites dx unless the caller's values are to be kept.
        let add = accumulate || d0 > 0;
        // The low-rank term joins the last depth block's stores.
        let last_block = d0 + depth == m;
        if use_bf16 {
            bf16::convert_rows_par(dy, n, m, d0, depth, &mut dy_bf16);
        }
        (0..k.div_ceil(width)).into_par_iter().for_each(|t| {
            let c0 = t * width;
            let cols = width.min(k - c0);
            with_tile(|b| {
                let dequantize_slab = |b: &mut TileBuffers| {
                    b.tile.resize(depth * cols, 0.0);
                    for (r, dst) in b.tile.chunks_exact_mut(cols).enumerate() {
                        w.dequantize_segment_into(file, d0 + r, c0, dst);
                    }
                };
                #[cfg(target_arch = "x86_64")]
                if use_bf16 {
                    // Straight from the blocks where the type allows (no f32 slab).
                    if !bf16::pack_b_from_weight_depth_rows(w, file, d0, depth, c0, cols, &mut b.panels_bf16) {
                        dequantize_slab(b);
                        bf16::pack_b_from_depth_rows(&b.tile, depth, cols, &mut b.panels_bf16);
                    }
                    // SAFETY: dy_bf16 is n rows of row_stride(depth) (dy's columns d0..d0+depth);
                    // columns c0..c0+cols of dx (n × k) belong to this task.
                    unsafe {
                        let term = if last_block { term.at_col(c0) } else { None };
                        bf16::gemm(n, cols, depth, &dy_bf16, bf16::row_stride(depth), &b.panels_bf16, out.at(c0), k, add, term)
                    };
                    return;
                }
                dequantize_slab(b);
                #[cfg(target_arch = "x86_64")]
                if fast {
                    b.panels.resize(avx512::packed_b_len(depth, cols), 0.0);
                    // SAFETY: the slab is depth × cols row-major; dy is n × m and its columns
                    // d0..d0+depth are read; columns c0..c0+cols of dx (n × k) belong to this
                    // task.
                    unsafe {
                        avx512::pack_b(b.tile.as_ptr(), cols, 1, depth, cols, &mut b.panels);
                        let lhs = avx512::Lhs::Rows { ptr: dy.as_ptr().add(d0), ld: m };
                        avx512::gemm_packed(
                            n,
                            cols,
                            depth,
                            lhs,
                            avx512::Rhs::Packed(&b.panels),
                            out.at(c0),
                            k,
                            1.0,
                            add,
                            avx512::Causal::None,
                        );
                    }
                    return;
                }
                // SAFETY: as above, through the `gemm` crate with strides.
                unsafe {
                    let lhs = View { ptr: dy.as_ptr().add(d0), rs: m, cs: 1 };
                    sgemm(n, cols, depth, lhs, View::rows(&b.tile, cols), gemm_out(out.at(c0), k), 1.0, add, Causal::None)
                };
            });
        });
        d0 += depth;
    }
    if let Some(t) = low_rank.filter(|_| !use_bf16) {
        t.add_f32_into(n, k, dx);
    }
}

/// One product of [`matmul_w_many`]: `dy · W`, W read from `file`.
pub struct WProduct<'a> {
    pub dy: &'a [f32],
    pub w: &'a WeightMatrix,
    pub file: &'a [u8],
}

/// `dx (+)= Σ_i dy_i · W_i`: the gradients of several projections of one input (a block's q,
/// k and v, or its gate and up) carried back into it, each product added as [`matmul_w`] adds
/// it and in the order given (the first overwriting `dx` unless `accumulate`), so the sums are
/// the same as one call per product. When
/// every W fits one depth block, the inputs are converted together and each task runs every
/// product on its columns, so the threads meet once rather than once per product.
pub fn matmul_w_many(products: &[WProduct<'_>], n: usize, dx: &mut [f32], precision: Precision, accumulate: bool) {
    matmul_w_many_plus(products, n, dx, precision, accumulate, None);
}

/// [`matmul_w_many`] with a low-rank term added to `dx` after the last product (see
/// [`LowRankTerm`]; its v is `rank × cols`).
pub(crate) fn matmul_w_many_plus(
    products: &[WProduct<'_>],
    n: usize,
    dx: &mut [f32],
    precision: Precision,
    accumulate: bool,
    low_rank: Option<LowRankTerm<'_>>,
) {
    let Some(k) = products.first().map(|p| p.w.cols) else {
        if !accumulate {
            dx.fill(0.0);
        }
        if let Some(t) = low_rank {
            t.add_f32_into(n, dx.len().checked_div(n).unwrap_or(0), dx);
        }
        return;
    };
    for p in products {
        assert_eq!(p.w.cols, k, "matmul_w_many: the products do not share their output width");
        assert_eq!(p.dy.len(), n * p.w.rows, "matmul_w: dy is not n × rows");
    }
    assert_eq!(dx.len(), n * k, "matmul_w: dx is not n × cols");
    if let Some(t) = &low_rank {
        t.check(n, k);
    }
    let use_bf16 = precision == Precision::Bf16 && bf16::available();
    if !use_bf16 || n == 0 || products.iter().any(|p| p.w.rows > DEPTH_BLOCK || p.w.rows == 0) {
        let last = products.len() - 1;
        for (i, p) in products.iter().enumerate() {
            let term = if i == last { low_rank } else { None };
            matmul_w_plus(p.dy, n, p.w, p.file, dx, precision, accumulate || i > 0, term);
        }
        return;
    }
    let mut v_copy = Vec::new();
    let term = SharedTerm(low_rank.map(|t| t.kernel_term(k, &mut v_copy)));
    let last = products.len() - 1;
    let inputs: Vec<bf16::Spare> = products
        .iter()
        .map(|p| {
            let mut v = bf16::Spare::take();
            bf16::convert_rows_par(p.dy, n, p.w.rows, 0, p.w.rows, &mut v);
            v
        })
        .collect();
    let out = SharedMut(dx.as_mut_ptr());
    // Block sizes (1, 32, 256) divide one another: a multiple of the largest suits them all.
    let bs = products.iter().map(|p| p.w.ty.block_size()).max().unwrap_or(1);
    let width = task_width(k, bs).min(k);
    (0..k.div_ceil(width)).into_par_iter().for_each(|t| {
        let c0 = t * width;
        let cols = width.min(k - c0);
        with_tile(|b| {
            for (i, (p, dy_bf16)) in products.iter().zip(&inputs).enumerate() {
                let depth = p.w.rows;
                if !bf16::pack_b_from_weight_depth_rows(p.w, p.file, 0, depth, c0, cols, &mut b.panels_bf16) {
                    b.tile.resize(depth * cols, 0.0);
                    for (r, dst) in b.tile.chunks_exact_mut(cols).enumerate() {
                        p.w.dequantize_segment_into(p.file, r, c0, dst);
                    }
                    bf16::pack_b_from_depth_rows(&b.tile, depth, cols, &mut b.panels_bf16);
                }
                // SAFETY: dy_bf16 is n rows of row_stride(depth); columns c0..c0+cols of dx (n × k)
                // belong to this task.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let term = if i == last { term.at_col(c0) } else { None };
                    bf16::gemm(n, cols, depth, dy_bf16, bf16::row_stride(depth), &b.panels_bf16, out.at(c0), k, accumulate || i > 0, term)
                };
            }
        });
    });
}

/// Run `f` on this thread's tile buffers, or on fresh ones if they are in use (a task that
/// this thread picked up while waiting inside another product).
fn with_tile(f: impl FnOnce(&mut TileBuffers)) {
    TILE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => f(&mut bufs),
        Err(_) => f(&mut TileBuffers::default()),
    });
}

fn gemm_out(p: *mut f32, ld: usize) -> Out {
    Out { ptr: p, rs: ld, cs: 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::GgmlType;

    /// Random Q4_1 rows with finite scales, after `offset` bytes of padding (unaligned blocks).
    fn q4_1_matrix(name: &str, rows: usize, cols: usize, offset: usize, seed: u64) -> (WeightMatrix, Vec<u8>) {
        let mut state = seed | 1;
        let mut byte = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        let row_bytes = cols / 32 * GgmlType::Q4_1.type_size();
        let mut file: Vec<u8> = (0..offset + rows * row_bytes).map(|_| byte()).collect();
        for b in 0..rows * cols / 32 {
            let at = offset + b * GgmlType::Q4_1.type_size();
            for f in 0..2 {
                let v = half::f16::from_f32((byte() as f32 - 128.0) / 600.0).to_bits().to_le_bytes();
                file[at + 2 * f..at + 2 * f + 2].copy_from_slice(&v);
            }
        }
        (WeightMatrix { name: name.into(), ty: GgmlType::Q4_1, rows, cols, range: offset..offset + rows * row_bytes }, file)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The f32 forward product packs its input once; it gives, bit for bit, what the kernel
    /// gives reading the input rows in place, on row counts that leave a partial row block.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn packed_input_equals_rows_read_in_place() {
        if !avx512::available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        for (n, rows, k) in [(37usize, 64usize, 96usize), (12, 32, 576), (1, 96, 64), (25, 160, 128)] {
            let (w, file) = q4_1_matrix("w", rows, k, 7, (n * rows + k) as u64);
            let x: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 300.0).collect();
            let mut y = vec![f32::NAN; n * rows];
            matmul_wt(&x, n, &w, &file, &mut y, Precision::F32);
            let mut wt = vec![0.0; rows * k];
            for (r, dst) in wt.chunks_exact_mut(k).enumerate() {
                w.dequantize_row_into(&file, r, dst);
            }
            let mut panels = vec![0.0; avx512::packed_b_len(k, rows)];
            let mut in_place = vec![f32::NAN; n * rows];
            unsafe {
                avx512::pack_b(wt.as_ptr(), 1, k, k, rows, &mut panels);
                let lhs = avx512::Lhs::Rows { ptr: x.as_ptr(), ld: k };
                avx512::gemm_packed(n, rows, k, lhs, avx512::Rhs::Packed(&panels), in_place.as_mut_ptr(), rows, 1.0, false, Causal::None);
            }
            assert_eq!(bits(&y), bits(&in_place), "n {n}, rows {rows}, k {k}");
        }
    }

    /// A weight packed once gives, bit for bit, the product that packs each tile itself: on
    /// row counts that leave a partial panel and a partial chunk, alone and grouped, for a
    /// type packed straight from its blocks (Q4_1) and one that goes through f32 rows (F32).
    #[test]
    fn weights_packed_once_give_the_per_tile_product() {
        if !bf16::available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let (n, k) = (29, 96);
        let x: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 300.0).collect();
        let f32_rows = 70;
        let f32_bytes: Vec<u8> = (0..f32_rows * k).flat_map(|i| (((i * 104729 % 2003) as f32 - 1001.0) / 900.0).to_le_bytes()).collect();
        let f32_w = WeightMatrix { name: "f".into(), ty: GgmlType::F32, rows: f32_rows, cols: k, range: 0..f32_bytes.len() };
        let mut mats: Vec<(WeightMatrix, Vec<u8>)> = [(200usize, 3usize), (32, 5), (161, 0)]
            .iter()
            .map(|&(rows, off)| q4_1_matrix("w", rows, k, off, rows as u64 * 17 + off as u64))
            .collect();
        mats.push((f32_w, f32_bytes));
        let packed: Vec<Vec<u16>> = mats.iter().map(|(w, file)| pack_weight_bf16(w, file)).collect();
        let mut per_tile: Vec<Vec<f32>> = mats.iter().map(|(w, _)| vec![f32::NAN; n * w.rows]).collect();
        for ((w, file), y) in mats.iter().zip(&mut per_tile) {
            matmul_wt(&x, n, w, file, y, Precision::Bf16);
        }
        for ((w, file), (panels, expect)) in mats.iter().zip(packed.iter().zip(&per_tile)) {
            let mut y = vec![f32::NAN; n * w.rows];
            matmul_wt_many(&x, n, &mut [WtProduct { w, file, y: &mut y, packed: Some(panels), low_rank: None }], Precision::Bf16);
            assert_eq!(bits(&y), bits(expect), "{} rows of {}", w.rows, w.ty);
        }
        let mut grouped: Vec<Vec<f32>> = mats.iter().map(|(w, _)| vec![f32::NAN; n * w.rows]).collect();
        let mut products: Vec<WtProduct<'_>> = mats
            .iter()
            .zip(&packed)
            .zip(&mut grouped)
            .map(|(((w, file), panels), y)| WtProduct { w, file, y, packed: Some(panels), low_rank: None })
            .collect();
        matmul_wt_many(&x, n, &mut products, Precision::Bf16);
        for (a, b) in per_tile.iter().zip(&grouped) {
            assert_eq!(bits(a), bits(b), "grouped products with packed weights");
        }
    }

    /// Grouped products give exactly what one call per product gives, in both precisions.
    #[test]
    fn grouped_products_equal_one_call_each() {
        let (n, k) = (37, 96);
        let mats: Vec<(WeightMatrix, Vec<u8>)> = [(64usize, 3usize), (32, 5), (160, 9)]
            .iter()
            .map(|&(rows, off)| q4_1_matrix("w", rows, k, off, rows as u64 * 31 + off as u64))
            .collect();
        let x: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 300.0).collect();
        for precision in [Precision::F32, Precision::Bf16] {
            let mut separate: Vec<Vec<f32>> = mats.iter().map(|(w, _)| vec![0.0; n * w.rows]).collect();
            for ((w, file), y) in mats.iter().zip(&mut separate) {
                matmul_wt(&x, n, w, file, y, precision);
            }
            let mut grouped: Vec<Vec<f32>> = mats.iter().map(|(w, _)| vec![f32::NAN; n * w.rows]).collect();
            let mut products: Vec<WtProduct<'_>> =
                mats.iter().zip(&mut grouped).map(|((w, file), y)| WtProduct { w, file, y, packed: None, low_rank: None }).collect();
            matmul_wt_many(&x, n, &mut products, precision);
            for (a, b) in separate.iter().zip(&grouped) {
                assert_eq!(bits(a), bits(b), "matmul_wt_many, {precision:?}");
            }

            // Backward: dx += Σ dy_i W_i, from a non-zero dx.
            let dys: Vec<Vec<f32>> =
                mats.iter().map(|(w, _)| (0..n * w.rows).map(|i| ((i * 104729 % 2003) as f32 - 1001.0) / 900.0).collect()).collect();
            let start: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 / 7.0).collect();
            let mut one_each = start.clone();
            for ((w, file), dy) in mats.iter().zip(&dys) {
                matmul_w(dy, n, w, file, &mut one_each, precision, true);
            }
            let mut grouped = start.clone();
            let products: Vec<WProduct<'_>> = mats.iter().zip(&dys).map(|((w, file), dy)| WProduct { dy, w, file }).collect();
            matmul_w_many(&products, n, &mut grouped, precision, true);
            assert_eq!(bits(&one_each), bits(&grouped), "matmul_w_many, {precision:?}");
            let moved = one_each.iter().zip(&start).filter(|(a, b)| a != b).count();
            assert!(moved > n * k / 2, "the products changed dx ({moved} of {} elements)", n * k);

            // Overwriting: the same as adding into zeros, whatever dx held (NaN included).
            let mut zeros = vec![0.0f32; n * k];
            matmul_w_many(&products, n, &mut zeros, precision, true);
            let mut overwritten = vec![f32::NAN; n * k];
            matmul_w_many(&products, n, &mut overwritten, precision, false);
            assert_eq!(bits(&zeros), bits(&overwritten), "matmul_w_many overwriting, {precision:?}");
            let (w, file) = &mats[0];
            let (mut zeros, mut overwritten) = (vec![0.0f32; n * k], vec![f32::NAN; n * k]);
            matmul_w(&dys[0], n, w, file, &mut zeros, precision, true);
            matmul_w(&dys[0], n, w, file, &mut overwritten, precision, false);
            assert_eq!(bits(&zeros), bits(&overwritten), "matmul_w overwriting, {precision:?}");
            // A W of more rows than one depth block (the LM head's case): the later blocks add.
            let (tall, tall_file) = q4_1_matrix("tall", 2 * DEPTH_BLOCK + 40, k, 1, 99);
            let dy: Vec<f32> = (0..n * tall.rows).map(|i| ((i * 7919 % 2011) as f32 - 1005.0) / 1500.0).collect();
            let (mut zeros, mut overwritten) = (vec![0.0f32; n * k], vec![f32::NAN; n * k]);
            matmul_w(&dy, n, &tall, &tall_file, &mut zeros, precision, true);
            matmul_w(&dy, n, &tall, &tall_file, &mut overwritten, precision, false);
            assert_eq!(bits(&zeros), bits(&overwritten), "matmul_w overwriting over {} rows, {precision:?}", tall.rows);
        }
    }

    /// A low-rank term given to a product equals the product without it followed by the term
    /// as a product of its own: bit for bit in f32 (the same products in the same order), to
    /// f32 rounding in bf16 (where the kernel adds it to its sums before storing). Forward
    /// (grouped, u read from a stack, v transposed), backward (one W, a W of several depth
    /// blocks, grouped), each output dirty before it is overwritten.
    #[test]
    fn low_rank_terms_equal_a_second_product() {
        let (n, k, rank) = (29, 96, 8);
        let mats: Vec<(WeightMatrix, Vec<u8>)> =
            [(64usize, 3usize), (40, 5)].iter().map(|&(rows, off)| q4_1_matrix("w", rows, k, off, rows as u64 * 17 + off as u64)).collect();
        let values =
            |len: usize, seed: usize| -> Vec<f32> { (0..len).map(|i| (((i + seed) * 7919 % 1013) as f32 - 506.0) / 300.0).collect() };
        let x = values(n * k, 1);
        // Stacked u: n × 2·rank, product i's columns at i·rank.
        let u = values(n * 2 * rank, 2);
        let bs: Vec<Vec<f32>> = mats.iter().enumerate().map(|(i, (w, _))| values(w.rows * rank, 3 + i)).collect();
        let (mut worst, mut checked) = (0.0f32, 0);
        let mut compare = |precision: Precision, with: &[f32], without: &[f32], what: &str| {
            if precision == Precision::F32 {
                assert_eq!(bits(with), bits(without), "{what}, f32");
            } else {
                let scale = without.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let diff = with.iter().zip(without).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                assert!(diff < 1e-5, "{what}, bf16: max diff {diff} of the output's scale");
                worst = worst.max(diff);
            }
            checked += 1;
        };
        for precision in [Precision::F32, Precision::Bf16] {
            let term = |i: usize| LowRankTerm { u: &u[i * rank..], ldu: 2 * rank, v: &bs[i], vs: (1, rank), rank, scale: 0.5 };
            let mut with: Vec<Vec<f32>> = mats.iter().map(|(w, _)| vec![f32::NAN; n * w.rows]).collect();
            let mut products: Vec<WtProduct<'_>> = mats
                .iter()
                .zip(&mut with)
                .enumerate()
                .map(|(i, ((w, file), y))| WtProduct { w, file, y, packed: None, low_rank: Some(term(i)) })
                .collect();
            matmul_wt_many(&x, n, &mut products, precision);
            for (i, ((w, file), got)) in mats.iter().zip(&with).enumerate() {
                let mut y = vec![f32::NAN; n * w.rows];
                matmul_wt(&x, n, w, file, &mut y, precision);
                term(i).add_f32_into(n, w.rows, &mut y);
                compare(precision, got, &y, "matmul_wt_many with terms");
            }

            // Backward: du (n × rank) · A (rank × k).
            let a = values(rank * k, 9);
            let du = values(n * rank, 10);
            let dx_term = LowRankTerm { u: &du, ldu: rank, v: &a, vs: (k, 1), rank, scale: 1.0 };
            let dys: Vec<Vec<f32>> = mats.iter().enumerate().map(|(i, (w, _))| values(n * w.rows, 20 + i)).collect();
            let (tall, tall_file) = q4_1_matrix("tall", 2 * DEPTH_BLOCK + 40, k, 1, 99);
            let dy_tall = values(n * tall.rows, 30);
            for (w, file, dy) in [(&mats[0].0, &mats[0].1, &dys[0]), (&tall, &tall_file, &dy_tall)] {
                let mut got = vec![f32::NAN; n * k];
                matmul_w_plus(dy, n, w, file, &mut got, precision, false, Some(dx_term));
                let mut expect = vec![f32::NAN; n * k];
                matmul_w(dy, n, w, file, &mut expect, precision, false);
                dx_term.add_f32_into(n, k, &mut expect);
                compare(precision, &got, &expect, &format!("matmul_w_plus over {} rows", w.rows));
            }
            let products: Vec<WProduct<'_>> = mats.iter().zip(&dys).map(|((w, file), dy)| WProduct { dy, w, file }).collect();
            let mut got = vec![f32::NAN; n * k];
            matmul_w_many_plus(&products, n, &mut got, precision, false, Some(dx_term));
            let mut expect = vec![f32::NAN; n * k];
            matmul_w_many(&products, n, &mut expect, precision, false);
            dx_term.add_f32_into(n, k, &mut expect);
            compare(precision, &got, &expect, "matmul_w_many_plus");
        }
        println!("products with a low-rank term vs the term added after: {checked} cases, bf16 max diff {worst:.2e} of the output's scale");
    }
}
