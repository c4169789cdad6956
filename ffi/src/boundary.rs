//! The panic boundary every exported function runs inside.
//!
//! A Rust panic must never unwind into C (undefined behaviour) nor abort the host. Each
//! exported body runs in [`guard`]; a panic becomes the "failed" value of the function's return
//! type (a status, NULL, false, nothing) and its message goes to the last-error slot.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{lamina_status, set_last_error};

/// What an exported function returns when its body panicked.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for lamina_status {
    fn on_panic() -> Self {
        lamina_status::ErrorPanic
    }
}
impl OnPanic for () {
    fn on_panic() -> Self {}
}
impl OnPanic for bool {
    fn on_panic() -> Self {
        false
    }
}
impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

/// Run `body`, converting a panic into `R::on_panic()`.
pub(crate) fn guard<R: OnPanic>(body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(&format!("internal error in lamina (please report): {what}"));
            R::on_panic()
        }
    }
}
