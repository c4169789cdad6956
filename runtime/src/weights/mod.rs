//! Weight files and the model specification, below both engines: memory-mapped GGUF (read
//! and write) and safetensors, dequantization of ggml block types, and what a LLaMA model is
//! (`llama_config`: its shape, from GGUF metadata or a `config.json`; `names`: the HF <-> GGUF
//! tensor names and the q/k permutation, written once).
//!
//! This layer serves the native engine (forward and backward passes in Rust), the adapter
//! formats and the llama.cpp engine's adapter checks; llama.cpp reads the weights themselves
//! through its own loader.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};

pub mod dequant;
pub mod ggml_type;
pub mod gguf;
pub mod llama_config;
pub mod names;
pub mod safetensors;

pub use ggml_type::GgmlType;

/// Open and memory-map a weight file of the given `kind` ("GGUF", "safetensors"), read-only.
/// Errors: [`Error::Io`] when the OS cannot open or map it; [`Error::Data`] for a directory or
/// an empty file (mapping an empty file fails on some systems with an obscure OS error).
pub(crate) fn map_file(path: &Path, kind: &str) -> Result<Mmap> {
    let io_err = |source| Error::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    let data_err = |reason: String| Error::Data { path: path.to_path_buf(), line: None, reason };
    if meta.is_dir() {
        return Err(data_err(format!("is a directory, not a {kind} file")));
    }
    if meta.len() == 0 {
        return Err(data_err(format!("not a {kind} file: the file is empty")));
    }
    // SAFETY: the map is read-only. As with every memory map, another process truncating or
    // rewriting the file while it is mapped is undefined behaviour; weight files are treated as
    // immutable while loaded, as llama.cpp does.
    unsafe { Mmap::map(&file) }.map_err(io_err)
}
