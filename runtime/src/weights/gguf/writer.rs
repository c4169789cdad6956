//! The GGUF writer: [`GgufWriter`] lays out metadata, tensor infos and aligned data as
//! llama.cpp expects them.

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

use super::{check_alignment, GgmlType, MetaValue, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS, MAX_TENSOR_NAME, WRITE_VERSION};
use crate::error::{Error, Result};

/// A tensor waiting to be written; data may be borrowed (e.g. from another map) or owned.
struct PendingTensor<'a> {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Cow<'a, [u8]>,
}

/// Builds a GGUF v3 file: metadata in insertion order, then tensor infos, then the data, each
/// tensor's offset being the running sum of the previous sizes padded to the alignment, which
/// is exactly what llama.cpp requires.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor<'a>>,
    alignment: Option<u32>,
}

impl<'a> GgufWriter<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The alignment the file will use.
    pub fn alignment(&self) -> u32 {
        self.alignment.unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Add a metadata entry. Keys must be unique; arrays must be homogeneous;
    /// `general.alignment` must be a u32 power of two and sets the file's alignment.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        if self.metadata.iter().any(|(k, _)| *k == key) {
            return Err(Error::invalid("key", format!("duplicate metadata key `{key}`")));
        }
        value.check_homogeneous().map_err(|e| Error::invalid("value", format!("metadata `{key}`: {e}")))?;
        if key == ALIGNMENT_KEY {
            let MetaValue::U32(a) = value else {
                return Err(Error::invalid("value", format!("`{ALIGNMENT_KEY}` must be a u32")));
            };
            check_alignment(a).map_err(|e| Error::invalid("value", e))?;
            if !self.tensors.is_empty() {
                return Err(Error::invalid("key", format!("set `{ALIGNMENT_KEY}` before adding tensors")));
            }
            self.alignment = Some(a);
        }
        self.metadata.push((key, value));
        Ok(())
    }

    /// Set the alignment (writes `general.alignment`).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<()> {
        self.add_metadata(ALIGNMENT_KEY, MetaValue::U32(alignment))
    }

    /// Add a tensor. `dims` is in ggml order (dims[0] contiguous); `data` must be exactly the
    /// size the type and shape call for.
    pub fn add_tensor(&mut self, name: impl Into<String>, ggml_type: GgmlType, dims: &[u64], data: impl Into<Cow<'a, [u8]>>) -> Result<()> {
        let (name, data) = (name.into(), data.into());
        self.check_tensor(&name, ggml_type, dims, data.len())?;
        self.tensors.push(PendingTensor { name, ggml_type, dims: dims.to_vec(), data });
        Ok(())
    }

    fn check_tensor(&self, name: &str, ggml_type: GgmlType, dims: &[u64], len: usize) -> Result<()> {
        if name.len() as u64 > MAX_TENSOR_NAME {
            return Err(Error::invalid("name", format!("tensor name longer than {MAX_TENSOR_NAME} bytes")));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::invalid("name", format!("duplicate tensor name `{name}`")));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS as usize || dims.iter().any(|&d| d == 0 || d > i64::MAX as u64) {
            return Err(Error::invalid("dims", format!("tensor `{name}`: bad shape {dims:?} (1 to 4 positive dimensions)")));
        }
        if dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d as i64)).is_none() {
            return Err(Error::invalid("dims", format!("tensor `{name}`: element count of {dims:?} overflows")));
        }
        let expected = ggml_type.tensor_bytes(dims).map_err(|e| Error::invalid("dims", format!("tensor `{name}` ({ggml_type}): {e}")))?;
        if expected != len as u64 {
            return Err(Error::invalid("data", format!("tensor `{name}` ({ggml_type} {dims:?}) needs {expected} bytes, got {len}")));
        }
        Ok(())
    }

    /// Write the file at `path`, replacing it only once the new file is complete (see
    /// [`atomic_file`](crate::atomic_file)).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic_file::write_file(path.as_ref(), |out| self.write_to(out))
    }

    /// Write the file to any sink.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let header = self.encode_header();
        out.write_all(&header)?;
        let alignment = u64::from(self.alignment());
        let mut written = header.len() as u64;
        for t in &self.tensors {
            out.write_all(&t.data)?;
            written += t.data.len() as u64;
            // Pad after every tensor, the last included, like llama.cpp and gguf-py.
            written += write_padding(out, written, alignment)?;
        }
        Ok(())
    }

    /// Header, metadata, tensor infos and the padding up to the data section.
    fn encode_header(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as i64).to_le_bytes());
        buf.extend_from_slice(&(self.metadata.len() as i64).to_le_bytes());
        for (key, value) in &self.metadata {
            encode_string(&mut buf, key);
            buf.extend_from_slice(&value.meta_type().id().to_le_bytes());
            encode_value(&mut buf, value);
        }
        let alignment = u64::from(self.alignment());
        let mut offset = 0u64;
        for t in &self.tensors {
            encode_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                buf.extend_from_slice(&(d as i64).to_le_bytes());
            }
            buf.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
            offset += (t.data.len() as u64).div_ceil(alignment) * alignment;
        }
        let padded = (buf.len() as u64).div_ceil(alignment) * alignment;
        buf.resize(padded as usize, 0);
        buf
    }
}

/// Zeros from `pos` up to the next multiple of `alignment`; returns how many were written.
fn write_padding(out: &mut impl Write, pos: u64, alignment: u64) -> io::Result<u64> {
    let pad = pos.div_ceil(alignment) * alignment - pos;
    const ZEROS: [u8; 256] = [0; 256];
    let mut left = pad;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64);
        out.write_all(&ZEROS[..n as usize])?;
        left -= n;
    }
    Ok(pad)
}

fn encode_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The value's bytes without its type id (arrays carry their element type and count).
fn encode_value(buf: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => buf.push(*v),
        MetaValue::I8(v) => buf.push(*v as u8),
        MetaValue::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => buf.push(u8::from(*v)),
        MetaValue::String(s) => encode_string(buf, s),
        MetaValue::Array { elem, items } => {
            buf.extend_from_slice(&elem.id().to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                encode_value(buf, item);
            }
        }
        MetaValue::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::gguf::reader::parse;

    #[test]
    fn writer_output_parses() {
        let mut w = GgufWriter::new();
        w.add_metadata("a", 1u32).unwrap();
        w.add_tensor("t", GgmlType::F32, &[3], vec![0u8; 12]).unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 32, 0);
        let h = parse(&bytes).unwrap();
        assert_eq!(h.tensors[0].size, 12);
        assert_eq!(h.data_offset % 32, 0);
    }
}
