//! Dequantization of ggml block types into `f32`.
//!
//! Every ggml tensor row is a sequence of fixed-size blocks; a block stores `block_size()`
//! elements in `type_size()` bytes. All multi-byte fields are little-endian (as in GGUF
//! files). Scales named `d`/`m`/`dmin` are IEEE half floats (`ggml_half`).
//!
//! The per-block functions follow ggml's reference dequantizers (`dequantize_row_*` in
//! `ggml-quants.c`) operation by operation, so the results are bit-identical to ggml's: same
//! integer arithmetic, same conversions to `f32`, and the same order of float operations
//! (Rust never contracts `a * b + c` into a fused multiply-add).
//!
//! For speed, each block is handled by a function taking fixed-size arrays (`&[u8; BYTES]`,
//! `&mut [f32; N]`): all indices are then provably in range and bounds checks vanish; nothing
//! allocates.

use super::GgmlType;

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd;

/// Why a row could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    /// The output length is not a whole number of blocks.
    #[error("{ty}: {len} output elements is not a multiple of the block size {block_size}")]
    NotBlockMultiple { ty: GgmlType, len: usize, block_size: usize },
    /// The input is not exactly `blocks * type_size` long.
    #[error("{ty}: source has {actual} bytes, expected {expected} for the output length")]
    SrcLength { ty: GgmlType, expected: usize, actual: usize },
}

impl From<DequantError> for crate::error::Error {
    fn from(e: DequantError) -> Self {
        crate::error::Error::invalid("dequantize", e.to_string())
    }
}

const QK: usize = 32;
const QK_K: usize = 256;
const Q8_0_BYTES: usize = 2 + QK;
const Q4_0_BYTES: usize = 2 + QK / 2;
const Q4_1_BYTES: usize = 4 + QK / 2;
const Q5_0_BYTES: usize = 2 + 4 + QK / 2;
const Q5_1_BYTES: usize = 4 + 4 + QK / 2;
const Q4_K_BYTES: usize = 4 + 12 + QK_K / 2;
const Q5_K_BYTES: usize = 4 + 12 + QK_K / 8 + QK_K / 2;
const Q6_K_BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;

/// Dequantizes one row: `dst.len()` elements of type `ty` read from `src`.
///
/// `dst.len()` must be a multiple of `ty.block_size()` and `src.len()` exactly
/// `dst.len() / block_size * type_size`; otherwise an error is returned and `dst` is left
/// untouched. Results are bit-identical to ggml's `to_float` for the type.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), DequantError> {
    check_lengths(ty, src, dst)?;
    #[cfg(target_arch = "x86_64")]
    if simd::dequantize(ty, src, dst) {
        return Ok(());
    }
    portable(ty, src, dst);
    Ok(())
}

/// [`dequantize_row`] without the vector paths: the reference that tests compare them with.
#[doc(hidden)]
pub fn dequantize_row_portable(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), DequantError> {
    check_lengths(ty, src, dst)?;
    portable(ty, src, dst);
    Ok(())
}

fn check_lengths(ty: GgmlType, src: &[u8], dst: &[f32]) -> Result<(), DequantError> {
    let bs = ty.block_size();
    if !dst.len().is_multiple_of(bs) {
        return Err(DequantError::NotBlockMultiple { ty, len: dst.len(), block_size: bs });
    }
    let expected = (dst.len() / bs).checked_mul(ty.type_size());
    if expected != Some(src.len()) {
        return Err(DequantError::SrcLength { ty, expected: expected.unwrap_or(usize::MAX), actual: src.len() });
    }
    Ok(())
}

/// The per-block scalar dequantizers, over a row whose lengths are checked.
fn portable(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    match ty {
        GgmlType::F32 => blocks(src, dst, |b: &[u8; 4], y: &mut [f32; 1]| {
            y[0] = f32::from_le_bytes(*b);
        }),
        GgmlType::F16 => blocks(src, dst, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = f16(*b);
        }),
        GgmlType::BF16 => blocks(src, dst, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
        }),
        GgmlType::Q8_0 => blocks(src, dst, block_q8_0),
        GgmlType::Q4_0 => blocks(src, dst, block_q4_0),
        GgmlType::Q4_1 => blocks(src, dst, block_q4_1),
        GgmlType::Q5_0 => blocks(src, dst, block_q5_0),
        GgmlType::Q5_1 => blocks(src, dst, block_q5_1),
        GgmlType::Q4_K => blocks(src, dst, block_q4_k),
        GgmlType::Q5_K => blocks(src, dst, block_q5_k),
        GgmlType::Q6_K => blocks(src, dst, block_q6_k),
    }
}

