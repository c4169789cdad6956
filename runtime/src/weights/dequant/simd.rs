//! AVX-512 dequantizers for the block types that quantized small models are mostly made of
//! (Q4_0, Q4_1, Q8_0) and for F32. The native engine dequantizes every weight tile it
//! multiplies, once per product, so these run as often as the products themselves: in
//! profiles of the bf16 forward, the scalar dequantizers and the tile packing together took
//! half as long as the products they fed.
//!
//! Each type decodes one 32-element block into two registers ([`Block32::decode`]); the row
//! dequantizer here stores them, and the native engine's bf16 packer rounds and transposes
//! them straight into its panels without going through memory.
//!
//! Same arithmetic as the scalar dequantizers, lane by lane: integer unpacking, exact
//! conversions to f32 (the f16 scales through F16C), then a multiply and (Q4_1) a separate
//! add, never a fused multiply-add, so the results stay bit-identical to ggml's `to_float`
//! (checked by `runtime/tests/integration/dequant.rs`).

use std::arch::x86_64::*;

use super::{GgmlType, Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};

/// Dequantize `src` into `dst` (lengths already checked by the caller) if this CPU has
/// AVX-512 and `ty` has a vector path here; false means nothing was written.
pub(super) fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    // SAFETY (every arm): the CPU has AVX-512F and F16C; the caller checked that src holds
    // exactly dst.len() / block_size blocks.
    match ty {
        GgmlType::Q4_1 => unsafe { rows::<Q4_1>(src, dst) },
        GgmlType::Q4_0 => unsafe { rows::<Q4_0>(src, dst) },
        GgmlType::Q8_0 => unsafe { rows::<Q8_0>(src, dst) },
        GgmlType::F32 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        _ => return false,
    }
    true
}

/// Whether this CPU has what [`Block32::decode`] needs (AVX-512F and F16C).
pub fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("f16c"))
}

/// A block type of 32 elements decoded in registers.
pub trait Block32 {
    /// Encoded bytes of one block.
    const BYTES: usize;
    /// Elements 0..16 and 16..32 of the block at `b`, as the scalar dequantizer computes them.
    ///
    /// # Safety
    /// AVX-512F and F16C; `b` points at `BYTES` readable bytes.
    unsafe fn decode(b: *const u8) -> (__m512, __m512);
}

/// `[d: f16][m: f16][qs: u8 × 16]`: element j is `(qs[j] & 15)·d + m`, element j + 16 is
/// `(qs[j] >> 4)·d + m`.
pub struct Q4_1;
/// `[d: f16][qs: u8 × 16]`: element j is `((qs[j] & 15) − 8)·d`, element j + 16 is
/// `((qs[j] >> 4) − 8)·d`.
pub struct Q4_0;
/// `[d: f16][qs: i8 × 32]`: element j is `qs[j]·d`.
pub struct Q8_0;

/// The two f16 values at `b` as f32, broadcast: (first, second).
#[inline]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn two_halves(b: *const u8) -> (__m512, __m512) {
    // SAFETY: the caller's block holds both halves.
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { (b as *const i32).read_unaligned() }));
    (_mm512_broadcastss_ps(v), _mm512_broadcastss_ps(_mm_movehdup_ps(v)))
}

/// The 16 quant bytes at `b` as 32-bit lanes: (low nibbles, high nibbles).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn nibbles(b: *const u8) -> (__m512i, __m512i) {
    // SAFETY: the caller's block holds 16 quant bytes at `b`.
    let q = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(b as *const __m128i) });
    (_mm512_and_si512(q, _mm512_set1_epi32(0x0F)), _mm512_srli_epi32::<4>(q))
}

impl Block32 for Q4_1 {
    const BYTES: usize = Q4_1_BYTES;
    #[inline]
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn decode(b: *const u8) -> (__m512, __m512) {
        // SAFETY: the block is [d][m] then 16 quant bytes.
        let ((d, m), (lo, hi)) = unsafe { (two_halves(b), nibbles(b.add(4))) };
        (_mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), m), _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(hi), d), m))
    }
}

impl Block32 for Q4_0 {
    const BYTES: usize = Q4_0_BYTES;
    #[inline]
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn decode(b: *const u8) -> (__m512, __m512) {
        // SAFETY: the block is [d] then 16 quant bytes; two_halves reads d and the first two.
        let ((d, _), (lo, hi)) = unsafe { (two_halves(b), nibbles(b.add(2))) };
        let eight = _mm512_set1_epi32(8);
        (
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(lo, eight)), d),
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(hi, eight)), d),
        )
    }
}

impl Block32 for Q8_0 {
    const BYTES: usize = Q8_0_BYTES;
    #[inline]
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn decode(b: *const u8) -> (__m512, __m512) {
        // SAFETY: the block is [d] then 32 quant bytes; two_halves reads d and the first two.
        unsafe {
            let (d, _) = two_halves(b);
            let q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(2) as *const __m128i));
            let q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(18) as *const __m128i));
            (_mm512_mul_ps(_mm512_cvtepi32_ps(q0), d), _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d))
        }
    }
}

/// A row of whole `B` blocks into `dst`.
#[target_feature(enable = "avx512f,f16c")]
unsafe fn rows<B: Block32>(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(B::BYTES).zip(dst.chunks_exact_mut(QK)) {
        // SAFETY: b is one whole block; y holds 32 floats.
        unsafe {
            let (lo, hi) = B::decode(b.as_ptr());
            _mm512_storeu_ps(y.as_mut_ptr(), lo);
            _mm512_storeu_ps(y.as_mut_ptr().add(16), hi);
        }
    }
}
