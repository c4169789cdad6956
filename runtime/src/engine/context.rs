//! llama.cpp's context (the KV cache and compute graph of a session) and its token batch,
//! created through llama-cpp-sys-2 rather than llama-cpp-2.
//!
//! Why not llama-cpp-2's `LlamaContext`: it keeps the raw context pointer private, so there is
//! no way to install llama.cpp's abort callback on it, and without one a cancel has to wait for
//! the whole decode call (a 512-token prompt chunk takes seconds on a small CPU). With the
//! callback, llama.cpp's CPU backend checks the session's cancel flag after every graph node,
//! so prompt processing stops within milliseconds. A batch type of lamina's own also lets one
//! decode call carry tokens of several sequences.
//!
//! Contract: a [`Context`] belongs to one thread at a time (`Send`, not `Sync`); it must be
//! dropped before the model it was created from (the owner keeps the model alive, see
//! `Session`). Batch slots, sequence ids, positions and logits indices are checked here; token
//! ids are checked by the session before they get here (and again by llama.cpp's batch
//! validation, which rejects the call).

use std::ffi::c_void;
use std::ptr::NonNull;

use super::llama_global::{llama_backend, take_last_llama_error, CONTEXT_CREATION};
use super::model::Model;
use super::session::CancelHandle;
use crate::error::{Error, Result};

/// How to create a context (the subset of `llama_context_params` lamina sets).
#[derive(Debug, Clone)]
pub(crate) struct ContextParams {
    /// Cache room of each sequence (llama.cpp's n_ctx is this times `n_seq_max`).
    pub n_ctx: u32,
    /// Most tokens per decode call. llama.cpp computes a call in micro-batches of at most
    /// [`MAX_UBATCH`] tokens.
    pub n_batch: u32,
    pub n_threads: i32,
    pub n_threads_batch: i32,
    pub flash_attention: llama_cpp_sys_2::llama_flash_attn_type,
    /// Independent sequences the cache holds at once (1 for a plain session).
    pub n_seq_max: u32,
    /// Pooled embeddings instead of logits (an `Embedder`'s context): llama.cpp then pools
    /// each sequence's last-layer states this way, and every call must fit one micro-batch
    /// (`n_ubatch = n_batch`), so that a sequence's pooling sees all its tokens.
    pub embeddings: Option<llama_cpp_sys_2::llama_pooling_type>,
}

/// The largest micro-batch (llama.cpp's `n_ubatch`; 512 is also llama.cpp's default). The
/// abort callback is polled between the nodes of a micro-batch's graph, so the cost of its
/// largest node (the attention or FFN product over this many tokens) bounds how long a cancel
/// can wait, whatever `n_batch` the caller chose. With a single 2001-token micro-batch a
/// cancel took 51 ms on two Zen 4 cores; with this cap, at most 13 ms.
pub(crate) const MAX_UBATCH: u32 = 512;

/// What a decode call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Every token of the batch is in the cache and its requested logits are ready.
    Done,
    /// The cancel flag was seen during the computation: no logits were produced, and the
    /// cache may hold some of this call's tokens (the micro-batches finished before the one
    /// that was stopped); the caller drops them.
    Aborted,
}

/// A llama.cpp context whose computation stops when its [`CancelHandle`] is cancelled.
pub(crate) struct Context {
    ptr: NonNull<llama_cpp_sys_2::llama_context>,
    n_vocab: usize,
    /// The flag the abort callback reads. Boxed: llama.cpp keeps its address, which must not
    /// change when the Context moves. Only read through that pointer.
    _cancel: Box<CancelHandle>,
}

// SAFETY: a llama.cpp context may move between threads; it is used by one thread at a time
// (`Context` is not `Sync` and every method takes `&mut self` or reads immutable state).
unsafe impl Send for Context {}

/// llama.cpp's abort callback: called on the computing thread between graph nodes. Only an
/// atomic load, so it can neither block nor unwind into C.
extern "C" fn abort_requested(data: *mut c_void) -> bool {
    // SAFETY: `data` is the pointer `Context::new` registered: the cancel flag owned by the
    // context's own `CancelHandle`, which lives as long as the context.
    let flag = unsafe { &*(data as *const CancelHandle) };
    flag.is_cancelled()
}

