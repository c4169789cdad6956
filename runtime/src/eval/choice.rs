//! Multiple choice by log-likelihood, as llama.cpp's perplexity tool scores HellaSwag.
//!
//! Each option is appended to the question (`question + " " + option`) and the model's
//! log-probability of the option's tokens is computed by teacher forcing. The prediction is the
//! option with the highest total log-probability ("sum") and, separately, the highest mean
//! log-probability per token ("norm", which does not favour short options). The question's
//! tokens are shared by all options, so the session's KV cache decodes them once.

use crate::engine::Session;
use crate::error::{Error, Result};

/// How likely the model finds one option.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionScore {
    /// Sum of ln p over the option's tokens.
    pub logprob_sum: f64,
    /// Number of tokens scored.
    pub tokens: usize,
}

impl OptionScore {
    /// Mean ln p per token.
    pub fn logprob_mean(&self) -> f64 {
        self.logprob_sum / self.tokens.max(1) as f64
    }
}

/// The choice a model makes among options.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceResult {
    pub scores: Vec<OptionScore>,
    /// Index of the best option by summed log-probability.
    pub best_by_sum: usize,
    /// Index of the best option by mean log-probability per token.
    pub best_by_mean: usize,
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Score every option of a question. None when cancelled.
pub fn score_options(session: &mut Session, question: &str, options: &[String]) -> Result<Option<ChoiceResult>> {
    if options.len() < 2 {
        return Err(Error::invalid("choices", "at least two options are needed"));
    }
    let model = session.model().clone();
    let question = question.trim_end();
    let context = model.tokenize(question, true, false);
    let mut scores = Vec::with_capacity(options.len());
    for (i, option) in options.iter().enumerate() {
        let option = option.trim();
        if option.is_empty() {
            return Err(Error::invalid("choices", format!("option {i} is empty")));
        }
        let full = model.tokenize(&format!("{question} {option}"), true, false);
        // Tokens may merge across the boundary: score from the first token that differs.
        let shared = context.iter().zip(&full).take_while(|(a, b)| a == b).count();
        let first = shared.max(1);
        if first >= full.len() {
            return Err(Error::invalid("choices", format!("option {i} adds no tokens to the question")));
        }
        let Some(logprobs) = session.token_logprobs(&full, first)? else { return Ok(None) };
        scores.push(OptionScore { logprob_sum: logprobs.iter().sum(), tokens: logprobs.len() });
    }
    Ok(Some(ChoiceResult {
        best_by_sum: argmax(scores.iter().map(|s| s.logprob_sum)),
        best_by_mean: argmax(scores.iter().map(OptionScore::logprob_mean)),
        scores,
    }))
}
