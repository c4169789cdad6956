//! The llama.cpp engine: models, LoRA adapters, sessions, sampling, compute backends.
//!
//! It builds on the layers below both engines (`weights`, `adapters`, `chat_template`,
//! `data_file`, `logits`, `log`) and never imports the native engine, evaluation or tasks
//! (`runtime/tests/integration/layers.rs` checks it).

pub mod adapter;
pub mod compute_backends;
mod context;
#[cfg(feature = "dynamic-backends")]
pub mod embed;
pub mod grammar;
pub(crate) mod llama_global;
mod model;
mod offload;
mod sampling;
mod sequence;
mod session;
mod text_stream;

pub use crate::chat::ChatMessage;
pub use crate::chat_template::{ChatTemplate, TemplateEngine};
pub use crate::log::{set_log_sink, LogLevel, LogSink};
pub use adapter::Adapter;
pub use compute_backends::{backend_report, devices, load_backends, BackendInfo, BackendReport, DeviceInfo, DeviceKind, SkippedBackend};
pub use embed::{EmbedParams, Embedder, Pooling};
pub use grammar::{json_schema_to_grammar, OutputFormat};
pub use llama_global::llama_backend;
pub use model::{Model, ModelInfo, ModelParams};
pub use sampling::Sampling;
pub use session::{BatchRequest, CancelHandle, FlashAttention, Generation, Session, SessionParams, StopReason, MAX_SEQUENCES};
pub use text_stream::{StopFilter, Utf8Decoder};
