//! Several prompts generated together on one session (`lamina_session_generate_batch`).

use std::ffi::{c_char, c_void};

use lamina::BatchRequest;

use crate::args::str_arg;
use crate::boundary::call;
use crate::session::{
    check_info, lamina_generation_info, lamina_sampling_params, lamina_session, nul_terminated, sampling_from_c, with_session,
    write_generation,
};
use crate::status::{lamina_status, Failure};

/// Receives the text of prompt `index` of a batch as it is generated: `len` bytes of UTF-8 at
/// `piece` (also NUL-terminated), never a partial character, valid only during the call.
/// Return true to go on, false to stop that prompt's sequence only (its stop reason is then
/// LAMINA_STOP_REASON_CALLBACK_STOPPED). Called on the thread that called lamina, in no fixed
/// order between sequences.
pub type lamina_batch_callback =
    Option<unsafe extern "C" fn(index: usize, piece: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// The most prompts one call takes (llama.cpp's limit on sequences).
const MAX_PROMPTS: usize = lamina::engine::MAX_SEQUENCES as usize;

/// Continue `n_prompts` prompts at once, each in its own sequence of the session's cache and
/// all advancing in one llama.cpp batch per step (much higher throughput than one at a time on
/// the same cores). With greedy sampling each text equals lamina_session_generate's for that
/// prompt alone.
///
/// The session must have been created with `n_sequences >= n_prompts` (each sequence has
/// n_ctx tokens of room). The KV cache is cleared before and after; a chat history is kept.
/// - `prompts`: `n_prompts` NUL-terminated UTF-8 strings.
/// - `sampling`: NULL (defaults for every prompt) or an array of `n_prompts` pointers, each
///   NULL (defaults) or an initialised lamina_sampling_params.
/// - `callback`: may be NULL; see lamina_batch_callback.
/// - `out_texts`: NULL or an array of `n_prompts` slots; on success slot i receives prompt i's
///   text. Nothing is written on failure.
/// - `out_infos`: NULL or an array of `n_prompts` pointers, each NULL or a
///   lamina_generation_info with struct_size set; written on success.
///
/// lamina_session_cancel stops every sequence (each reports LAMINA_STOP_REASON_CANCELLED).
/// Ownership: each string written to `out_texts` belongs to the caller, freed with
/// lamina_string_free; lamina keeps nothing of the caller's arrays after the call.
/// NULL: `session` and `prompts` (and each prompt) are required; `sampling`, its entries,
/// `callback`, `out_texts`, `out_infos` and its entries may be NULL.
/// Errors: _INVALID_ARGUMENT (n_prompts is 0, above the session's n_sequences or 256, or a
/// sampling value names its prompt), _EMPTY_PROMPT, _PROMPT_TOO_LONG, _INVALID_UTF8, _BUSY,
/// _DECODE, _INVALID_HANDLE, _NULL_ARGUMENT.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
/// The callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_session_generate_batch(
    session: *mut lamina_session,
    prompts: *const *const c_char,
    n_prompts: usize,
    sampling: *const *const lamina_sampling_params,
    callback: lamina_batch_callback,
    user_data: *mut c_void,
    out_texts: *mut *mut c_char,
    out_infos: *const *mut lamina_generation_info,
) -> lamina_status {
    call(|| {
        // SAFETY: the caller's array contracts, as documented.
        unsafe {
            let requests = batch_requests(prompts, n_prompts, sampling)?;
            let info_ptr = |i: usize| if out_infos.is_null() { std::ptr::null_mut() } else { *out_infos.add(i) };
            for i in 0..n_prompts {
                check_info(info_ptr(i))?;
            }
            let mut sink = batch_sink(callback, user_data);
            let generations = with_session(session, |s| Ok(s.generate_batch(&requests, &mut sink)?))?;
            for (i, g) in generations.iter().enumerate() {
                let text_slot = if out_texts.is_null() { std::ptr::null_mut() } else { out_texts.add(i) };
                write_generation(g, text_slot, info_ptr(i));
            }
        }
        Ok(())
    })
}

/// The requests of a batch call: `n_prompts` prompts, each with its sampling params (NULL
/// array or entry: the defaults).
///
/// # Safety
/// `prompts` is NULL or holds `n_prompts` readable entries, each NULL or a C string;
/// `sampling` is NULL or holds `n_prompts` entries, each NULL or an initialised params struct.
unsafe fn batch_requests(
    prompts: *const *const c_char,
    n_prompts: usize,
    sampling: *const *const lamina_sampling_params,
) -> Result<Vec<BatchRequest>, Failure> {
    if n_prompts == 0 || n_prompts > MAX_PROMPTS {
        return Err(Failure::new(
            lamina_status::ErrorInvalidArgument,
            format!("invalid argument `n_prompts`: must be in 1..={MAX_PROMPTS}, got {n_prompts}"),
        ));
    }
    if prompts.is_null() {
        return Err(Failure::null("prompts"));
    }
    let mut requests = Vec::with_capacity(n_prompts);
    for i in 0..n_prompts {
        // SAFETY: forwarded contract.
        unsafe {
            let prompt = str_arg(*prompts.add(i), "prompts[i]")?;
            let params = if sampling.is_null() { std::ptr::null() } else { *sampling.add(i) };
            requests.push(BatchRequest::new(prompt, sampling_from_c(params)?));
        }
    }
    Ok(requests)
}

/// Adapter from the C callback to the runtime's closure.
fn batch_sink(callback: lamina_batch_callback, user_data: *mut c_void) -> impl FnMut(usize, &str) -> bool {
    let mut buf: Vec<u8> = Vec::new();
    move |index: usize, piece: &str| match callback {
        None => true,
        // SAFETY: the host supplied this callback and user data for this call.
        Some(cb) => unsafe { cb(index, nul_terminated(&mut buf, piece), piece.len(), user_data) },
    }
}
