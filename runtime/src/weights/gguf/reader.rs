//! The GGUF reader: [`Gguf`] maps a file and validates its header through a bounds-checked
//! cursor ([`Reader`]) before handing out borrowed [`TensorView`]s.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{
    check_alignment, GgmlType, MetaType, MetaValue, ParseResult, TensorInfo, TensorView, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC,
    MAX_ARRAY_DEPTH, MAX_DIMS, MAX_TENSOR_NAME,
};
use crate::error::{Error, Result};

/// A memory-mapped, validated GGUF file.
pub struct Gguf {
    path: PathBuf,
    map: Mmap,
    version: u32,
    alignment: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl Gguf {
    /// Map and validate the file at `path`. Errors: [`Error::Io`] when the OS cannot open or
    /// map it, [`Error::Data`] naming the file and the problem when it is not a valid GGUF.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf> {
        let path = path.as_ref().to_path_buf();
        let map = crate::weights::map_file(&path, "GGUF")?;
        Gguf::from_map(path, map)
    }

    /// Validate an already mapped file; `path` only names it in errors. Split from
    /// [`open`](Self::open) so that the parser can also be driven from memory (an anonymous
    /// map), which is how the fuzz targets call it without touching the file system.
    pub(crate) fn from_map(path: PathBuf, map: Mmap) -> Result<Gguf> {
        let data_err = |reason: String| Error::Data { path: path.clone(), line: None, reason };
        let header = parse(&map).map_err(data_err)?;
        Ok(Gguf {
            path,
            map,
            version: header.version,
            alignment: header.alignment,
            meta_index: index_of(header.metadata.iter().map(|(k, _)| k.as_str())),
            metadata: header.metadata,
            tensor_index: index_of(header.tensors.iter().map(|t| t.name.as_str())),
            tensors: header.tensors,
            data_offset: header.data_offset,
        })
    }

    /// The whole mapped file; tensor data lies at `data_offset() + info.offset`. The native
    /// engine keeps byte ranges into it instead of borrowed views, so that a model can own its
    /// mapping and its weight table together.
    pub(crate) fn file_bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The data-section alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }
    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// Size of the mapped file in bytes.
    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }
    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }
    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor called `name` with its bytes, if present.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let info = &self.tensors[*self.tensor_index.get(name)?];
        // In range: checked against the file size at parse time.
        let start = (self.data_offset + info.offset) as usize;
        let data = &self.map[start..start + info.size as usize];
        Some(TensorView { info, data })
    }

    /// `key` converted with `conv`, or an error naming the file, the key and the problem.
    fn get_as<'a, T>(&'a self, key: &str, expected: &str, conv: impl FnOnce(&'a MetaValue) -> Option<T>) -> Result<T> {
        let value = self.get(key).ok_or_else(|| self.data_error(format!("missing metadata key `{key}`")))?;
        conv(value).ok_or_else(|| self.data_error(format!("metadata key `{key}` is a {}, expected {expected}", value.meta_type())))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get_as(key, "an integer in u32 range", MetaValue::as_u32)
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get_as(key, "a non-negative integer", MetaValue::as_u64)
    }
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.get_as(key, "an integer in i64 range", MetaValue::as_i64)
    }
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_as(key, "a float", MetaValue::as_f32)
    }
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get_as(key, "a float", MetaValue::as_f64)
    }
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.get_as(key, "a bool", MetaValue::as_bool)
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get_as(key, "a string", MetaValue::as_str)
    }
    pub fn get_array(&self, key: &str) -> Result<&[MetaValue]> {
        self.get_as(key, "an array", MetaValue::as_array)
    }

    /// An array of strings as `&str`s (tokenizer vocabularies).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(MetaValue::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.data_error(format!("metadata key `{key}` is not an array of strings")))
    }

    fn data_error(&self, reason: String) -> Error {
        Error::Data { path: self.path.clone(), line: None, reason }
    }
}

fn index_of<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    names.enumerate().map(|(i, n)| (n.to_owned(), i)).collect()
}

