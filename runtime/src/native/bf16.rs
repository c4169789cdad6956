//! The bf16 path of the frozen-weight products: inputs rounded to bfloat16, products summed in
//! f32 with AVX512-BF16's `vdpbf16ps`, which does two multiply-adds per lane where an f32 FMA
//! does one. It is what PyTorch's bf16 autocast does on such CPUs: the same rounding of both
//! operands, f32 accumulation, f32 outputs. The attention products take it too
//! (`layers/attention_bf16.rs`, through [`gemm_lhs`]). Everything trainable (LoRA matrices,
//! optimizer state), the LoRA products, norms and softmaxes stay in f32.
//!
//! Layouts (`kp` is the depth rounded up to even, padded with zeros):
//! - A: bf16 rows of stride `lda` (≥ kp): each step broadcasts the pair (A[r][2p], A[r][2p+1])
//!   as one 32-bit lane.
//! - B: panels of [`NR`] columns laid out `[kp/2][NR][2]`: one zmm holds the depth pair of 16
//!   columns, two zmm a panel's step.
//!
//! The kernel is the f32 one's (12 × 32 outputs in 24 accumulators), one depth pair per step.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::amx;
use super::avx512::{self, transpose_16x16, Causal, MR, NR};
use super::matmul::WeightMatrix;
#[cfg(target_arch = "x86_64")]
use crate::weights::dequant::simd::Block32;
use crate::weights::GgmlType;

/// Depth pairs per block: a panel block of 512 pairs × 32 columns is 64 KiB, in L2.
const KP: usize = 512;

/// Whether this CPU has AVX512-BF16 (and the f32 AVX-512 path is enabled).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| avx512::available() && std::arch::is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The bf16 path's dot products must retire at least this many times the f32 FMA's
/// multiply-adds for `Auto` to choose it: it also converts every activation and weight tile
/// to bf16, which the f32 path does not. Measured on two CPUs with AVX512-BF16: AMD Zen 4
/// (bf16 products at 82-94% of twice the f32 peak; the bf16 forward ran 1.4 times faster
/// than f32) and an Intel Xeon of CPUID model 207 without AMX (0.50: bf16 ran the forward at
/// 0.72 times f32's speed).
pub const MIN_SPEEDUP: f64 = 1.5;

/// [`peak::bf16_dot_speedup`](super::peak::bf16_dot_speedup), measured once per process;
/// None without AVX512-BF16 (or with AVX-512 disabled).
pub fn dot_speedup() -> Option<f64> {
    use std::sync::OnceLock;
    static SPEEDUP: OnceLock<Option<f64>> = OnceLock::new();
    *SPEEDUP.get_or_init(|| if available() { super::peak::bf16_dot_speedup() } else { None })
}

/// Whether the bf16 path is the faster one on this CPU: AMX tiles are usable (the weight
/// products then run on them, see `amx.rs`), or the vector dot product retires at least
/// [`MIN_SPEEDUP`] times the f32 FMA's multiply-adds. Measured on a 2-vCPU Sapphire Rapids,
/// whose `vdpbf16ps` alone retires about 0.5x: the native forward ran at 926 tokens/s in f32
/// and 2,355 with the weight products on tiles (`lamina bench-native --forward-only`).
pub fn pays_off() -> bool {
    amx::available() || vector_pays_off()
}

/// Whether the vector dot product `vdpbf16ps` alone retires at least [`MIN_SPEEDUP`] times the
/// f32 FMA's multiply-adds here.
pub fn vector_pays_off() -> bool {
    dot_speedup().is_some_and(|s| s >= MIN_SPEEDUP)
}

/// f32 → bf16, rounding to nearest even (NaN stays NaN), as `vcvtneps2bf16` does for normal
/// numbers.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 → f32 (exact).
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `depth` rounded up to a whole number of pairs.
pub fn padded(depth: usize) -> usize {
    depth.div_ceil(2) * 2
}

/// The row stride of bf16 rows that hold `depth` elements as a left operand of the kernel:
/// [`padded`]`(depth)`, plus 32 elements (64 bytes) when that is a multiple of 1024 elements
/// (2 KiB). Why: the kernel reads 12 rows at once, and rows a multiple of 2 KiB apart fall in
/// at most two sets of a 32 KiB, 8-way L1 data cache (one set at 4 KiB), where they evict one
/// another; 64 bytes more puts each row in a set of its own. Measured on Zen 4 on the LM
/// head's backward product, whose bf16 rows were 2,048 elements: 287-306 GFLOP/s at a 4 KiB
/// stride, 339-344 with rows of 1,792 (3.5 KiB apart). Models 2,048 or 4,096 wide read their
/// activations at such strides in every product.
pub fn row_stride(depth: usize) -> usize {
    let kp = padded(depth);
    if kp.is_multiple_of(1024) {
        kp + 32
    } else {
        kp
    }
}

/// Columns `c0 .. c0 + depth` of each of `rows` f32 rows of stride `ld` into bf16 rows of
/// stride [`row_stride`]`(depth)` (the padding zero).
pub fn convert_rows(x: &[f32], rows: usize, ld: usize, c0: usize, depth: usize, out: &mut Vec<u16>) {
    let kp = row_stride(depth);
    reuse_for_overwrite(out, rows * kp);
    for (i, dst) in out.chunks_exact_mut(kp).enumerate() {
        convert(&x[i * ld + c0..i * ld + c0 + depth], &mut dst[..depth]);
        dst[depth..].fill(0);
    }
}

/// [`convert_rows`] on the current rayon pool, in blocks of rows: for a product's whole input,
/// which would otherwise be converted by one thread while the others wait.
pub fn convert_rows_par(x: &[f32], rows: usize, ld: usize, c0: usize, depth: usize, out: &mut Vec<u16>) {
    use rayon::prelude::*;
    let kp = row_stride(depth);
    reuse_for_overwrite(out, rows * kp);
    out.par_chunks_mut(kp * 64).enumerate().for_each(|(b, block)| {
        for (i, dst) in block.chunks_exact_mut(kp).enumerate() {
            let r = b * 64 + i;
            convert(&x[r * ld + c0..r * ld + c0 + depth], &mut dst[..depth]);
            dst[depth..].fill(0);
        }
    });
}

/// `src` rounded to bf16 into `dst` (the same length).
pub fn convert(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "bf16 convert: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX512-BF16; both slices hold the same number of elements.
        unsafe { convert_slice_avx512(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = to_bf16(s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_slice_avx512(src: &[f32], dst: &mut [u16]) {
    let mut i = 0;
    while i + 16 <= src.len() {
        // SAFETY: 16 elements from i are inside both slices.
        unsafe {
            let v: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(src.as_ptr().add(i))));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, v);
        }
        i += 16;
    }
    for j in i..src.len() {
        dst[j] = to_bf16(src[j]);
    }
}

/// bf16 elements that the B panels of `depth × cols` take.
pub fn packed_b_len(depth: usize, cols: usize) -> usize {
    cols.div_ceil(NR) * NR * padded(depth)
}

/// Pack B = Wᵀ for a tile of W's rows (`cols` rows of `depth` f32, row-major: element (kk, j)
/// at `tile[j·depth + kk]`) into bf16 panels `[kp/2][NR][2]`, zero beyond `depth` and `cols`.
/// The rows are converted to bf16 (into `rows_bf16`), then, seen as 32-bit depth pairs, moved
/// into the panels: a transpose, done 16 × 16 pairs at a time in registers.
pub fn pack_b_from_rows(tile: &[f32], depth: usize, cols: usize, rows_bf16: &mut Vec<u16>, out: &mut Vec<u16>) {
    convert_rows(tile, cols, depth, 0, depth, rows_bf16);
    pack_b_from_bf16_rows_strided(rows_bf16, row_stride(depth), depth, cols, out);
}

/// [`pack_b_from_rows`] for rows already in bf16 (`cols` rows of stride `padded(depth)`, the
/// padding zero).
pub fn pack_b_from_bf16_rows(rows_bf16: &[u16], depth: usize, cols: usize, out: &mut Vec<u16>) {
    pack_b_from_bf16_rows_strided(rows_bf16, padded(depth), depth, cols, out);
}

/// [`pack_b_from_bf16_rows`] for `cols` bf16 rows of stride `ld` (even), each read for its
/// first `depth` elements: a head's keys or values inside a whole projection's rows
/// (attention's `Kᵀ` and `Vᵀ`). An odd depth reads one element past it, which the panels
/// then carry: callers give an even depth unless that element is zero.
pub fn pack_b_from_bf16_rows_strided(rows_bf16: &[u16], ld: usize, depth: usize, cols: usize, out: &mut Vec<u16>) {
    assert!(ld.is_multiple_of(2) && ld >= padded(depth), "pack_b_from_bf16_rows: the row stride must be even and hold the depth");
    assert!(cols == 0 || rows_bf16.len() >= (cols - 1) * ld + padded(depth), "pack_b_from_bf16_rows: fewer than cols rows");
    out.clear();
    out.resize(packed_b_len(depth, cols), 0);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX-512; rows_bf16 holds cols rows of stride ld, and out the
        // panels of depth × cols.
        unsafe { transpose_pairs_avx512(rows_bf16, ld, depth, cols, out) };
        return;
    }
    transpose_pairs_portable(rows_bf16, ld, depth, cols, out);
}

