//! lamina's integration tests, on the real default model and on small files they write.
//!
//! One test binary instead of one per file: each binary links lamina, its dependencies and the
//! llama.cpp libraries again, and instantiates the generic code the tests use again; with 33
//! of them that was minutes of a cold build on two cores. The default model is also loaded
//! once for all of them (`common::model`). Each module is one file of tests, run alone with
//! `cargo test --release -p lamina --test integration MODULE::` (for example `native_parity::`).
//!
//! The modules share one process: each writes its files under a temporary directory named
//! after the module and the process id, and none changes the environment of the process.

mod common;

mod adapters;
mod batch;
mod bf16_fidelity;
mod chat;
mod convert;
mod corpus;
mod dequant;
mod embeddings;
mod errors;
mod eval;
mod generation;
mod gguf;
mod hostile_templates;
mod layers;
mod llama_config;
mod lora_grad;
mod lora_learns;
mod malformed_weights;
mod metrics;
mod native_parity;
mod one_forward;
mod pretrain_init;
mod pretrain_run;
mod pretrain_sweep;
mod pretrain_tokenizer;
mod safetensors;
mod saved_sessions;
mod structured_output;
mod tasks;
mod threads;
mod tokenizer;
mod train_data;
mod training_run;
