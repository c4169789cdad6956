//! Embedder handles: pooled, normalised text embeddings.

use std::ffi::c_char;
use std::sync::Mutex;

use lamina::{EmbedParams, Embedder, Pooling};

use crate::args::{read_params, str_arg, Versioned};
use crate::boundary::{call, call_out, guard};
use crate::handles::Registry;
use crate::model::{lamina_model, MODELS};
use crate::status::{lamina_status, Failure};

/// An embedder: a llama.cpp context over a model that turns texts into vectors. Opaque;
/// create with `lamina_embedder_new`, free with `lamina_embedder_free`. One call at a time
/// (a second thread calling while one embeds gets LAMINA_STATUS_ERROR_BUSY).
pub struct lamina_embedder {
    embedder: Mutex<Embedder>,
    /// Fixed at creation, read without the lock.
    dimensions: usize,
}

static EMBEDDERS: Registry<lamina_embedder> = Registry::new("lamina_embedder");

/// How a text's token states become one vector (the `pooling` field of
/// lamina_embedder_params).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lamina_pooling {
    /// The mean over the text's tokens (default).
    Mean = 0,
    /// The state of the text's last token.
    Last = 1,
}

/// How to create an embedder. Initialise with `lamina_embedder_params_init(&p, sizeof p)`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_embedder_params {
    /// sizeof(lamina_embedder_params), set by lamina_embedder_params_init().
    pub struct_size: usize,
    /// A lamina_pooling value: LAMINA_POOLING_MEAN (default) or LAMINA_POOLING_LAST. An int
    /// rather than the enum so that any value a caller writes is safe to read; others are
    /// rejected.
    pub pooling: i32,
    /// Scale every vector to unit length, so that dot products are cosine similarities
    /// (default true).
    pub normalize: bool,
    /// The most tokens of one decode call, and so of one text, 1..=8192 (default 512).
    pub n_batch: u32,
    /// The most texts of one decode call, 1..=256 (default 16); more are split over calls.
    pub max_texts: u32,
    /// Threads; 0 = all cores (default).
    pub n_threads: u32,
}

// SAFETY: repr(C), starts with usize; plain numbers and a bool (read from C as a byte: C's
// bool is 0 or 1).
unsafe impl Versioned for lamina_embedder_params {
    const NAME: &'static str = "lamina_embedder_params";
    fn defaults() -> Self {
        let d = EmbedParams::default();
        Self {
            struct_size: std::mem::size_of::<Self>(),
            pooling: lamina_pooling::Mean as i32,
            normalize: d.normalize,
            n_batch: d.n_batch,
            max_texts: d.max_texts,
            n_threads: d.n_threads,
        }
    }
}