/// Pack B = Wᵀ for rows `r0 .. r0 + cols` of `w` (Q4_0, Q4_1 or Q8_0) straight from their
/// blocks in `file`: each block of 16 rows × 32 elements is decoded in registers, rounded to
/// bf16 pairs, transposed and stored into the panels, with no buffer in between (half the
/// cost of dequantizing to f32, converting and transposing through memory). Returns false,
/// leaving `out` alone, for other types or a CPU without AVX512-BF16 and F16C.
pub fn pack_b_from_weight_rows(w: &WeightMatrix, file: &[u8], r0: usize, cols: usize, out: &mut Vec<u16>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::weights::dequant::simd;
        if !(available() && simd::available() && w.cols.is_multiple_of(32)) {
            return false;
        }
        assert!(r0 + cols <= w.rows && w.range.end <= file.len(), "pack_b_from_weight_rows: rows outside the matrix");
        let pack = match w.ty {
            GgmlType::Q4_1 => pack_blocks_avx512::<simd::Q4_1>,
            GgmlType::Q4_0 => pack_blocks_avx512::<simd::Q4_0>,
            GgmlType::Q8_0 => pack_blocks_avx512::<simd::Q8_0>,
            _ => return false,
        };
        // Every element is written below (no memset of the whole buffer first: the panels of
        // every weight pass through here on every forward pass).
        reuse_for_overwrite(out, packed_b_len(w.cols, cols));
        let rows = &file[w.range.start + r0 * w.row_bytes()..w.range.start + (r0 + cols) * w.row_bytes()];
        // SAFETY: the CPU has AVX512-BF16 and F16C; `rows` holds `cols` whole rows of w's
        // type, and out the panels of w.cols × cols.
        unsafe { pack(rows, w.row_bytes(), w.cols, cols, out) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, file, r0, cols, out);
        false
    }
}

/// [`pack_b_from_weight_rows`] for block type `B`: `rows` holds `cols` rows of `row_bytes`,
/// each `depth` (a multiple of 32) elements.
///
/// # Safety
/// AVX512-BF16 and F16C; `out` holds [`packed_b_len`]`(depth, cols)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,f16c")]
unsafe fn pack_blocks_avx512<B: Block32>(rows: &[u8], row_bytes: usize, depth: usize, cols: usize, out: &mut [u16]) {
    let pairs = depth / 2;
    let dst = out.as_mut_ptr() as *mut u32;
    for g in (0..cols).step_by(16) {
        let live_rows = 16.min(cols - g);
        // Panel g / NR, its columns g % NR .. + 16, laid out [pairs][NR] in 32-bit units.
        let base = (g / NR) * NR * pairs + g % NR;
        for blk in 0..depth / 32 {
            let mut r = [_mm512_setzero_si512(); 16];
            for (i, ri) in r.iter_mut().enumerate().take(live_rows) {
                // SAFETY: row g + i < cols, block blk of it; its 32 elements become 16 pairs.
                unsafe {
                    let (lo, hi) = B::decode(rows.as_ptr().add((g + i) * row_bytes + blk * B::BYTES));
                    *ri = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                }
            }
            for (pp, tp) in transpose_16x16(r).iter().enumerate() {
                // SAFETY: pair blk·16 + pp < pairs; 16 columns from g % NR stay in the panel.
                unsafe { _mm512_storeu_si512(dst.add(base + (blk * 16 + pp) * NR) as *mut _, *tp) };
            }
        }
    }
    // Groups of 16 columns fill every panel but, when their count is odd, the last one's
    // second half: zero it (the buffer may hold an earlier tile's values).
    if cols.div_ceil(16) % 2 == 1 {
        let base = (cols / NR) * NR * pairs + 16;
        for p in 0..pairs {
            // SAFETY: columns 16..32 of the last panel, pair p: inside `out`.
            unsafe { _mm512_storeu_si512(dst.add(base + p * NR) as *mut _, _mm512_setzero_si512()) };
        }
    }
}

thread_local! {
    /// This thread's spare bf16 buffers (see [`Spare`]).
    static SPARES: std::cell::RefCell<Vec<Vec<u16>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Spare buffers a thread keeps: a block's products and its attention convert at most this
/// many operands before the first is given back.
const MAX_SPARES: usize = 6;

/// A bf16 buffer for a product's converted operand, taken from the buffers earlier products of
/// this thread gave back, and given back when dropped. Why: a fresh `Vec` per product was
/// allocated, zeroed by [`convert_rows`] and faulted in on every call, about 1 MB a product
/// (`memset` and `clear_page` were 1-3% of a pass in `perf`).
pub struct Spare(Vec<u16>);

impl Spare {
    /// The largest spare buffer of this thread, or an empty one.
    pub fn take() -> Spare {
        Spare(SPARES.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop())).unwrap_or_default())
    }
}

impl std::ops::Deref for Spare {
    type Target = Vec<u16>;
    fn deref(&self) -> &Vec<u16> {
        &self.0
    }
}

impl std::ops::DerefMut for Spare {
    fn deref_mut(&mut self) -> &mut Vec<u16> {
        &mut self.0
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() == 0 {
            return;
        }
        let _ = SPARES.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                // Kept sorted by capacity, so that `take` gets the largest (the one least
                // likely to grow).
                let at = s.partition_point(|b| b.capacity() <= v.capacity());
                s.insert(at, v);
                if s.len() > MAX_SPARES {
                    s.remove(0);
                }
            }
        });
    }
}

/// `out` at `len` elements without zeroing what it already holds: for packers that write
/// every element.
fn reuse_for_overwrite(out: &mut Vec<u16>, len: usize) {
    out.truncate(len);
    out.resize(len, 0);
}

/// Pair p of bf16 row j (stride `ld`) into panel position (p, j).
fn transpose_pairs_portable(rows: &[u16], ld: usize, depth: usize, cols: usize, out: &mut [u16]) {
    let kp = padded(depth);
    for j in 0..cols {
        let panel = &mut out[(j / NR) * NR * kp..(j / NR + 1) * NR * kp];
        let col = j % NR;
        for (p, pair) in rows[j * ld..j * ld + kp].chunks_exact(2).enumerate() {
            panel[p * 2 * NR + 2 * col] = pair[0];
            panel[p * 2 * NR + 2 * col + 1] = pair[1];
        }
    }
}

