//! The log sink: where lamina's and llama.cpp's log lines go.
//!
//! An embedding host rarely wants a library printing to stderr, so nothing is printed by
//! default: lines reach the sink set with [`set_log_sink`], or nowhere. Both engines log
//! through here: the llama.cpp engine forwards llama.cpp's own lines (`engine::llama_global`
//! installs the logger), and lamina adds its warnings that a caller could not otherwise see
//! (a damaged checkpoint that training skipped).

use std::sync::RwLock;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Receives log lines (without the trailing newline). Called from whichever thread logs,
/// possibly several at once: it must be thread-safe and must not call back into lamina.
pub type LogSink = Box<dyn Fn(LogLevel, &str) + Send + Sync + 'static>;

struct SinkEntry {
    sink: LogSink,
    min_level: LogLevel,
}

static SINK: RwLock<Option<SinkEntry>> = RwLock::new(None);

/// Route log lines at `min_level` and above to `sink`, or silence them with `None`. Takes
/// effect immediately for all threads.
pub fn set_log_sink(sink: Option<LogSink>, min_level: LogLevel) {
    let mut guard = SINK.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    *guard = sink.map(|sink| SinkEntry { sink, min_level });
}

/// Send one line to the sink, if one is set and `level` reaches its minimum.
pub(crate) fn log(level: LogLevel, line: &str) {
    let guard = SINK.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(entry) = guard.as_ref() {
        if level >= entry.min_level {
            (entry.sink)(level, line);
        }
    }
}