/// A bounds-checked little-endian cursor over the mapped bytes. Every read either returns the
/// bytes it asked for or an error saying what was being read and where the file ends.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn fmt::Display) -> ParseResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!("file truncated: {what} at byte {} needs {n} bytes but only {} remain", self.pos, self.remaining()));
        }
        let start = self.pos;
        self.pos += n as usize; // n <= remaining, so it fits in usize
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &dyn fmt::Display) -> ParseResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &dyn fmt::Display) -> ParseResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &dyn fmt::Display) -> ParseResult<u16> {
        self.array(what).map(u16::from_le_bytes)
    }
    fn u32(&mut self, what: &dyn fmt::Display) -> ParseResult<u32> {
        self.array(what).map(u32::from_le_bytes)
    }
    fn u64(&mut self, what: &dyn fmt::Display) -> ParseResult<u64> {
        self.array(what).map(u64::from_le_bytes)
    }
    fn i64(&mut self, what: &dyn fmt::Display) -> ParseResult<i64> {
        self.array(what).map(i64::from_le_bytes)
    }

    /// A count of items that each take at least `min_size` bytes: rejected unless that many
    /// items could fit in the rest of the file, so no allocation is sized by a corrupt count.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn fmt::Display) -> ParseResult<usize> {
        let fits = count.checked_mul(min_size).is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(format!(
                "{what} is {count}, but the {} bytes left in the file hold at most {}: \
                 the file is truncated or corrupt",
                self.remaining(),
                self.remaining() / min_size
            ));
        }
        Ok(count as usize) // bounded by the file size, so it fits in usize
    }

    /// A GGUF string: u64 length, then UTF-8 bytes, at most `max_len` long.
    fn string(&mut self, max_len: u64, what: &dyn fmt::Display) -> ParseResult<String> {
        let at = self.pos;
        let len = self.u64(&format_args!("length of {what}"))?;
        if len > max_len {
            return Err(format!("{what} at byte {at} is {len} bytes long, more than the limit of {max_len}"));
        }
        let bytes = self.take(len, &format_args!("{what} ({len} bytes)"))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(format!("{what} at byte {at} is not valid UTF-8 (at its byte {})", e.valid_up_to())),
        }
    }
}

/// What [`parse`] finds in a file.
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) alignment: u32,
    pub(super) metadata: Vec<(String, MetaValue)>,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) data_offset: u64,
}

/// Parse and validate a whole file held in `bytes`.
pub(super) fn parse(bytes: &[u8]) -> ParseResult<Header> {
    let mut r = Reader::new(bytes);
    let version = read_magic_and_version(&mut r)?;
    // A tensor info takes at least 32 bytes (name length, n_dims, one ne, type, offset); a kv
    // at least 13 (key length, type, a one-byte value).
    let n_tensors = read_count(&mut r, "tensor count (n_tensors)")?;
    let n_kv = read_count(&mut r, "metadata count (n_kv)")?;
    let n_kv = r.check_count(n_kv, 13, &"metadata count (n_kv)")?;
    let metadata = read_metadata(&mut r, n_kv)?;
    let alignment = alignment_of(&metadata)?;
    let n_tensors = r.check_count(n_tensors, 32, &"tensor count (n_tensors)")?;
    let tensors = read_tensor_infos(&mut r, n_tensors, alignment)?;
    let data_offset = align_up(r.pos as u64, alignment).ok_or_else(|| "data section offset overflows".to_string())?;
    check_tensor_ranges(&tensors, data_offset, bytes.len() as u64)?;
    Ok(Header { version, alignment, metadata, tensors, data_offset })
}

fn read_magic_and_version(r: &mut Reader<'_>) -> ParseResult<u32> {
    let magic = r.take(4, &"magic").map_err(|_| "not a GGUF file: shorter than the 4-byte magic".to_string())?;
    if magic != MAGIC {
        return Err(format!("not a GGUF file: bad magic {:?} (expected \"GGUF\")", String::from_utf8_lossy(magic)));
    }
    let version = r.u32(&"version")?;
    match version {
        2 | 3 => Ok(version),
        1 => Err("unsupported GGUF version 1 (only versions 2 and 3 are read; convert the file again)".into()),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => Err(format!("unsupported GGUF version {v}: this looks like a big-endian file")),
        v => Err(format!("unsupported GGUF version {v} (only versions 2 and 3 are read)")),
    }
}

fn read_count(r: &mut Reader<'_>, what: &str) -> ParseResult<u64> {
    let n = r.i64(&what)?;
    u64::try_from(n).map_err(|_| format!("{what} is negative ({n})"))
}

