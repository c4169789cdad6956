//! One check per fuzz target: `run(bytes)` feeds the bytes to a parser and asserts its
//! contract (panicking when it is broken). libFuzzer calls them from `fuzz_targets/`, and
//! `tests/corpus.rs` runs every checked-in input through them on a stable toolchain.

pub mod chat_template;
pub mod eval_records;
pub mod gguf;
pub mod gguf_adapter;
pub mod hf_config;
pub mod peft_adapter;
pub mod safetensors;
pub mod train_records;

/// A fuzz check: panics on a defect, returns on any input handled as designed.
pub type Check = fn(&[u8]);

/// Every check, by target name.
pub const ALL: [(&str, Check); 8] = [
    ("gguf", gguf::run),
    ("safetensors", safetensors::run),
    ("hf_config", hf_config::run),
    ("gguf_adapter", gguf_adapter::run),
    ("peft_adapter", peft_adapter::run),
    ("train_records", train_records::run),
    ("eval_records", eval_records::run),
    ("chat_template", chat_template::run),
];
