//! LoRA adapter files, with no dependency on llama.cpp: the GGUF adapter format llama.cpp
//! serves ([`gguf`]: write, validate, read), the PEFT directories Hugging Face trainers write
//! ([`peft`]: read and write), and the
//! rank-concatenation merge that serves several adapters as one ([`merge`]). The llama.cpp
//! side (loading, caching, the [`Adapter`](crate::Adapter) handle) is `engine::adapter`; the
//! native engine's export and import is `native::lora_io`.

pub mod gguf;
pub mod merge;
pub mod peft;

pub use gguf::{
    gguf_adapter, read_gguf_adapter, read_lora_tensors, validate_gguf_adapter, write_gguf_adapter, AdapterSummary, GgufAdapter, LoraTensor,
    LoraTensorRef,
};
pub use merge::merge_lora;
pub use peft::{
    parse_peft_config, peft_tensors, peft_to_gguf, read_peft_adapter, write_peft_adapter, PeftAdapter, PeftConfig, PeftSettings,
};
