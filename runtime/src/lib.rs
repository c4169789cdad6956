//! lamina: an embeddable LLM runtime.
//!
//! Load a GGUF model (memory-mapped) with [`Model::load`], open a [`Session`] on it, and
//! generate, chat, [`translate`](tasks::translate) or [`answer`](tasks::answer) questions with
//! llama.cpp's quantized kernels. The API is safe Rust. `unsafe` stays inside a few modules,
//! each site with a SAFETY comment: the SIMD kernels (`native/avx512.rs`, `bf16.rs`, `gemm.rs`,
//! `vexp.rs`, `weights/dequant/simd.rs`), the llama.cpp calls that llama-cpp-2 does not wrap
//! (`engine/context.rs`, `engine/llama_global.rs`, the backend loaders of `engine/compute_backends.rs`, `cpu_support.rs`) and the memory map. The C ABI
//! lives in the `lamina-ffi` crate.
//!
//! ```no_run
//! use lamina::{Model, ModelParams, Sampling, Session, SessionParams};
//! let model = Model::load("model.gguf", &ModelParams::default())?;
//! let mut session = Session::new(&model, &SessionParams::default())?;
//! let out = session.generate("The capital of France is", &Sampling::greedy(16), |piece| {
//!     print!("{piece}");
//!     true
//! })?;
//! # Ok::<(), lamina::Error>(())
//! ```

pub mod adapters;
pub mod atomic_file;
pub mod chat;
pub mod chat_template;
pub mod corpus;
pub(crate) mod cpu_support;
pub mod data_file;
pub mod engine;
pub mod error;
pub mod eval;
pub mod log;
pub mod logits;
pub mod native;
pub mod paths;
pub mod pretrain;
pub mod tasks;
pub mod weights;

pub use engine::{
    json_schema_to_grammar, Adapter, BatchRequest, CancelHandle, ChatMessage, EmbedParams, Embedder, FlashAttention, Generation, Model,
    ModelInfo, ModelParams, OutputFormat, Pooling, Sampling, Session, SessionParams, StopReason,
};
pub use error::{Error, ErrorKind, Result};

/// lamina's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
