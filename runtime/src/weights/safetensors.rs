//! Safetensors weight files (Hugging Face checkpoints), memory-mapped.
//!
//! [`SafeTensors::open`] maps the file, validates its header with the `safetensors` crate and
//! keeps its own index of (name, dtype, shape, byte range) next to the map, so views borrow
//! straight from the mapping with no copy. F32, F16 and BF16 convert to `f32` with
//! [`SafeTensors::to_f32`]; tensors of other dtypes are listed and viewable as raw bytes, and
//! converting one is an error naming the tensor and its dtype.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use ::safetensors::Dtype;

use crate::error::{Error, Result};

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// The element type, as the file declares it.
    pub dtype: Dtype,
    /// The shape in PyTorch (row-major, C) order: the last dimension is contiguous.
    pub shape: Vec<usize>,
    /// The byte range of the data within the file.
    pub range: Range<usize>,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether [`SafeTensors::to_f32`] can convert this tensor (F32, F16 or BF16).
    pub fn is_supported(&self) -> bool {
        matches!(self.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
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
    pub fn dtype(&self) -> Dtype {
        self.info.dtype
    }
    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }
    pub fn n_elements(&self) -> usize {
        self.info.n_elements()
    }
    /// The raw little-endian bytes (no alignment guarantee beyond 1).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// A memory-mapped, validated safetensors file.
pub struct SafeTensors {
    path: PathBuf,
    map: Mmap,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    metadata: HashMap<String, String>,
}

impl fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeTensors")
            .field("path", &self.path)
            .field("n_tensors", &self.tensors.len())
            .field("file_size", &self.map.len())
            .finish()
    }
}

impl SafeTensors {
    /// Map and validate the file at `path`. Errors: [`Error::Io`] when the OS cannot open or
    /// map it (a missing file included), [`Error::Data`] naming the file and the problem when
    /// it is not a valid safetensors file (too short, header length past the end, invalid JSON,
    /// offsets out of range).
    pub fn open(path: impl AsRef<Path>) -> Result<SafeTensors> {
        let path = path.as_ref().to_path_buf();
        let map = crate::weights::map_file(&path, "safetensors")?;
        SafeTensors::from_map(path, map)
    }

    /// Validate an already mapped file; `path` only names it in errors. Split from
    /// [`open`](Self::open) so that the parser can also be driven from memory (an anonymous
    /// map), which is how the fuzz targets call it without touching the file system.
    pub(crate) fn from_map(path: PathBuf, map: Mmap) -> Result<SafeTensors> {
        let data_err = |reason: String| Error::Data { path: path.clone(), line: None, reason };
        if map.len() < 8 {
            return Err(data_err(format!("not a safetensors file: {} bytes is too short for the 8-byte header length", map.len())));
        }
        let (header_len, parsed) = parse_header(&map).map_err(data_err)?;
        let data_start = 8 + header_len;
        let mut tensors = Vec::with_capacity(parsed.tensors().len());
        for (name, info) in parsed.tensors() {
            let (begin, end) = info.data_offsets;
            // Validated by the crate (contiguous, inside the buffer, size = shape x dtype);
            // checked again here so that `tensor` can slice without a panic path.
            let range = data_start
                .checked_add(begin)
                .zip(data_start.checked_add(end))
                .filter(|&(b, e)| b <= e && e <= map.len())
                .map(|(b, e)| b..e)
                .ok_or_else(|| data_err(format!("tensor `{name}`: data offsets [{begin}, {end}] are out of range")))?;
            tensors.push(TensorInfo { name, dtype: info.dtype, shape: info.shape.clone(), range });
        }
        tensors.sort_by_key(|t| t.range.start);
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let metadata = parsed.metadata().clone().unwrap_or_default();
        Ok(SafeTensors { path, map, tensors, index, metadata })
    }

    /// The whole mapped file; a tensor's data lies at `info.range`. See `Gguf::file_bytes`.
    pub(crate) fn file_bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Size of the mapped file in bytes.
    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }
    /// All tensor infos, in data order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// The tensor names, in data order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }
    /// The free-form `__metadata__` map (empty when absent).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
    /// The info of the tensor called `name`, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor called `name` with its bytes (any dtype), if present.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let info = self.info(name)?;
        // In range: checked against the file size at open.
        Some(TensorView { info, data: &self.map[info.range.clone()] })
    }

    /// The tensor called `name` converted to `f32` (F32 copied, F16 and BF16 widened exactly).
    /// Errors name the file and the tensor: not present, or a dtype other than F32/F16/BF16.
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let view = self.tensor(name).ok_or_else(|| self.data_error(format!("no tensor named `{name}`")))?;
        let data = view.data();
        let out = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(
                    self.data_error(format!("tensor `{name}` has dtype {other:?}, which lamina does not support (F32, F16 and BF16 only)"))
                )
            }
        };
        Ok(out)
    }

    fn data_error(&self, reason: String) -> Error {
        Error::Data { path: self.path.clone(), line: None, reason }
    }
}

/// Parse and validate the header: the header length and the crate's metadata, or a reason.
fn parse_header(bytes: &[u8]) -> std::result::Result<(usize, ::safetensors::tensor::Metadata), String> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("not a safetensors file: {} bytes is too short", bytes.len()))?;
    let declared = u64::from_le_bytes(len_bytes);
    let available = bytes.len() as u64 - 8;
    if declared > available {
        return Err(format!(
            "invalid safetensors header: the header length {declared} goes past the end of the file \
             ({available} bytes follow it; truncated or not a safetensors file)"
        ));
    }
    ::safetensors::SafeTensors::read_metadata(bytes).map_err(|e| match e {
        ::safetensors::SafeTensorError::MetadataIncompleteBuffer => format!(
            "invalid safetensors file: {e} (the data section is {} bytes, which does not match the \
             tensors' data offsets: truncated, or trailing bytes)",
            available - declared
        ),
        e => format!("invalid safetensors file: {e}"),
    })
}