/// [`transpose_pairs_portable`] in blocks of 16 rows × 16 pairs: rows past `cols` read as
/// zero, pairs past the depth are masked off.
///
/// # Safety
/// AVX-512F; `rows` holds `cols` rows of stride `ld` (even), `out`
/// [`packed_b_len`]`(depth, cols)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_pairs_avx512(rows: &[u16], ld: usize, depth: usize, cols: usize, out: &mut [u16]) {
    let pairs = padded(depth) / 2;
    let row_units = ld / 2;
    debug_assert!((cols == 0 || rows.len() >= (cols - 1) * ld + 2 * pairs) && out.len() >= packed_b_len(depth, cols));
    let (src, dst) = (rows.as_ptr() as *const u32, out.as_mut_ptr() as *mut u32);
    for g in (0..cols).step_by(16) {
        let live_rows = 16.min(cols - g);
        // Panel g / NR, its columns g % NR .. + 16, laid out [pairs][NR] in 32-bit units.
        let base = (g / NR) * NR * pairs + g % NR;
        for p0 in (0..pairs).step_by(16) {
            let live = 16.min(pairs - p0);
            let mask: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
            let mut r = [_mm512_setzero_si512(); 16];
            for (i, ri) in r.iter_mut().enumerate().take(live_rows) {
                // SAFETY: row g + i < cols, pairs p0 .. p0 + live of it.
                *ri = unsafe { _mm512_maskz_loadu_epi32(mask, src.add((g + i) * row_units + p0) as *const i32) };
            }
            let t = transpose_16x16(r);
            for (pp, tp) in t.iter().enumerate().take(live) {
                // SAFETY: pair p0 + pp < pairs; 16 columns from g % NR stay within the panel.
                unsafe { _mm512_storeu_si512(dst.add(base + (p0 + pp) * NR) as *mut _, *tp) };
            }
        }
    }
}

/// 16 floats rounded to bf16, each in the low half of a 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn to_lanes(v: __m512) -> __m512i {
    // SAFETY: __m256bh and __m256i are both 256 plain bits.
    _mm512_cvtepu16_epi32(unsafe { std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)) })
}

/// Pack B given as `depth` f32 rows of `cols` (element (kk, j) at `slab[kk·cols + j]`, the
/// backward product's slab of W) into bf16 panels `[kp/2][NR][2]`: consecutive rows are
/// interleaved into pairs.
pub fn pack_b_from_depth_rows(slab: &[f32], depth: usize, cols: usize, out: &mut Vec<u16>) {
    pack_b_from_depth_rows_strided(slab, cols, depth, cols, out);
}

/// [`pack_b_from_depth_rows`] for rows of stride `ld` (element (kk, j) at `src[kk·ld + j]`):
/// one head's columns of a projection (attention's `V`, `K`, `Q` and `dO` as right operands).
pub fn pack_b_from_depth_rows_strided(src: &[f32], ld: usize, depth: usize, cols: usize, out: &mut Vec<u16>) {
    out.clear();
    out.resize(packed_b_len(depth, cols), 0);
    interleave_row_pairs::<true>(src, ld, depth, cols, out);
}

/// The transpose `Mᵀ` (`cols × depth`) of the f32 matrix M (`depth` rows of `cols`, stride
/// `ld`) as the left operand [`Lhs::Pairs`] of [`gemm_lhs`] with `ld = cols`: its rows' depth
/// pairs `(M[2p][j], M[2p+1][j])` rounded to bf16 and stored as 32-bit units at `p·cols + j`
/// (zero past an odd depth). One pass over M, with no transpose: attention's `Pᵀ` and `dSᵀ`.
pub fn transpose_to_pairs(src: &[f32], ld: usize, depth: usize, cols: usize, out: &mut Vec<u16>) {
    out.clear();
    out.resize(padded(depth) * cols, 0);
    interleave_row_pairs::<false>(src, ld, depth, cols, out);
}

/// Rows 2p and 2p + 1 of M (`depth` f32 rows of `cols`, stride `ld`) rounded to bf16 and
/// interleaved into 32-bit pairs, stored in B's panels (`PANELS`) or as `[pairs][cols]`.
fn interleave_row_pairs<const PANELS: bool>(src: &[f32], ld: usize, depth: usize, cols: usize, out: &mut [u16]) {
    assert!(depth == 0 || cols == 0 || (ld >= cols && src.len() >= (depth - 1) * ld + cols), "bf16 interleave: source too small");
    let pairs = padded(depth) / 2;
    let at = |p: usize, j: usize| if PANELS { (j / NR) * NR * pairs + p * NR + j % NR } else { p * cols + j };
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has AVX512-BF16; src holds the rows checked above, and every unit
        // `at` addresses lies inside `out` (its callers size it for the layout).
        unsafe { interleave_rows_avx512(src, ld, depth, cols, out, at) };
        return;
    }
    for p in 0..pairs {
        let r0 = &src[2 * p * ld..2 * p * ld + cols];
        let r1 = (2 * p + 1 < depth).then(|| &src[(2 * p + 1) * ld..(2 * p + 1) * ld + cols]);
        for j in 0..cols {
            let u = at(p, j);
            out[2 * u] = to_bf16(r0[j]);
            out[2 * u + 1] = r1.map_or(0, |r| to_bf16(r[j]));
        }
    }
}

/// [`pack_b_from_depth_rows`] for rows `r0 .. r0 + depth`, columns `c0 .. c0 + cols` of `w`
/// (Q4_0, Q4_1 or Q8_0) straight from their blocks in `file`: the backward product's slab of
/// W, each 32-column block of a row pair decoded in registers, rounded to bf16 and
/// interleaved into the panels, with no f32 slab in between. The same bits as dequantizing
/// the slab and packing it. Returns false, leaving `out` alone, for other types, a CPU
/// without AVX512-BF16 and F16C, or columns that are not whole blocks.
pub fn pack_b_from_weight_depth_rows(
    w: &WeightMatrix,
    file: &[u8],
    r0: usize,
    depth: usize,
    c0: usize,
    cols: usize,
    out: &mut Vec<u16>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::weights::dequant::simd;
        if !(available() && simd::available() && c0.is_multiple_of(32) && cols.is_multiple_of(32)) {
            return false;
        }
        let decode = match w.ty {
            GgmlType::Q4_1 => simd::Q4_1::decode as unsafe fn(*const u8) -> (__m512, __m512),
            GgmlType::Q4_0 => simd::Q4_0::decode,
            GgmlType::Q8_0 => simd::Q8_0::decode,
            _ => return false,
        };
        assert!(
            r0 + depth <= w.rows && c0 + cols <= w.cols && w.range.end <= file.len(),
            "pack_b_from_weight_depth_rows: slab outside the matrix"
        );
        // Every element is written below, the depth padding included.
        reuse_for_overwrite(out, packed_b_len(depth, cols));
        let block_bytes = w.ty.type_size();
        let first = w.range.start + r0 * w.row_bytes() + c0 / 32 * block_bytes;
        // SAFETY: the CPU has AVX512-BF16 and F16C; rows r0..r0+depth of w hold the blocks
        // c0/32 .. (c0+cols)/32 read here, and out the panels of depth × cols.
        unsafe { interleave_blocks_avx512(decode, &file[first..], w.row_bytes(), block_bytes, depth, cols, out) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, file, r0, depth, c0, cols, out);
        false
    }
}

// A quantization block's 32 columns fill exactly one panel.
const _: () = assert!(NR == 32 && amx::BLOCK == NR);

