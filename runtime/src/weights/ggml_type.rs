//! The ggml tensor types this runtime reads, writes and dequantizes.
//!
//! Every ggml tensor row is a sequence of fixed-size blocks; a block stores `block_size()`
//! elements in `type_size()` bytes (see `ggml-common.h` for the layouts). All multi-byte
//! fields are little-endian (as in GGUF files). Scales named `d`/`m`/`dmin` are IEEE half
//! floats (`ggml_half`).

use std::fmt;

/// A ggml tensor type; ids are ggml's `enum ggml_type` (as stored in GGUF tensor infos).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// Plain little-endian `f32`, 4 bytes per element.
    F32,
    /// IEEE half float, 2 bytes per element.
    F16,
    /// 32 elements: `d: f16`, `qs: [u8; 16]` of nibbles; element `j < 16` is the low nibble
    /// of `qs[j]`, element `j + 16` its high nibble; `x = (q - 8) * d`. 18 bytes.
    Q4_0,
    /// 32 elements: `d: f16`, `m: f16`, `qs: [u8; 16]` nibbles as in Q4_0; `x = q * d + m`.
    /// 20 bytes.
    Q4_1,
    /// 32 elements: `d: f16`, `qh: u32` (5th bit of element `j` in bit `j`), `qs: [u8; 16]`
    /// nibbles as in Q4_0; `x = (q - 16) * d`. 22 bytes.
    Q5_0,
    /// 32 elements: `d: f16`, `m: f16`, `qh: u32`, `qs: [u8; 16]` as in Q5_0;
    /// `x = q * d + m`. 24 bytes.
    Q5_1,
    /// 32 elements: `d: f16`, `qs: [i8; 32]`; `x = qs[j] * d`. 34 bytes.
    Q8_0,
    /// 256 elements in 8 sub-blocks of 32: `d: f16`, `dmin: f16`, `scales: [u8; 12]` (eight
    /// 6-bit scales and eight 6-bit mins, packed), `qs: [u8; 128]` nibbles (each 32 bytes hold
    /// two sub-blocks: low nibbles then high nibbles); `x = d * sc * q - dmin * m`. 144 bytes.
    Q4_K,
    /// 256 elements as Q4_K plus a 5th bit: `d`, `dmin`, `scales: [u8; 12]`, `qh: [u8; 32]`
    /// (bit `i` of `qh[l]` is the high bit of element `l` of sub-block `i`), `qs: [u8; 128]`.
    /// 176 bytes.
    Q5_K,
    /// 256 elements in 16 sub-blocks of 16: `ql: [u8; 128]` low 4 bits, `qh: [u8; 64]` high
    /// 2 bits, `scales: [i8; 16]`, `d: f16` (last); `x = d * scale * (q - 32)`. 210 bytes.
    Q6_K,
    /// bfloat16 (the high 16 bits of an `f32`), 2 bytes per element.
    BF16,
}

impl GgmlType {
    /// Every supported type, in id order.
    pub const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::BF16,
    ];

    /// The type with ggml id `id`, or `None` for types this runtime does not handle.
    pub const fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// ggml's numeric id (`enum ggml_type`), as stored in the file.
    pub const fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// ggml's name of the type (`"q4_K"`, `"f16"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q4_K => "q4_K",
            GgmlType::Q5_K => "q5_K",
            GgmlType::Q6_K => "q6_K",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Elements per block: 1 for the float types, 32 for `Q*_0`/`Q*_1`, 256 for K-quants.
    pub const fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => 256,
        }
    }

    /// Bytes per block (ggml's `type_size`; see the variants for the layouts).
    pub const fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,  // f16 d + 16 nibble bytes
            GgmlType::Q4_1 => 20,  // f16 d + f16 m + 16 nibble bytes
            GgmlType::Q5_0 => 22,  // f16 d + 4 high-bit bytes + 16 nibble bytes
            GgmlType::Q5_1 => 24,  // f16 d + f16 m + 4 + 16
            GgmlType::Q8_0 => 34,  // f16 d + 32 i8
            GgmlType::Q4_K => 144, // 2 f16 + 12 scale bytes + 128 nibble bytes
            GgmlType::Q5_K => 176, // 2 f16 + 12 + 32 high bits + 128
            GgmlType::Q6_K => 210, // 128 low + 64 high + 16 scales + f16 d
        }
    }

    /// Bytes taken by `n_elements` elements, or `None` when `n_elements` is not a whole
    /// number of blocks (or the size overflows).
    pub const fn row_bytes(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }

    /// Bytes of a tensor of this type with shape `dims` (ne order), or why it cannot exist:
    /// ne[0] not a multiple of the block size, or a size that overflows.
    pub fn tensor_bytes(self, dims: &[u64]) -> std::result::Result<u64, String> {
        let (&ne0, rest) = dims.split_first().ok_or("a tensor needs at least one dimension")?;
        let block_size = self.block_size() as u64;
        if ne0 % block_size != 0 {
            return Err(format!("ne[0] = {ne0} is not a multiple of the {} block size {block_size}", self.name()));
        }
        // Every product is checked: a corrupt shape must not wrap around to a small size.
        let overflow = || format!("the byte size of shape {dims:?} overflows");
        let mut bytes = self.row_bytes(ne0).ok_or_else(overflow)?;
        for &d in rest {
            bytes = bytes.checked_mul(d).ok_or_else(overflow)?;
        }
        Ok(bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(9), None);
        assert_eq!(GgmlType::from_id(u32::MAX), None);
    }

    #[test]
    fn type_sizes_match_ggml() {
        for (ty, bytes) in [
            (GgmlType::Q8_0, 34),
            (GgmlType::Q4_0, 18),
            (GgmlType::Q4_1, 20),
            (GgmlType::Q5_0, 22),
            (GgmlType::Q5_1, 24),
            (GgmlType::Q4_K, 144),
            (GgmlType::Q5_K, 176),
            (GgmlType::Q6_K, 210),
        ] {
            assert_eq!(ty.type_size(), bytes, "{ty}");
        }
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
        assert_eq!(GgmlType::Q4_1.tensor_bytes(&[576, 1536]), Ok(576 / 32 * 20 * 1536));
        assert_eq!(GgmlType::Q6_K.tensor_bytes(&[256]), Ok(210));
        assert!(GgmlType::Q8_0.tensor_bytes(&[33]).is_err());
    }

    #[test]
    fn display_is_the_ggml_name() {
        assert_eq!(GgmlType::Q4_K.to_string(), "q4_K");
        assert_eq!(format!("{:>5}", GgmlType::F16), "  f16");
    }
}
