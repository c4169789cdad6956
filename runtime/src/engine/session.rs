//! A session: one llama.cpp context (KV cache) over a shared [`Model`], with generation and
//! multi-turn chat.
//!
//! Threads: a `Session` is `Send` but not `Sync`: use it from one thread at a time. Many
//! sessions over one model may run at once on different threads. [`CancelHandle`] is the one
//! part that may be used from any thread while the session works.
//!
//! KV-cache reuse: the session remembers which tokens its cache holds. Each call computes the
//! longest common prefix between those and the new prompt and decodes only the rest, so a chat
//! turn re-reads only the newest message, and repeated prompts with a shared preamble are cheap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::token::LlamaToken;

use super::adapter::{merged_adapter, Adapter, LoraPtr};
use super::context::{Batch, Context, ContextParams, Decoded};
use super::llama_global::CONTEXT_CREATION;
use super::model::Model;
use super::sampling::Sampling;
use super::sequence::{Next, Sequence};
use crate::chat::ChatMessage;
use crate::chat_template::TemplateEngine;
use crate::error::{Error, Result};
use crate::logits::log_softmax_at;

mod batch;
mod state;
pub use batch::BatchRequest;

/// How to create a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// Context window in tokens (prompt + generated). 0 = min(4096, the model's training context).
    pub n_ctx: u32,
    /// Most tokens handed to llama.cpp per decode call (prompts longer than this are fed in
    /// chunks). Cancellation does not wait for a chunk: llama.cpp checks it during the
    /// computation.
    pub n_batch: u32,
    /// Threads for generation (one token at a time). 0 = all available cores.
    pub n_threads: u32,
    /// Threads for prompt processing (batches). 0 = same as `n_threads`.
    pub n_threads_batch: u32,
    /// Whether attention uses llama.cpp's fused FlashAttention kernels.
    pub flash_attention: FlashAttention,
    /// Most independent sequences [`Session::generate_batch`] decodes together (default 1).
    /// Each gets its own `n_ctx` tokens of cache, so the cache is this many times larger.
    pub n_sequences: u32,
}

impl Default for SessionParams {
    fn default() -> Self {
        Self { n_ctx: 0, n_batch: 512, n_threads: 0, n_threads_batch: 0, flash_attention: FlashAttention::Auto, n_sequences: 1 }
    }
}

/// The most sequences one session can decode together (llama.cpp's limit).
pub const MAX_SEQUENCES: u32 = 256;

/// llama.cpp's FlashAttention policy for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FlashAttention {
    /// On where every device the model runs on supports it (llama.cpp's default).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Off: attention as separate matrix products and a softmax (more memory, usually slower
    /// on long contexts; the GPU kernels then keep the attention scores in f32).
    Off,
}