/// Fill `*params` with the defaults (mean pooling, normalised, 512 tokens, 16 texts, all
/// cores). Pass `sizeof(*params)` as `struct_size` (see lamina_session_params_init).
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_embedder_params_init(params: *mut lamina_embedder_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// The runtime's view of C embedder params (whose values the runtime checks).
fn embed_params_from_c(p: &lamina_embedder_params) -> Result<EmbedParams, Failure> {
    let pooling = match p.pooling {
        x if x == lamina_pooling::Mean as i32 => Pooling::Mean,
        x if x == lamina_pooling::Last as i32 => Pooling::Last,
        other => {
            return Err(Failure::new(
                lamina_status::ErrorInvalidArgument,
                format!("invalid argument `pooling`: {other} is not LAMINA_POOLING_MEAN (0) or LAMINA_POOLING_LAST (1)"),
            ))
        }
    };
    Ok(EmbedParams { pooling, normalize: p.normalize, n_batch: p.n_batch, max_texts: p.max_texts, n_threads: p.n_threads })
}

/// Create an embedder (its own llama.cpp context, with embeddings on) over `model`.
/// Ownership: on success `*out_embedder` receives a handle owned by the caller, freed with
/// lamina_embedder_free; on failure it is left unmodified. The embedder keeps the model alive.
/// NULL: `model` and `out_embedder` are required; `params` may be NULL for the defaults.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_ARGUMENT (a params value out of range,
/// bad struct_size), _CONTEXT_CREATION.
/// Threads: any thread, concurrently with any other call on the model.
#[no_mangle]
pub unsafe extern "C" fn lamina_embedder_new(
    model: *const lamina_model,
    params: *const lamina_embedder_params,
    out_embedder: *mut *mut lamina_embedder,
) -> lamina_status {
    // SAFETY: the out-pointer and params contracts are the caller's.
    unsafe {
        call_out(out_embedder, "out_embedder", || {
            let model = MODELS.get(model, "model")?;
            let embedder = Embedder::new(&model.model, &embed_params_from_c(&read_params(params)?)?)?;
            let dimensions = embedder.dimensions();
            Ok(EMBEDDERS.insert(lamina_embedder { embedder: Mutex::new(embedder), dimensions }))
        })
    }
}

/// Free an embedder.
/// Ownership: releases the caller's handle (and its hold on the model).
/// NULL: `embedder` may be NULL (nothing happens).
/// Errors: none returned; freeing a handle twice is reported through
/// lamina_last_error_message() and otherwise ignored.
/// Threads: any thread; if another thread is still inside a call on this embedder, it is
/// destroyed when that call returns.
#[no_mangle]
pub extern "C" fn lamina_embedder_free(embedder: *mut lamina_embedder) {
    guard(|| {
        if !embedder.is_null() && !EMBEDDERS.remove(embedder) {
            crate::status::set_last_error("lamina_embedder_free: not a live lamina_embedder handle (freed twice?)");
        }
    })
}

/// The length of every vector this embedder makes (the model's width).
/// Ownership: writes a number into `*out_dimensions`.
/// NULL: both arguments are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any call on the embedder (it reads a number fixed
/// at creation, without the embedder's lock).
#[no_mangle]
pub unsafe extern "C" fn lamina_embedder_dimensions(embedder: *const lamina_embedder, out_dimensions: *mut usize) -> lamina_status {
    // SAFETY: the out-pointer contract is the caller's.
    unsafe { call_out(out_dimensions, "out_dimensions", || Ok(EMBEDDERS.get(embedder, "embedder")?.dimensions)) }
}

/// Embed `n_texts` texts in as few decode calls as fit: vector i (lamina_embedder_dimensions
/// floats) is written to `out + i * dimensions`. Each text is pooled over its own tokens only,
/// so its vector does not depend on the texts beside it.
/// Ownership: `texts` (n_texts NUL-terminated UTF-8 strings) is read during the call only;
/// `out` is the caller's buffer of `out_len` floats, at least n_texts * dimensions, written
/// only on success.
/// NULL: `embedder` is required; `texts` and `out` may be NULL only when n_texts is 0.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _INVALID_UTF8, _INVALID_ARGUMENT (an empty text or
/// one longer than n_batch tokens, naming its index; `out_len` too small), _DECODE, _BUSY.
/// Threads: one call at a time per embedder; a call while another thread is inside one gets
/// _BUSY.
#[no_mangle]
pub unsafe extern "C" fn lamina_embedder_embed(
    embedder: *mut lamina_embedder,
    texts: *const *const c_char,
    n_texts: usize,
    out: *mut f32,
    out_len: usize,
) -> lamina_status {
    // SAFETY: forwarded: the caller's contract on `texts` and `out`.
    call(|| unsafe { embed_into(embedder, texts, n_texts, out, out_len) })
}

/// The body of [`lamina_embedder_embed`].
///
/// # Safety
/// As documented there: `texts` holds `n_texts` readable entries and `out` `out_len` writable
/// floats (when n_texts > 0).
unsafe fn embed_into(
    embedder: *mut lamina_embedder,
    texts: *const *const c_char,
    n_texts: usize,
    out: *mut f32,
    out_len: usize,
) -> Result<(), Failure> {
    let e = EMBEDDERS.get(embedder, "embedder")?;
    if n_texts > 0 && (texts.is_null() || out.is_null()) {
        return Err(Failure::null(if texts.is_null() { "texts" } else { "out" }));
    }
    let needed = n_texts.saturating_mul(e.dimensions);
    if out_len < needed {
        return Err(Failure::new(
            lamina_status::ErrorInvalidArgument,
            format!("invalid argument `out_len`: {n_texts} texts need {needed} floats, the buffer has {out_len}"),
        ));
    }
    // SAFETY: `texts` holds n_texts readable entries, each a NUL-terminated string or NULL
    // (rejected by str_arg).
    let strings = (0..n_texts).map(|i| unsafe { str_arg(*texts.add(i), "texts[i]") }).collect::<Result<Vec<&str>, Failure>>()?;
    let mut guard = match e.embedder.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::WouldBlock) => return Err(lamina::Error::Busy.into()),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
    };
    let vectors = guard.embed(&strings)?;
    for (i, v) in vectors.iter().enumerate() {
        // SAFETY: `out` holds out_len >= n_texts * dimensions floats (checked above).
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out.add(i * e.dimensions), e.dimensions) };
    }
    Ok(())
}