/// [`pack_b_from_weight_depth_rows`]'s loop: `rows` starts at the slab's first block; row
/// `i`'s block `b` is at `i·row_bytes + b·block_bytes`.
///
/// # Safety
/// AVX512-BF16 and F16C; `rows` holds `depth` rows of `cols / 32` blocks at that stride;
/// `out` holds [`packed_b_len`]`(depth, cols)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16,f16c")]
unsafe fn interleave_blocks_avx512(
    decode: unsafe fn(*const u8) -> (__m512, __m512),
    rows: &[u8],
    row_bytes: usize,
    block_bytes: usize,
    depth: usize,
    cols: usize,
    out: &mut [u16],
) {
    let pairs = padded(depth) / 2;
    let dst = out.as_mut_ptr() as *mut u32;
    let src = rows.as_ptr();
    for p in 0..pairs {
        let second = 2 * p + 1 < depth;
        for blk in 0..cols / 32 {
            // SAFETY: rows 2p and (when inside the depth) 2p + 1, block blk: inside `rows`.
            // Columns blk·32 .. + 32 are one whole panel (NR = 32, blocks start on panels).
            unsafe {
                let (a0, a1) = decode(src.add(2 * p * row_bytes + blk * block_bytes));
                let (b0, b1) = if second {
                    decode(src.add((2 * p + 1) * row_bytes + blk * block_bytes))
                } else {
                    (_mm512_setzero_ps(), _mm512_setzero_ps())
                };
                let at = dst.add(blk * NR * pairs + p * NR);
                _mm512_storeu_si512(at as *mut _, _mm512_or_si512(to_lanes(a0), _mm512_slli_epi32::<16>(to_lanes(b0))));
                _mm512_storeu_si512(at.add(16) as *mut _, _mm512_or_si512(to_lanes(a1), _mm512_slli_epi32::<16>(to_lanes(b1))));
            }
        }
    }
}

/// [`interleave_row_pairs`], 16 columns of a row pair at a time: both rows rounded to bf16,
/// the second shifted into the high half of each 32-bit pair, stored at unit `at(p, j)`.
///
/// # Safety
/// AVX512-BF16; `src` holds `depth` rows of stride `ld` with `cols` elements each; `at`
/// keeps 16 consecutive columns from a multiple of 16 contiguous and inside `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn interleave_rows_avx512(src: &[f32], ld: usize, depth: usize, cols: usize, out: &mut [u16], at: impl Fn(usize, usize) -> usize) {
    let pairs = padded(depth) / 2;
    let dst = out.as_mut_ptr() as *mut u32;
    for p in 0..pairs {
        let r0 = src.as_ptr().wrapping_add(2 * p * ld);
        let second = 2 * p + 1 < depth;
        for j in (0..cols).step_by(16) {
            let live = 16.min(cols - j);
            let mask: __mmask16 = if live == 16 { !0 } else { (1u16 << live) - 1 };
            // SAFETY: rows 2p (and 2p + 1 when inside the depth), columns j .. j + live.
            unsafe {
                let lo = to_lanes(_mm512_maskz_loadu_ps(mask, r0.add(j)));
                let hi = if second {
                    _mm512_slli_epi32::<16>(to_lanes(_mm512_maskz_loadu_ps(mask, r0.add(ld + j))))
                } else {
                    _mm512_setzero_si512()
                };
                // Pair p, columns j .. j + live: contiguous in either layout (in the panels,
                // 16 columns from a multiple of 16 never straddle two of them).
                _mm512_mask_storeu_epi32(dst.add(at(p, j)) as *mut i32, mask, _mm512_or_si512(lo, hi));
            }
        }
    }
}

/// `C[i][j] (+)= Σ_kk A[i][kk] · B[kk][j]` for i < rows, j < cols; A bf16 rows of stride `lda`
/// (best [`row_stride`]`(depth)`, what [`convert_rows`] writes) holding `padded(depth)`
/// elements each, B packed by [`pack_b_from_rows`] or
/// [`pack_b_from_depth_rows`]; C f32 with row stride `ldc`. With `low_rank`, its term is
/// added too (see [`LowRank`]).
///
/// # Safety
/// [`available`] must be true; `a` holds `rows` rows of stride `lda`; C addresses `rows` rows of
/// stride `ldc` with `cols <= ldc`, written by no one else during the call; `low_rank` as its
/// type says, for these `rows` and `cols`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    rows: usize,
    cols: usize,
    depth: usize,
    a: &[u16],
    lda: usize,
    b: &[u16],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    low_rank: Option<LowRank>,
) {
    // SAFETY: forwarded.
    unsafe { gemm_inner(rows, cols, depth, Lhs::Rows { a, ld: lda }, b, c, ldc, accumulate, Causal::None, low_rank) }
}

/// A low-rank term that [`gemm`] adds to C as it stores each output block:
/// `C[i][j] += scale · Σ_q u[i·ldu + q] · v[q·ldv + j]`, in f32 FMAs on the block's f32 sums
/// (nothing of it is rounded to bf16). It is how a LoRA branch's `s · (x̃ Aᵀ) Bᵀ` (and its
/// backward `du A`) joins the frozen product: as a second product it would read and write the
/// whole `rows × cols` output again for 2·rank FLOPs per element, which at rank 8 is bound by
/// memory and cost more than the branch's other products together.
///
/// Safety contract of every function that takes one: `u` addresses `rows` rows of `rank`
/// readable f32 at stride `ldu`, `v` `rank` rows of `cols` readable f32 at stride `ldv`, and
/// neither overlaps C.
#[derive(Clone, Copy, Debug)]
pub struct LowRank {
    pub u: *const f32,
    pub ldu: usize,
    pub v: *const f32,
    pub ldv: usize,
    pub rank: usize,
    pub scale: f32,
}

impl LowRank {
    /// The term of the output block from row `i` and column `j` on.
    fn at(self, i: usize, j: usize) -> LowRank {
        LowRank { u: self.u.wrapping_add(i * self.ldu), v: self.v.wrapping_add(j), ..self }
    }
}

/// An AMX block's sums, aligned to a cache line as tile stores prefer.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileSums([f32; amx::BLOCK * amx::BLOCK]);

/// The left operand of [`gemm_lhs`]: where the depth pair `(A[i][2p], A[i][2p+1])` lies.
#[derive(Clone, Copy)]
pub enum Lhs<'a> {
    /// At `a[i·ld + 2p]`: bf16 rows (activations, a head's queries, probabilities).
    Rows { a: &'a [u16], ld: usize },
    /// At `a[2(p·ld + i)]`: the layout [`transpose_to_pairs`] writes for the transpose of a
    /// matrix, so that `Pᵀ` and `dSᵀ` need no transpose pass.
    Pairs { a: &'a [u16], ld: usize },
}

/// [`gemm`] with either layout of A, skipping what `causal` says is not needed or zero (the
/// attention products; [`Causal`] as for the f32 kernel). With `Cols`, the blocks of C above
/// the diagonal are not written; with `DepthTo` and `DepthFrom`, the skipped part of A's depth
/// must be zero (it is what makes skipping exact), and each row block sums only the rest.
///
/// # Safety
/// As for [`gemm`], with `a` holding what `Lhs` addresses for `rows` rows of `padded(depth)`
/// elements; the causal modes need a square product's geometry (`rows` = `cols` for `Cols`,
/// `rows` = `depth` for the depth modes).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_lhs(
    rows: usize,
    cols: usize,
    depth: usize,
    lhs: Lhs<'_>,
    b: &[u16],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    causal: Causal,
) {
    // SAFETY: forwarded.
    unsafe { gemm_inner(rows, cols, depth, lhs, b, c, ldc, accumulate, causal, None) }
}

