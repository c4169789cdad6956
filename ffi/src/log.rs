//! Routing llama.cpp's log to the host.

use std::ffi::{c_char, c_void, CString};

use lamina::engine::{LogLevel, LogSink};

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

/// Install a log callback for llama.cpp's messages and lamina's warnings at `min_level` (a
/// lamina_log_level value) and above, or silence them with a NULL callback (the default:
/// lamina prints nothing). Levels below DEBUG count as DEBUG, above ERROR as ERROR.
/// Ownership: lamina keeps `callback` and `user_data` (passed back untouched) until the
/// callback is replaced; `user_data` must stay valid until then.
/// NULL: `callback` may be NULL (silence); `user_data` may be NULL.
/// Errors: none.
/// Threads: process-wide; any thread. The callback itself runs on whichever thread logs,
/// possibly several at once.
#[no_mangle]
pub extern "C" fn lamina_set_log_callback(callback: lamina_log_callback, user_data: *mut c_void, min_level: i32) {
    guard(|| {
        let min_level = match min_level {
            i32::MIN..=1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            _ => LogLevel::Error,
        };
        let sink = callback.map(|callback| HostSink { callback, user_data: user_data as usize });
        lamina::engine::set_log_sink(sink.map(HostSink::into_log_sink), min_level);
    })
}

impl HostSink {
    /// The runtime's sink that forwards each line to the host's callback.
    fn into_log_sink(self) -> LogSink {
        Box::new(move |level, line| {
            let level = match level {
                LogLevel::Debug => lamina_log_level::Debug,
                LogLevel::Info => lamina_log_level::Info,
                LogLevel::Warn => lamina_log_level::Warn,
                LogLevel::Error => lamina_log_level::Error,
            };
            let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
            // SAFETY: the host registered this function pointer and user data for exactly this
            // use.
            unsafe { (self.callback)(level, c.as_ptr(), self.user_data as *mut c_void) };
        })
    }
}
