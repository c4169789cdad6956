//! Status codes and the thread-local last-error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use lamina::ErrorKind;

/// Result of every fallible lamina call. Numbers are stable: new codes are only ever added,
/// retired ones stay reserved. On anything but `LAMINA_STATUS_OK`,
/// `lamina_last_error_message()` says what went wrong.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum lamina_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    ErrorNullArgument = 1,
    /// An argument is out of range (negative, NaN, bad struct_size, ...).
    ErrorInvalidArgument = 2,
    /// A string argument is not valid UTF-8.
    ErrorInvalidUtf8 = 3,
    /// A prompt, message or question is empty.
    ErrorEmptyPrompt = 4,
    /// The prompt does not fit in the session's context window.
    ErrorPromptTooLong = 5,
    /// A language code or name the translation task does not know.
    ErrorUnknownLanguage = 6,
    /// The model file does not exist.
    ErrorModelNotFound = 7,
    /// The file is not a GGUF model.
    ErrorNotGguf = 8,
    /// llama.cpp could not load the model (truncated or unsupported file).
    ErrorModelLoad = 9,
    /// An operating-system error while reading a file.
    ErrorIo = 10,
    /// The session (KV cache) could not be created.
    ErrorContextCreation = 11,
    /// llama.cpp failed while decoding.
    ErrorDecode = 12,
    /// The chat template could not be rendered.
    ErrorChatTemplate = 13,
    /// The session is being used by another thread right now.
    ErrorBusy = 14,
    /// The handle is not a live lamina object (already freed, or never created).
    ErrorInvalidHandle = 15,
    /// A data file (evaluation JSONL or text) is malformed or missing: the message names the
    /// file and, when one line is at fault, its 1-based number ("path:line: reason").
    ErrorData = 16,
    /// A compute-backend problem: no CPU backend could be loaded, a backend library the host
    /// named failed to load (the message carries the system's reason), or the layers asked to
    /// be offloaded do not fit in the GPUs' free memory (the message says how many do).
    ErrorBackend = 17,
    /// lamina hit an internal bug (a Rust panic). The process is intact; the object involved
    /// should be freed.
    ErrorPanic = 100,
}

impl lamina_status {
    /// The status with this number, if this library defines it.
    pub(crate) fn from_code(code: i32) -> Option<Self> {
        use lamina_status::*;
        [
            Ok,
            ErrorNullArgument,
            ErrorInvalidArgument,
            ErrorInvalidUtf8,
            ErrorEmptyPrompt,
            ErrorPromptTooLong,
            ErrorUnknownLanguage,
            ErrorModelNotFound,
            ErrorNotGguf,
            ErrorModelLoad,
            ErrorIo,
            ErrorContextCreation,
            ErrorDecode,
            ErrorChatTemplate,
            ErrorBusy,
            ErrorInvalidHandle,
            ErrorData,
            ErrorBackend,
            ErrorPanic,
        ]
        .into_iter()
        .find(|s| *s as i32 == code)
    }
}

impl From<ErrorKind> for lamina_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => lamina_status::ErrorInvalidArgument,
            ErrorKind::InvalidUtf8 => lamina_status::ErrorInvalidUtf8,
            ErrorKind::EmptyPrompt => lamina_status::ErrorEmptyPrompt,
            ErrorKind::PromptTooLong => lamina_status::ErrorPromptTooLong,
            ErrorKind::UnknownLanguage => lamina_status::ErrorUnknownLanguage,
            ErrorKind::ModelNotFound => lamina_status::ErrorModelNotFound,
            ErrorKind::NotGguf => lamina_status::ErrorNotGguf,
            ErrorKind::ModelLoad => lamina_status::ErrorModelLoad,
            ErrorKind::Io => lamina_status::ErrorIo,
            ErrorKind::ContextCreation => lamina_status::ErrorContextCreation,
            ErrorKind::Decode => lamina_status::ErrorDecode,
            ErrorKind::ChatTemplate => lamina_status::ErrorChatTemplate,
            ErrorKind::Busy => lamina_status::ErrorBusy,
            ErrorKind::Data => lamina_status::ErrorData,
            ErrorKind::Backend => lamina_status::ErrorBackend,
        }
    }
}

/// A failed call: status plus message, recorded in the thread-local slot on return.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: lamina_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: lamina_status, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn null(name: &str) -> Self {
        Self::new(lamina_status::ErrorNullArgument, format!("`{name}` must not be NULL"))
    }
}

impl From<lamina::Error> for Failure {
    fn from(e: lamina::Error) -> Self {
        Self { status: e.kind().into(), message: e.to_string() }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Record a failure and turn a call's result into its status.
pub(crate) fn finish(result: Result<(), Failure>) -> lamina_status {
    match result {
        Ok(()) => lamina_status::Ok,
        Err(failure) => {
            set_last_error(&failure.message);
            failure.status
        }
    }
}