/// [`gemm_lhs`] with [`gemm`]'s optional low-rank term, added in the last depth block (only
/// without causal skips, which would leave blocks unvisited).
///
/// # Safety
/// As for [`gemm_lhs`] and [`LowRank`].
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_inner(
    rows: usize,
    cols: usize,
    depth: usize,
    lhs: Lhs<'_>,
    b: &[u16],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    causal: Causal,
    low_rank: Option<LowRank>,
) {
    assert!(low_rank.is_none() || causal == Causal::None, "bf16 gemm: a low-rank term with causal skips");
    let pairs = padded(depth) / 2;
    let panels = cols.div_ceil(NR);
    assert!(b.len() >= panels * NR * 2 * pairs, "bf16 gemm: B too small");
    match lhs {
        Lhs::Rows { a, ld } => assert!(rows == 0 || a.len() >= (rows - 1) * ld + 2 * pairs, "bf16 gemm: A too small"),
        Lhs::Pairs { a, ld } => assert!(rows <= ld && (pairs == 0 || a.len() >= 2 * ((pairs - 1) * ld + rows)), "bf16 gemm: A too small"),
    }
    let block = pairs.div_ceil(pairs.div_ceil(KP).max(1)).max(1);
    // No depth at all: the low-rank term still has to reach C (as one empty depth block).
    if pairs == 0 && low_rank.is_some() {
        // SAFETY: forwarded; a kernel over zero pairs reads nothing of A or B.
        unsafe { low_rank_only(rows, cols, c, ldc, accumulate, low_rank) };
        return;
    }
    // AMX tiles take whole 32-row blocks of plain rows: the weight products, and attention's
    // products whose left operand is rows (scores, probabilities times values, and their
    // backward counterparts). The transposed-pair layout and the last rows stay on the
    // AVX512-BF16 kernel. Which rows form a block depends on nothing but `rows`, so every depth
    // block sees the same blocks: `add` (an earlier depth block wrote this one) relies on it.
    let amx = matches!(lhs, Lhs::Rows { .. }) && rows >= amx::BLOCK && amx::available() && !tests::vector_only();
    // SAFETY: AMX is available (checked just above).
    let _tiles = amx.then(|| unsafe { amx::Tiles::load() });
    // Only an AMX product zeroes (and uses) the block sums.
    let mut sums = amx.then(|| TileSums([0.0; amx::BLOCK * amx::BLOCK]));
    let mut p0 = 0;
    while p0 < pairs {
        let np = block.min(pairs - p0);
        let last_block = p0 + np == pairs;
        for p in 0..panels {
            let width = NR.min(cols - p * NR);
            let mut i0 = 0;
            while i0 < rows {
                if let (true, Lhs::Rows { a, ld }) = (amx && rows - i0 >= amx::BLOCK, lhs) {
                    // The block's depth pairs: the causal range cut to this depth block.
                    let range = causal_pairs(causal, i0, amx::BLOCK, p, pairs).map(|(first, end)| (first, first.max(p0), end.min(p0 + np)));
                    match range {
                        None => {
                            i0 += amx::BLOCK;
                            continue;
                        }
                        Some((_, from, to)) if from >= to => {
                            i0 += amx::BLOCK;
                            continue;
                        }
                        Some((first, from, to)) => {
                            // SAFETY: forwarded from this function's contract (what `amx_block`
                            // asks is what it guarantees for rows i0 .. i0 + 32 and panel p).
                            unsafe {
                                amx_block(
                                    AmxBlock { a, ld, b, pairs, c, ldc, p, i0, from, to, width },
                                    accumulate || first < p0,
                                    low_rank.filter(|_| last_block),
                                    sums.as_mut().expect("an AMX product has its block sums"),
                                )
                            };
                            i0 += amx::BLOCK;
                            continue;
                        }
                    }
                }
                let live = MR.min(rows - i0);
                i0 += live;
                let i0 = i0 - live;
                // This row block's depth pairs: all, or cut by the causal zeros of A.
                let Some((first, end)) = causal_pairs(causal, i0, live, p, pairs) else { continue };
                let (from, to) = (first.max(p0), end.min(p0 + np));
                if from >= to {
                    continue;
                }
                // Whether an earlier depth block (or the caller) already wrote this block.
                let add = accumulate || first < p0;
                let panel = b[p * NR * 2 * pairs + from * 2 * NR..].as_ptr();
                // SAFETY: row i0, column p·NR of C: inside it by the caller's contract.
                let out = unsafe { c.add(i0 * ldc + p * NR) };
                let term = low_rank.filter(|_| last_block).map(|t| t.at(i0, p * NR));
                macro_rules! dispatch {
                    ($pairs_layout:literal, $a:expr, $ld:expr; $($n:literal)*) => {
                        match live {
                            // SAFETY (every arm): forwarded from this function's contract.
                            $($n => unsafe { kernel::<$n, $pairs_layout>(to - from, $a, $ld, panel, out, ldc, width, add, term, std::ptr::null()) },)*
                            _ => unreachable!("a row block has 1..=MR live rows"),
                        }
                    };
                }
                match lhs {
                    Lhs::Rows { a, ld } => dispatch!(false, a[i0 * ld + 2 * from..].as_ptr(), ld; 1 2 3 4 5 6 7 8 9 10 11 12),
                    Lhs::Pairs { a, ld } => dispatch!(true, a[2 * (from * ld + i0)..].as_ptr(), ld; 1 2 3 4 5 6 7 8 9 10 11 12),
                }
            }
        }
        p0 += np;
    }
}

/// The depth pairs `first .. end` that rows `i0 .. i0 + live` of a `causal` product need
/// against panel `p`, or None where the block is not computed at all (above the diagonal of
/// scores).
#[cfg(target_arch = "x86_64")]
fn causal_pairs(causal: Causal, i0: usize, live: usize, p: usize, pairs: usize) -> Option<(usize, usize)> {
    match causal {
        Causal::None => Some((0, pairs)),
        // Every column of the panel lies right of every row of the block.
        Causal::Cols if p * NR > i0 + live - 1 => None,
        Causal::Cols => Some((0, pairs)),
        Causal::DepthTo => Some((0, (i0 + live).div_ceil(2).min(pairs))),
        Causal::DepthFrom => Some((i0 / 2, pairs)),
    }
}

/// One 32-row AMX block of [`gemm_inner`]: rows `i0 .. i0 + 32` of A (bf16 rows of stride
/// `ld`), panel `p` of B (`pairs` pairs per panel), depth pairs `from .. to` (at least one),
/// output columns `p·NR ..` (`width` of them) of C.
#[cfg(target_arch = "x86_64")]
struct AmxBlock<'a> {
    a: &'a [u16],
    ld: usize,
    b: &'a [u16],
    pairs: usize,
    c: *mut f32,
    ldc: usize,
    p: usize,
    i0: usize,
    from: usize,
    to: usize,
    width: usize,
}

/// Run an [`AmxBlock`]: whole tile steps on AMX, then the AVX512-BF16 kernel for the pairs
/// after them, the low-rank `term` and the masked store, 8 rows at a time. Where none of those
/// is needed (whole steps, a whole panel, no term), the tiles go straight to C.
///
/// # Safety
/// A [`amx::Tiles`] guard lives in this thread; the block lies inside the operands of a
/// [`gemm_inner`] call whose contract holds; `term` as [`LowRank`]'s contract says for the
/// product's rows and columns.
#[cfg(target_arch = "x86_64")]
unsafe fn amx_block(blk: AmxBlock<'_>, add: bool, term: Option<LowRank>, sums: &mut TileSums) {
    let AmxBlock { a, ld, b, pairs, c, ldc, p, i0, from, to, width } = blk;
    let (steps, tail) = ((to - from) / amx::PAIRS_PER_STEP, (to - from) % amx::PAIRS_PER_STEP);
    let panel = b[p * NR * 2 * pairs + from * 2 * NR..].as_ptr();
    let rows_a = a[i0 * ld + 2 * from..].as_ptr();
    // SAFETY: row i0, column p·NR of C: inside it by the caller's contract.
    let out = unsafe { c.add(i0 * ldc + p * NR) };
    if steps > 0 && tail == 0 && width == NR && term.is_none() {
        // SAFETY: the tiles are loaded; A holds 32 rows from i0 with the pairs from..to, the
        // panel those pairs, and C's block 32 full rows of 32 columns (the caller's contract).
        unsafe { amx::block_32x32(steps, rows_a, ld, panel, out, ldc, add) };
        return;
    }
    if steps > 0 {
        // SAFETY: as above, with the block's own sums as the output.
        unsafe { amx::block_32x32(steps, rows_a, ld, panel, sums.0.as_mut_ptr(), amx::BLOCK, false) };
    }
    // Less than one step in all: the vector kernel does the block from zero.
    let init = |r0: usize| if steps > 0 { sums.0[r0 * amx::BLOCK..].as_ptr() } else { std::ptr::null() };
    let done = from + steps * amx::PAIRS_PER_STEP;
    for r0 in (0..amx::BLOCK).step_by(8) {
        // SAFETY: rows i0 + r0 .. + 8 of A and C, the panel's pairs done..to, and the block's
        // sums: all inside what the contract covers.
        unsafe {
            kernel::<8, false>(
                tail,
                a[(i0 + r0) * ld + 2 * done..].as_ptr(),
                ld,
                b[p * NR * 2 * pairs + done * 2 * NR..].as_ptr(),
                out.add(r0 * ldc),
                ldc,
                width,
                add,
                term.map(|t| t.at(i0 + r0, p * NR)),
                init(r0),
            )
        };
    }
}