fn read_metadata(r: &mut Reader<'_>, n_kv: usize) -> ParseResult<Vec<(String, MetaValue)>> {
    let mut out: Vec<(String, MetaValue)> = Vec::with_capacity(n_kv);
    let mut seen = std::collections::HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = r.string(u64::MAX, &format_args!("key of metadata entry {i}"))?;
        let value = read_typed_value(r, &key, 0)?;
        // llama.cpp rejects duplicate keys: which one wins would be ambiguous.
        if !seen.insert(key.clone()) {
            return Err(format!("duplicate metadata key `{key}`"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// A u32 type id followed by a value of that type.
fn read_typed_value(r: &mut Reader<'_>, key: &str, depth: usize) -> ParseResult<MetaValue> {
    let at = r.pos;
    let id = r.u32(&format_args!("type of metadata `{key}`"))?;
    let ty = MetaType::from_id(id).ok_or_else(|| format!("metadata `{key}` has unknown value type {id} (at byte {at})"))?;
    read_value(r, ty, key, depth)
}

fn read_value(r: &mut Reader<'_>, ty: MetaType, key: &str, depth: usize) -> ParseResult<MetaValue> {
    let what = format_args!("value of metadata `{key}`");
    Ok(match ty {
        MetaType::U8 => MetaValue::U8(r.u8(&what)?),
        MetaType::I8 => MetaValue::I8(r.u8(&what)? as i8),
        MetaType::U16 => MetaValue::U16(r.u16(&what)?),
        MetaType::I16 => MetaValue::I16(r.u16(&what)? as i16),
        MetaType::U32 => MetaValue::U32(r.u32(&what)?),
        MetaType::I32 => MetaValue::I32(r.u32(&what)? as i32),
        MetaType::F32 => MetaValue::F32(f32::from_bits(r.u32(&what)?)),
        // Lenient like C: any nonzero byte is true.
        MetaType::Bool => MetaValue::Bool(r.u8(&what)? != 0),
        MetaType::String => MetaValue::String(r.string(u64::MAX, &what)?),
        MetaType::Array => read_array(r, key, depth)?,
        MetaType::U64 => MetaValue::U64(r.u64(&what)?),
        MetaType::I64 => MetaValue::I64(r.i64(&what)?),
        MetaType::F64 => MetaValue::F64(f64::from_bits(r.u64(&what)?)),
    })
}

fn read_array(r: &mut Reader<'_>, key: &str, depth: usize) -> ParseResult<MetaValue> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(format!("metadata `{key}` nests arrays more than {MAX_ARRAY_DEPTH} deep"));
    }
    let at = r.pos;
    let id = r.u32(&format_args!("element type of array `{key}`"))?;
    let elem = MetaType::from_id(id).ok_or_else(|| format!("array `{key}` has unknown element type {id} (at byte {at})"))?;
    let count = r.u64(&format_args!("element count of array `{key}`"))?;
    let count = r.check_count(count, elem.min_encoded_size(), &format_args!("element count of array `{key}`"))?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(read_value(r, elem, key, depth + 1)?);
    }
    Ok(MetaValue::Array { elem, items })
}

/// `general.alignment` if present (a nonzero power of two), else the default.
fn alignment_of(metadata: &[(String, MetaValue)]) -> ParseResult<u32> {
    let Some((_, value)) = metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let a = value.as_u32().ok_or_else(|| format!("`{ALIGNMENT_KEY}` must be an unsigned 32-bit integer, found {value:?}"))?;
    check_alignment(a)?;
    Ok(a)
}

fn align_up(x: u64, alignment: u32) -> Option<u64> {
    let a = u64::from(alignment);
    Some(x.checked_add(a - 1)? / a * a)
}

fn read_tensor_infos(r: &mut Reader<'_>, n: usize, alignment: u32) -> ParseResult<Vec<TensorInfo>> {
    let mut out: Vec<TensorInfo> = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    for i in 0..n {
        let info = read_tensor_info(r, i, alignment)?;
        if !seen.insert(info.name.clone()) {
            return Err(format!("duplicate tensor name `{}`", info.name));
        }
        out.push(info);
    }
    Ok(out)
}

fn read_tensor_info(r: &mut Reader<'_>, index: usize, alignment: u32) -> ParseResult<TensorInfo> {
    let name = r.string(MAX_TENSOR_NAME, &format_args!("name of tensor {index}"))?;
    let n_dims = r.u32(&format_args!("n_dims of tensor `{name}`"))?;
    if !(1..=MAX_DIMS).contains(&n_dims) {
        return Err(format!("tensor `{name}` has {n_dims} dimensions (must be 1 to {MAX_DIMS})"));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let ne = r.i64(&format_args!("ne[{d}] of tensor `{name}`"))?;
        if ne <= 0 {
            return Err(format!("tensor `{name}` has ne[{d}] = {ne} (each dimension must be positive)"));
        }
        dims.push(ne as u64);
    }
    // ggml counts elements in int64_t.
    let fits = dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d as i64)).is_some();
    if !fits {
        return Err(format!("tensor `{name}` with shape {dims:?} has an element count that overflows"));
    }
    let type_id = r.u32(&format_args!("type of tensor `{name}`"))?;
    let ggml_type =
        GgmlType::from_id(type_id).ok_or_else(|| format!("tensor `{name}` has unknown or unsupported ggml type id {type_id}"))?;
    let size = ggml_type.tensor_bytes(&dims).map_err(|e| format!("tensor `{name}` ({ggml_type}): {e}"))?;
    let offset = r.u64(&format_args!("offset of tensor `{name}`"))?;
    if offset % u64::from(alignment) != 0 {
        return Err(format!("tensor `{name}` has offset {offset}, not a multiple of the alignment {alignment}"));
    }
    Ok(TensorInfo { name, ggml_type, dims, offset, size })
}

fn check_tensor_ranges(tensors: &[TensorInfo], data_offset: u64, file_len: u64) -> ParseResult<()> {
    for t in tensors {
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.size));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(format!(
                    "tensor `{}` data [{} + {}, +{} bytes) runs past the end of the file ({file_len} bytes): \
                     the file is truncated or corrupt",
                    t.name, data_offset, t.offset, t.size
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_is_bounds_checked() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert!(r.u32(&"x").unwrap_err().contains("truncated"));
        assert_eq!(r.u16(&"x"), Ok(1));
        assert!(r.check_count(u64::MAX, 8, &"n").is_err());
        assert!(r.string(10, &"s").is_err());
    }

    #[test]
    fn align_up_overflow_is_none() {
        assert_eq!(align_up(u64::MAX, 32), None);
        assert_eq!(align_up(33, 32), Some(64));
    }
}
