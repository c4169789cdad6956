//! llama.cpp's process-wide state: its backend initialisation and its logger.
//!
//! llama.cpp keeps global state (backend registry, logger). `llama-cpp-2` models it as a
//! `LlamaBackend` value that may exist once per process; we create it lazily on first use and
//! never drop it, so that any number of models can be loaded and freed in any order.
//!
//! Logging: llama.cpp prints to stderr by default, which an embedding host rarely wants. We
//! install our own logger at initialisation: it forwards lines to lamina's log sink
//! ([`crate::log`]; none by default, so llama.cpp is silent), and it remembers the last
//! error-level line per thread so that a failed model load can say *why* it failed.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::log::{log, LogLevel};

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

/// Serialises context creation: llama-cpp-2 documents parallel `new_context` on one model as
/// unsound (llama.cpp may write model fields while creating a context).
pub(crate) static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

thread_local! {
    /// Last error line llama.cpp logged on this thread, with the partial line being assembled.
    static LAST_ERROR: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    /// Level of the last non-continuation line, for GGML_LOG_LEVEL_CONT fragments.
    static LAST_LEVEL: RefCell<Option<LogLevel>> = const { RefCell::new(None) };
}

/// The llama.cpp backend, initialised on first call. Public so that benchmarks can compare
/// lamina with a bare `llama-cpp-2` loop in the same process.
pub fn llama_backend() -> &'static LlamaBackend {
    BACKEND.get_or_init(|| {
        // SAFETY: `lamina_log` is a plain function valid for the whole process and ignores its
        // user data pointer.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(lamina_log), std::ptr::null_mut()) };
        // A dynamic build registers its backend libraries before llama.cpp starts.
        super::compute_backends::initialise();
        if super::compute_backends::is_dynamic() && !super::compute_backends::any_registered() {
            // With nothing registered, llama_backend_init() would run llama.cpp's own silent
            // search, which includes the build machine's directory and the current working
            // directory (a library planted there would be loaded). Do the rest of its work
            // (timer, f16 tables) instead; models then fail with lamina's error that lists
            // what was searched, and `load_backends` can still add a backend later.
            // SAFETY: plain ggml initialisation calls; the context is freed at once.
            unsafe {
                llama_cpp_sys_2::ggml_time_init();
                let ctx = llama_cpp_sys_2::ggml_init(llama_cpp_sys_2::ggml_init_params {
                    mem_size: 0,
                    mem_buffer: std::ptr::null_mut(),
                    no_alloc: false,
                });
                if !ctx.is_null() {
                    llama_cpp_sys_2::ggml_free(ctx);
                }
            }
            return LlamaBackend {};
        }
        match LlamaBackend::init() {
            Ok(backend) => backend,
            // Only possible when the host also initialised llama-cpp-2 itself; llama.cpp's init
            // is idempotent, so a second handle is harmless.
            Err(_) => LlamaBackend {},
        }
    })
}

/// Take (and clear) the last error line llama.cpp logged on this thread.
pub(crate) fn take_last_llama_error() -> Option<String> {
    LAST_ERROR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let line = std::mem::take(&mut cell.0);
        cell.1.clear();
        let line = line.trim().to_string();
        (!line.is_empty()).then_some(line)
    })
}

fn level_from_ggml(level: llama_cpp_sys_2::ggml_log_level) -> Option<LogLevel> {
    match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_DEBUG => Some(LogLevel::Debug),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => Some(LogLevel::Info),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => Some(LogLevel::Warn),
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => Some(LogLevel::Error),
        _ => None, // NONE or CONT: continuation of the previous line
    }
}

unsafe extern "C" fn lamina_log(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _user_data: *mut c_void) {
    if text.is_null() {
        return;
    }
    // A panic must not unwind into C.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        let level = match level_from_ggml(level) {
            Some(level) => {
                LAST_LEVEL.with(|l| *l.borrow_mut() = Some(level));
                level
            }
            None => LAST_LEVEL.with(|l| l.borrow().unwrap_or(LogLevel::Info)),
        };
        if level == LogLevel::Error {
            LAST_ERROR.with(|cell| {
                let mut cell = cell.borrow_mut();
                cell.1.push_str(&text);
                if cell.1.ends_with('\n') {
                    let line = std::mem::take(&mut cell.1);
                    cell.0 = line;
                }
            });
        }
        log(level, text.trim_end_matches('\n'));
    });
}