/// [`gemm_lhs`] where the bf16 kernel does not exist: never called, since [`available`] is
/// false there and every caller checks it (attention's bf16 path through `applies`).
///
/// # Safety
/// None needed: it only panics.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_lhs(
    _rows: usize,
    _cols: usize,
    _depth: usize,
    _lhs: Lhs<'_>,
    _b: &[u16],
    _c: *mut f32,
    _ldc: usize,
    _accumulate: bool,
    _causal: Causal,
) {
    unreachable!("the bf16 kernel exists on x86-64 only, and bf16::available() is false elsewhere")
}

/// One `R × NR` block over `np` depth pairs; A's pair (r, p) at `a[r·lda + 2p]`, or with
/// `PAIRS` at `a[2(p·lda + r)]` (see [`Lhs`]). The sums start from zero, or, where `init` is
/// not null, from `R` rows of `NR` f32 at `init` (stride [`amx::BLOCK`]): an AMX block's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize, const PAIRS: bool>(
    np: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    width: usize,
    add: bool,
    low_rank: Option<LowRank>,
    init: *const f32,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    if !init.is_null() {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: init holds R rows of NR f32 at stride amx::BLOCK (= NR).
            unsafe { *acc_r = [_mm512_loadu_ps(init.add(r * amx::BLOCK)), _mm512_loadu_ps(init.add(r * amx::BLOCK + 16))] };
        }
    }
    for p in 0..np {
        // SAFETY (whole loop): b holds np × NR pairs; a holds R rows of 2·np elements.
        let (b0, b1): (__m512bh, __m512bh) = unsafe {
            (
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(p * 2 * NR) as *const _)),
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(p * 2 * NR + NR) as *const _)),
            )
        };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let at = if PAIRS { 2 * (p * lda + r) } else { r * lda + 2 * p };
            let pair = unsafe { (a.add(at) as *const i32).read_unaligned() };
            let av: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(pair)) };
            acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
            acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
        }
    }
    let (lo, hi) = avx512::panel_masks(width);
    if let Some(t) = low_rank {
        // SAFETY: the term's rows r < R and columns < width are readable (LowRank's contract).
        unsafe { add_low_rank(&mut acc, t, lo, hi) };
    }
    for (r, acc_r) in acc.iter().enumerate() {
        // SAFETY: row r < R of the caller's output block; the masks limit the columns.
        unsafe { avx512::store_row(c.add(r * ldc), acc_r[0], acc_r[1], lo, hi, add) };
    }
}

/// `acc[r] += scale · Σ_q u[r][q] · v[q][..]` for one `R × NR` block, v's columns masked by
/// `lo` and `hi`.
///
/// # Safety
/// As for [`LowRank`], for `R` rows and the columns the masks keep.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_low_rank<const R: usize>(acc: &mut [[__m512; 2]; R], t: LowRank, lo: __mmask16, hi: __mmask16) {
    for q in 0..t.rank {
        // SAFETY (whole loop): within the term's rows and kept columns; masked lanes are not read.
        let row = t.v.wrapping_add(q * t.ldv);
        let (v0, v1) = unsafe { (_mm512_maskz_loadu_ps(lo, row), _mm512_maskz_loadu_ps(hi, row.wrapping_add(16))) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let s = _mm512_set1_ps(t.scale * unsafe { *t.u.add(r * t.ldu + q) });
            acc_r[0] = _mm512_fmadd_ps(s, v0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(s, v1, acc_r[1]);
        }
    }
}

/// C (+)= the low-rank term alone, for a product without depth.
///
/// # Safety
/// As for [`gemm`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn low_rank_only(rows: usize, cols: usize, c: *mut f32, ldc: usize, accumulate: bool, low_rank: Option<LowRank>) {
    let Some(t) = low_rank else { return };
    for p in 0..cols.div_ceil(NR) {
        let (lo, hi) = avx512::panel_masks(NR.min(cols - p * NR));
        for i in 0..rows {
            let mut acc = [[_mm512_setzero_ps(); 2]; 1];
            // SAFETY: row i, panel p of the term and of C: inside them by the contract.
            unsafe {
                add_low_rank(&mut acc, t.at(i, p * NR), lo, hi);
                avx512::store_row(c.add(i * ldc + p * NR), acc[0][0], acc[0][1], lo, hi, accumulate);
            }
        }
    }
}

#[cfg(not(test))]
mod tests {
    /// Tests turn AMX off per thread to compare it with the vector kernel; never elsewhere.
    #[inline(always)]
    pub(super) fn vector_only() -> bool {
        false
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static VECTOR_ONLY: Cell<bool> = const { Cell::new(false) };
    }

    /// Whether this test thread asked for the AVX512-BF16 kernel alone (no AMX tiles).
    pub(super) fn vector_only() -> bool {
        VECTOR_ONLY.with(Cell::get)
    }

