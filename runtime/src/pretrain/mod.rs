//! Training a small LLaMA model from scratch, the steps after corpus preparation
//! ([`crate::corpus`]):
//!
//! - [`tokenizer_train`]: a byte-level BPE tokenizer trained on the corpus, with the
//!   pre-tokenizer llama.cpp knows as `smollm`, so that llama.cpp, lamina's native tokenizer
//!   and the `tokenizers` library give the same ids;
//! - [`init`]: the architecture ([`init::ModelSpec`], presets `1m`, `5m`, `20m`), its
//!   parameter count and training memory, and a seeded random initialisation written as a
//!   Hugging Face directory and, through the converter, as GGUF;
//! - [`run`]: pretraining that model (or an existing GGUF one) on the corpus with the native
//!   engine's full-parameter trainer, within a step, token or time budget, with validation,
//!   a test evaluation, a log and a loss plot, and the trained model as GGUF and Hugging Face
//!   files;
//! - [`sweep`]: a hyper-parameter search over such runs (grid or seeded random), each trial
//!   scored on its validation loss, hopeless ones stopped early, results in `sweep.json`.

pub mod init;
pub mod run;
pub mod sweep;
pub mod tokenizer_train;