impl FlashAttention {
    /// llama.cpp's value for this policy.
    pub fn llama_policy(self) -> llama_cpp_sys_2::llama_flash_attn_type {
        match self {
            FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// One of the stop strings appeared (it is not part of the text).
    StopString,
    /// The context window is full.
    ContextFull,
    /// The streaming callback returned false.
    CallbackStopped,
    /// [`CancelHandle::cancel`] was called.
    Cancelled,
}

/// The result of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text, without stop strings or end-of-turn markers. Always whole
    /// characters: when generation stops (max_tokens, a full context) after some but not all
    /// of the tokens that spell one character, that character's bytes are left out, never
    /// returned in part or replaced by U+FFFD. When an `on_piece` callback stops generation
    /// by returning false, the piece it was given is part of the text.
    pub text: String,
    pub stop_reason: StopReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens found in the KV cache from earlier calls, not decoded again.
    pub reused_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time spent decoding the (non-reused part of the) prompt.
    pub prompt_time: Duration,
    /// Time from the call until the first generated token was known.
    pub time_to_first_token: Duration,
    /// Time spent after the prompt, generating.
    pub generation_time: Duration,
}

/// Stops a running generation (or evaluation) from another thread. Cheap to clone.
///
/// `cancel()` stops the operation that is running at the moment of the call; that call then
/// returns with [`StopReason::Cancelled`]. On the CPU the stop comes within one step of
/// llama.cpp's compute graph (milliseconds, even in the middle of a long prompt chunk),
/// because the session's context polls this flag through llama.cpp's abort callback; GPU
/// backends finish the decode call first. When nothing runs, it does nothing: a late cancel
/// never leaks into the session's next operation.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicU64>);

/// State layout: bit 0 = cancel requested; bits 1.. = depth of running operations (an
/// evaluation runs generations inside it). One atomic word, so "request only while running"
/// and "clear when the outermost operation ends" cannot race.
const CANCEL_BIT: u64 = 1;
const DEPTH_ONE: u64 = 2;

impl CancelHandle {
    pub fn cancel(&self) {
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| (state >= DEPTH_ONE).then_some(state | CANCEL_BIT));
    }
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) & CANCEL_BIT != 0
    }
    fn start(&self) {
        self.0.fetch_add(DEPTH_ONE, Ordering::SeqCst);
    }
    fn finish(&self) {
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |state| {
            let depth = state.saturating_sub(DEPTH_ONE) & !CANCEL_BIT;
            Some(if depth == 0 { 0 } else { depth | (state & CANCEL_BIT) })
        });
    }
}

/// Marks an operation as running for as long as it lives, including on early returns.
pub(crate) struct Running(CancelHandle);

