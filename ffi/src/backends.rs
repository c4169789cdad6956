//! Compute backends and devices: loading backend libraries at run time (builds with the
//! `dynamic-backends` feature) and listing what this process computes on.

use std::ffi::c_char;

use crate::args::{json_c_string, str_arg, write_optional};
use crate::boundary::{call, call_out};
use crate::status::{lamina_status, Failure};

/// The loader's report and the devices, as one JSON object.
#[derive(serde::Serialize)]
struct BackendsJson {
    #[serde(flatten)]
    report: lamina::engine::BackendReport,
    devices: Vec<lamina::engine::DeviceInfo>,
}

fn report_json() -> Result<*mut c_char, Failure> {
    json_c_string(&BackendsJson { report: lamina::engine::backend_report(), devices: lamina::engine::devices() })
}

/// Load compute backends (CUDA, Vulkan, CPU variants) from `path`: a directory, whose
/// `libggml-*.so` libraries are considered (the best CPU variant for this processor wins), or
/// one backend library file. Only in builds with dynamic backends; call it before the first
/// `lamina_model_load` to search `path` ahead of the default places (the directory of
/// lamina's libraries and `$LAMINA_BACKEND_PATH`), or later to add a backend family not
/// loaded yet. A directory in which nothing loads is not an error: its files are listed under
/// "skipped" with their reasons.
/// Ownership: if `out_json` is not NULL it receives, on success, the same JSON as
/// lamina_backends_json, a string the caller frees with lamina_string_free.
/// NULL: `path` is required; `out_json` may be NULL.
/// Errors: _INVALID_ARGUMENT (`path` does not exist), _BACKEND (`path` is a file that cannot
/// be loaded, with the system's reason; or this build has its backends compiled in),
/// _NULL_ARGUMENT, _INVALID_UTF8.
/// Threads: any thread; loads are serialised inside lamina.
#[no_mangle]
pub unsafe extern "C" fn lamina_backends_load(path: *const c_char, out_json: *mut *mut c_char) -> lamina_status {
    call(|| {
        // SAFETY: C-string contract is the caller's, as documented.
        let path = unsafe { str_arg(path, "path") }?;
        lamina::engine::load_backends(std::path::Path::new(path))?;
        if !out_json.is_null() {
            // SAFETY: the caller's contract: NULL or writable.
            unsafe { write_optional(out_json, report_json()?) };
        }
        Ok(())
    })
}

/// A JSON object describing this process's compute backends: `dynamic` (whether backends are
/// loaded at run time), `searched` (directories and files looked at), `loaded` (`name`,
/// `path`, null when compiled in), `skipped` (`path`, `reason`: libraries that failed to load)
/// and `devices` (`name`, `description`, `backend`, `kind` ("cpu", "gpu", "igpu",
/// "accelerator", "other"), `memory_total`, `memory_free` in bytes). Initialises the backends
/// (the default search) if no model has been loaded yet.
/// Ownership: on success `*out_json` receives a string the caller frees with
/// lamina_string_free.
/// NULL: `out_json` is required.
/// Errors: _NULL_ARGUMENT.
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_backends_json(out_json: *mut *mut c_char) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_json, "out_json", report_json) }
}