/// Runs `f` over matching blocks of `src` (`B` bytes each) and `dst` (`N` elements each).
/// The caller has checked the lengths; the array conversions cannot fail and compile away.
#[inline(always)]
fn blocks<const B: usize, const N: usize>(src: &[u8], dst: &mut [f32], f: impl Fn(&[u8; B], &mut [f32; N])) {
    for (b, y) in src.chunks_exact(B).zip(dst.chunks_exact_mut(N)) {
        if let (Ok(b), Ok(y)) = (<&[u8; B]>::try_from(b), <&mut [f32; N]>::try_from(y)) {
            f(b, y);
        }
    }
}

#[inline(always)]
fn f16(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

/// `[d: f16][qs: i8 × 32]`
#[inline]
fn block_q8_0(b: &[u8; Q8_0_BYTES], y: &mut [f32; QK]) {
    let d = f16([b[0], b[1]]);
    for j in 0..QK {
        y[j] = f32::from(b[2 + j] as i8) * d;
    }
}

/// `[d: f16][qs: u8 × 16]`
#[inline]
fn block_q4_0(b: &[u8; Q4_0_BYTES], y: &mut [f32; QK]) {
    let d = f16([b[0], b[1]]);
    for j in 0..QK / 2 {
        let q = b[2 + j];
        let x0 = i32::from(q & 0x0F) - 8;
        let x1 = i32::from(q >> 4) - 8;
        y[j] = x0 as f32 * d;
        y[j + QK / 2] = x1 as f32 * d;
    }
}

/// `[d: f16][m: f16][qs: u8 × 16]`
#[inline]
fn block_q4_1(b: &[u8; Q4_1_BYTES], y: &mut [f32; QK]) {
    let d = f16([b[0], b[1]]);
    let m = f16([b[2], b[3]]);
    for j in 0..QK / 2 {
        let q = b[4 + j];
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + QK / 2] = f32::from(q >> 4) * d + m;
    }
}

