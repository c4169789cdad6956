//! LoRA adapter handles: load into a model, apply a set with scales to a session.

use std::ffi::c_char;

use crate::args::{str_arg, write_optional};
use crate::boundary::{call, call_out, guard};
use crate::handles::Registry;
use crate::model::{lamina_model, MODELS};
use crate::session::{lamina_session, with_session};
use crate::status::{lamina_status, Failure};

/// A LoRA adapter loaded into a model. Opaque; create with `lamina_model_load_adapter`, free
/// with `lamina_adapter_free`. Thread-safe. It keeps its model alive; its weights stay in
/// memory until the model is freed, even after `lamina_adapter_free` (llama.cpp frees adapters
/// with their model).
pub struct lamina_adapter {
    adapter: lamina::Adapter,
}

static ADAPTERS: Registry<lamina_adapter> = Registry::new("lamina_adapter");

/// Load a LoRA adapter for `model`: a llama.cpp GGUF adapter file, or a PEFT directory
/// (adapter_config.json + adapter_model.safetensors, converted on load). The file is validated
/// before llama.cpp reads it.
/// Ownership: on success `*out_adapter` receives a handle owned by the caller, freed with
/// lamina_adapter_free; on failure it is left unmodified. The adapter keeps its model alive.
/// NULL: `model`, `path` and `out_adapter` are required.
/// Errors: LAMINA_STATUS_ERROR_IO (cannot open), _DATA (not a GGUF, a model rather than an
/// adapter, alpha not an f32, unpaired tensors, targets the model lacks, shape mismatch, missing
/// PEFT files; the message names the file and the problem), _MODEL_LOAD, _NULL_ARGUMENT,
/// _INVALID_UTF8, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any other call on the model.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_load_adapter(
    model: *const lamina_model,
    path: *const c_char,
    out_adapter: *mut *mut lamina_adapter,
) -> lamina_status {
    // SAFETY: the caller's out-pointer and C-string contracts.
    unsafe {
        call_out(out_adapter, "out_adapter", || {
            let model = MODELS.get(model, "model")?;
            let adapter = model.model.load_adapter(str_arg(path, "path")?)?;
            Ok(ADAPTERS.insert(lamina_adapter { adapter }))
        })
    }
}

/// Free an adapter handle.
/// Ownership: releases the caller's handle. Sessions that apply the adapter keep applying it.
/// NULL: `adapter` may be NULL (nothing happens).
/// Errors: none returned; freeing twice is reported through lamina_last_error_message() and
/// otherwise ignored.
/// Threads: any thread.
#[no_mangle]
pub extern "C" fn lamina_adapter_free(adapter: *mut lamina_adapter) {
    guard(|| {
        if !adapter.is_null() && !ADAPTERS.remove(adapter) {
            crate::status::set_last_error("lamina_adapter_free: not a live lamina_adapter handle (freed twice?)");
        }
    })
}

/// Apply `n` adapters with `scales[i]` each to `session` (1 = as trained, 0 = ignored); `n = 0`
/// (arrays may then be NULL) returns to the base model. When the set changes, the KV cache is
/// cleared; the chat history is kept. Several adapters are merged into one (cached in the
/// model, each distinct set costing the memory of its parts until the model is freed). On
/// error the session keeps its previous adapters.
/// Ownership: the session holds on to the adapters it applies; the caller keeps its handles
/// and arrays.
/// NULL: `session` is required; `adapters` and `scales` are required when `n > 0`.
/// Errors: LAMINA_STATUS_ERROR_INVALID_ARGUMENT (an adapter of another model, the same adapter
/// twice, a non-finite scale), _INVALID_HANDLE, _NULL_ARGUMENT, _BUSY, _IO/_DATA (an adapter's
/// file changed before merging).
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_set_adapters(
    session: *mut lamina_session,
    adapters: *const *const lamina_adapter,
    scales: *const f32,
    n: usize,
) -> lamina_status {
    call(|| {
        let mut set = Vec::with_capacity(n);
        if n > 0 {
            if adapters.is_null() {
                return Err(Failure::null("adapters"));
            }
            if scales.is_null() {
                return Err(Failure::null("scales"));
            }
            for i in 0..n {
                // SAFETY: the caller provides `n` readable entries in each array.
                let (handle, scale) = unsafe { (*adapters.add(i), *scales.add(i)) };
                set.push((ADAPTERS.get(handle, "adapters[i]")?.adapter.clone(), scale));
            }
        }
        with_session(session, |s| Ok(s.set_adapters(&set)?))
    })
}

/// The number of adapters last set on `session` (0 = the base model).
/// Ownership: writes `*out_n`; nothing to free.
/// NULL: `session` and `out_n` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_n_adapters(session: *mut lamina_session, out_n: *mut usize) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_n, "out_n", || with_session(session, |s| Ok(s.adapters().len()))) }
}

/// The rank (largest over its targets) and alpha of an adapter.
/// Ownership: writes the out-parameters; nothing to free.
/// NULL: `adapter` is required; either out pointer may be NULL (that value is not written).
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any other call (an adapter never changes).
#[no_mangle]
pub unsafe extern "C" fn lamina_adapter_info(adapter: *const lamina_adapter, out_rank: *mut u32, out_alpha: *mut f32) -> lamina_status {
    call(|| {
        let adapter = ADAPTERS.get(adapter, "adapter")?;
        // SAFETY: the caller's contract: each out-pointer is NULL or writable.
        unsafe {
            write_optional(out_rank, u32::try_from(adapter.adapter.rank()).unwrap_or(u32::MAX));
            write_optional(out_alpha, adapter.adapter.alpha());
        }
        Ok(())
    })
}
