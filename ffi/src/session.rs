//! Session handles: generation, chat, translation, question answering.

use std::ffi::{c_char, c_void};
use std::sync::Mutex;

use lamina::{CancelHandle, Generation, OutputFormat, Sampling, Session, StopReason};

use crate::args::{opt_str_arg, owned_c_string, read_params, str_arg, Versioned};
use crate::boundary::{call, call_out, guard};
use crate::handles::Registry;
use crate::model::lamina_model;
use crate::model::MODELS;
use crate::status::{lamina_status, Failure};

/// A session: one context (KV cache) and chat history over a model. Opaque; create with
/// `lamina_session_new`, free with `lamina_session_free`. Use a session from one thread at a
/// time (a second thread calling while one generates gets LAMINA_STATUS_ERROR_BUSY);
/// `lamina_session_cancel` is the exception and may be called from any thread.
pub struct lamina_session {
    session: Mutex<Session>,
    cancel: CancelHandle,
    /// Fixed at creation, so lamina_session_n_ctx reads it without the session's lock.
    n_ctx: u32,
}

static SESSIONS: Registry<lamina_session> = Registry::new("lamina_session");

/// How to create a session. Initialise with `lamina_session_params_init(&p, sizeof p)`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_session_params {
    /// sizeof(lamina_session_params), set by lamina_session_params_init().
    pub struct_size: usize,
    /// Context window in tokens; 0 = min(4096, the model's training context) (default).
    pub n_ctx: u32,
    /// Most tokens per decode call; long prompts are fed in chunks of this size (default
    /// 512). Cancellation does not wait for the end of a chunk.
    pub n_batch: u32,
    /// Threads for generation; 0 = all cores (default).
    pub n_threads: u32,
    /// Threads for prompt processing; 0 = same as n_threads (default).
    pub n_threads_batch: u32,
    /// FlashAttention: -1 = where every device supports it (default), 0 = off, 1 = on.
    pub flash_attention: i32,
    /// Most independent sequences lamina_session_generate_batch decodes together, 1..=256
    /// (default 1). Each gets its own n_ctx tokens of cache.
    pub n_sequences: u32,
}

// SAFETY: repr(C), starts with usize, plain integer fields.
unsafe impl Versioned for lamina_session_params {
    const NAME: &'static str = "lamina_session_params";
    fn defaults() -> Self {
        let d = lamina::SessionParams::default();
        Self {
            struct_size: std::mem::size_of::<Self>(),
            n_ctx: d.n_ctx,
            n_batch: d.n_batch,
            n_threads: d.n_threads,
            n_threads_batch: d.n_threads_batch,
            flash_attention: -1,
            n_sequences: d.n_sequences,
        }
    }
}

/// Fill `*params` with the defaults (context min(4096, the model's), batch 512, all cores).
/// Pass `sizeof(*params)` as `struct_size`: a program built against an older, shorter version
/// of the struct keeps working with a newer library (only the fields it knows are written).
/// Call this before changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_session_params_init(params: *mut lamina_session_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// How tokens are chosen and when generation stops. Initialise with
/// `lamina_sampling_params_init(&p, sizeof p)` (greedy, 256 tokens).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_sampling_params {
    /// sizeof(lamina_sampling_params), set by lamina_sampling_params_init().
    pub struct_size: usize,
    /// 0 = greedy (deterministic, default); > 0 samples at that temperature.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off (default 40).
    pub top_k: i32,
    /// Nucleus sampling threshold in (0, 1]; 1 = off (default 0.95).
    pub top_p: f32,
    /// Minimum probability relative to the best token, in [0, 1]; 0 = off (default 0.05).
    pub min_p: f32,
    /// Repetition penalty > 0; 1 = off (default).
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over; -1 = whole context (default 64).
    pub repeat_last_n: i32,
    /// Seed of the random sampler (default 0). Same seed, same output.
    pub seed: u32,
    /// Maximum number of generated tokens, >= 1 (default 256).
    pub max_tokens: u32,
    /// Stop strings: generation ends before the first occurrence of any of them. Array of
    /// `n_stop` NUL-terminated UTF-8 strings; may be NULL when n_stop is 0. Read during the call
    /// only.
    pub stop: *const *const c_char,
    /// Number of entries in `stop`.
    pub n_stop: usize,
    /// Structured output: a GBNF grammar (llama.cpp's grammar format, NUL-terminated UTF-8,
    /// start rule `root`) that the text must follow; NULL = free text (default). A grammar
    /// llama.cpp cannot parse is LAMINA_STATUS_ERROR_INVALID_ARGUMENT, reported before the
    /// prompt is processed. Read during the call only.
    pub grammar: *const c_char,
    /// Structured output: a JSON schema (its JSON text, NUL-terminated UTF-8); the text is then
    /// one JSON value the schema accepts (converted to a grammar by llama.cpp's converter).
    /// NULL = none (default). A schema the converter cannot handle is
    /// LAMINA_STATUS_ERROR_INVALID_ARGUMENT with the converter's message. At most one of
    /// `grammar` and `json_schema` may be set. Read during the call only.
    pub json_schema: *const c_char,
}

