//! The native engine: a LLaMA decoder evaluated in Rust over memory-mapped weights, the base
//! of LoRA training (which needs passes lamina owns) and a second opinion on llama.cpp's
//! numbers. Modules:
//!
//! - the model: `model` (loading; its shape is `weights::llama_config`), `layers` (each layer's
//!   forward and backward), `pass` (the one pass that inference, scoring and training share),
//!   `tokenizer`, `convert` (GGUF <-> safetensors);
//! - the kernels: `matmul` (products with weights kept in their stored type), `gemm` (strided
//!   f32 products), `avx512`, `avx512_narrow`, `bf16` and `amx` (lamina's AVX-512 f32 kernels,
//!   wide and narrow, its AVX512-BF16 kernel and the AMX tiles that kernel uses), `vexp`
//!   (vectorized exp), `peak` and `kernel_bench` (the measured FMA peak and per-shape timings);
//! - training: `lora` (adapter parameters), `optim` (AdamW and the learning-rate schedules),
//!   `train_records` (the JSONL/JSON record formats), `train_data` (records to examples with
//!   loss masks, the split and packing), `train` (the trainer, with
//!   checkpoints), `lora_io` (GGUF and PEFT adapter files) and `training_run` (a run built
//!   from files that owns its model and data: what the C ABI and the CLI drive).
//!
//! Layering: the native engine builds on `weights`, `adapters`, `chat_template`, `data_file`
//! and `log`, and never imports the llama.cpp engine, evaluation or tasks
//! (`runtime/tests/integration/layers.rs` checks it).

pub mod amx;
mod avx512;
mod avx512_narrow;
pub mod bf16;
pub(crate) mod big_buffer;
pub(crate) mod buffer_pool;
pub mod checkpoint;
pub mod convert;
pub mod full;
pub(crate) mod gemm;
pub mod kernel_bench;
pub mod layers;
pub mod lora;
pub mod lora_io;
pub mod matmul;
pub mod model;
pub mod optim;
pub(crate) mod packed;
pub mod pass;
pub mod peak;
pub mod tokenizer;
pub mod train;
pub mod train_data;
pub mod train_records;
pub mod trainable;
pub mod training_run;
mod vexp;

pub use crate::weights::llama_config::{LlamaConfig, RopeScaling};
pub use convert::{gguf_to_safetensors, safetensors_to_gguf, ConvertReport, Dtype as ConvertDtype};
pub use full::{FullBlock, FullWeights};
pub use gemm::kernel_path;
pub use layers::rope::RopeLayout;
pub use lora::{LoraConfig, LoraPair, LoraTarget, LoraWeights};
pub use matmul::Precision;
pub use model::{Logits, NativeModel, NativeParams};
pub use pass::{Example, PassLoss, PassOptions};
pub use tokenizer::Tokenizer;
