//! The one error type of the runtime.
//!
//! Every fallible operation returns [`Result`]. Messages name the operation and the value at
//! fault, so that a host can show them to a user as they are. The C ABI maps each variant to a
//! stable status code through [`Error::kind`]; adding a variant never renumbers old ones.

use std::path::PathBuf;

/// Result of every fallible lamina operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in lamina.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- arguments -------------------------------------------------------------------------
    /// A parameter is out of its documented range (negative, NaN, zero where positive is needed).
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument { name: &'static str, reason: String },

    /// A text argument was not valid UTF-8.
    #[error("`{name}` is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 { name: &'static str, offset: usize },

    /// A prompt (or message) was empty where text is required.
    #[error("the {what} is empty")]
    EmptyPrompt { what: &'static str },

    /// The prompt does not fit in the session's context window.
    #[error(
        "the prompt is {tokens} tokens long but the context holds {n_ctx} tokens \
         (at least one must stay free for generation); use a shorter prompt or a larger context"
    )]
    PromptTooLong { tokens: usize, n_ctx: usize },

    /// A language name or code that the translation task does not know.
    #[error("unknown language `{0}`: use an ISO 639-1 code such as `en`, `de`, `fr`, or an English language name")]
    UnknownLanguage(String),

    // --- model files -----------------------------------------------------------------------
    /// The model path does not exist.
    #[error("model file not found: {}", path.display())]
    ModelNotFound { path: PathBuf },

    /// The file exists but is not a GGUF file (or is too short to be one).
    #[error("{} is not a GGUF model file: {reason}", path.display())]
    NotGguf { path: PathBuf, reason: String },

    /// llama.cpp refused the file (truncated data, unsupported architecture, ...).
    #[error("llama.cpp could not load {}: {reason}", path.display())]
    ModelLoad { path: PathBuf, reason: String },

    /// Reading a file failed at the operating-system level.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing a file failed (full disk, unwritable path, ...). Nothing was left under `path`
    /// that looks complete: lamina writes beside it and renames (see `atomic_file`). Same
    /// class as [`Error::Io`].
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    // --- evaluation data ---------------------------------------------------------------------
    /// A data file (JSONL records, text) is malformed; `line` is 1-based when one line is at fault.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data { path: PathBuf, line: Option<usize>, reason: String },

    // --- engine ----------------------------------------------------------------------------
    /// llama.cpp could not create a context (usually: not enough memory for the KV cache).
    #[error("could not create a session: {0}")]
    ContextCreation(String),

    /// A decode call failed.
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),

    /// The chat template could not be rendered, neither by the Jinja engine nor by llama.cpp.
    #[error("chat template error: {0}")]
    ChatTemplate(String),

    /// A session was called while a call on it was still running: from another thread, or
    /// from inside its own token callback (C ABI and bindings only; Rust's borrow rules make
    /// this impossible for Rust callers).
    #[error("the session is busy with another call (from another thread, or from inside its own callback)")]
    Busy,

    /// A compute backend problem: no CPU backend could be loaded, a backend library the host
    /// named failed to load, or the layers asked to be offloaded do not fit in device memory.
    #[error("compute backend: {0}")]
    Backend(String),

    /// A bug in lamina rather than a problem of the input or the machine: an invariant of
    /// lamina's own data failed (its state could not be serialised, a tensor it built has the
    /// wrong size). The message says which.
    #[error("internal error (a bug in lamina): {0}")]
    Internal(String),
}

/// A coarse, stable classification of [`Error`], used for status codes across the C ABI.
///
/// Deliberately exhaustive: the C ABI (and through it every binding) maps each kind to its own
/// status with a `match` that has no catch-all arm, so a new kind cannot ship without its
/// status; adding one is a breaking change of the Rust API, made in a new minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidArgument,
    InvalidUtf8,
    EmptyPrompt,
    PromptTooLong,
    UnknownLanguage,
    ModelNotFound,
    NotGguf,
    ModelLoad,
    Io,
    ContextCreation,
    Decode,
    ChatTemplate,
    Busy,
    Data,
    Backend,
    Internal,
}

impl Error {
    /// The stable class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::InvalidUtf8 { .. } => ErrorKind::InvalidUtf8,
            Error::EmptyPrompt { .. } => ErrorKind::EmptyPrompt,
            Error::PromptTooLong { .. } => ErrorKind::PromptTooLong,
            Error::UnknownLanguage(_) => ErrorKind::UnknownLanguage,
            Error::ModelNotFound { .. } => ErrorKind::ModelNotFound,
            Error::NotGguf { .. } => ErrorKind::NotGguf,
            Error::ModelLoad { .. } => ErrorKind::ModelLoad,
            Error::Io { .. } | Error::Write { .. } => ErrorKind::Io,
            Error::ContextCreation(_) => ErrorKind::ContextCreation,
            Error::Decode(_) => ErrorKind::Decode,
            Error::ChatTemplate(_) => ErrorKind::ChatTemplate,
            Error::Busy => ErrorKind::Busy,
            Error::Data { .. } => ErrorKind::Data,
            Error::Backend(_) => ErrorKind::Backend,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name, reason: reason.into() }
    }
}

/// Check that `bytes` is UTF-8 and borrow it as `&str`, naming the argument on failure.
pub fn utf8<'a>(name: &'static str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 { name, offset: e.valid_up_to() })
}