// SAFETY: repr(C), starts with usize; numbers and a pointer accept any bit pattern.
unsafe impl Versioned for lamina_sampling_params {
    const NAME: &'static str = "lamina_sampling_params";
    fn defaults() -> Self {
        let d = Sampling::default();
        Self {
            struct_size: std::mem::size_of::<Self>(),
            temperature: d.temperature,
            top_k: d.top_k,
            top_p: d.top_p,
            min_p: d.min_p,
            repeat_penalty: d.repeat_penalty,
            repeat_last_n: d.repeat_last_n,
            seed: d.seed,
            max_tokens: d.max_tokens,
            stop: std::ptr::null(),
            n_stop: 0,
            grammar: std::ptr::null(),
            json_schema: std::ptr::null(),
        }
    }
}

/// Fill `*params` with the defaults (greedy, 256 tokens, no stop strings). Pass
/// `sizeof(*params)` as `struct_size`: a program built against an older, shorter version of
/// the struct keeps working with a newer library (only the fields it knows are written). Call
/// this before changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_sampling_params_init(params: *mut lamina_sampling_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Why a generation ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lamina_stop_reason {
    /// The model ended its turn (end-of-generation token).
    EndOfGeneration = 0,
    /// max_tokens were generated.
    MaxTokens = 1,
    /// A stop string appeared (it is not part of the text).
    StopString = 2,
    /// The context window is full.
    ContextFull = 3,
    /// The token callback returned false.
    CallbackStopped = 4,
    /// lamina_session_cancel() was called.
    Cancelled = 5,
}

impl From<StopReason> for lamina_stop_reason {
    fn from(r: StopReason) -> Self {
        match r {
            StopReason::EndOfGeneration => Self::EndOfGeneration,
            StopReason::MaxTokens => Self::MaxTokens,
            StopReason::StopString => Self::StopString,
            StopReason::ContextFull => Self::ContextFull,
            StopReason::CallbackStopped => Self::CallbackStopped,
            StopReason::Cancelled => Self::Cancelled,
        }
    }
}

/// Facts about a finished generation. The caller sets struct_size = sizeof(lamina_generation_info)
/// before the call; lamina writes only the fields that fit in it. A struct_size smaller than
/// sizeof(size_t) (the struct_size field itself) is LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
/// checked before any work, as for params structs. `prompt_ms` counts the time spent on the
/// prompt also when the call was cancelled during it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_generation_info {
    /// Set by the caller to sizeof(lamina_generation_info).
    pub struct_size: usize,
    /// Why generation ended.
    pub stop_reason: lamina_stop_reason,
    /// Tokens in the prompt (after the chat template, for chat).
    pub prompt_tokens: u32,
    /// Prompt tokens reused from the KV cache instead of decoded again.
    pub reused_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Milliseconds spent on the prompt.
    pub prompt_ms: f64,
    /// Milliseconds from the call to the first generated token.
    pub time_to_first_token_ms: f64,
    /// Milliseconds spent generating after the prompt.
    pub generation_ms: f64,
}

