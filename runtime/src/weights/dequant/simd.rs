//! AVX-512 dequantizers for the block types that quantized small models are mostly made of
//! (Q4_0, Q4_1, Q8_0) and for F32. The native engine dequantizes every weight tile it
//! multiplies, once per product, so these run as often as the products themselves; the scalar
//! loops cost about half as much as the bf16 product they feed.
//!
//! Same arithmetic as the scalar dequantizers, lane by lane: integer unpacking, an exact
//! conversion to f32, then a multiply and (Q4_1) a separate add, never a fused multiply-add,
//! so the results stay bit-identical to ggml's `to_float` (checked by `tests/dequant.rs`).

use std::arch::x86_64::*;

use super::{f16, GgmlType, Q4_0_BYTES, Q4_1_BYTES, Q8_0_BYTES, QK};

/// Dequantize `src` into `dst` (lengths already checked by the caller) if this CPU has
/// AVX-512 and `ty` has a vector path here; false means nothing was written.
pub(super) fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    // SAFETY (every arm): the CPU has AVX-512F; the caller checked that src holds exactly
    // dst.len() / block_size blocks.
    match ty {
        GgmlType::Q4_1 => unsafe { q4_1(src, dst) },
        GgmlType::Q4_0 => unsafe { q4_0(src, dst) },
        GgmlType::Q8_0 => unsafe { q8_0(src, dst) },
        GgmlType::F32 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        _ => return false,
    }
    true
}

fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// `[d: f16][m: f16][qs: u8 × 16]`: element j is `(qs[j] & 15)·d + m`, element j + 16 is
/// `(qs[j] >> 4)·d + m`.
#[target_feature(enable = "avx512f")]
unsafe fn q4_1(src: &[u8], dst: &mut [f32]) {
    let low = _mm512_set1_epi32(0x0F);
    for (b, y) in src.chunks_exact(Q4_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm512_set1_ps(f16([b[0], b[1]]));
        let m = _mm512_set1_ps(f16([b[2], b[3]]));
        // SAFETY: the block has 16 quant bytes at offset 4; y holds 32 floats.
        unsafe {
            let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(4) as *const __m128i));
            let lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, low));
            let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(q));
            _mm512_storeu_ps(y.as_mut_ptr(), _mm512_add_ps(_mm512_mul_ps(lo, d), m));
            _mm512_storeu_ps(y.as_mut_ptr().add(16), _mm512_add_ps(_mm512_mul_ps(hi, d), m));
        }
    }
}

/// `[d: f16][qs: u8 × 16]`: element j is `((qs[j] & 15) − 8)·d`, element j + 16 is
/// `((qs[j] >> 4) − 8)·d`.
#[target_feature(enable = "avx512f")]
unsafe fn q4_0(src: &[u8], dst: &mut [f32]) {
    let (low, eight) = (_mm512_set1_epi32(0x0F), _mm512_set1_epi32(8));
    for (b, y) in src.chunks_exact(Q4_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm512_set1_ps(f16([b[0], b[1]]));
        // SAFETY: the block has 16 quant bytes at offset 2; y holds 32 floats.
        unsafe {
            let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(2) as *const __m128i));
            let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(q, low), eight));
            let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32::<4>(q), eight));
            _mm512_storeu_ps(y.as_mut_ptr(), _mm512_mul_ps(lo, d));
            _mm512_storeu_ps(y.as_mut_ptr().add(16), _mm512_mul_ps(hi, d));
        }
    }
}

/// `[d: f16][qs: i8 × 32]`: element j is `qs[j]·d`.
#[target_feature(enable = "avx512f")]
unsafe fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q8_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = _mm512_set1_ps(f16([b[0], b[1]]));
        // SAFETY: the block has 32 quant bytes at offset 2; y holds 32 floats.
        unsafe {
            let q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(2) as *const __m128i));
            let q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(18) as *const __m128i));
            _mm512_storeu_ps(y.as_mut_ptr(), _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
            _mm512_storeu_ps(y.as_mut_ptr().add(16), _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
        }
    }
}
