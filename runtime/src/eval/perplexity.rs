//! Perplexity with llama.cpp's `llama-perplexity` method, over any engine that can score tokens.
//!
//! The text is tokenized once and cut into non-overlapping chunks of `n_ctx` tokens (a partial
//! last chunk is dropped; at least two chunks are required, as llama-perplexity requires). Each
//! chunk is evaluated from an empty context; only its second half is scored, so every scored
//! token sees at least n_ctx/2 tokens of context. With a model that adds BOS, the chunk's first
//! token is replaced by BOS. PPL = exp(mean NLL), and its standard error is
//! PPL * sqrt(var(NLL) / (N - 1)), exactly as llama-perplexity prints `PPL = x +/- y`.
//!
//! [`TokenScorer`] is the seam between engines: the llama.cpp [`Session`] and the native
//! [`NativeModel`] implement it here, so both get their numbers from the same code.

use rayon::prelude::*;

use crate::engine::Session;
use crate::error::{Error, Result};
use crate::native::NativeModel;

pub use crate::logits::log_softmax_at;

/// Anything that can give log-probabilities of tokens under teacher forcing.
pub trait TokenScorer {
    /// ln p(tokens[i] | tokens[..i]) for i in first..tokens.len(), evaluated from an empty
    /// context (position 0 = tokens[0]). None when cancelled.
    fn token_logprobs(&mut self, tokens: &[i32], first: usize) -> Result<Option<Vec<f64>>>;
}

impl TokenScorer for Session {
    fn token_logprobs(&mut self, tokens: &[i32], first: usize) -> Result<Option<Vec<f64>>> {
        Session::token_logprobs(self, tokens, first)
    }
}

impl TokenScorer for NativeModel {
    fn token_logprobs(&mut self, tokens: &[i32], first: usize) -> Result<Option<Vec<f64>>> {
        if tokens.len() < 2 {
            return Err(Error::invalid("tokens", "at least two tokens are needed to score one"));
        }
        if first == 0 || first >= tokens.len() {
            return Err(Error::invalid("first", format!("must be in 1..{}, got {first}", tokens.len())));
        }
        let ids: Vec<u32> = tokens
            .iter()
            .map(|&t| u32::try_from(t).map_err(|_| Error::invalid("tokens", format!("token id {t} is negative"))))
            .collect::<Result<_>>()?;
        let n_vocab = self.config().vocab_size;
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::invalid("tokens", format!("token id {bad} is outside the vocabulary (0..{n_vocab})")));
        }
        // Logits of positions first-1 .. len-2 predict tokens first .. len-1.
        let logits = self.forward(&[&ids[..ids.len() - 1]], std::slice::from_ref(&(first - 1..ids.len() - 1)))?;
        let logprobs = (0..logits.rows()).into_par_iter().map(|i| log_softmax_at(logits.row(i), ids[first + i] as usize)).collect();
        // The next chunk's pass reuses this one's logits buffer.
        self.recycle(logits);
        Ok(Some(logprobs))
    }
}

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Standard error of `ppl` (llama-perplexity's "+/-").
    pub ppl_stderr: f64,
    /// Mean negative log-likelihood in nats per token.
    pub mean_nll: f64,
    /// Tokens scored (second halves of the chunks).
    pub scored_tokens: usize,
    /// Chunks of `n_ctx` tokens evaluated.
    pub chunks: usize,
    /// Context size used.
    pub n_ctx: usize,
    /// Running PPL after each chunk, as llama-perplexity prints `[1]x,[2]y,...`.
    pub running_ppl: Vec<f64>,
}

/// Compute perplexity of `tokens` with chunks of `n_ctx`. `bos` replaces each chunk's first
/// token when the model adds BOS. `progress(done_chunks, total_chunks)` returning false
/// cancels (the result is then None).
pub fn perplexity(
    scorer: &mut dyn TokenScorer,
    tokens: &[i32],
    n_ctx: usize,
    bos: Option<i32>,
    mut progress: impl FnMut(usize, usize) -> bool,
) -> Result<Option<Perplexity>> {
    if n_ctx < 4 {
        return Err(Error::invalid("n_ctx", format!("must be at least 4 for perplexity, got {n_ctx}")));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::invalid(
            "text",
            format!("the text has {} tokens; perplexity with a context of {n_ctx} needs at least {}", tokens.len(), 2 * n_ctx),
        ));
    }
    let chunks = tokens.len() / n_ctx;
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut running_ppl = Vec::with_capacity(chunks);
    let mut chunk = Vec::with_capacity(n_ctx);
    for i in 0..chunks {
        if !progress(i, chunks) {
            return Ok(None);
        }
        chunk.clear();
        chunk.extend_from_slice(&tokens[i * n_ctx..(i + 1) * n_ctx]);
        if let Some(bos) = bos {
            chunk[0] = bos;
        }
        // Rows first..n_ctx-2 predict tokens first+1..n_ctx-1.
        let Some(logprobs) = scorer.token_logprobs(&chunk, first + 1)? else { return Ok(None) };
        for lp in logprobs {
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
        }
        running_ppl.push((nll / count as f64).exp());
    }
    progress(chunks, chunks);
    let mean_nll = nll / count as f64;
    let ppl = mean_nll.exp();
    let var = nll2 / count as f64 - mean_nll * mean_nll;
    let ppl_stderr = if var > 0.0 && count > 1 { (var / (count - 1) as f64).sqrt() * ppl } else { 0.0 };
    Ok(Some(Perplexity { ppl, ppl_stderr, mean_nll, scored_tokens: count, chunks, n_ctx, running_ppl }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scorer whose every token has probability 1/4: PPL must be exactly 4.
    struct Uniform(usize);
    impl TokenScorer for Uniform {
        fn token_logprobs(&mut self, tokens: &[i32], first: usize) -> Result<Option<Vec<f64>>> {
            self.0 += 1;
            Ok(Some(vec![(0.25f64).ln(); tokens.len() - first]))
        }
    }

    #[test]
    fn uniform_scorer_gives_its_branching_factor() {
        let tokens: Vec<i32> = (0..100).collect();
        let mut s = Uniform(0);
        let p = perplexity(&mut s, &tokens, 16, None, |_, _| true).unwrap().unwrap();
        assert_eq!(p.chunks, 6);
        assert_eq!(s.0, 6);
        assert_eq!(p.scored_tokens, 6 * (16 - 1 - 8));
        assert!((p.ppl - 4.0).abs() < 1e-12);
        assert!(p.ppl_stderr < 1e-6, "{}", p.ppl_stderr);
    }

    #[test]
    fn too_short_text_and_cancel() {
        let tokens: Vec<i32> = (0..20).collect();
        assert!(perplexity(&mut Uniform(0), &tokens, 16, None, |_, _| true).is_err());
        let tokens: Vec<i32> = (0..64).collect();
        assert!(perplexity(&mut Uniform(0), &tokens, 16, None, |done, _| done < 2).unwrap().is_none());
    }
}
