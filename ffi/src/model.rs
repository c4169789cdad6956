//! Model handles.

use std::ffi::c_char;

use crate::args::{json_c_string, owned_c_string, read_params, str_arg, Versioned};
use crate::boundary::{call, call_out, guard};
use crate::handles::Registry;
use crate::status::{lamina_status, Failure};

/// A loaded model. Opaque; create with `lamina_model_load`, free with `lamina_model_free`.
/// Thread-safe: one model may be used by any number of threads and sessions at once.
pub struct lamina_model {
    pub(crate) model: lamina::Model,
}

pub(crate) static MODELS: Registry<lamina_model> = Registry::new("lamina_model");

/// How to load a model. Initialise with `lamina_model_params_init(&p, sizeof p)`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_model_params {
    /// sizeof(lamina_model_params), set by lamina_model_params_init(). Lets the struct grow
    /// in later versions without breaking callers compiled against this one.
    pub struct_size: usize,
    /// Layers to offload to a GPU backend; 0 = CPU only (default), a large number = all. The
    /// last blocks go first, then the output head. Ignored when no GPU backend is loaded;
    /// LAMINA_STATUS_ERROR_BACKEND when their weights do not fit in the GPUs' free memory (the
    /// message says how many layers do).
    pub n_gpu_layers: u32,
    /// Memory-map the weights (default true).
    pub use_mmap: bool,
    /// Lock the weights in RAM (default false).
    pub use_mlock: bool,
}

// SAFETY: repr(C), starts with usize, fields are plain numbers and C bools.
unsafe impl Versioned for lamina_model_params {
    const NAME: &'static str = "lamina_model_params";
    fn defaults() -> Self {
        let d = lamina::ModelParams::default();
        Self { struct_size: std::mem::size_of::<Self>(), n_gpu_layers: d.n_gpu_layers, use_mmap: d.use_mmap, use_mlock: d.use_mlock }
    }
}

/// Fill `*params` with the defaults (CPU only, memory-mapped). Pass `sizeof(*params)` as
/// `struct_size`: a program built against an older, shorter version of the struct keeps working
/// with a newer library (only the fields it knows are written). Call this before changing any
/// field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_params_init(params: *mut lamina_model_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Load a GGUF model from `path` (memory-mapped).
/// Ownership: on success `*out_model` receives a new handle owned by the caller, freed with
/// lamina_model_free; on failure it is left unmodified.
/// NULL: `path` and `out_model` are required; `params` may be NULL for the defaults.
/// Errors: LAMINA_STATUS_ERROR_MODEL_NOT_FOUND, _NOT_GGUF, _MODEL_LOAD, _IO, _NULL_ARGUMENT,
/// _INVALID_UTF8, _INVALID_ARGUMENT, _BACKEND (no CPU backend loaded, or the offloaded layers
/// do not fit).
/// Threads: any thread; models may be loaded concurrently.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_load(
    path: *const c_char,
    params: *const lamina_model_params,
    out_model: *mut *mut lamina_model,
) -> lamina_status {
    // SAFETY: the out-pointer, C-string and params contracts are the caller's, as documented.
    unsafe {
        call_out(out_model, "out_model", || {
            let path = str_arg(path, "path")?;
            let p = read_params(params)?;
            let params = lamina::ModelParams { n_gpu_layers: p.n_gpu_layers, use_mmap: p.use_mmap, use_mlock: p.use_mlock };
            Ok(MODELS.insert(lamina_model { model: lamina::Model::load(path, &params)? }))
        })
    }
}

/// Free a model handle.
/// Ownership: releases the caller's handle. Sessions, adapters and trainers created from the
/// model keep it alive until they are freed, so the order of frees does not matter.
/// NULL: `model` may be NULL (nothing happens).
/// Errors: none returned; a pointer that is not a live model (freed twice) is ignored and
/// reported through lamina_last_error_message().
/// Threads: any thread; calls still running on the model finish first.
#[no_mangle]
pub extern "C" fn lamina_model_free(model: *mut lamina_model) {
    guard(|| {
        if !model.is_null() && !MODELS.remove(model) {
            crate::status::set_last_error("lamina_model_free: not a live lamina_model handle (freed twice?)");
        }
    })
}

/// A JSON object describing the model (architecture, parameter count, layers, context
/// length, ...).
/// Ownership: on success `*out_json` receives a string the caller frees with
/// lamina_string_free.
/// NULL: `model` and `out_json` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any other call on the model.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_info_json(model: *const lamina_model, out_json: *mut *mut c_char) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_json, "out_json", || json_c_string(&MODELS.get(model, "model")?.model.info())) }
}

/// The GGUF metadata value stored under `key` (e.g. "general.name"), as text.
/// Ownership: on success `*out_value` receives a string the caller frees with
/// lamina_string_free.
/// NULL: `model`, `key` and `out_value` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_UTF8, _INVALID_ARGUMENT (no such key).
/// Threads: any thread, concurrently with any other call on the model.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_meta(model: *const lamina_model, key: *const c_char, out_value: *mut *mut c_char) -> lamina_status {
    // SAFETY: the out-pointer and C-string contracts are the caller's.
    unsafe {
        call_out(out_value, "out_value", || {
            let model = MODELS.get(model, "model")?;
            let key = str_arg(key, "key")?;
            let value = model
                .model
                .meta(key)
                .ok_or_else(|| Failure::new(lamina_status::ErrorInvalidArgument, format!("the model has no metadata key `{key}`")))?;
            Ok(owned_c_string(&value))
        })
    }
}
