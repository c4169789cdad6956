//! GGUF files: a zero-copy reader ([`Gguf`]) and a writer ([`GgufWriter`]).
//!
//! Layout (little-endian), as llama.cpp reads and writes it:
//!
//! ```text
//! header:  "GGUF" | u32 version | i64 n_tensors | i64 n_kv
//! kv:      string key | u32 value type | value
//! tensor:  string name | u32 n_dims | i64 ne[n_dims] | u32 ggml type | u64 offset
//! padding: zeros up to `general.alignment` (default 32), counted from the file start
//! data:    tensor bytes; each offset is relative to the data section and aligned
//! ```
//!
//! The reader memory-maps the file and never copies tensor data: a [`TensorView`] borrows the
//! mapped bytes. Every read of the header goes through a bounds-checked cursor, and every count
//! read from the file is checked against the bytes left before anything is allocated from it,
//! so a truncated or corrupt file gives an [`Error::Data`](crate::error::Error::Data) naming
//! the file and the problem, never a panic or an out-of-bounds read.

mod reader;
mod writer;

use std::fmt;

pub use super::GgmlType;
pub use reader::Gguf;
pub use writer::GgufWriter;

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The version [`GgufWriter`] writes.
pub const WRITE_VERSION: u32 = 3;
/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// The metadata key that overrides the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Longest tensor name accepted. llama.cpp's limit is 63 bytes; we are lenient with other
/// writers but still bound the allocation.
const MAX_TENSOR_NAME: u64 = 1024;
/// Most dimensions a ggml tensor has.
const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays inside arrays. Each level costs only 12 bytes of file, so without
/// a bound a small file could overflow the stack through recursion.
const MAX_ARRAY_DEPTH: usize = 8;

/// Parse failures are plain strings inside this module; [`Gguf::open`] adds the path.
type ParseResult<T> = std::result::Result<T, String>;

/// Accepts a `general.alignment` value: a nonzero power of two.
/// The largest `general.alignment` lamina accepts. GGUF sets no bound and llama.cpp checks only
/// for a power of two, but real files use 32 (ggml's default) or at most a page; an alignment
/// of 2^31 in a 600-byte file made a rewrite pad the header to 2 GiB (found by fuzzing).
pub const MAX_ALIGNMENT: u32 = 1 << 16;

