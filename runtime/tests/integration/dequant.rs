//! Dequantization against ggml itself: random blocks of every supported type are dequantized
//! by `lamina::weights::dequant` and by ggml's own `to_float` (from `ggml_get_type_traits`),
//! and the results must be bit-identical, both for the dispatching `dequantize_row` (AVX-512
//! for the common types where the CPU has it) and for the portable scalar path.

use half::f16;
use lamina::weights::dequant::{dequantize_row, dequantize_row_portable, DequantError};
use lamina::weights::GgmlType;

/// Seeded xorshift64*.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
    /// Uniform in [-2, 2).
    fn float(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    }
    /// A finite random half float, as little-endian bytes.
    fn f16_bytes(&mut self) -> [u8; 2] {
        f16::from_f32(self.float()).to_bits().to_le_bytes()
    }
}

/// Byte offsets of the f16 fields in one block (the other bytes are random quants).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::F32 | GgmlType::BF16 => &[],
        GgmlType::F16 => &[0],
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
    }
}

/// `n_blocks` random blocks of `ty`: random bytes, finite f16 scales; F32/BF16 elements are
/// random floats in ±2 (BF16 via truncation of such floats).
fn random_row(rng: &mut Rng, ty: GgmlType, n_blocks: usize) -> Vec<u8> {
    let bb = ty.type_size();
    let mut v = Vec::with_capacity(n_blocks * bb);
    for _ in 0..n_blocks {
        match ty {
            GgmlType::F32 => v.extend_from_slice(&rng.float().to_le_bytes()),
            GgmlType::BF16 => v.extend_from_slice(&((rng.float().to_bits() >> 16) as u16).to_le_bytes()),
            _ => {
                let start = v.len();
                v.extend((0..bb).map(|_| rng.byte()));
                for &off in f16_fields(ty) {
                    let h = rng.f16_bytes();
                    v[start + off..start + off + 2].copy_from_slice(&h);
                }
            }
        }
    }
    v
}

/// ggml's row dequantizer for `ty`, or `None` when its traits have no `to_float`.
fn ggml_to_float(ty: GgmlType, src: &[u8], n: usize) -> Option<Vec<f32>> {
    // SAFETY: ggml_get_type_traits returns a pointer into ggml's static traits table for any
    // valid type id; the ids come from `GgmlType::id`.
    let traits = unsafe { &*llama_cpp_sys_2::ggml_get_type_traits(ty.id()) };
    assert_eq!(traits.blck_size as usize, ty.block_size(), "{ty}: block size");
    assert_eq!(traits.type_size, ty.type_size(), "{ty}: type size");
    let to_float = traits.to_float?;
    assert_eq!(src.len(), n / ty.block_size() * ty.type_size());
    let mut out = vec![0f32; n];
    // ggml reads the f16 fields as `uint16_t` values: give it a u64-aligned copy of `src`.
    let mut aligned = vec![0u64; src.len().div_ceil(8)];
    // SAFETY: `aligned` owns at least `src.len()` initialised bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(aligned.as_mut_ptr().cast::<u8>(), src.len()) };
    bytes.copy_from_slice(src);
    // SAFETY: the buffer holds exactly n / block_size whole blocks of `ty` and `out` n floats,
    // which is what ggml's to_float for `ty` reads and writes.
    unsafe { to_float(aligned.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    Some(out)
}

#[test]
fn bit_identical_to_ggml() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut total = 0usize;
    for ty in GgmlType::ALL {
        let mut compared = 0usize;
        let mut max_diff = 0f32;
        let mut reference = "ggml";
        // Several rows of several lengths, including a single block.
        for &n_blocks in &[1usize, 2, 3, 7, 16] {
            // Float types have 1-element blocks: use longer rows for them.
            let n_blocks = if ty.block_size() == 1 { n_blocks * 64 } else { n_blocks };
            for _row in 0..8 {
                let n = n_blocks * ty.block_size();
                let src = random_row(&mut rng, ty, n_blocks);
                let mut ours = vec![f32::NAN; n];
                dequantize_row(ty, &src, &mut ours).unwrap();
                let mut portable = vec![f32::NAN; n];
                dequantize_row_portable(ty, &src, &mut portable).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&ours), bits(&portable), "{ty}: the dispatched and the portable path differ");
                let theirs = match ggml_to_float(ty, &src, n) {
                    Some(v) => v,
                    None => {
                        assert_eq!(ty, GgmlType::F32, "{ty}: ggml has no to_float");
                        reference = "plain copy";
                        src.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
                    }
                };
                for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                    assert!(a.is_finite(), "{ty}: element {i} is {a}");
                    assert_eq!(a.to_bits(), b.to_bits(), "{ty}: element {i} of {n}: ours {a:e}, ggml {b:e}");
                    max_diff = max_diff.max((a - b).abs());
                }
                compared += n;
            }
        }
        println!("{ty:>5}: {compared} values compared against {reference} (dispatched and portable paths), max abs difference {max_diff}");
        assert_eq!(max_diff, 0.0);
        total += compared;
    }
    println!("total: {total} values compared, all bit-identical");
}

#[test]
fn length_errors() {
    for ty in GgmlType::ALL {
        let bs = ty.block_size();
        let bb = ty.type_size();
        // Source one byte short and one byte long.
        let mut dst = vec![0f32; 2 * bs];
        let src = vec![0u8; 2 * bb + 1];
        assert_eq!(
            dequantize_row(ty, &src[..2 * bb - 1], &mut dst),
            Err(DequantError::SrcLength { ty, expected: 2 * bb, actual: 2 * bb - 1 })
        );
        assert_eq!(dequantize_row(ty, &src, &mut dst), Err(DequantError::SrcLength { ty, expected: 2 * bb, actual: 2 * bb + 1 }));
        // A whole block too many or too few.
        assert!(dequantize_row(ty, &src[..bb], &mut dst).is_err());
        assert!(dequantize_row(ty, &src[..2 * bb], &mut dst[..bs]).is_err());
        // Exact lengths work, including the empty row.
        assert_eq!(dequantize_row(ty, &src[..2 * bb], &mut dst), Ok(()));
        assert_eq!(dequantize_row(ty, &[], &mut []), Ok(()));
        // Destination not a whole number of blocks (float types have no such case).
        if bs > 1 {
            let mut dst = vec![7f32; bs + 1];
            let err = dequantize_row(ty, &src[..bb], &mut dst).unwrap_err();
            assert_eq!(err, DequantError::NotBlockMultiple { ty, len: bs + 1, block_size: bs });
            assert!(err.to_string().contains(ty.name()), "{err}");
            assert!(dst.iter().all(|&x| x == 7.0), "dst must be untouched on error");
            let mut dst = vec![0f32; bs - 1];
            assert!(matches!(dequantize_row(ty, &[], &mut dst), Err(DequantError::NotBlockMultiple { .. })));
        }
    }
}

#[test]
fn error_converts_to_invalid_argument() {
    let e: lamina::Error = dequantize_row(GgmlType::Q4_K, &[0; 10], &mut [0.0; 256]).unwrap_err().into();
    assert_eq!(e.kind(), lamina::ErrorKind::InvalidArgument, "{e}");
}
