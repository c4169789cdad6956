//! The native engine: a LLaMA decoder evaluated in Rust over memory-mapped weights, the base
//! of LoRA training (which needs passes lamina owns) and a second opinion on llama.cpp's
//! numbers. Modules: `config` (hyper-parameters), `matmul` (products with weights kept in their
//! stored type), `gemm` and `avx512` (the f32 products and the AVX-512 kernel behind them), `ops` and `attention` (the block's pieces), `model` (loading and the forward
//! pass), `tokenizer`, `convert` (GGUF <-> safetensors), `peak` (the CPU's measured FMA peak,
//! for benchmarks); for training: `lora` (adapter parameters), `backward` (the training pass),
//! `train_data` (JSONL/JSON records to examples with loss masks), `train` (the AdamW trainer
//! with checkpoints) and `lora_io` (GGUF and PEFT adapter files).

pub mod attention;
pub mod backward;
mod avx512;
pub mod bf16;
pub mod config;
pub mod kernel_bench;
pub mod convert;
pub(crate) mod gemm;
pub mod lora;
pub mod lora_io;
pub mod matmul;
pub mod model;
pub mod ops;
pub mod peak;
pub mod tokenizer;
mod vexp;
pub mod train;
pub mod train_data;

pub use config::{LlamaConfig, RopeScaling};
pub use backward::{Example, PassLoss, PassOptions};
pub use lora::{LoraConfig, LoraPair, LoraTarget, LoraWeights};
pub use model::{Logits, NativeModel, NativeParams};
pub use convert::{gguf_to_safetensors, safetensors_to_gguf, ConvertReport, Dtype as ConvertDtype};
pub use gemm::kernel_path;
pub use matmul::Precision;
pub use tokenizer::Tokenizer;
