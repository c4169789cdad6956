//! One sequence being generated: its sampler, its text decoding and stop strings, and its
//! result. A session generates one sequence at a time with it, and a batch of sequences
//! drives several side by side, so both paths pick, stop and stream tokens the same way.

use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::sampling::{ChainSampler, Sampling};
use super::session::{Generation, StopReason};
use super::text_stream::{StopFilter, Utf8Decoder};
use crate::error::Result;

/// What to do after a token was chosen.
pub(crate) enum Next {
    /// Decode this token (it extends the sequence) and call [`Sequence::next`] again with the
    /// logits it produces.
    Decode(LlamaToken),
    /// The sequence is finished.
    Stop(StopReason),
}

pub(crate) struct Sequence {
    sampler: ChainSampler,
    /// Greedy without a repetition penalty: the argmax of the logits, scanned in place. A
    /// chain of llama.cpp's greedy sampler alone copies every logit into a candidate array
    /// first; the in-place scan picks the same token (eval::agreement tests the equivalence)
    /// for a fraction of the time, which shows on a GPU, where a token takes a millisecond.
    plain_greedy: bool,
    max_tokens: usize,
    utf8: Utf8Decoder,
    stops: StopFilter,
    piece: Vec<u8>,
    generation: Generation,
}

impl Sequence {
    /// A sequence about to generate after `prompt` (`reused` of its tokens came from the
    /// cache). The sampler sees the prompt when a repetition penalty needs it. Fails only on
    /// a grammar llama.cpp rejects (see `ChainSampler::new`).
    pub(crate) fn new(sampling: &Sampling, llama: &LlamaModel, prompt: &[LlamaToken], reused: usize, n_ctx: u32) -> Result<Sequence> {
        let mut sampler = ChainSampler::new(sampling, llama, n_ctx)?;
        if sampling.repeat_penalty != 1.0 {
            sampler.accept_many(prompt);
        }
        Ok(Sequence {
            sampler,
            plain_greedy: sampling.is_greedy()
                && !(sampling.repeat_penalty != 1.0 && sampling.repeat_last_n != 0)
                && sampling.format.is_none(),
            max_tokens: sampling.max_tokens as usize,
            utf8: Utf8Decoder::default(),
            stops: StopFilter::new(&sampling.stop),
            piece: Vec::with_capacity(16),
            generation: Generation {
                text: String::new(),
                stop_reason: StopReason::Cancelled,
                prompt_tokens: prompt.len(),
                reused_tokens: reused,
                generated_tokens: 0,
                prompt_time: Duration::ZERO,
                time_to_first_token: Duration::ZERO,
                generation_time: Duration::ZERO,
            },
        })
    }

    /// Record how many prompt tokens came from the cache.
    pub(crate) fn set_reused(&mut self, reused: usize) {
        self.generation.reused_tokens = reused;
    }

    /// Record how long the prompt took (measured from `start`).
    pub(crate) fn set_prompt_time(&mut self, start: Instant) {
        self.generation.prompt_time = start.elapsed();
    }

    /// Choose the next token from `logits`, stream its text through `on_piece` (false stops
    /// the sequence) and say whether to go on. `cached` is the number of tokens the sequence
    /// holds in the cache, `n_ctx` its room; `start` is when the call began (time to first
    /// token).
    pub(crate) fn next(
        &mut self,
        logits: &[f32],
        llama: &LlamaModel,
        cached: usize,
        n_ctx: usize,
        start: Instant,
        on_piece: &mut impl FnMut(&str) -> bool,
    ) -> Result<Next> {
        let token = if self.plain_greedy { LlamaToken(crate::logits::argmax(logits) as i32) } else { self.sampler.sample(logits)? };
        let g = &mut self.generation;
        g.generated_tokens += 1;
        if g.generated_tokens == 1 {
            g.time_to_first_token = start.elapsed();
        }
        let vocab = llama.vocab();
        if vocab.is_eog(token) {
            return Ok(Next::Stop(StopReason::EndOfGeneration));
        }
        self.piece.clear();
        vocab.token_to_piece_into(token, &mut self.piece, false, None);
        let filtered = self.stops.push(&self.utf8.push(&self.piece));
        if !emit(&mut self.generation, &filtered.emit, on_piece) {
            return Ok(Next::Stop(StopReason::CallbackStopped));
        }
        if filtered.stopped {
            return Ok(Next::Stop(StopReason::StopString));
        }
        if self.generation.generated_tokens >= self.max_tokens {
            return Ok(Next::Stop(StopReason::MaxTokens));
        }
        if cached + 1 >= n_ctx {
            return Ok(Next::Stop(StopReason::ContextFull));
        }
        Ok(Next::Decode(token))
    }

    /// End the sequence with `reason`: text held back as a possible stop-string prefix is
    /// flushed when the sequence ended on its own; the bytes of an unfinished character are
    /// dropped (see `Utf8Decoder::finish`). `generation_start` is when generation (after the
    /// prompt) began.
    pub(crate) fn finish(mut self, reason: StopReason, generation_start: Instant, on_piece: &mut impl FnMut(&str) -> bool) -> Generation {
        self.utf8.finish();
        if matches!(reason, StopReason::EndOfGeneration | StopReason::MaxTokens | StopReason::ContextFull) {
            let rest = self.stops.finish();
            emit(&mut self.generation, &rest, on_piece);
        }
        self.generation.stop_reason = reason;
        self.generation.generation_time = generation_start.elapsed();
        self.generation
    }
}

/// Append `text` to the result and stream it; the callback's answer (true: go on).
fn emit(generation: &mut Generation, text: &str, on_piece: &mut impl FnMut(&str) -> bool) -> bool {
    if text.is_empty() {
        return true;
    }
    generation.text.push_str(text);
    on_piece(text)
}
