//! The parts of `lamina` that read weight files, compiled on their own for fuzzing.
//!
//! Why a shim: the `lamina` crate links llama.cpp, and building that C++ library (with
//! sanitizer coverage on top) takes far longer than a fuzzing session. The weight-file parsers
//! need none of it, so the modules below are compiled straight from their source files in
//! `runtime/src`, under the same module paths (`crate::error`, `crate::weights`,
//! `crate::native::config`) so that their `crate::` imports resolve unchanged. What is fuzzed
//! is therefore the code `lamina` ships, not a copy.
//!
//! The functions at the bottom feed bytes from memory to the parsers through an anonymous
//! memory map, exactly as `open` feeds them a mapped file, so that no target writes temporary
//! files.
//!
//! The contract under test: any input either parses or yields [`Error::Data`]; never a panic,
//! an out-of-bounds read, an allocation out of proportion to the input, or a hang.

#[path = "../../runtime/src/error.rs"]
pub mod error;

// Crate-internal accessors meant for modules not compiled here (the native engine) are unused.
#[allow(dead_code)]
#[path = "../../runtime/src/weights/mod.rs"]
pub mod weights;

// Included at the top level and re-exported from `native` below: a `#[path]` inside an inline
// module resolves against a `src/native/` directory, which does not exist here.
#[path = "../../runtime/src/native/config.rs"]
#[doc(hidden)]
pub mod native_config;

pub mod native {
    //! Only the configuration reader of the native engine, at its path in `lamina`.
    pub use super::native_config as config;
    pub use config::LlamaConfig;
}

use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

pub use error::{Error, Result};
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

/// Panics unless `e` is the error the contract allows for malformed input: [`Error::Data`]
/// naming the input.
pub fn assert_data_error(e: &Error) {
    assert!(matches!(e, Error::Data { .. }), "malformed input must give Error::Data, got {e:?}");
    assert!(e.to_string().contains(MEMORY_PATH), "the error does not name the input: {e}");
}
