//! The panic boundary every exported function runs inside.
//!
//! A Rust panic must never unwind into C (undefined behaviour) nor abort the host. Each
//! exported body runs in [`guard`]; a panic becomes the "failed" value of the function's return
//! type (a status, NULL, false, nothing) and its message goes to the last-error slot.
//!
//! Functions that return a status run their body through [`call`] (or [`call_out`], which
//! also checks and writes the out-parameter), the one place that maps a failure to a status.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::args::require_out;
use crate::status::{finish, lamina_status, set_last_error, Failure};

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

/// The body of an exported function that returns a status: `body` runs inside the panic
/// boundary, and its failure becomes the status and this thread's last-error message.
pub(crate) fn call(body: impl FnOnce() -> Result<(), Failure>) -> lamina_status {
    guard(|| finish(body()))
}

/// [`call`] for a function whose result goes to one required out-parameter: `out` is checked
/// before `body` runs, so a NULL out-pointer fails before any work is done, and it is written
/// only when `body` succeeds, so a failure leaves it unmodified.
///
/// # Safety
/// `out` is NULL or valid for writing a `T`.
pub(crate) unsafe fn call_out<T>(out: *mut T, name: &'static str, body: impl FnOnce() -> Result<T, Failure>) -> lamina_status {
    call(|| {
        require_out(out, name)?;
        let value = body()?;
        // SAFETY: checked non-NULL above; the caller vouches that it is writable.
        unsafe { out.write(value) };
        Ok(())
    })
}
