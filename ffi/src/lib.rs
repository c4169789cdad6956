//! The C ABI of lamina. `include/lamina.h` is generated from this crate by cbindgen.
//!
//! This crate is deliberately thin: each exported function checks and converts its arguments,
//! calls the safe `lamina` runtime once, and maps the result to a status code, through
//! `boundary::call`/`call_out` (the one place that does the panic guard, the out-parameter and
//! the status); logic belongs in the runtime. `tests/thin.rs` keeps every exported body at 25
//! lines or fewer. Conventions (repeated in the header's preamble):
//! - every fallible call returns `lamina_status`; the message of the last failure on the
//!   calling thread is `lamina_last_error_message()`;
//! - out-parameters come last and are written only on success;
//! - every pointer argument is checked for NULL;
//! - every body runs inside a panic boundary: lamina never unwinds into or aborts the host;
//! - handles are checked against a registry, so a double free or a use after free is reported
//!   as `LAMINA_STATUS_ERROR_INVALID_HANDLE` instead of crashing.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // the safety contract of each function is in the header

mod adapter;
mod args;
mod backends;
mod boundary;
mod embed;
mod eval;
mod handles;
mod log;
mod model;
mod pretrain;
mod session;
// After `session`: the header declares the session types before the batch call that uses them.
mod batch;
mod session_state;
mod status;
mod train;

pub use adapter::{
    lamina_adapter, lamina_adapter_free, lamina_adapter_info, lamina_model_load_adapter, lamina_session_n_adapters,
    lamina_session_set_adapters,
};
pub use backends::{lamina_backends_json, lamina_backends_load};
pub use batch::{lamina_batch_callback, lamina_session_generate_batch};
pub use eval::{
    lamina_bleu, lamina_bleu_score, lamina_chrf, lamina_eval_params, lamina_eval_params_init, lamina_evaluate, lamina_progress_callback,
    lamina_squad_exact_match, lamina_squad_f1,
};
pub use log::{lamina_log_callback, lamina_log_level, lamina_set_log_callback};
pub use model::{
    lamina_model, lamina_model_free, lamina_model_info_json, lamina_model_load, lamina_model_meta, lamina_model_params,
    lamina_model_params_init,
};
pub use pretrain::{
    lamina_corpus_build, lamina_corpus_params, lamina_corpus_params_init, lamina_corpus_progress_callback, lamina_init_model,
    lamina_init_params, lamina_init_params_init, lamina_model_spec, lamina_model_spec_preset, lamina_pretrain_params,
    lamina_pretrain_params_init, lamina_pretrain_progress, lamina_pretrain_progress_callback, lamina_pretrainer, lamina_pretrainer_cancel,
    lamina_pretrainer_create, lamina_pretrainer_free, lamina_pretrainer_report_json, lamina_pretrainer_run, lamina_tokenizer_train,
    lamina_tokenizer_train_params, lamina_tokenizer_train_params_init,
};
pub use session::*;
pub use status::lamina_status;
pub use train::{
    lamina_adapter_format, lamina_train_params, lamina_train_params_init, lamina_train_progress, lamina_train_progress_callback,
    lamina_train_schedule, lamina_trainer, lamina_trainer_cancel, lamina_trainer_create, lamina_trainer_evaluate, lamina_trainer_free,
    lamina_trainer_resume, lamina_trainer_run, lamina_trainer_save_adapter, lamina_trainer_save_checkpoint, lamina_trainer_save_model,
    lamina_trainer_step, lamina_trainer_steps,
};

use std::ffi::{c_char, CString};

use boundary::guard;

/// The library's version, "MAJOR.MINOR.PATCH", the same as the LAMINA_VERSION_STRING macro of
/// the header it was built with.
/// Ownership: static storage; never free it.
/// NULL: never returns NULL.
/// Errors: none.
/// Threads: any thread.
#[no_mangle]
pub extern "C" fn lamina_version() -> *const c_char {
    guard(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast::<c_char>())
}

/// The message of the last failed lamina call on this thread ("" if none failed yet).
/// Ownership: lamina's; valid until the next failing lamina call on the same thread (copy it
/// to keep it); never free it.
/// NULL: never returns NULL.
/// Errors: none.
/// Threads: any thread; each thread has its own message.
#[no_mangle]
pub extern "C" fn lamina_last_error_message() -> *const c_char {
    guard(status::last_error_ptr)
}

/// A short constant name for a status code ("LAMINA_STATUS_OK", ...), or
/// "LAMINA_STATUS_UNKNOWN" for a number this library does not define (a code from a newer
/// version). Takes an int so that any value is safe to pass.
/// Ownership: static storage; never free it.
/// NULL: never returns NULL.
/// Errors: none.
/// Threads: any thread.
#[no_mangle]
pub extern "C" fn lamina_status_name(status: i32) -> *const c_char {
    guard(|| {
        let Some(status) = lamina_status::from_code(status) else {
            return c"LAMINA_STATUS_UNKNOWN".as_ptr();
        };
        status.name().as_ptr()
    })
}

/// Free a string that lamina returned through a `char **` out-parameter.
/// Ownership: takes back the string; it must not be used afterwards, freed twice, or be a
/// string lamina did not allocate (such misuse cannot be detected for plain strings).
/// NULL: `s` may be NULL (nothing happens).
/// Errors: none.
/// Threads: any thread, but not concurrently with another use of the same string.
#[no_mangle]
pub unsafe extern "C" fn lamina_string_free(s: *mut c_char) {
    guard(|| {
        if !s.is_null() {
            // SAFETY: per the contract, `s` came from CString::into_raw in this library.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

/// The path of lamina's default model (SmolLM2-135M-Instruct Q4_1) in the cache:
/// `$LAMINA_MODEL` if set, else `$LAMINA_CACHE/models/...`, else under `$XDG_CACHE_HOME/lamina`
/// or `~/.cache/lamina`. The file exists only after `scripts/fetch-model.sh` ran.
/// Ownership: on success `*out_path` receives a string the caller frees with
/// lamina_string_free.
/// NULL: `out_path` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8 (the cache path is not UTF-8).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_default_model_path(out_path: *mut *mut c_char) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe {
        boundary::call_out(out_path, "out_path", || {
            let path = lamina::paths::default_model_path();
            let s =
                path.to_str().ok_or_else(|| status::Failure::new(lamina_status::ErrorInvalidUtf8, "the cache path is not valid UTF-8"))?;
            Ok(args::owned_c_string(s))
        })
    }
}
