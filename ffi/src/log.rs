//! Routing llama.cpp's log to the host.

use std::ffi::{c_char, c_void, CString};

use crate::boundary::guard;

/// Severity of a log line.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lamina_log_level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Receives one log message (NUL-terminated, no trailing newline, valid only during the call).
/// Usually a whole line; llama.cpp's progress output arrives in fragments such as ".".
/// May be called from any thread, several at once; must not call back into lamina.
pub type lamina_log_callback = Option<unsafe extern "C" fn(level: lamina_log_level, message: *const c_char, user_data: *mut c_void)>;

struct HostSink {
    callback: unsafe extern "C" fn(lamina_log_level, *const c_char, *mut c_void),
    user_data: usize,
}

/// Install a log callback for llama.cpp's messages at `min_level` (a lamina_log_level value)
/// and above, or silence them with a NULL callback (the default: lamina prints nothing).
/// Levels below DEBUG count as DEBUG, above ERROR as ERROR. `user_data` is passed back
/// untouched and must stay valid until the callback is replaced. Process-wide; thread-safe.
#[no_mangle]
pub extern "C" fn lamina_set_log_callback(callback: lamina_log_callback, user_data: *mut c_void, min_level: i32) {
    guard(|| {
        let level = match min_level {
            i32::MIN..=1 => lamina::engine::LogLevel::Debug,
            2 => lamina::engine::LogLevel::Info,
            3 => lamina::engine::LogLevel::Warn,
            _ => lamina::engine::LogLevel::Error,
        };
        let sink = callback.map(|callback| HostSink { callback, user_data: user_data as usize });
        lamina::engine::set_log_sink(
            sink.map(|sink| -> lamina::engine::LogSink {
                Box::new(move |level, line| {
                    let level = match level {
                        lamina::engine::LogLevel::Debug => lamina_log_level::Debug,
                        lamina::engine::LogLevel::Info => lamina_log_level::Info,
                        lamina::engine::LogLevel::Warn => lamina_log_level::Warn,
                        lamina::engine::LogLevel::Error => lamina_log_level::Error,
                    };
                    let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: the host registered this function pointer and user data for
                    // exactly this use.
                    unsafe { (sink.callback)(level, c.as_ptr(), sink.user_data as *mut c_void) };
                })
            }),
            level,
        );
    })
}
