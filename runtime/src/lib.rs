//! lamina: an embeddable LLM runtime.
//!
//! Load a GGUF model (memory-mapped) with [`Model::load`], open a [`Session`] on it, and
//! generate, chat, [`translate`](tasks::translate) or [`answer`](tasks::answer) questions with
//! llama.cpp's quantized kernels. Everything here is safe Rust; the C ABI lives in the
//! `lamina-ffi` crate and only converts arguments and results.
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
pub mod engine;
pub mod error;
pub mod eval;
pub mod native;
pub mod paths;
pub mod tasks;
pub mod weights;

pub use engine::{
    Adapter, BatchRequest, CancelHandle, ChatMessage, FlashAttention, Generation, Model, ModelInfo, ModelParams, Sampling, Session,
    SessionParams, StopReason,
};
pub use error::{Error, ErrorKind, Result};

/// lamina's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
