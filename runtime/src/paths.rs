//! Where lamina keeps downloaded models: `$LAMINA_CACHE`, else `$XDG_CACHE_HOME/lamina`, else
//! `~/.cache/lamina`. `scripts/fetch-model.sh` fills it; nothing here downloads.

use std::path::PathBuf;

/// File name of the default model (SmolLM2-135M-Instruct, Q4_1).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAMINA_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("lamina");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("lamina")
}

/// Path of the default model: `$LAMINA_MODEL` if set, else the cached default model.
pub fn default_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("LAMINA_MODEL").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    cache_dir().join("models").join(DEFAULT_MODEL_FILE)
}
