//! Several independent prompts generated together: each in its own sequence of the session's
//! cache, all of them advancing in one llama.cpp batch per step, so the weights are read once
//! per step for every sequence instead of once per sequence. Each sequence has its own sampling
//! and stop strings and ends on its own; the others go on.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::{Decoded, Generation, Running, Session, StopReason};
use crate::engine::sampling::Sampling;
use crate::engine::sequence::{Next, Sequence};
use crate::error::{Error, Result};

/// One prompt of a batch (raw text, as for [`Session::generate`]) and how to continue it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    pub prompt: String,
    pub sampling: Sampling,
}

impl BatchRequest {
    pub fn new(prompt: impl Into<String>, sampling: Sampling) -> Self {
        BatchRequest { prompt: prompt.into(), sampling }
    }
}

/// Where one sequence of the batch stands.
struct Slot {
    sequence: Sequence,
    prompt: Vec<LlamaToken>,
    /// Tokens of this sequence in the cache.
    cached: usize,
    /// The token to decode next, while the sequence runs.
    pending: Option<LlamaToken>,
    /// Why it ended, once it has.
    ended: Option<StopReason>,
    generation_start: Instant,
}

impl Session {
    /// Continue every prompt of `requests` at once, each in its own sequence, and return their
    /// generations in the same order. With greedy sampling each text equals what
    /// [`generate`](Self::generate) gives for that prompt alone.
    ///
    /// `on_piece(index, text)` streams the text of request `index` as it is generated;
    /// returning false stops that sequence only ([`StopReason::CallbackStopped`]). A cancel
    /// ([`CancelHandle::cancel`](super::CancelHandle::cancel)) stops all of them.
    ///
    /// The session must have been created with `n_sequences` >= `requests.len()`; each
    /// sequence has `n_ctx` tokens of room. The KV cache is cleared before and after (a chat
    /// history is kept and re-read on its next turn).
    ///
    /// Errors: [`Error::InvalidArgument`] for no requests, more than `n_sequences`, or a bad
    /// sampling (naming the request); [`Error::EmptyPrompt`]; [`Error::PromptTooLong`].
    pub fn generate_batch(&mut self, requests: &[BatchRequest], mut on_piece: impl FnMut(usize, &str) -> bool) -> Result<Vec<Generation>> {
        if requests.is_empty() {
            return Err(Error::invalid("requests", "at least one prompt is needed"));
        }
        if requests.len() > self.n_sequences {
            return Err(Error::invalid(
                "requests",
                format!("{} prompts, but this session decodes at most {} sequences (n_sequences)", requests.len(), self.n_sequences),
            ));
        }
        let mut prompts = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            request.sampling.validate().map_err(|e| match e {
                Error::InvalidArgument { name, reason } => Error::invalid(name, format!("request {i}: {reason}")),
                other => other,
            })?;
            if request.prompt.is_empty() {
                return Err(Error::EmptyPrompt { what: "prompt of a batch request" });
            }
            let tokens = self.tokenize_prompt(&request.prompt);
            if tokens.is_empty() {
                return Err(Error::EmptyPrompt { what: "prompt of a batch request (it tokenizes to nothing)" });
            }
            if tokens.len() >= self.n_ctx {
                return Err(Error::PromptTooLong { tokens: tokens.len(), n_ctx: self.n_ctx });
            }
            prompts.push(tokens);
        }
        let cancel = self.cancel.clone();
        let _running = Running::new(&cancel);
        self.clear_cache();
        let result = self.run_batch(requests, prompts, &mut on_piece);
        // Sequence 0 no longer holds what `cached` would describe: start the next call afresh.
        self.clear_cache();
        result
    }

    fn run_batch(
        &mut self,
        requests: &[BatchRequest],
        prompts: Vec<Vec<LlamaToken>>,
        on_piece: &mut impl FnMut(usize, &str) -> bool,
    ) -> Result<Vec<Generation>> {
        let start = Instant::now();
        let model = self.model.clone();
        let llama = &model.inner.llama;
        let n_ctx = self.n_ctx;
        let mut slots: Vec<Slot> = requests
            .iter()
            .zip(prompts)
            .enumerate()
            .map(|(i, (request, prompt))| {
                let sequence = Sequence::new(&request.sampling, llama, &prompt, 0, n_ctx as u32).map_err(|e| match e {
                    Error::InvalidArgument { name, reason } => Error::invalid(name, format!("request {i}: {reason}")),
                    other => other,
                })?;
                Ok(Slot { sequence, prompt, cached: 0, pending: None, ended: None, generation_start: start })
            })
            .collect::<Result<_>>()?;

        // The prompts, packed into batches of n_batch tokens across sequences. A sequence whose
        // last prompt token is in a batch chooses its first token right after that decode.
        let mut next_prompt = (0usize, 0usize); // (slot, token offset)
        while next_prompt.0 < slots.len() {
            self.batch.clear();
            let mut finished_prompts = Vec::new();
            while self.batch.n_tokens() < self.n_batch && next_prompt.0 < slots.len() {
                let (s, offset) = next_prompt;
                let last = offset + 1 == slots[s].prompt.len();
                self.batch.add(slots[s].prompt[offset].0, offset, s, last)?;
                if last {
                    finished_prompts.push((s, self.batch.n_tokens() - 1));
                    next_prompt = (s + 1, 0);
                } else {
                    next_prompt.1 += 1;
                }
            }
            if self.cancel.is_cancelled() || self.decode()? == Decoded::Aborted {
                return Ok(finish_all(slots, StopReason::Cancelled, on_piece));
            }
            for (s, index) in finished_prompts {
                let slot = &mut slots[s];
                slot.cached = slot.prompt.len();
                slot.sequence.set_prompt_time(start);
                slot.generation_start = Instant::now();
                let logits = self.ctx.logits(index)?;
                match slot.sequence.next(logits, llama, slot.cached, n_ctx, start, &mut |t: &str| on_piece(s, t))? {
                    Next::Decode(token) => slot.pending = Some(token),
                    Next::Stop(reason) => slot.ended = Some(reason),
                }
            }
        }

        // Generation: one token of every running sequence per decode.
        loop {
            self.batch.clear();
            let mut order = Vec::new();
            for (s, slot) in slots.iter().enumerate() {
                if let Some(token) = slot.pending {
                    self.batch.add(token.0, slot.cached, s, true)?;
                    order.push(s);
                }
            }
            if order.is_empty() {
                break;
            }
            if self.cancel.is_cancelled() || self.decode()? == Decoded::Aborted {
                return Ok(finish_all(slots, StopReason::Cancelled, on_piece));
            }
            for (index, s) in order.into_iter().enumerate() {
                let slot = &mut slots[s];
                slot.pending = None;
                slot.cached += 1;
                let logits = self.ctx.logits(index)?;
                match slot.sequence.next(logits, llama, slot.cached, n_ctx, start, &mut |t: &str| on_piece(s, t))? {
                    Next::Decode(token) => slot.pending = Some(token),
                    Next::Stop(reason) => slot.ended = Some(reason),
                }
            }
        }
        Ok(finish_all(slots, StopReason::Cancelled, on_piece))
    }
}

/// The generations of every slot; a slot that has not ended gets `unfinished` as its reason.
fn finish_all(slots: Vec<Slot>, unfinished: StopReason, on_piece: &mut impl FnMut(usize, &str) -> bool) -> Vec<Generation> {
    slots
        .into_iter()
        .enumerate()
        .map(|(s, slot)| slot.sequence.finish(slot.ended.unwrap_or(unfinished), slot.generation_start, &mut |t: &str| on_piece(s, t)))
        .collect()
}