impl Context {
    /// Create a context over `model`, serialized with every other context creation and
    /// adapter load (llama.cpp reads the model's adapter list while sizing the graph).
    pub(crate) fn new(model: &Model, params: &ContextParams, cancel: &CancelHandle) -> Result<Context> {
        llama_backend();
        let cancel = Box::new(cancel.clone());
        // SAFETY: plain value returned by llama.cpp.
        let mut raw = unsafe { llama_cpp_sys_2::llama_context_default_params() };
        let n_seq_max = params.n_seq_max.max(1);
        raw.n_ctx = params
            .n_ctx
            .checked_mul(n_seq_max)
            .ok_or_else(|| Error::invalid("n_ctx", "n_ctx times the number of sequences is too large"))?;
        raw.n_batch = params.n_batch;
        raw.n_ubatch = params.n_batch.min(MAX_UBATCH);
        if let Some(pooling) = params.embeddings {
            raw.embeddings = true;
            raw.pooling_type = pooling;
            raw.n_ubatch = params.n_batch;
            // One cache stream for all sequences: with a stream per sequence llama.cpp cuts a
            // batch into micro-batches of equal-length slices of every sequence, and a longer
            // text would then be pooled over its last slice only (measured: a 4-token text
            // batched with a 2-token one came out at cosine 0.965 to itself alone).
            raw.kv_unified = true;
        }
        raw.n_seq_max = n_seq_max;
        raw.n_threads = params.n_threads;
        raw.n_threads_batch = params.n_threads_batch;
        raw.flash_attn_type = params.flash_attention;
        let model_ptr = model.inner.raw_model();
        let ptr = {
            let _guard = CONTEXT_CREATION.lock().unwrap_or_else(|p| p.into_inner());
            let _ = take_last_llama_error();
            // SAFETY: `model_ptr` is the live model owned by `model`; the parameters are
            // llama.cpp's defaults with plain numbers changed.
            let ptr = unsafe { llama_cpp_sys_2::llama_init_from_model(model_ptr.as_ptr(), raw) };
            NonNull::new(ptr).ok_or_else(|| {
                Error::ContextCreation(take_last_llama_error().unwrap_or_else(|| "llama.cpp could not create the context".into()))
            })?
        };
        let data = std::ptr::from_ref::<CancelHandle>(&cancel).cast_mut().cast::<c_void>();
        // SAFETY: a live context; `data` points to the boxed handle, which the context owns
        // and frees only after llama_free (field drop order: `Drop::drop` runs first).
        unsafe { llama_cpp_sys_2::llama_set_abort_callback(ptr.as_ptr(), Some(abort_requested), data) };
        Ok(Context { ptr, n_vocab: model.n_vocab(), _cancel: cancel })
    }

    /// The cache room of each sequence, as llama.cpp allocated it (it may round the requested
    /// size up).
    pub(crate) fn n_ctx_per_sequence(&self) -> usize {
        // SAFETY: a live context.
        unsafe { llama_cpp_sys_2::llama_n_ctx_seq(self.ptr.as_ptr()) as usize }
    }

    /// Decode `batch`: put its tokens into the cache and compute the logits it asks for.
    pub(crate) fn decode(&mut self, batch: &Batch) -> Result<Decoded> {
        if batch.n_tokens() == 0 {
            return Ok(Decoded::Done);
        }
        let _ = take_last_llama_error();
        // SAFETY: a live context and a batch whose arrays hold `n_tokens` valid entries
        // (Batch::add checks every one).
        let code = unsafe { llama_cpp_sys_2::llama_decode(self.ptr.as_ptr(), batch.raw) };
        match code {
            0 => Ok(Decoded::Done),
            2 => Ok(Decoded::Aborted),
            code => {
                let what = match code {
                    1 => "no room in the KV cache for the batch".to_string(),
                    -1 => "llama.cpp rejected the batch".to_string(),
                    -2 => "out of memory while computing the batch".to_string(),
                    -3 => "the computation failed".to_string(),
                    other => format!("llama_decode returned {other}"),
                };
                Err(Error::Decode(match take_last_llama_error() {
                    Some(detail) => format!("{what} ({detail})"),
                    None => what,
                }))
            }
        }
    }