/// Receives generated text as it is produced: `len` bytes of UTF-8 at `piece` (also
/// NUL-terminated), never a partial character, valid only during the call. Return true to go
/// on, false to stop (the call then returns LAMINA_STATUS_OK with stop reason
/// LAMINA_STOP_REASON_CALLBACK_STOPPED; the piece that callback was given is part of
/// `out_text`, so out_text is always the concatenation of the pieces delivered). Called on the
/// thread that called lamina. A character that generation left unfinished (max_tokens reached
/// between the tokens that spell it) is neither delivered nor in out_text.
pub type lamina_token_callback = Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user_data: *mut c_void) -> bool>;

/// Create a session (a llama.cpp context with its KV cache) over `model`.
/// Ownership: on success `*out_session` receives a handle owned by the caller, freed with
/// lamina_session_free; on failure it is left unmodified. The session keeps the model alive.
/// NULL: `model` and `out_session` are required; `params` may be NULL for the defaults.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_ARGUMENT (a params value out of range,
/// bad struct_size), _CONTEXT_CREATION.
/// Threads: any thread, concurrently with any other call on the model.
#[no_mangle]
pub unsafe extern "C" fn lamina_session_new(
    model: *const lamina_model,
    params: *const lamina_session_params,
    out_session: *mut *mut lamina_session,
) -> lamina_status {
    // SAFETY: the out-pointer and params contracts are the caller's.
    unsafe {
        call_out(out_session, "out_session", || {
            let model = MODELS.get(model, "model")?;
            let session = Session::new(&model.model, &session_params_from_c(&read_params(params)?)?)?;
            let cancel = session.cancel_handle();
            let n_ctx = u32::try_from(session.n_ctx()).unwrap_or(u32::MAX);
            Ok(SESSIONS.insert(lamina_session { session: Mutex::new(session), cancel, n_ctx }))
        })
    }
}

/// The runtime's view of C session params (whose values the runtime checks).
fn session_params_from_c(p: &lamina_session_params) -> Result<lamina::SessionParams, Failure> {
    let flash_attention = match p.flash_attention {
        -1 => lamina::FlashAttention::Auto,
        0 => lamina::FlashAttention::Off,
        1 => lamina::FlashAttention::On,
        other => {
            return Err(Failure::new(
                lamina_status::ErrorInvalidArgument,
                format!("invalid argument `flash_attention`: must be -1 (auto), 0 (off) or 1 (on), got {other}"),
            ))
        }
    };
    Ok(lamina::SessionParams {
        n_ctx: p.n_ctx,
        n_batch: p.n_batch,
        n_threads: p.n_threads,
        n_threads_batch: p.n_threads_batch,
        flash_attention,
        n_sequences: p.n_sequences,
    })
}

/// Free a session.
/// Ownership: releases the caller's handle (and the session's hold on its model and adapters).
/// NULL: `session` may be NULL (nothing happens).
/// Errors: none returned; freeing a handle twice is reported through
/// lamina_last_error_message() and otherwise ignored.
/// Threads: any thread; if another thread is still inside a call on this session, the
/// session is destroyed when that call returns.
#[no_mangle]
pub extern "C" fn lamina_session_free(session: *mut lamina_session) {
    guard(|| {
        if !session.is_null() && !SESSIONS.remove(session) {
            crate::status::set_last_error("lamina_session_free: not a live lamina_session handle (freed twice?)");
        }
    })
}

/// Stop the generation running on this session at the moment of the call: it returns
/// LAMINA_STATUS_OK with stop reason LAMINA_STOP_REASON_CANCELLED. On the CPU this takes
/// milliseconds, also in the middle of prompt processing (llama.cpp polls the flag during the
/// computation; `prompt_ms` then reports the time spent); GPU backends finish the current
/// decode step first.
/// When nothing is running this does nothing, so a late cancel never stops a later generation.
/// Ownership: nothing is taken or returned.
/// NULL: `session` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any call on the session: this is the one session
/// call meant for another thread.
#[no_mangle]
pub extern "C" fn lamina_session_cancel(session: *const lamina_session) -> lamina_status {
    call(|| {
        SESSIONS.get(session, "session")?.cancel.cancel();
        Ok(())
    })
}