    /// `gemm` with a low-rank term, AMX allowed or not; C starts from `start(i, j)`.
    #[allow(clippy::too_many_arguments)]
    fn product(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], term: Option<LowRank>, accumulate: bool, vector: bool) -> Vec<f32> {
        let (mut ab, mut pb) = (Vec::new(), Vec::new());
        convert_rows(a, m, k, 0, k, &mut ab);
        pack_b_from_depth_rows(b, k, n, &mut pb);
        let ld = n + 2;
        let mut c: Vec<f32> = (0..m * ld).map(|e| if accumulate { (e % 29) as f32 / 16.0 } else { f32::NAN }).collect();
        VECTOR_ONLY.with(|v| v.set(vector));
        // SAFETY: the operands as gemm's contract asks (converted and packed just above).
        unsafe { gemm(m, n, k, &ab, row_stride(k), &pb, c.as_mut_ptr(), ld, accumulate, term) };
        VECTOR_ONLY.with(|v| v.set(false));
        c
    }

    /// Attention's causal products through AMX blocks equal the vector kernel's where they are
    /// defined: scores (`Cols`: only `j <= i`) and probabilities times values (`DepthTo`: A is
    /// zero right of the diagonal), on sizes with a remainder of rows and, at 1,030, two depth
    /// blocks (whose row blocks must match for `add` to be right).
    #[test]
    fn amx_causal_products_equal_the_vector_kernel() {
        if !crate::native::amx::available() {
            eprintln!("skipped: {}", crate::native::amx::unavailable_reason().unwrap_or_default());
            return;
        }
        let mut max_rel = 0.0f64;
        for &n in &[40usize, 64, 100, 1030] {
            for causal in [Causal::Cols, Causal::DepthTo] {
                // Cols: n × n scores over a depth of 64; DepthTo: n × 64 over a depth of n.
                let (m, cols, k) = if causal == Causal::Cols { (n, n, 64) } else { (n, 64, n) };
                let a: Vec<f32> = (0..m * k)
                    .map(|e| if causal == Causal::DepthTo && e % k > e / k { 0.0 } else { ((e * 37 % 101) as f32 - 50.0) / 25.0 })
                    .collect();
                let b: Vec<f32> = (0..k * cols).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
                let (mut ab, mut pb) = (Vec::new(), Vec::new());
                convert_rows(&a, m, k, 0, k, &mut ab);
                pack_b_from_depth_rows(&b, k, cols, &mut pb);
                let run = |vector: bool| {
                    let mut c = vec![0.0f32; m * cols];
                    VECTOR_ONLY.with(|v| v.set(vector));
                    // SAFETY: the operands as gemm_lhs's contract asks; square geometry for Cols,
                    // rows = depth for DepthTo, A zero where DepthTo skips.
                    unsafe { gemm_lhs(m, cols, k, Lhs::Rows { a: &ab, ld: row_stride(k) }, &pb, c.as_mut_ptr(), cols, false, causal) };
                    VECTOR_ONLY.with(|v| v.set(false));
                    c
                };
                let (tiles, vector) = (run(false), run(true));
                for i in 0..m {
                    for j in 0..cols {
                        if causal == Causal::Cols && j > i {
                            continue;
                        }
                        let (t, w) = (tiles[i * cols + j], vector[i * cols + j]);
                        let rel = f64::from((t - w).abs()) / (1.0 + f64::from(w.abs()));
                        max_rel = max_rel.max(rel);
                        assert!(rel < 1e-5, "{causal:?} n {n} ({i},{j}): AMX {t} vs vector {w}");
                    }
                }
            }
        }
        println!("AMX vs AVX512-BF16 kernel, causal products: max relative diff {max_rel:.2e}");
    }

    /// AMX tile blocks (whole 32-row blocks, whole 16-pair steps) and the vector kernel that
    /// finishes them give the vector kernel's product: on row counts with a remainder, odd
    /// depths, depths cut into blocks, partial panels, with and without a low-rank term
    /// (without one, whole panels over whole tile steps go straight to C), and accumulation.
    /// Also from several threads at once: the tile state is per thread.
    #[test]
    fn amx_blocks_equal_the_vector_kernel() {
        if !crate::native::amx::available() {
            eprintln!("skipped: {}", crate::native::amx::unavailable_reason().unwrap_or_default());
            return;
        }
        let shapes =
            [(32usize, 32usize, 32usize), (45, 50, 41), (96, 70, 576), (64, 33, 1100), (33, 64, 2100), (40, 32, 30), (64, 64, 1024)];
        let run = |&(m, n, k): &(usize, usize, usize)| -> f64 {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
            let (rank, ldu, ldv) = (8, 11, n + 5);
            let u: Vec<f32> = (0..m * ldu).map(|i| ((i * 29 % 89) as f32 - 44.0) / 30.0).collect();
            let v: Vec<f32> = (0..rank * ldv).map(|i| ((i * 31 % 83) as f32 - 41.0) / 20.0).collect();
            let term = LowRank { u: u.as_ptr(), ldu, v: v.as_ptr(), ldv, rank, scale: 0.5 };
            let mut max_rel = 0.0f64;
            for (accumulate, term) in [(false, Some(term)), (true, Some(term)), (false, None), (true, None)] {
                let tiles = product(m, n, k, &a, &b, term, accumulate, false);
                let vector = product(m, n, k, &a, &b, term, accumulate, true);
                for i in 0..m {
                    for j in 0..n + 2 {
                        let (t, w) = (tiles[i * (n + 2) + j], vector[i * (n + 2) + j]);
                        if j >= n {
                            assert_eq!(t.to_bits(), w.to_bits(), "columns past the block are untouched");
                            continue;
                        }
                        let rel = f64::from((t - w).abs()) / (1.0 + f64::from(w.abs()));
                        max_rel = max_rel.max(rel);
                        assert!(rel < 1e-5, "{m}x{n}x{k} ({i},{j}) accumulate {accumulate}: AMX {t} vs vector {w}");
                    }
                }
            }
            max_rel
        };
        let max_rel = shapes.iter().map(run).fold(0.0, f64::max);
        println!("AMX vs AVX512-BF16 kernel: max relative diff {max_rel:.2e}");
        let threads: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..4).map(|t| s.spawn(move || (0..3).map(|_| run(&shapes[(t + 2) % shapes.len()])).fold(0.0, f64::max))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        println!("... from 4 threads at once: max relative diff {:.2e}", threads.iter().cloned().fold(0.0, f64::max));
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    /// The vector packings against the element-by-element ones, on shapes with partial
    /// panels, partial 16-blocks and odd depths.
    #[test]
    fn vector_packing_matches_the_portable_one() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        for &(depth, cols) in &[(1usize, 1usize), (2, 16), (31, 17), (32, 32), (33, 40), (576, 64), (70, 100), (289, 48)] {
            let tile: Vec<f32> = (0..depth * cols).map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0).collect();
            let (mut rows, mut fast) = (Vec::new(), Vec::new());
            pack_b_from_rows(&tile, depth, cols, &mut rows, &mut fast);
            let mut slow = vec![0u16; packed_b_len(depth, cols)];
            transpose_pairs_portable(&rows, padded(depth), depth, cols, &mut slow);
            assert_eq!(fast, slow, "rows → panels, {depth} × {cols}");

            let mut fast = Vec::new();
            pack_b_from_depth_rows(&tile, depth, cols, &mut fast);
            let kp = padded(depth);
            let mut slow = vec![0u16; packed_b_len(depth, cols)];
            for kk in 0..depth {
                for j in 0..cols {
                    slow[(j / NR) * NR * kp + (kk / 2) * 2 * NR + 2 * (j % NR) + kk % 2] = to_bf16(tile[kk * cols + j]);
                }
            }
            assert_eq!(fast, slow, "depth rows → panels, {depth} × {cols}");
        }
    }

    /// The fused packer against dequantize → bf16 → panels, for each type it handles.
    #[test]
    fn packing_straight_from_blocks_matches_dequantize_then_pack() {
        if !(available() && crate::weights::dequant::simd::available()) {
            eprintln!("skipped: this CPU has no AVX512-BF16 and F16C");
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        for ty in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
            for &(rows, cols, r0, n) in &[(40usize, 64usize, 0usize, 40usize), (40, 576, 3, 33), (17, 32, 16, 1), (64, 96, 0, 32)] {
                let row_bytes = cols / 32 * ty.type_size();
                let mut file: Vec<u8> = (0..7 + rows * row_bytes).map(|_| byte()).collect();
                // Finite scales: each block's f16 fields from small floats.
                for b in 0..rows * cols / 32 {
                    let at = 7 + b * ty.type_size();
                    let fields = if ty == GgmlType::Q4_1 { 2 } else { 1 };
                    for f in 0..fields {
                        let v = half::f16::from_f32((byte() as f32 - 128.0) / 300.0).to_bits().to_le_bytes();
                        file[at + 2 * f..at + 2 * f + 2].copy_from_slice(&v);
                    }
                }
                let w = WeightMatrix { name: "w".into(), ty, rows, cols, range: 7..7 + rows * row_bytes };
                // A buffer holding an earlier tile's values: every element must be rewritten.
                let mut fused = vec![0x7fc0u16; packed_b_len(cols, n) + 64];
                assert!(pack_b_from_weight_rows(&w, &file, r0, n, &mut fused), "{ty} is packed straight from its blocks");
                let mut tile = vec![0f32; n * cols];
                for (i, dst) in tile.chunks_exact_mut(cols).enumerate() {
                    w.dequantize_row_into(&file, r0 + i, dst);
                }
                let (mut row_buf, mut reference) = (Vec::new(), Vec::new());
                pack_b_from_rows(&tile, cols, n, &mut row_buf, &mut reference);
                assert_eq!(fused, reference, "{ty}, rows {r0}..{} of {rows} × {cols}", r0 + n);

                // The backward's layout: a slab of n rows (odd counts included) and a column
                // range of whole blocks, against dequantizing the slab and interleaving it.
                for (c0, width) in [(0, cols), (cols - 32, 32), (32.min(cols - 32), cols - 32.min(cols - 32))] {
                    let mut fused = vec![0x7fc0u16; packed_b_len(n, width) + 64];
                    assert!(
                        pack_b_from_weight_depth_rows(&w, &file, r0, n, c0, width, &mut fused),
                        "{ty} depth rows are packed straight from its blocks"
                    );
                    let mut slab = vec![0f32; n * width];
                    for (i, dst) in slab.chunks_exact_mut(width).enumerate() {
                        w.dequantize_segment_into(&file, r0 + i, c0, dst);
                    }
                    let mut reference = Vec::new();
                    pack_b_from_depth_rows(&slab, n, width, &mut reference);
                    assert_eq!(fused, reference, "{ty}, depth rows {r0}..{} of {rows} × {cols}, columns {c0}..{}", r0 + n, c0 + width);
                }
            }
        }
        let f32_matrix = WeightMatrix { name: "f".into(), ty: GgmlType::F32, rows: 2, cols: 32, range: 0..256 };
        assert!(!pack_b_from_weight_rows(&f32_matrix, &[0u8; 256], 0, 2, &mut Vec::new()), "F32 has no fused path");
        assert!(!pack_b_from_weight_depth_rows(&f32_matrix, &[0u8; 256], 0, 2, 0, 32, &mut Vec::new()), "F32 has no fused depth-row path");
    }

    /// The kernel against an f64 product of the same bf16-rounded operands: only the order of
    /// f32 sums differs.
    #[test]
    fn matches_a_product_of_the_rounded_operands() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut max_rel = 0.0f64;
        // 2048: rows of the padded stride (see row_stride).
        for &(m, n, k) in &[(1usize, 1usize, 1usize), (13, 33, 301), (24, 64, 576), (7, 5, 2), (14, 40, 2048)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
            let mut ab = Vec::new();
            convert_rows(&a, m, k, 0, k, &mut ab);
            // B packed both ways (from its rows along the depth, and from its transpose).
            let mut pb = Vec::new();
            pack_b_from_depth_rows(&b, k, n, &mut pb);
            let bt: Vec<f32> = (0..n * k).map(|e| b[(e % k) * n + e / k]).collect();
            let (mut pb2, mut row) = (Vec::new(), Vec::new());
            pack_b_from_rows(&bt, k, n, &mut row, &mut pb2);
            assert_eq!(pb, pb2, "both packings give the same panels");
            let ld = n + 2;
            let mut c = vec![f32::NAN; m * ld];
            unsafe { gemm(m, n, k, &ab, row_stride(k), &pb, c.as_mut_ptr(), ld, false, None) };
            for i in 0..m {
                for j in 0..n {
                    let expect: f64 =
                        (0..k).map(|kk| f64::from(from_bf16(to_bf16(a[i * k + kk]))) * f64::from(from_bf16(to_bf16(b[kk * n + j])))).sum();
                    let got = f64::from(c[i * ld + j]);
                    let rel = (got - expect).abs() / (1.0 + expect.abs());
                    max_rel = max_rel.max(rel);
                    assert!(rel < 1e-5, "{m}x{n}x{k} ({i},{j}): {got} vs {expect}");
                }
                assert!(c[i * ld + n].is_nan(), "columns past the block are untouched");
            }
        }
        println!("bf16 kernel vs f64 product of the rounded operands: max relative diff {max_rel:.2e}");
    }

    /// A dropped spare comes back to the next `take` of its thread, the largest first, and
    /// a thread keeps at most MAX_SPARES of them.
    #[test]
    fn spares_are_reused_largest_first() {
        std::thread::spawn(|| {
            let mut bufs: Vec<Spare> = (0..MAX_SPARES + 2).map(|_| Spare::take()).collect();
            for (i, b) in bufs.iter_mut().enumerate() {
                b.resize(1000 * (i + 1), 7);
            }
            let largest = bufs.last().map(|b| b.as_ptr()).unwrap();
            drop(bufs);
            let again = Spare::take();
            assert_eq!(again.as_ptr(), largest, "take returns the largest spare");
            assert_eq!(again.len(), 1000 * (MAX_SPARES + 2), "a spare keeps its contents until it is overwritten");
            let kept = SPARES.with(|s| s.borrow().len());
            assert_eq!(kept, MAX_SPARES - 1, "at most MAX_SPARES spares are kept");
        })
        .join()
        .unwrap();
    }

    /// The low-rank term added as blocks are stored: against an f64 reference of the rounded
    /// product plus the f32 term, over partial panels and row blocks, several depth blocks
    /// (depth 2100 > 2·KP), no depth at all, with and without accumulate, and strided u and v.
    #[test]
    fn low_rank_term_joins_the_stores() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut max_rel = 0.0f64;
        for &(m, n, k, rank) in &[(1usize, 1usize, 1usize, 1usize), (13, 33, 301, 8), (25, 64, 576, 24), (7, 5, 0, 3), (14, 40, 2100, 8)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
            let (ldu, ldv) = (rank + 3, n + 5);
            let u: Vec<f32> = (0..m * ldu).map(|i| ((i * 29 % 89) as f32 - 44.0) / 30.0).collect();
            let v: Vec<f32> = (0..rank * ldv).map(|i| ((i * 31 % 83) as f32 - 41.0) / 20.0).collect();
            let scale = 0.75f32;
            let mut ab = Vec::new();
            convert_rows(&a, m, k, 0, k, &mut ab);
            let mut pb = Vec::new();
            pack_b_from_depth_rows(&b, k, n, &mut pb);
            let term = LowRank { u: u.as_ptr(), ldu, v: v.as_ptr(), ldv, rank, scale };
            for accumulate in [false, true] {
                let ld = n + 2;
                let start = |i: usize, j: usize| if accumulate { (i * 7 + j) as f32 / 16.0 } else { f32::NAN };
                let mut c: Vec<f32> = (0..m * ld).map(|e| start(e / ld, e % ld)).collect();
                unsafe { gemm(m, n, k, &ab, row_stride(k), &pb, c.as_mut_ptr(), ld, accumulate, Some(term)) };
                for i in 0..m {
                    for j in 0..n {
                        let product: f64 = (0..k)
                            .map(|kk| f64::from(from_bf16(to_bf16(a[i * k + kk]))) * f64::from(from_bf16(to_bf16(b[kk * n + j]))))
                            .sum();
                        let low: f64 = (0..rank).map(|q| f64::from(scale) * f64::from(u[i * ldu + q]) * f64::from(v[q * ldv + j])).sum();
                        let before = if accumulate { f64::from(start(i, j)) } else { 0.0 };
                        let expect = before + product + low;
                        let got = f64::from(c[i * ld + j]);
                        let rel = (got - expect).abs() / (1.0 + expect.abs());
                        max_rel = max_rel.max(rel);
                        assert!(rel < 1e-5, "{m}x{n}x{k} rank {rank} ({i},{j}), accumulate {accumulate}: {got} vs {expect}");
                    }
                    assert!(c[i * ld + n].to_bits() == start(i, n).to_bits(), "columns past the block are untouched");
                }
            }
        }
        println!("bf16 kernel with a low-rank term vs f64: max relative diff {max_rel:.2e}");
    }
}