    /// The logits after the batch's `i`-th token (which must have been added with logits on).
    pub(crate) fn logits(&self, i: usize) -> Result<&[f32]> {
        let index = i32::try_from(i).map_err(|_| Error::invalid("index", format!("logits index {i} is out of range")))?;
        let _ = take_last_llama_error();
        // SAFETY: a live context; llama.cpp returns null (release builds) for an index
        // without logits instead of reading out of bounds.
        let ptr = unsafe { llama_cpp_sys_2::llama_get_logits_ith(self.ptr.as_ptr(), index) };
        if ptr.is_null() {
            return Err(Error::Decode(take_last_llama_error().unwrap_or_else(|| format!("no logits for batch entry {i}"))));
        }
        // SAFETY: llama.cpp's logits rows hold n_vocab floats and stay valid until the next
        // decode, which needs `&mut self`.
        Ok(unsafe { std::slice::from_raw_parts(ptr, self.n_vocab) })
    }

    /// The pooled embedding of sequence `seq` after the last decode (an embeddings context),
    /// `n_embd` floats.
    pub(crate) fn sequence_embedding(&self, seq: usize, n_embd: usize) -> Result<&[f32]> {
        let seq = i32::try_from(seq).map_err(|_| Error::invalid("sequence", format!("sequence {seq} is out of range")))?;
        // SAFETY: a live context; llama.cpp returns null for a sequence without an embedding.
        let ptr = unsafe { llama_cpp_sys_2::llama_get_embeddings_seq(self.ptr.as_ptr(), seq) };
        if ptr.is_null() {
            return Err(Error::Decode(take_last_llama_error().unwrap_or_else(|| format!("no embedding for sequence {seq}"))));
        }
        // SAFETY: a pooled embedding is n_embd floats, valid until the next decode (`&mut self`).
        Ok(unsafe { std::slice::from_raw_parts(ptr, n_embd) })
    }

    /// Sequence `seq`'s cache entries (keys and values of every layer, with their positions)
    /// in llama.cpp's own serialisation.
    pub(crate) fn sequence_state(&mut self, seq: i32) -> Result<Vec<u8>> {
        // SAFETY: a live context; the buffer has the size llama.cpp asked for.
        unsafe {
            let size = llama_cpp_sys_2::llama_state_seq_get_size(self.ptr.as_ptr(), seq);
            let mut buf = vec![0u8; size];
            let written = llama_cpp_sys_2::llama_state_seq_get_data(self.ptr.as_ptr(), buf.as_mut_ptr(), size, seq);
            if written != size {
                return Err(Error::Internal(format!("llama.cpp wrote {written} of {size} bytes of the cache state")));
            }
            Ok(buf)
        }
    }

    /// Replace sequence `seq`'s cache with a state from [`sequence_state`](Self::sequence_state)
    /// (of a context over the same model). On failure the sequence's cache is empty.
    pub(crate) fn set_sequence_state(&mut self, seq: i32, state: &[u8]) -> Result<()> {
        let _ = take_last_llama_error();
        // SAFETY: a live context; llama.cpp reads at most `state.len()` bytes and checks what
        // it reads (returning 0 when the data does not fit this context).
        let read = unsafe { llama_cpp_sys_2::llama_state_seq_set_data(self.ptr.as_ptr(), state.as_ptr(), state.len(), seq) };
        if read == 0 {
            self.remove_from(seq, 0);
            return Err(Error::invalid(
                "state",
                take_last_llama_error().unwrap_or_else(|| "llama.cpp could not restore the cache from it".into()),
            ));
        }
        Ok(())
    }

    /// Drop the cache entries of sequence `seq` at positions `from..` (all sequences for
    /// `seq = -1`). False when this kind of cache cannot drop a suffix.
    pub(crate) fn remove_from(&mut self, seq: i32, from: usize) -> bool {
        let Ok(from) = i32::try_from(from) else { return true };
        // SAFETY: a live context and its memory module.
        unsafe {
            let mem = llama_cpp_sys_2::llama_get_memory(self.ptr.as_ptr());
            llama_cpp_sys_2::llama_memory_seq_rm(mem, seq, from, -1)
        }
    }