impl Running {
    pub(crate) fn new(handle: &CancelHandle) -> Self {
        handle.start();
        Running(handle.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A context over a model. See the module documentation for the threading contract.
pub struct Session {
    // Field order matters: `ctx` uses the llama model owned by `model`'s Arc and must be
    // dropped first (fields drop in declaration order).
    ctx: Context,
    batch: Batch,
    model: Model,
    n_batch: usize,
    /// Sequences the cache has room for (SessionParams::n_sequences).
    n_sequences: usize,
    /// The context size the caller asked for. llama.cpp may round its KV cache up (to a
    /// multiple of 256); limits use the requested size so behaviour does not depend on padding.
    n_ctx: usize,
    /// Tokens whose keys/values are in the cache, at positions 0..len, sequence 0.
    cached: Vec<LlamaToken>,
    history: Vec<ChatMessage>,
    cancel: CancelHandle,
    /// The adapters set with [`Session::set_adapters`], as given.
    adapters: Vec<(Adapter, f32)>,
    /// What llama.cpp's context applies: one adapter with its scale, or none.
    active: Option<(LoraPtr, f32)>,
    /// llama.cpp resizes its compute graph on the first decode after the adapters changed and
    /// reads the model's adapter list while doing so; that decode takes the context-creation
    /// lock so that it cannot race with an adapter being loaded on another thread.
    graph_reserve_pending: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("model", &self.model)
            .field("n_ctx", &self.n_ctx)
            .field("cached_tokens", &self.cached.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn default_threads() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

impl Session {
    /// Create a session (allocates the KV cache).
    pub fn new(model: &Model, params: &SessionParams) -> Result<Session> {
        if params.n_batch == 0 {
            return Err(Error::invalid("n_batch", "must be at least 1"));
        }
        if params.n_sequences == 0 || params.n_sequences > MAX_SEQUENCES {
            return Err(Error::invalid("n_sequences", format!("must be in 1..={MAX_SEQUENCES}, got {}", params.n_sequences)));
        }
        const MAX_THREADS: u32 = 1024;
        for (name, value) in [("n_threads", params.n_threads), ("n_threads_batch", params.n_threads_batch)] {
            if value > MAX_THREADS {
                return Err(Error::invalid(name, format!("{value} threads is more than the supported {MAX_THREADS}")));
            }
        }
        let n_ctx_train = model.inner.llama.n_ctx_train().max(1);
        let n_ctx = if params.n_ctx == 0 { n_ctx_train.min(4096) } else { params.n_ctx };
        let n_threads = if params.n_threads == 0 { default_threads() } else { params.n_threads };
        let n_threads_batch = if params.n_threads_batch == 0 { n_threads } else { params.n_threads_batch };
        let n_batch = params.n_batch.min(n_ctx);
        // A batch step of generate_batch carries one token of every sequence.
        let decode_capacity = n_batch.max(params.n_sequences);
        let to_i32 = |name: &'static str, v: u32| i32::try_from(v).map_err(|_| Error::invalid(name, format!("{v} is too large")));
        let ctx_params = ContextParams {
            n_ctx,
            n_batch: decode_capacity,
            n_threads: to_i32("n_threads", n_threads)?,
            n_threads_batch: to_i32("n_threads_batch", n_threads_batch)?,
            flash_attention: params.flash_attention.llama_policy(),
            n_seq_max: params.n_sequences,
            embeddings: None,
        };
        let cancel = CancelHandle::default();
        // The session keeps a clone of the model's Arc in a field declared after `ctx`, so
        // the model outlives the context.
        let ctx = Context::new(model, &ctx_params, &cancel)?;
        let actual_ctx = ctx.n_ctx_per_sequence();
        Ok(Session {
            ctx,
            batch: Batch::new(decode_capacity as usize, params.n_sequences as usize),
            n_sequences: params.n_sequences as usize,
            model: model.clone(),
            n_batch: n_batch as usize,
            n_ctx: (n_ctx as usize).min(actual_ctx),
            cached: Vec::new(),
            history: Vec::new(),
            cancel,
            adapters: Vec::new(),
            active: None,
            graph_reserve_pending: false,
        })
    }

    /// The model this session runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Context window size in tokens (of each sequence).
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// A handle that cancels this session's generation from any thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Mark a longer operation made of several generations (an evaluation) as running, so that
    /// a cancel between two of its generations is seen; check it with [`Session::is_cancelled`].
    pub(crate) fn begin_operation(&self) -> Running {
        Running::new(&self.cancel)
    }

    /// Whether a cancel was requested for the running operation.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Apply LoRA adapters (loaded with [`Model::load_adapter`]) with a scale each; an empty
    /// slice returns to the base model. Scale 1 applies an adapter as trained, 0 ignores it.
    /// When the effective set changes, the KV cache is cleared (its keys and values were
    /// computed with the old weights); the chat history is kept and re-read on the next turn.
    ///
    /// One adapter is applied directly. Several are merged into one adapter of concatenated
    /// rank (llama-cpp-2 activates one adapter per context), loaded once per (set, scales) and
    /// cached in the model: each distinct set costs the memory of its parts until the model is
    /// dropped.
    ///
    /// Errors: [`Error::InvalidArgument`] for an adapter of another model, the same adapter
    /// twice, or a non-finite scale; errors of reading the adapters when merging. On error the
    /// session keeps its previous adapters.
    pub fn set_adapters(&mut self, adapters: &[(Adapter, f32)]) -> Result<()> {
        for (i, (adapter, scale)) in adapters.iter().enumerate() {
            if !Arc::ptr_eq(&adapter.model().inner, &self.model.inner) {
                return Err(Error::invalid(
                    "adapters",
                    format!("adapter {} was loaded for another model ({})", adapter.path().display(), adapter.model().path().display()),
                ));
            }
            if !scale.is_finite() {
                return Err(Error::invalid("scales", format!("the scale of adapter {} is {scale}", adapter.path().display())));
            }
            if adapters[..i].iter().any(|(other, _)| other == adapter) {
                return Err(Error::invalid("adapters", format!("adapter {} appears twice", adapter.path().display())));
            }
        }
        let effective: Vec<(Adapter, f32)> = adapters.iter().filter(|(_, s)| *s != 0.0).cloned().collect();
        let wanted = match effective.as_slice() {
            [] => None,
            [(adapter, scale)] => Some((adapter.ptr(), *scale)),
            set => Some((merged_adapter(&self.model, set)?, 1.0)),
        };
        if wanted != self.active {
            match wanted {
                Some((ptr, scale)) => self.ctx.set_adapters(&[(ptr.0, scale)])?,
                None => self.ctx.set_adapters(&[])?,
            }
            self.active = wanted;
            self.graph_reserve_pending = true;
            self.clear_cache();
        }
        self.adapters = adapters.to_vec();
        Ok(())
    }

    /// The adapters and scales last given to [`set_adapters`](Self::set_adapters) (empty:
    /// the base model).
    pub fn adapters(&self) -> &[(Adapter, f32)] {
        &self.adapters
    }

    /// Forget the chat history and clear the KV cache.
    pub fn reset(&mut self) {
        self.history.clear();
        self.clear_cache();
    }

    fn clear_cache(&mut self) {
        self.ctx.clear();
        self.cached.clear();
    }

    /// The chat so far (system prompt first, if set).
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// Set (or with `None`, remove) the system prompt of the chat. Keeps the rest of the history.
    pub fn set_system_prompt(&mut self, system: Option<&str>) {
        if self.history.first().is_some_and(|m| m.role == "system") {
            self.history.remove(0);
        }
        if let Some(text) = system {
            self.history.insert(0, ChatMessage::system(text));
        }
    }

    /// Continue `prompt` (raw text, no chat template). Special-token text in the prompt (such as
    /// `<|im_start|>`) is parsed as the special token. `on_piece` receives the text as it is
    /// generated, never splitting a UTF-8 character; returning false stops generation.
    pub fn generate(&mut self, prompt: &str, sampling: &Sampling, on_piece: impl FnMut(&str) -> bool) -> Result<Generation> {
        sampling.validate()?;
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt { what: "prompt" });
        }
        let tokens = self.tokenize_prompt(prompt);
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt { what: "prompt (it tokenizes to nothing)" });
        }
        self.generate_tokens(&tokens, sampling, on_piece)
    }

    /// One chat turn: add `user` to the history, render the model's chat template, generate the
    /// assistant's reply (reusing the cache for the shared prefix) and add it to the history.
    /// A cancelled turn leaves the history as it was.
    pub fn chat(&mut self, user: &str, sampling: &Sampling, on_piece: impl FnMut(&str) -> bool) -> Result<Generation> {
        if user.trim().is_empty() {
            return Err(Error::EmptyPrompt { what: "user message" });
        }
        let mut messages = self.history.clone();
        messages.push(ChatMessage::user(user));
        let generation = self.complete_chat(&messages, sampling, on_piece)?;
        if generation.stop_reason != StopReason::Cancelled {
            self.history = messages;
            self.history.push(ChatMessage::assistant(generation.text.clone()));
        }
        Ok(generation)
    }

    /// Continue a prompt given as token ids (as [`Model::tokenize`] returns them). Used by
    /// benchmarks and evaluation, where the exact tokens matter.
    pub fn generate_from_tokens(&mut self, tokens: &[i32], sampling: &Sampling, on_piece: impl FnMut(&str) -> bool) -> Result<Generation> {
        sampling.validate()?;
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt { what: "token list" });
        }
        let n_vocab = self.model.n_vocab() as i32;
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(Error::invalid("tokens", format!("token id {bad} is outside the vocabulary (0..{n_vocab})")));
        }
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        self.generate_tokens(&tokens, sampling, on_piece)
    }

    /// Teacher forcing: the natural-log probability of each of `tokens[first..]` given the
    /// tokens before it, computed in one pass (prompt chunks of `n_batch`, logits for the scored
    /// positions only). The KV cache is reused for a shared prefix as in generation. Returns
    /// None when cancelled. `first` must be at least 1 (the first token has no prediction).
    ///
    /// The log-softmax follows llama.cpp's perplexity tool (f32 logits, f64 sum of
    /// exponentials), so numbers computed from it match llama-perplexity's.
    pub fn token_logprobs(&mut self, tokens: &[i32], first: usize) -> Result<Option<Vec<f64>>> {
        let mut logprobs = Vec::with_capacity(tokens.len().saturating_sub(first));
        let done = self.teacher_forced_logits(tokens, first, |pos, logits| {
            logprobs.push(log_softmax_at(logits, tokens[pos + 1] as usize));
        })?;
        Ok(done.then_some(logprobs))
    }

    /// Teacher forcing with the raw logits: `visit(pos, logits)` receives the next-token
    /// logits (n_vocab values) after `tokens[..=pos]`, for pos in `first-1 .. tokens.len()-1`
    /// in order. Returns false when cancelled. Same validation and cache reuse as
    /// [`token_logprobs`](Self::token_logprobs).
    pub fn teacher_forced_logits(&mut self, tokens: &[i32], first: usize, mut visit: impl FnMut(usize, &[f32])) -> Result<bool> {
        if tokens.len() < 2 {
            return Err(Error::invalid("tokens", "at least two tokens are needed to score one"));
        }
        if first == 0 || first >= tokens.len() {
            return Err(Error::invalid("first", format!("must be in 1..{}, got {first}", tokens.len())));
        }
        if tokens.len() > self.n_ctx {
            return Err(Error::PromptTooLong { tokens: tokens.len(), n_ctx: self.n_ctx });
        }
        let n_vocab = self.model.n_vocab();
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t as usize >= n_vocab) {
            return Err(Error::invalid("tokens", format!("token id {bad} is outside the vocabulary (0..{n_vocab})")));
        }
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        let cancel = self.cancel.clone();
        let _running = Running::new(&cancel);

        // Rows first-1 .. len-2 are needed; a reused prefix must end before row first-1.
        let common = self.reuse_prefix(&tokens, first - 1);
        let rest = &tokens[common..];
        for chunk in rest.chunks(self.n_batch) {
            if cancel.is_cancelled() {
                return Ok(false);
            }
            self.batch.clear();
            let base = self.cached.len();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = base + i;
                let wants = pos + 1 >= first && pos + 1 < tokens.len();
                self.batch.add(token.0, pos, 0, wants)?;
            }
            if self.decode()? == Decoded::Aborted {
                return Ok(false);
            }
            self.cached.extend_from_slice(chunk);
            for i in 0..chunk.len() {
                let pos = base + i;
                if pos + 1 >= first && pos + 1 < tokens.len() {
                    visit(pos, self.ctx.logits(i)?);
                }
            }
        }
        Ok(true)
    }

    /// Generate the assistant's reply to `messages` (which need not be this session's history;
    /// the history is left unchanged).
    pub fn complete_chat(
        &mut self,
        messages: &[ChatMessage],
        sampling: &Sampling,
        on_piece: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        sampling.validate()?;
        let (prompt, _) = self.render_chat(messages)?;
        let tokens = self.tokenize_prompt(&prompt);
        self.generate_tokens(&tokens, sampling, on_piece)
    }

    /// Render `messages` with the model's chat template, ending with an open assistant turn.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<(String, TemplateEngine)> {
        self.model.inner.template.render(messages, true)
    }

    fn tokenize_prompt(&self, prompt: &str) -> Vec<LlamaToken> {
        let vocab = self.model.inner.llama.vocab();
        // A template that writes the BOS text itself must not get a second BOS.
        let bos_text = vocab.token_to_piece(vocab.bos(), true, None);
        let add_special = bos_text.is_empty() || !prompt.as_bytes().starts_with(&bos_text);
        vocab.tokenize(prompt.as_bytes(), add_special, true)
    }

    /// Make the cache hold `tokens` and leave the logits of the last one ready. Returns the
    /// number of tokens reused, or None when cancelled.
    fn feed_prompt(&mut self, tokens: &[LlamaToken]) -> Result<Option<usize>> {
        // The last token must be decoded again to produce logits.
        let common = self.reuse_prefix(tokens, tokens.len() - 1);
        let reused = common;
        let rest = &tokens[common..];
        for (chunk_index, chunk) in rest.chunks(self.n_batch).enumerate() {
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            let is_last_chunk = (chunk_index + 1) * self.n_batch >= rest.len();
            self.batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let wants_logits = is_last_chunk && i + 1 == chunk.len();
                self.batch.add(token.0, self.cached.len() + i, 0, wants_logits)?;
            }
            if self.decode()? == Decoded::Aborted {
                return Ok(None);
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(Some(reused))
    }

    /// Keep the longest prefix (at most `max_keep` tokens) that the cache shares with
    /// `tokens`, drop the rest of the cache, and return the number of tokens kept.
    fn reuse_prefix(&mut self, tokens: &[LlamaToken], max_keep: usize) -> usize {
        let mut common = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count().min(max_keep);
        if common < self.cached.len() {
            if !self.ctx.remove_from(0, common) {
                // This cache kind cannot drop a suffix: start over.
                self.clear_cache();
                common = 0;
            }
            self.cached.truncate(common);
        }
        common
    }

    /// Decode the batch. `Aborted` (a cancel seen mid-computation) leaves the cache holding
    /// exactly `self.cached` for sequence 0: the tokens of the micro-batches that completed
    /// before the stop are dropped here.
    fn decode(&mut self) -> Result<Decoded> {
        let _reserve_guard =
            std::mem::take(&mut self.graph_reserve_pending).then(|| CONTEXT_CREATION.lock().unwrap_or_else(|p| p.into_inner()));
        match self.ctx.decode(&self.batch) {
            Ok(Decoded::Aborted) => {
                if !self.ctx.remove_from(0, self.cached.len()) {
                    self.clear_cache();
                }
                Ok(Decoded::Aborted)
            }
            Ok(decoded) => Ok(decoded),
            Err(e) => {
                // A failed decode leaves the cache in an unknown state.
                self.clear_cache();
                Err(e)
            }
        }
    }

    fn generate_tokens(
        &mut self,
        tokens: &[LlamaToken],
        sampling: &Sampling,
        mut on_piece: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let start = Instant::now();
        let cancel = self.cancel.clone();
        let _running = Running::new(&cancel);
        let n_ctx = self.n_ctx();
        if tokens.len() >= n_ctx {
            return Err(Error::PromptTooLong { tokens: tokens.len(), n_ctx });
        }
        let model = self.model.clone();
        let llama = &model.inner.llama;
        // Built before the prompt is decoded, so that a grammar llama.cpp rejects costs no work
        // and leaves the cache as it was.
        let mut sequence = Sequence::new(sampling, llama, tokens, 0, n_ctx as u32)?;
        let fed = self.feed_prompt(tokens)?;
        sequence.set_reused(fed.unwrap_or(0));
        sequence.set_prompt_time(start);
        let gen_start = Instant::now();
        if fed.is_none() {
            return Ok(sequence.finish(StopReason::Cancelled, gen_start, &mut on_piece));
        }
        let mut logits_index = self.batch.n_tokens().saturating_sub(1);
        let reason = loop {
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            let logits = self.ctx.logits(logits_index)?;
            match sequence.next(logits, llama, self.cached.len(), n_ctx, start, &mut on_piece)? {
                Next::Stop(reason) => break reason,
                Next::Decode(token) => {
                    self.batch.clear();
                    self.batch.add(token.0, self.cached.len(), 0, true)?;
                    if self.decode()? == Decoded::Aborted {
                        break StopReason::Cancelled;
                    }
                    self.cached.push(token);
                    logits_index = 0;
                }
            }
        };
        Ok(sequence.finish(reason, gen_start, &mut on_piece))
    }
}