fn check_alignment(a: u32) -> ParseResult<()> {
    if !a.is_power_of_two() {
        return Err(format!("`{ALIGNMENT_KEY}` is {a}, but it must be a nonzero power of two"));
    }
    if a > MAX_ALIGNMENT {
        return Err(format!("`{ALIGNMENT_KEY}` is {a}, more than the {MAX_ALIGNMENT} bytes lamina accepts"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// metadata values
// ---------------------------------------------------------------------------------------------

/// The type of a metadata value; ids are GGUF's `gguf_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl MetaType {
    const ALL: [MetaType; 13] = [
        MetaType::U8,
        MetaType::I8,
        MetaType::U16,
        MetaType::I16,
        MetaType::U32,
        MetaType::I32,
        MetaType::F32,
        MetaType::Bool,
        MetaType::String,
        MetaType::Array,
        MetaType::U64,
        MetaType::I64,
        MetaType::F64,
    ];

    /// The type with GGUF id `id`, if it exists.
    pub fn from_id(id: u32) -> Option<MetaType> {
        MetaType::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// GGUF's numeric id (the position in the enum).
    pub fn id(self) -> u32 {
        MetaType::ALL.iter().position(|&t| t == self).unwrap_or(0) as u32
    }

    /// The fewest bytes a value of this type occupies in a file; used to bound untrusted
    /// element counts by the bytes left before allocating.
    fn min_encoded_size(self) -> u64 {
        match self {
            MetaType::U8 | MetaType::I8 | MetaType::Bool => 1,
            MetaType::U16 | MetaType::I16 => 2,
            MetaType::U32 | MetaType::I32 | MetaType::F32 => 4,
            MetaType::U64 | MetaType::I64 | MetaType::F64 => 8,
            MetaType::String => 8, // u64 length
            MetaType::Array => 12, // u32 type + u64 count
        }
    }
}

impl fmt::Display for MetaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            MetaType::U8 => "u8",
            MetaType::I8 => "i8",
            MetaType::U16 => "u16",
            MetaType::I16 => "i16",
            MetaType::U32 => "u32",
            MetaType::I32 => "i32",
            MetaType::F32 => "f32",
            MetaType::Bool => "bool",
            MetaType::String => "string",
            MetaType::Array => "array",
            MetaType::U64 => "u64",
            MetaType::I64 => "i64",
            MetaType::F64 => "f64",
        };
        f.write_str(name)
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// A homogeneous array; `elem` is kept so that an empty array round-trips with its type.
    Array {
        elem: MetaType,
        items: Vec<MetaValue>,
    },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The GGUF type of this value.
    pub fn meta_type(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array { .. } => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }

    /// An array of strings (the common tokenizer case).
    pub fn string_array<S: Into<String>>(items: impl IntoIterator<Item = S>) -> MetaValue {
        let items = items.into_iter().map(|s| MetaValue::String(s.into())).collect();
        MetaValue::Array { elem: MetaType::String, items }
    }

    /// Any integer value as i128, so that conversions below are lossless checks.
    fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as u32 if it is an integer that fits (writers differ in integer widths).
    pub fn as_u32(&self) -> Option<u32> {
        self.as_integer().and_then(|v| u32::try_from(v).ok())
    }

    /// The value as u64 if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_integer().and_then(|v| u64::try_from(v).ok())
    }

    /// The value as i64 if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_integer().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as f32 if it is a float (an f64 is rounded).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The value as f64 if it is a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements if the value is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array { items, .. } => Some(items),
            _ => None,
        }
    }

    /// Check that an array value is homogeneous (recursively), so that it can be encoded.
    fn check_homogeneous(&self) -> std::result::Result<(), String> {
        if let MetaValue::Array { elem, items } = self {
            for (i, item) in items.iter().enumerate() {
                if item.meta_type() != *elem {
                    return Err(format!("array of {elem} has an element of type {} at index {i}", item.meta_type()));
                }
                item.check_homogeneous()?;
            }
        }
        Ok(())
    }
}

macro_rules! meta_from {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for MetaValue {
            fn from(v: $t) -> MetaValue { MetaValue::$v(v) }
        })*
    };
}
meta_from!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
           bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for MetaValue {
    fn from(v: &str) -> MetaValue {
        MetaValue::String(v.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// tensors
// ---------------------------------------------------------------------------------------------

/// One tensor's header entry, validated against the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The element type.
    pub ggml_type: GgmlType,
    /// The shape in ggml order: `dims[0]` is the contiguous dimension.
    pub dims: Vec<u64>,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time to fit in i64.
        self.dims.iter().product()
    }
}

/// A tensor's header entry and its bytes, borrowed from the memory map.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    info: &'a TensorInfo,
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn info(&self) -> &'a TensorInfo {
        self.info
    }
    pub fn name(&self) -> &'a str {
        &self.info.name
    }
    pub fn ggml_type(&self) -> GgmlType {
        self.info.ggml_type
    }
    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }
    pub fn n_elements(&self) -> u64 {
        self.info.n_elements()
    }
    /// The raw bytes, exactly `info().size` long, aligned in memory to the file's alignment
    /// (the map is page-aligned and offsets are aligned within the file).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_type_ids_round_trip() {
        for (i, t) in MetaType::ALL.iter().enumerate() {
            assert_eq!(t.id() as usize, i);
            assert_eq!(MetaType::from_id(i as u32), Some(*t));
        }
        assert_eq!(MetaType::from_id(13), None);
    }
}
