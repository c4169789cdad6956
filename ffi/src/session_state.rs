//! Saving and restoring a session's state (its conversation's KV cache, chat history and
//! adapters) to a memory buffer or a file.

use std::ffi::c_char;

use crate::args::str_arg;
use crate::boundary::{call, guard};
use crate::session::{lamina_session, with_session};
use crate::status::{lamina_status, Failure};

/// Save `session`'s state (the KV cache of its conversation, the chat history, the adapters in
/// use) into a new buffer: restore it with lamina_session_restore_state into a session over the
/// same model, which then continues the conversation without processing it again (and, under
/// greedy decoding, exactly as this one would).
/// Ownership: on success `*out_data` receives a buffer of `*out_len` bytes owned by the caller,
/// freed with lamina_bytes_free(data, len); on failure both are left unmodified.
/// NULL: all arguments are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _IO (the model file, read for its fingerprint),
/// _INTERNAL, _BUSY.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_save_state(
    session: *mut lamina_session,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> lamina_status {
    call(|| {
        if out_data.is_null() || out_len.is_null() {
            return Err(Failure::null(if out_data.is_null() { "out_data" } else { "out_len" }));
        }
        let bytes = with_session(session, |s| Ok(s.save_state()?))?.into_boxed_slice();
        // SAFETY: both out-pointers were checked for NULL and are the caller's to write.
        unsafe {
            *out_len = bytes.len();
            *out_data = Box::into_raw(bytes).cast::<u8>();
        }
        Ok(())
    })
}

/// Free a buffer from lamina_session_save_state.
/// Ownership: takes back the buffer; `len` must be the length lamina returned with it.
/// NULL: `data` may be NULL (nothing happens).
/// Errors: none.
/// Threads: any thread, but not concurrently with another use of the same buffer.
#[no_mangle]
pub unsafe extern "C" fn lamina_bytes_free(data: *mut u8, len: usize) {
    guard(|| {
        if !data.is_null() {
            // SAFETY: per the contract, `data` and `len` came from Box<[u8]>::into_raw here.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
        }
    })
}

/// Replace `session`'s conversation with a saved state: its history, its KV cache (the next
/// call processes only what is new) and its adapters (loaded again from their files unless the
/// session already has exactly those, with the same scales).
/// Ownership: `data` (`len` bytes) is read during the call only.
/// NULL: `session` is required; `data` may be NULL only when `len` is 0 (then refused as not
/// a state).
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_ARGUMENT with the reason (not a lamina
/// session state, a checksum mismatch: corrupted or truncated, a state of another model, more
/// tokens than the session's context holds, an unknown format version), the errors of loading
/// its adapters (_IO, _DATA, _MODEL_LOAD), _BUSY. On any error the session is left empty
/// (as after lamina_session_reset), with the adapters it had.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_restore_state(session: *mut lamina_session, data: *const u8, len: usize) -> lamina_status {
    call(|| {
        if data.is_null() && len > 0 {
            return Err(Failure::null("data"));
        }
        // SAFETY: `data` holds `len` readable bytes (the caller's contract); none when NULL.
        let bytes = if data.is_null() { &[][..] } else { unsafe { std::slice::from_raw_parts(data, len) } };
        with_session(session, |s| Ok(s.restore_state(bytes)?))
    })
}

/// lamina_session_save_state into the file `path` (UTF-8), written atomically: a crash leaves
/// the old file or the new one.
/// Ownership: nothing is taken or returned.
/// NULL: both arguments are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_UTF8, _IO (cannot write), _INTERNAL, _BUSY.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_save_state_file(session: *mut lamina_session, path: *const c_char) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let path = unsafe { str_arg(path, "path") }?;
        with_session(session, |s| Ok(s.save_state_to_file(path)?))
    })
}

/// lamina_session_restore_state from a file written by lamina_session_save_state_file; the
/// error messages name the file.
/// Ownership: nothing is taken or returned.
/// NULL: both arguments are required.
/// Errors: those of lamina_session_restore_state, and _IO when the file cannot be read.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_restore_state_file(session: *mut lamina_session, path: *const c_char) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let path = unsafe { str_arg(path, "path") }?;
        with_session(session, |s| Ok(s.restore_state_from_file(path)?))
    })
}
