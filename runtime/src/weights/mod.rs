//! Weight files, memory-mapped: GGUF (read and write) and dequantization of ggml block types.
//!
//! This layer serves the native engine (forward and backward passes in Rust) and adapter
//! export; the llama.cpp engine reads the same files through llama.cpp itself.

pub mod dequant;
pub mod ggml_type;
pub mod gguf;
pub mod safetensors;

pub use ggml_type::GgmlType;
