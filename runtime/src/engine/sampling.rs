//! Sampling parameters and the llama.cpp sampler chain built from them.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::grammar::OutputFormat;
use crate::error::{Error, Result};

/// How the next token is chosen, and when generation stops.
///
/// Defaults: greedy (temperature 0), 256 new tokens at most, no stop strings. Values outside
/// their range (negative, NaN, infinite) are rejected by [`Sampling::validate`] with an error
/// naming the field; nothing is silently clamped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy (deterministic); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: i32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches p (1 = off).
    pub top_p: f32,
    /// Drop tokens whose probability is below min_p times the most likely one's (0 = off).
    pub min_p: f32,
    /// Penalise tokens seen in the last `repeat_last_n` tokens (1 = off).
    pub repeat_penalty: f32,
    /// Window of the repeat penalty, in tokens (0 = off, -1 = the whole context).
    pub repeat_last_n: i32,
    /// Seed of the random sampler (ignored when greedy). Same seed, same output.
    pub seed: u32,
    /// Maximum number of tokens to generate.
    pub max_tokens: u32,
    /// Generation stops before the first occurrence of any of these strings; the stop string
    /// itself is not returned.
    pub stop: Vec<String>,
    /// Structured output: a grammar or JSON schema the text must follow (see
    /// [`OutputFormat`]); `None` = free text.
    pub format: Option<OutputFormat>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
            format: None,
        }
    }
}

impl Sampling {
    /// Greedy decoding with at most `max_tokens` new tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Self { max_tokens, ..Self::default() }
    }

    /// Check every field's range.
    pub fn validate(&self) -> Result<()> {
        fn finite(name: &'static str, v: f32) -> Result<()> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::invalid(name, format!("must be a finite number, got {v}")))
            }
        }
        finite("temperature", self.temperature)?;
        if self.temperature < 0.0 {
            return Err(Error::invalid("temperature", format!("must be >= 0 (0 = greedy), got {}", self.temperature)));
        }
        if self.top_k < 0 {
            return Err(Error::invalid("top_k", format!("must be >= 0 (0 = off), got {}", self.top_k)));
        }
        finite("top_p", self.top_p)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid("top_p", format!("must be in (0, 1] (1 = off), got {}", self.top_p)));
        }
        finite("min_p", self.min_p)?;
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::invalid("min_p", format!("must be in [0, 1] (0 = off), got {}", self.min_p)));
        }
        finite("repeat_penalty", self.repeat_penalty)?;
        if self.repeat_penalty <= 0.0 {
            return Err(Error::invalid("repeat_penalty", format!("must be > 0 (1 = off), got {}", self.repeat_penalty)));
        }
        if self.repeat_last_n < -1 {
            return Err(Error::invalid("repeat_last_n", format!("must be >= -1, got {}", self.repeat_last_n)));
        }
        if self.max_tokens == 0 {
            return Err(Error::invalid("max_tokens", "must be at least 1"));
        }
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err(Error::invalid("stop", format!("stop string {i} is empty")));
        }
        if let Some(format) = &self.format {
            format.validate()?;
        }
        Ok(())
    }

    /// True when the choice is deterministic (argmax).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Build llama.cpp's sampler chain, in llama.cpp's usual order: penalties, then the
    /// truncations (top-k, top-p, min-p), then temperature and the random draw.
    pub(crate) fn build_chain(&self, n_vocab: i32, n_ctx: u32) -> LlamaSampler {
        let mut chain = Vec::new();
        if self.repeat_penalty != 1.0 && self.repeat_last_n != 0 {
            let last_n = if self.repeat_last_n < 0 { n_ctx as i32 } else { self.repeat_last_n };
            chain.push(LlamaSampler::penalties(n_vocab, last_n, self.repeat_penalty, 0.0, 0.0));
        }
        if self.is_greedy() {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed));
        }
        LlamaSampler::chain_simple(chain)
    }
}

/// llama.cpp's sampler chain applied to a row of logits: what `llama_sampler_sample` does
/// with a context (every token as a candidate, the chain applied, the choice accepted), for
/// logits that lamina's own context hands out. The candidate buffer is reused between tokens.
///
/// A grammar (structured output) is its own sampler, applied before the chain: it must see
/// only generated tokens, while the chain's repetition penalty also takes in the prompt.
pub(crate) struct ChainSampler {
    grammar: Option<LlamaSampler>,
    chain: LlamaSampler,
    candidates: Vec<LlamaTokenData>,
}

impl ChainSampler {
    /// The sampler of `sampling` for `model`; fails only on a grammar llama.cpp rejects.
    pub(crate) fn new(sampling: &Sampling, model: &LlamaModel, n_ctx: u32) -> Result<Self> {
        let grammar = sampling.format.as_ref().map(|f| f.sampler(model)).transpose()?;
        Ok(ChainSampler { grammar, chain: sampling.build_chain(model.n_vocab(), n_ctx), candidates: Vec::new() })
    }

    /// Feed prompt tokens to the stateful samplers of the chain (the repetition penalty's
    /// window); the grammar constrains only what is generated.
    pub(crate) fn accept_many(&mut self, tokens: &[LlamaToken]) {
        self.chain.accept_many(tokens);
    }

    /// Choose the next token from `logits` (n_vocab values) and record it as accepted.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> Result<LlamaToken> {
        let mut data = std::mem::take(&mut self.candidates);
        data.clear();
        data.extend(logits.iter().enumerate().map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id as i32), logit, 0.0)));
        let mut array = LlamaTokenDataArray::new(data, false);
        if let Some(grammar) = &mut self.grammar {
            grammar.apply(&mut array);
        }
        self.chain.apply(&mut array);
        let chosen = array.selected.and_then(|i| array.data.get(i)).copied();
        let Some(chosen) = chosen else { return Err(Error::Decode("the sampler chain selected no token".into())) };
        let token = chosen.id();
        if let Some(grammar) = &mut self.grammar {
            // Every token the grammar forbids has a logit of -inf; one is chosen only when the
            // grammar allows nothing at all. llama.cpp aborts the process when a grammar
            // accepts a token it forbids, so that never reaches it.
            if chosen.logit() == f32::NEG_INFINITY {
                return Err(Error::Decode("the grammar allows no token at this point of the output".into()));
            }
            grammar.accept(token);
        }
        self.chain.accept(token);
        self.candidates = array.data;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Sampling::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values_by_name() {
        let cases: Vec<(Sampling, &str)> = vec![
            (Sampling { temperature: -0.5, ..Default::default() }, "temperature"),
            (Sampling { temperature: f32::NAN, ..Default::default() }, "temperature"),
            (Sampling { top_k: -1, ..Default::default() }, "top_k"),
            (Sampling { top_p: 0.0, ..Default::default() }, "top_p"),
            (Sampling { top_p: f32::NAN, ..Default::default() }, "top_p"),
            (Sampling { min_p: 1.5, ..Default::default() }, "min_p"),
            (Sampling { repeat_penalty: -1.0, ..Default::default() }, "repeat_penalty"),
            (Sampling { repeat_penalty: f32::INFINITY, ..Default::default() }, "repeat_penalty"),
            (Sampling { max_tokens: 0, ..Default::default() }, "max_tokens"),
            (Sampling { stop: vec![String::new()], ..Default::default() }, "stop"),
        ];
        for (s, field) in cases {
            match s.validate() {
                Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: expected InvalidArgument, got {other:?}"),
            }
        }
    }
}