pub(crate) fn with_session<R>(session: *const lamina_session, f: impl FnOnce(&mut Session) -> Result<R, Failure>) -> Result<R, Failure> {
    let handle = SESSIONS.get(session, "session")?;
    let mut guard = match handle.session.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::WouldBlock) => return Err(lamina::Error::Busy.into()),
        // A panic inside an earlier call poisoned the lock; the session's state is still
        // consistent at the Rust level, so keep serving it.
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
    };
    f(&mut guard)
}

/// Clear the chat history and the KV cache.
/// Ownership: nothing is taken or returned.
/// NULL: `session` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub extern "C" fn lamina_session_reset(session: *mut lamina_session) -> lamina_status {
    call(|| {
        with_session(session, |s| {
            s.reset();
            Ok(())
        })
    })
}

/// Set the chat's system prompt, or remove it with NULL. The rest of the history is kept.
/// Ownership: the text is copied; the caller keeps its string.
/// NULL: `session` is required; `system_prompt` may be NULL (no system prompt).
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_UTF8, _BUSY.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_set_system_prompt(session: *mut lamina_session, system_prompt: *const c_char) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let system = unsafe { opt_str_arg(system_prompt, "system_prompt") }?;
        with_session(session, |s| {
            s.set_system_prompt(system);
            Ok(())
        })
    })
}

/// Convert C sampling params (validated by the runtime).
pub(crate) unsafe fn sampling_from_c(params: *const lamina_sampling_params) -> Result<Sampling, Failure> {
    // SAFETY: caller's params contract.
    let p = unsafe { read_params(params) }?;
    if p.n_stop > 0 && p.stop.is_null() {
        return Err(Failure::null("sampling.stop (n_stop > 0)"));
    }
    let mut stop = Vec::with_capacity(p.n_stop.min(1024));
    for i in 0..p.n_stop {
        // SAFETY: the caller provides n_stop readable entries.
        let s = unsafe { *p.stop.add(i) };
        // SAFETY: each entry is a NUL-terminated string or NULL (rejected by str_arg).
        stop.push(unsafe { str_arg(s, "sampling.stop[i]") }?.to_string());
    }
    // SAFETY (both): NULL or a NUL-terminated string, the caller's contract.
    let grammar = unsafe { opt_str_arg(p.grammar, "sampling.grammar") }?;
    let schema = unsafe { opt_str_arg(p.json_schema, "sampling.json_schema") }?;
    let format = match (grammar, schema) {
        (Some(_), Some(_)) => {
            return Err(lamina::Error::InvalidArgument { name: "sampling", reason: "set grammar or json_schema, not both".into() }.into());
        }
        (Some(g), None) => Some(OutputFormat::Grammar(g.to_string())),
        (None, Some(s)) => Some(OutputFormat::JsonSchema(s.to_string())),
        (None, None) => None,
    };
    Ok(Sampling {
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        repeat_last_n: p.repeat_last_n,
        seed: p.seed,
        max_tokens: p.max_tokens,
        stop,
        format,
    })
}

/// Adapter from the C callback to the runtime's closure.
fn piece_sink(callback: lamina_token_callback, user_data: *mut c_void) -> impl FnMut(&str) -> bool {
    let mut buf: Vec<u8> = Vec::new();
    move |piece: &str| match callback {
        None => true,
        // SAFETY: the host supplied this callback and user data for this call.
        Some(cb) => unsafe { cb(nul_terminated(&mut buf, piece), piece.len(), user_data) },
    }
}

/// `piece` copied into `buf` with a NUL after it, as the callbacks hand text to C.
pub(crate) fn nul_terminated(buf: &mut Vec<u8>, piece: &str) -> *const c_char {
    buf.clear();
    buf.extend_from_slice(piece.as_bytes());
    buf.push(0);
    buf.as_ptr().cast::<c_char>()
}

