//! The llama.cpp engine: models, LoRA adapters, sessions, sampling, chat templates.

pub mod adapter;
pub(crate) mod backend;
pub mod backends;
mod chat_template;
mod context;
#[cfg(feature = "dynamic-backends")]
mod cpu_support;
mod model;
mod offload;
mod sampling;
mod sequence;
mod session;
mod text_stream;

pub use crate::chat::ChatMessage;
pub use adapter::Adapter;
pub use backend::{llama_backend, set_log_sink, LogLevel, LogSink};
pub use backends::{backend_report, devices, load_backends, BackendInfo, BackendReport, DeviceInfo, DeviceKind, SkippedBackend};
pub use chat_template::{ChatTemplate, TemplateEngine};
pub use model::{Model, ModelInfo, ModelParams};
pub use sampling::Sampling;
pub use session::{BatchRequest, CancelHandle, FlashAttention, Generation, Session, SessionParams, StopReason, MAX_SEQUENCES};
pub use text_stream::{StopFilter, Utf8Decoder};
