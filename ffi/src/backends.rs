//! Compute backends and devices: loading backend libraries at run time (builds with the
//! `dynamic-backends` feature) and listing what this process computes on.

use std::ffi::c_char;

use crate::args::{owned_c_string, require_out, str_arg};
use crate::boundary::guard;
use crate::status::{finish, lamina_status};

/// The loader's report and the devices, as one JSON object.
fn report_json() -> serde_json::Value {
    let report = lamina::engine::backend_report();
    let devices = lamina::engine::devices();
    serde_json::json!({
        "dynamic": report.dynamic,
        "searched": report.searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "loaded": report.loaded.iter().map(|b| serde_json::json!({
            "name": b.name,
            "path": b.path.as_ref().map(|p| p.display().to_string()),
        })).collect::<Vec<_>>(),
        "skipped": report.skipped.iter().map(|s| serde_json::json!({
            "path": s.path.display().to_string(),
            "reason": s.reason,
        })).collect::<Vec<_>>(),
        "devices": devices.iter().map(|d| serde_json::json!({
            "name": d.name,
            "description": d.description,
            "backend": d.backend,
            "kind": match d.kind {
                lamina::engine::DeviceKind::Cpu => "cpu",
                lamina::engine::DeviceKind::Gpu => "gpu",
                lamina::engine::DeviceKind::IntegratedGpu => "igpu",
                lamina::engine::DeviceKind::Accelerator => "accelerator",
                lamina::engine::DeviceKind::Other => "other",
            },
            "memory_total": d.memory_total,
            "memory_free": d.memory_free,
        })).collect::<Vec<_>>(),
    })
}

/// Load compute backends (CUDA, Vulkan, CPU variants) from `path`: a directory, whose
/// `libggml-*.so` libraries are considered (the best CPU variant for this processor wins), or
/// one backend library file. Only in builds with dynamic backends; call it before the first
/// `lamina_model_load` to search `path` ahead of the default places (the directory of
/// lamina's libraries and `$LAMINA_BACKEND_PATH`), or later to add a backend family not
/// loaded yet. Thread-safe.
///
/// If `out_json` is not NULL it receives, on success, the same JSON as
/// `lamina_backends_json` (free it with `lamina_string_free`).
/// Errors: _INVALID_ARGUMENT (`path` does not exist), _BACKEND (`path` is a file that cannot
/// be loaded, with the system's reason; or this build has its backends compiled in),
/// _NULL_ARGUMENT, _INVALID_UTF8. A directory in which nothing loads is not an error: its
/// files are listed under "skipped" with their reasons.
#[no_mangle]
pub unsafe extern "C" fn lamina_backends_load(path: *const c_char, out_json: *mut *mut c_char) -> lamina_status {
    guard(|| {
        finish((|| {
            // SAFETY: C-string contract is the caller's, as documented.
            let path = unsafe { str_arg(path, "path") }?;
            lamina::engine::load_backends(std::path::Path::new(path))?;
            if !out_json.is_null() {
                // SAFETY: checked non-NULL.
                unsafe { out_json.write(owned_c_string(&report_json().to_string())) };
            }
            Ok(())
        })())
    })
}

/// A JSON object describing this process's compute backends: `dynamic` (whether backends are
/// loaded at run time), `searched` (directories and files looked at), `loaded` (`name`,
/// `path`, null when compiled in), `skipped` (`path`, `reason`: libraries that failed to load)
/// and `devices` (`name`, `description`, `backend`, `kind` ("cpu", "gpu", "igpu",
/// "accelerator", "other"), `memory_total`, `memory_free` in bytes). Initialises the backends
/// (the default search) if no model has been loaded yet. On success `*out_json` receives a
/// string to free with `lamina_string_free`.
#[no_mangle]
pub unsafe extern "C" fn lamina_backends_json(out_json: *mut *mut c_char) -> lamina_status {
    guard(|| {
        finish((|| {
            require_out(out_json, "out_json")?;
            // SAFETY: checked non-NULL.
            unsafe { out_json.write(owned_c_string(&report_json().to_string())) };
            Ok(())
        })())
    })
}