/// Check the caller's `out_info` before any work, so that a bad struct_size fails the call
/// without generating (and without changing the chat history).
///
/// # Safety
/// `out_info` is NULL or points to at least `size_t` readable bytes.
pub(crate) unsafe fn check_info(out_info: *const lamina_generation_info) -> Result<(), Failure> {
    if out_info.is_null() {
        return Ok(());
    }
    // SAFETY: non-NULL; struct_size is the struct's first field.
    let declared = unsafe { std::ptr::read_unaligned(out_info.cast::<usize>()) };
    if declared < std::mem::size_of::<usize>() {
        return Err(Failure::new(
            lamina_status::ErrorInvalidArgument,
            "out_info->struct_size must be set to sizeof(lamina_generation_info)",
        ));
    }
    Ok(())
}

/// Write the optional results of a generation (already checked by [`check_info`]).
///
/// # Safety
/// `out_text` is NULL or writable; `out_info` is NULL or valid for `struct_size` bytes.
pub(crate) unsafe fn write_generation(g: &Generation, out_text: *mut *mut c_char, out_info: *mut lamina_generation_info) {
    if !out_info.is_null() {
        // SAFETY: non-NULL; validated by check_info before the generation.
        let declared = unsafe { std::ptr::read_unaligned(out_info.cast::<usize>()) };
        let info = lamina_generation_info {
            struct_size: declared,
            stop_reason: g.stop_reason.into(),
            prompt_tokens: g.prompt_tokens as u32,
            reused_tokens: g.reused_tokens as u32,
            generated_tokens: g.generated_tokens as u32,
            prompt_ms: g.prompt_time.as_secs_f64() * 1e3,
            time_to_first_token_ms: g.time_to_first_token.as_secs_f64() * 1e3,
            generation_ms: g.generation_time.as_secs_f64() * 1e3,
        };
        let n = declared.min(std::mem::size_of::<lamina_generation_info>());
        // SAFETY: copy at most the caller's declared size into its struct.
        unsafe { std::ptr::copy_nonoverlapping((&info as *const lamina_generation_info).cast::<u8>(), out_info.cast::<u8>(), n) };
    }
    if !out_text.is_null() {
        // Allocate only when the caller takes ownership: a streaming-only caller passes NULL.
        // SAFETY: non-NULL per check.
        unsafe { out_text.write(owned_c_string(&g.text)) };
    }
}

/// Continue `prompt` (raw text, no chat template). On success, `*out_text` (if out_text is
/// not NULL) receives the whole generated text and `*out_info` (if not NULL) the generation's
/// facts. A cancelled or callback-stopped generation is a success with the matching stop
/// reason.
/// Ownership: the string written to `*out_text` belongs to the caller, freed with
/// lamina_string_free; `*out_info` is the caller's struct.
/// NULL: `session` and `prompt` are required; `sampling` may be NULL for the defaults;
/// `callback`, `user_data`, `out_text` and `out_info` may be NULL.
/// Errors: _EMPTY_PROMPT, _PROMPT_TOO_LONG, _INVALID_ARGUMENT (sampling values, bad
/// struct_size), _INVALID_UTF8, _BUSY, _DECODE, _INVALID_HANDLE, _NULL_ARGUMENT.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
/// The callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_session_generate(
    session: *mut lamina_session,
    prompt: *const c_char,
    sampling: *const lamina_sampling_params,
    callback: lamina_token_callback,
    user_data: *mut c_void,
    out_text: *mut *mut c_char,
    out_info: *mut lamina_generation_info,
) -> lamina_status {
    call(|| {
        // SAFETY: caller's contracts for the string, params and out-pointers.
        unsafe {
            let prompt = str_arg(prompt, "prompt")?;
            let sampling = sampling_from_c(sampling)?;
            check_info(out_info)?;
            let g = with_session(session, |s| Ok(s.generate(prompt, &sampling, piece_sink(callback, user_data))?))?;
            write_generation(&g, out_text, out_info);
        }
        Ok(())
    })
}