/// `[d: f16][qh: u32][qs: u8 × 16]`
#[inline]
fn block_q5_0(b: &[u8; Q5_0_BYTES], y: &mut [f32; QK]) {
    let d = f16([b[0], b[1]]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..QK / 2 {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        let q = b[6 + j];
        let x0 = i32::from((q & 0x0F) | xh_0) - 16;
        let x1 = i32::from((q >> 4) | xh_1) - 16;
        y[j] = x0 as f32 * d;
        y[j + QK / 2] = x1 as f32 * d;
    }
}

/// `[d: f16][m: f16][qh: u32][qs: u8 × 16]`
#[inline]
fn block_q5_1(b: &[u8; Q5_1_BYTES], y: &mut [f32; QK]) {
    let d = f16([b[0], b[1]]);
    let m = f16([b[2], b[3]]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..QK / 2 {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        let q = b[8 + j];
        let x0 = (q & 0x0F) | xh_0;
        let x1 = (q >> 4) | xh_1;
        y[j] = f32::from(x0) * d + m;
        y[j + QK / 2] = f32::from(x1) * d + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K/Q5_K:
/// bytes 0..4 hold scales 0..4 (low 6 bits), bytes 4..8 mins 0..4; scales/mins 4..8 take their
/// low 4 bits from the nibbles of bytes 8..12 and their high 2 bits from the top bits of bytes
/// 0..4 (scales) and 4..8 (mins). (ggml's `get_scale_min_k4`.)
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Splits a K-quant header: `d`, `dmin`, and the 12 scale bytes.
#[inline(always)]
fn k_header(b: &[u8]) -> (f32, f32, [u8; 12]) {
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&b[4..16]);
    (f16([b[0], b[1]]), f16([b[2], b[3]]), scales)
}

/// `[d: f16][dmin: f16][scales: 12][qs: u8 × 128]`
#[inline]
fn block_q4_k(b: &[u8; Q4_K_BYTES], y: &mut [f32; QK_K]) {
    let (d, min, scales) = k_header(b);
    let qs = &b[16..16 + QK_K / 2];
    for (n, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let is = 2 * n;
        let (sc, m) = scale_min_k4(is, &scales);
        let d1 = d * f32::from(sc);
        let m1 = min * f32::from(m);
        let (sc, m) = scale_min_k4(is + 1, &scales);
        let d2 = d * f32::from(sc);
        let m2 = min * f32::from(m);
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            lo[l] = d1 * f32::from(q[l] & 0xF) - m1;
        }
        for l in 0..32 {
            hi[l] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// `[d: f16][dmin: f16][scales: 12][qh: u8 × 32][qs: u8 × 128]`
#[inline]
fn block_q5_k(b: &[u8; Q5_K_BYTES], y: &mut [f32; QK_K]) {
    let (d, min, scales) = k_header(b);
    let qh = &b[16..16 + QK_K / 8];
    let ql = &b[16 + QK_K / 8..];
    for (n, (q, y)) in ql.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let is = 2 * n;
        let u1 = 1u8 << (2 * n);
        let u2 = 2u8 << (2 * n);
        let (sc, m) = scale_min_k4(is, &scales);
        let d1 = d * f32::from(sc);
        let m1 = min * f32::from(m);
        let (sc, m) = scale_min_k4(is + 1, &scales);
        let d2 = d * f32::from(sc);
        let m2 = min * f32::from(m);
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            let h = if qh[l] & u1 != 0 { 16 } else { 0 };
            lo[l] = d1 * f32::from((q[l] & 0xF) + h) - m1;
        }
        for l in 0..32 {
            let h = if qh[l] & u2 != 0 { 16 } else { 0 };
            hi[l] = d2 * f32::from((q[l] >> 4) + h) - m2;
        }
    }
}

/// `[ql: u8 × 128][qh: u8 × 64][scales: i8 × 16][d: f16]`
#[inline]
fn block_q6_k(b: &[u8; Q6_K_BYTES], y: &mut [f32; QK_K]) {
    let (ql, rest) = b.split_at(QK_K / 2);
    let (qh, rest) = rest.split_at(QK_K / 4);
    let (sc, d) = rest.split_at(QK_K / 16);
    let d = f16([d[0], d[1]]);
    // Two halves of 128 elements: 64 bytes of ql, 32 of qh, 8 scales each.
    for (((ql, qh), sc), y) in ql.chunks_exact(64).zip(qh.chunks_exact(32)).zip(sc.chunks_exact(8)).zip(y.chunks_exact_mut(128)) {
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_layouts_match_ggml_type() {
        for (ty, block, bytes) in [
            (GgmlType::Q8_0, QK, Q8_0_BYTES),
            (GgmlType::Q4_0, QK, Q4_0_BYTES),
            (GgmlType::Q4_1, QK, Q4_1_BYTES),
            (GgmlType::Q5_0, QK, Q5_0_BYTES),
            (GgmlType::Q5_1, QK, Q5_1_BYTES),
            (GgmlType::Q4_K, QK_K, Q4_K_BYTES),
            (GgmlType::Q5_K, QK_K, Q5_K_BYTES),
            (GgmlType::Q6_K, QK_K, Q6_K_BYTES),
        ] {
            assert_eq!((ty.block_size(), ty.type_size()), (block, bytes), "{ty}");
        }
    }

    #[test]
    fn q8_0_by_hand() {
        let mut src = [0u8; 34];
        src[..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        for j in 0..32 {
            src[2 + j] = (j as i8 - 16) as u8;
        }
        let mut dst = [0f32; 32];
        dequantize_row(GgmlType::Q8_0, &src, &mut dst).unwrap();
        for (j, &v) in dst.iter().enumerate() {
            assert_eq!(v, (j as f32 - 16.0) * 0.5);
        }
    }

    #[test]
    fn q4_0_by_hand() {
        let mut src = [0u8; 18];
        src[..2].copy_from_slice(&half::f16::from_f32(2.0).to_bits().to_le_bytes());
        src[2] = 0xF0; // element 0: 0 - 8, element 16: 15 - 8
        let mut dst = [0f32; 32];
        dequantize_row(GgmlType::Q4_0, &src, &mut dst).unwrap();
        assert_eq!(dst[0], -16.0);
        assert_eq!(dst[16], 14.0);
        assert_eq!(dst[1], -16.0);
    }

    #[test]
    fn errors() {
        let mut dst = [0f32; 33];
        assert!(matches!(dequantize_row(GgmlType::Q4_0, &[0; 18], &mut dst), Err(DequantError::NotBlockMultiple { .. })));
        let mut dst = [0f32; 32];
        assert!(matches!(
            dequantize_row(GgmlType::Q4_0, &[0; 17], &mut dst),
            Err(DequantError::SrcLength { expected: 18, actual: 17, .. })
        ));
        // Empty rows are fine.
        dequantize_row(GgmlType::Q6_K, &[], &mut []).unwrap();
        let e: crate::error::Error = dequantize_row(GgmlType::F16, &[0; 3], &mut [0.0; 1]).unwrap_err().into();
        assert!(e.to_string().contains("f16"), "{e}");
    }
}
