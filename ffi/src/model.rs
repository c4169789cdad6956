//! Model handles.

use std::ffi::c_char;

use crate::args::{owned_c_string, read_params, require_out, str_arg, Versioned};
use crate::boundary::guard;
use crate::handles::Registry;
use crate::status::{finish, lamina_status, Failure};

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

/// Fill `*params` with the defaults (CPU only, memory-mapped). Pass `sizeof(*params)` as `struct_size`: a
/// program built against an older, shorter version of the struct keeps working with a newer
/// library (only the fields it knows are written). Call this before changing any field.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_params_init(params: *mut lamina_model_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    guard(|| finish(unsafe { crate::args::init_params(params, struct_size) }))
}

/// Load a GGUF model from `path` (memory-mapped). `params` may be NULL for defaults.
/// On success `*out_model` receives a new handle owned by the caller (free it with
/// `lamina_model_free`); on failure it is left unmodified.
/// Errors: LAMINA_STATUS_ERROR_MODEL_NOT_FOUND, _NOT_GGUF, _MODEL_LOAD, _IO, _NULL_ARGUMENT,
/// _INVALID_UTF8, _INVALID_ARGUMENT, _BACKEND (no CPU backend loaded, or the offloaded layers do not fit).
#[no_mangle]
pub unsafe extern "C" fn lamina_model_load(
    path: *const c_char,
    params: *const lamina_model_params,
    out_model: *mut *mut lamina_model,
) -> lamina_status {
    guard(|| {
        finish((|| {
            // SAFETY: C-string and params contracts are the caller's, as documented.
            let path = unsafe { str_arg(path, "path") }?;
            let params = unsafe { read_params(params) }?;
            require_out(out_model, "out_model")?;
            let rust_params =
                lamina::ModelParams { n_gpu_layers: params.n_gpu_layers, use_mmap: params.use_mmap, use_mlock: params.use_mlock };
            let model = lamina::Model::load(path, &rust_params)?;
            let handle = MODELS.insert(lamina_model { model });
            // SAFETY: checked non-NULL.
            unsafe { out_model.write(handle) };
            Ok(())
        })())
    })
}

/// Free a model handle. Calling with NULL is fine. Sessions created from the model keep it
/// alive until they are freed, so the order of frees does not matter. A pointer that is not a
/// live model (freed twice) is ignored and reported through lamina_last_error_message().
#[no_mangle]
pub extern "C" fn lamina_model_free(model: *mut lamina_model) {
    guard(|| {
        if !model.is_null() && !MODELS.remove(model) {
            crate::status::set_last_error("lamina_model_free: not a live lamina_model handle (freed twice?)");
        }
    })
}

/// A JSON object describing the model (architecture, parameter count, layers, context
/// length, ...). On success `*out_json` receives a string to free with `lamina_string_free`.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_info_json(model: *const lamina_model, out_json: *mut *mut c_char) -> lamina_status {
    guard(|| {
        finish((|| {
            let model = MODELS.get(model, "model")?;
            require_out(out_json, "out_json")?;
            let info = model.model.info();
            let json = serde_json::json!({
                "path": info.path.display().to_string(),
                "architecture": info.architecture,
                "name": info.name,
                "n_params": info.n_params,
                "size_bytes": info.size_bytes,
                "n_layer": info.n_layer,
                "n_embd": info.n_embd,
                "n_head": info.n_head,
                "n_head_kv": info.n_head_kv,
                "n_vocab": info.n_vocab,
                "n_ctx_train": info.n_ctx_train,
                "has_chat_template": info.has_chat_template,
                "gpu_layers": info.gpu_layers,
            });
            // SAFETY: checked non-NULL.
            unsafe { out_json.write(owned_c_string(&json.to_string())) };
            Ok(())
        })())
    })
}

/// The GGUF metadata value stored under `key` (e.g. "general.name"), as text. On success
/// `*out_value` receives a string to free with `lamina_string_free`. A missing key is
/// LAMINA_STATUS_ERROR_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_meta(model: *const lamina_model, key: *const c_char, out_value: *mut *mut c_char) -> lamina_status {
    guard(|| {
        finish((|| {
            let model = MODELS.get(model, "model")?;
            // SAFETY: caller's C-string contract.
            let key = unsafe { str_arg(key, "key") }?;
            require_out(out_value, "out_value")?;
            let value = model
                .model
                .meta(key)
                .ok_or_else(|| Failure::new(lamina_status::ErrorInvalidArgument, format!("the model has no metadata key `{key}`")))?;
            // SAFETY: checked non-NULL.
            unsafe { out_value.write(owned_c_string(&value)) };
            Ok(())
        })())
    })
}