/// One chat turn: add `user_message` to the session's history, render the model's chat
/// template (the KV cache is reused for the part of the conversation already processed),
/// generate the reply and add it to the history. Arguments and results as for
/// lamina_session_generate. A cancelled turn leaves the history unchanged.
/// Ownership: the string written to `*out_text` belongs to the caller, freed with
/// lamina_string_free; `*out_info` is the caller's struct.
/// NULL: `session` and `user_message` are required; `sampling` may be NULL for the defaults;
/// `callback`, `user_data`, `out_text` and `out_info` may be NULL.
/// Errors: _EMPTY_PROMPT, _PROMPT_TOO_LONG, _CHAT_TEMPLATE, _INVALID_ARGUMENT (sampling
/// values, bad struct_size), _INVALID_UTF8, _BUSY, _DECODE, _INVALID_HANDLE, _NULL_ARGUMENT.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
/// The callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_session_chat(
    session: *mut lamina_session,
    user_message: *const c_char,
    sampling: *const lamina_sampling_params,
    callback: lamina_token_callback,
    user_data: *mut c_void,
    out_text: *mut *mut c_char,
    out_info: *mut lamina_generation_info,
) -> lamina_status {
    call(|| {
        // SAFETY: caller's contracts for the string, params and out-pointers.
        unsafe {
            let message = str_arg(user_message, "user_message")?;
            let sampling = sampling_from_c(sampling)?;
            check_info(out_info)?;
            let g = with_session(session, |s| Ok(s.chat(message, &sampling, piece_sink(callback, user_data))?))?;
            write_generation(&g, out_text, out_info);
        }
        Ok(())
    })
}

/// Translate `text` from language `from` to language `to` (ISO 639-1 codes such as "en",
/// "de", "fr", or English names). Greedy. The session's chat history is not changed. On
/// success `*out_text` receives the translation.
/// Ownership: the string written to `*out_text` belongs to the caller, freed with
/// lamina_string_free.
/// NULL: every argument is required.
/// Errors: _UNKNOWN_LANGUAGE, _EMPTY_PROMPT, _PROMPT_TOO_LONG, _CHAT_TEMPLATE, _INVALID_UTF8,
/// _BUSY, _DECODE, _INVALID_HANDLE, _NULL_ARGUMENT.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_translate(
    session: *mut lamina_session,
    text: *const c_char,
    from: *const c_char,
    to: *const c_char,
    out_text: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: caller's C-string and out-pointer contracts.
    unsafe {
        call_out(out_text, "out_text", || {
            let (text, from, to) = (str_arg(text, "text")?, str_arg(from, "from")?, str_arg(to, "to")?);
            let t = with_session(session, |s| Ok(lamina::tasks::translate(s, text, from, to, &Default::default())?))?;
            Ok(owned_c_string(&t))
        })
    }
}

/// Answer `question`, using `context` (may be NULL) as the source when given. Greedy; a short
/// answer without explanation. The session's chat history is not changed. On success
/// `*out_text` receives the answer.
/// Ownership: the string written to `*out_text` belongs to the caller, freed with
/// lamina_string_free.
/// NULL: `session`, `question` and `out_text` are required; `context` may be NULL.
/// Errors: _EMPTY_PROMPT, _PROMPT_TOO_LONG, _CHAT_TEMPLATE, _INVALID_UTF8, _BUSY, _DECODE,
/// _INVALID_HANDLE, _NULL_ARGUMENT.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_answer(
    session: *mut lamina_session,
    question: *const c_char,
    context: *const c_char,
    out_text: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: caller's C-string and out-pointer contracts.
    unsafe {
        call_out(out_text, "out_text", || {
            let (question, context) = (str_arg(question, "question")?, opt_str_arg(context, "context")?);
            let a = with_session(session, |s| Ok(lamina::tasks::answer(s, question, context, &Default::default())?))?;
            Ok(owned_c_string(&a))
        })
    }
}

/// The session's context window in tokens (what `n_ctx` asked for, or the default), the limit
/// that prompt plus generated text must fit in. Written to `*out_n_ctx` on success.
/// Ownership: writes `*out_n_ctx`; nothing to free.
/// NULL: `session` and `out_n_ctx` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any call on the session (the value never changes).
#[no_mangle]
pub unsafe extern "C" fn lamina_session_n_ctx(session: *const lamina_session, out_n_ctx: *mut u32) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_n_ctx, "out_n_ctx", || Ok(SESSIONS.get(session, "session")?.n_ctx)) }
}
