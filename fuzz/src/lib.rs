//! The parts of `lamina` that read untrusted files, compiled on their own for fuzzing.
//!
//! Why a shim: the `lamina` crate links llama.cpp, and building that C++ library (with
//! sanitizer coverage on top) takes far longer than a fuzzing session. The parsers need none
//! of it, so the modules below are compiled straight from their source files in
//! `runtime/src`, under the same module paths (`crate::error`, `crate::weights`,
//! `crate::native::train_records`, ...) so that their `crate::` imports resolve unchanged. What is
//! fuzzed is therefore the code `lamina` ships, not a copy.
//!
//! The functions at the bottom feed bytes from memory to the parsers through an anonymous
//! memory map, exactly as `open` feeds them a mapped file, so that no target writes temporary
//! files.
//!
//! The contract under test: any input either parses or yields [`Error::Data`]; never a panic,
//! an out-of-bounds read, an allocation out of proportion to the input, or a hang.

#[path = "../../runtime/src/error.rs"]
pub mod error;

#[path = "../../runtime/src/atomic_file.rs"]
pub mod atomic_file;

// Crate-internal accessors meant for modules not compiled here (the native engine) are unused.
#[allow(dead_code)]
#[path = "../../runtime/src/weights/mod.rs"]
pub mod weights;

#[path = "../../runtime/src/adapters/mod.rs"]
pub mod adapters;

#[path = "../../runtime/src/chat.rs"]
pub mod chat;

#[path = "../../runtime/src/data_file.rs"]
pub mod data_file;

// Included at the top level and re-exported from `native` and `eval` below: a `#[path]`
// inside an inline module resolves against a `src/native/` directory, which does not exist
// here.
#[path = "../../runtime/src/native/train_records.rs"]
#[doc(hidden)]
pub mod native_train_records;

#[path = "../../runtime/src/eval/data.rs"]
#[doc(hidden)]
pub mod eval_data;

pub mod checks;

pub mod native {
    //! The training-record parser of the native engine at its path in `lamina`, and the
    //! model configuration re-exported there as `lamina` does.
    pub use super::native_train_records as train_records;
    pub use super::weights::llama_config::LlamaConfig;
}

pub mod eval {
    //! The evaluation-record readers, at their path in `lamina`.
    pub use super::eval_data as data;
}

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::{Mmap, MmapMut};

pub use error::{Error, ErrorKind, Result};
pub use native::LlamaConfig;
pub use weights::gguf::Gguf;
pub use weights::safetensors::SafeTensors;

/// The name errors give to an input that came from memory.
pub const MEMORY_PATH: &str = "<fuzz input>";

/// `bytes` in a read-only anonymous map, as [`Gguf::open`] and [`SafeTensors::open`] see a file.
fn map_bytes(bytes: &[u8]) -> Mmap {
    let mut map = MmapMut::map_anon(bytes.len()).expect("anonymous map");
    map.copy_from_slice(bytes);
    map.make_read_only().expect("read-only map")
}

/// [`Gguf::open`] on bytes in memory.
pub fn gguf_from_bytes(bytes: &[u8]) -> Result<Gguf> {
    Gguf::from_map(PathBuf::from(MEMORY_PATH), map_bytes(bytes))
}

/// [`SafeTensors::open`] on bytes in memory.
pub fn safetensors_from_bytes(bytes: &[u8]) -> Result<SafeTensors> {
    SafeTensors::from_map(PathBuf::from(MEMORY_PATH), map_bytes(bytes))
}

/// [`LlamaConfig::from_hf_config_json`] on bytes in memory.
pub fn hf_config_from_bytes(bytes: &[u8]) -> Result<LlamaConfig> {
    LlamaConfig::from_hf_config_bytes(Path::new(MEMORY_PATH), bytes)
}

/// The bytes of a text file read from memory ([`eval::data::decode_text`]).
pub fn text_from_bytes(bytes: &[u8]) -> Result<String> {
    eval::data::decode_text(Path::new(MEMORY_PATH), bytes.to_vec())
}

/// Where a PEFT target's `adapter_config.json` "is": inside the input, so errors name it.
pub fn peft_config_path() -> PathBuf {
    Path::new(MEMORY_PATH).join("adapter_config.json")
}

/// The shape of the model the adapter targets are checked against: 2 layers, width 32,
/// 4 heads of 8 (2 KV heads), FFN 64.
pub const TINY_CONFIG_JSON: &str = r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 16, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": true}"#;

/// [`TINY_CONFIG_JSON`] parsed.
pub fn tiny_config() -> &'static LlamaConfig {
    static CONFIG: OnceLock<LlamaConfig> = OnceLock::new();
    CONFIG.get_or_init(|| hf_config_from_bytes(TINY_CONFIG_JSON.as_bytes()).expect("the tiny config parses"))
}

/// The linear weights of [`tiny_config`] with their ggml dims (`[n_in, n_out]`).
pub fn tiny_linear_weights() -> Vec<(String, [u64; 2])> {
    let c = tiny_config();
    let (d, q, kv, ff) =
        (c.hidden_size as u64, (c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64, c.intermediate_size as u64);
    let mut out = Vec::new();
    for l in 0..c.n_layers {
        for (stem, dims) in [
            ("attn_q", [d, q]),
            ("attn_k", [d, kv]),
            ("attn_v", [d, kv]),
            ("attn_output", [q, d]),
            ("ffn_gate", [d, ff]),
            ("ffn_up", [d, ff]),
            ("ffn_down", [ff, d]),
        ] {
            out.push((format!("blk.{l}.{stem}.weight"), dims));
        }
    }
    out
}

/// A base model GGUF of [`tiny_config`]'s shape (zero weights), for adapter validation.
pub fn tiny_base() -> &'static Gguf {
    static BASE: OnceLock<Gguf> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut w = weights::gguf::GgufWriter::new();
        w.add_metadata("general.architecture", "llama").unwrap();
        for (name, dims) in tiny_linear_weights() {
            let bytes = vec![0u8; (dims[0] * dims[1] * 4) as usize];
            w.add_tensor(name, weights::GgmlType::F32, &dims, bytes).unwrap();
        }
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        Gguf::from_map(PathBuf::from("<tiny base>"), map_bytes(&bytes)).expect("the tiny base parses")
    })
}

/// Panics unless `e` is the error the contract allows for malformed input: [`Error::Data`]
/// naming the input.
pub fn assert_data_error(e: &Error) {
    assert!(matches!(e, Error::Data { .. }), "malformed input must give Error::Data, got {e:?}");
    assert!(e.to_string().contains(MEMORY_PATH), "the error does not name the input: {e}");
}