    /// Empty the cache of every sequence.
    pub(crate) fn clear(&mut self) {
        // SAFETY: a live context and its memory module.
        unsafe {
            let mem = llama_cpp_sys_2::llama_get_memory(self.ptr.as_ptr());
            llama_cpp_sys_2::llama_memory_clear(mem, true);
        }
    }

    /// Apply `adapters` with their scales (replacing the active set; empty: none).
    pub(crate) fn set_adapters(&mut self, adapters: &[(NonNull<llama_cpp_sys_2::llama_adapter_lora>, f32)]) -> Result<()> {
        let mut ptrs: Vec<*mut llama_cpp_sys_2::llama_adapter_lora> = adapters.iter().map(|(p, _)| p.as_ptr()).collect();
        let mut scales: Vec<f32> = adapters.iter().map(|(_, s)| *s).collect();
        let (ptrs_arg, scales_arg) =
            if adapters.is_empty() { (std::ptr::null_mut(), std::ptr::null_mut()) } else { (ptrs.as_mut_ptr(), scales.as_mut_ptr()) };
        let _ = take_last_llama_error();
        // SAFETY: a live context; the adapters belong to its model and outlive it (llama.cpp
        // frees them with the model); the arrays hold `adapters.len()` entries.
        let code = unsafe { llama_cpp_sys_2::llama_set_adapters_lora(self.ptr.as_ptr(), ptrs_arg, adapters.len(), scales_arg) };
        if code != 0 {
            // lamina checked the adapters against the model when they were loaded, so a refusal
            // here is about the adapters given, not about decoding.
            return Err(Error::invalid(
                "adapters",
                take_last_llama_error().unwrap_or_else(|| format!("llama.cpp refused to apply the adapters (code {code})")),
            ));
        }
        Ok(())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the context was created by llama_init_from_model and is freed once.
        unsafe { llama_cpp_sys_2::llama_free(self.ptr.as_ptr()) };
    }
}

/// A batch of tokens for one decode call: each with its position, its sequence and whether
/// its logits are wanted. Capacity is fixed at creation.
pub(crate) struct Batch {
    raw: llama_cpp_sys_2::llama_batch,
    capacity: usize,
    n_seq_max: usize,
}

// SAFETY: the batch owns its arrays (allocated by llama_batch_init) exclusively.
unsafe impl Send for Batch {}

impl Batch {
    /// Room for `capacity` tokens, each in one of `n_seq_max` sequences.
    pub(crate) fn new(capacity: usize, n_seq_max: usize) -> Batch {
        let capacity = capacity.max(1);
        let n_seq_max = n_seq_max.max(1);
        // SAFETY: allocation with positive sizes (embd = 0: token ids, not embeddings).
        let raw = unsafe { llama_cpp_sys_2::llama_batch_init(capacity as i32, 0, n_seq_max as i32) };
        Batch { raw, capacity, n_seq_max }
    }

    pub(crate) fn n_tokens(&self) -> usize {
        self.raw.n_tokens as usize
    }

    pub(crate) fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Add `token` at position `pos` of sequence `seq`; its logits are computed if `logits`.
    pub(crate) fn add(&mut self, token: i32, pos: usize, seq: usize, logits: bool) -> Result<()> {
        let i = self.n_tokens();
        if i >= self.capacity {
            return Err(Error::Decode(format!("the batch is full ({} tokens)", self.capacity)));
        }
        if seq >= self.n_seq_max {
            return Err(Error::Decode(format!("sequence {seq} is outside the batch's {} sequences", self.n_seq_max)));
        }
        let pos = i32::try_from(pos).map_err(|_| Error::invalid("pos", format!("position {pos} is out of range")))?;
        // SAFETY: `i < capacity`, the length llama_batch_init allocated for every array, and
        // each seq_id entry has room for n_seq_max ids.
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)).add(0) = seq as i32;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        Ok(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { llama_cpp_sys_2::llama_batch_free(self.raw) };
    }
}
