//! Text embeddings: one vector per text, pooled from the model's last-layer hidden states by
//! llama.cpp (mean over the text's tokens, or the last token's state) and L2-normalised here,
//! so that the dot product of two embeddings is their cosine similarity.
//!
//! An [`Embedder`] has its own llama.cpp context (created with embeddings on and the pooling
//! chosen), separate from any generating `Session`: llama.cpp fixes the pooling and the
//! embeddings mode when a context is created. Several texts go through one decode call as
//! separate sequences, as many as fit `n_batch` tokens and `max_texts` sequences; the cache is
//! cleared after every call, so a text's vector does not depend on the texts beside it (up to
//! f32 rounding of the batched kernels).
//!
//! Contract: like a `Session`, an `Embedder` is used by one thread at a time (`Send`, not
//! `Sync`); each keeps its model alive.

use llama_cpp_2::token::LlamaToken;

use super::context::{Batch, Context, ContextParams, Decoded};
use super::model::Model;
use super::session::{default_threads, CancelHandle};
use crate::error::{Error, Result};

/// How a text's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The mean over every token of the text (the default).
    #[default]
    Mean,
    /// The state of the text's last token (for a causal model, the one that has seen the
    /// whole text).
    Last,
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Pooling> {
        match s.to_ascii_lowercase().as_str() {
            "mean" => Ok(Pooling::Mean),
            "last" => Ok(Pooling::Last),
            other => Err(Error::invalid("pooling", format!("unknown pooling `{other}`: use mean or last"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Last => "last",
        }
    }

    fn llama(self) -> llama_cpp_sys_2::llama_pooling_type {
        match self {
            Pooling::Mean => llama_cpp_sys_2::LLAMA_POOLING_TYPE_MEAN,
            Pooling::Last => llama_cpp_sys_2::LLAMA_POOLING_TYPE_LAST,
        }
    }
}

/// How an [`Embedder`] is created.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedParams {
    pub pooling: Pooling,
    /// L2-normalise every vector (the default): dot products are then cosine similarities.
    pub normalize: bool,
    /// The most tokens of one decode call, and so of one text (default 512).
    pub n_batch: u32,
    /// The most texts of one decode call (default 16).
    pub max_texts: u32,
    /// Threads; 0 = all cores (default).
    pub n_threads: u32,
}

impl Default for EmbedParams {
    fn default() -> Self {
        EmbedParams { pooling: Pooling::Mean, normalize: true, n_batch: 512, max_texts: 16, n_threads: 0 }
    }
}

/// Embeds texts with one model (see the module docs).
pub struct Embedder {
    // Declared before `model`: the context is dropped first.
    ctx: Context,
    batch: Batch,
    params: EmbedParams,
    n_embd: usize,
    model: Model,
}

impl Embedder {
    pub fn new(model: &Model, params: &EmbedParams) -> Result<Embedder> {
        if params.n_batch == 0 || params.n_batch > 8192 {
            return Err(Error::invalid("n_batch", format!("must be in 1..=8192, got {}", params.n_batch)));
        }
        if params.max_texts == 0 || params.max_texts > 256 {
            return Err(Error::invalid("max_texts", format!("must be in 1..=256, got {}", params.max_texts)));
        }
        if params.n_threads > 1024 {
            return Err(Error::invalid("n_threads", format!("{} threads is more than the supported 1024", params.n_threads)));
        }
        let threads = if params.n_threads == 0 { default_threads() } else { params.n_threads } as i32;
        let ctx_params = ContextParams {
            // Each sequence gets the whole call's room: texts of one call never exceed it.
            n_ctx: params.n_batch,
            n_batch: params.n_batch,
            n_threads: threads,
            n_threads_batch: threads,
            flash_attention: llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            n_seq_max: params.max_texts,
            embeddings: Some(params.pooling.llama()),
        };
        let ctx = Context::new(model, &ctx_params, &CancelHandle::default())?;
        let n_embd = usize::try_from(model.inner.llama.n_embd()).map_err(|_| Error::Internal("the model has a negative width".into()))?;
        Ok(Embedder {
            ctx,
            batch: Batch::new(params.n_batch as usize, params.max_texts as usize),
            params: params.clone(),
            n_embd,
            model: model.clone(),
        })
    }

    /// The length of every vector (the model's width).
    pub fn dimensions(&self) -> usize {
        self.n_embd
    }

    pub fn params(&self) -> &EmbedParams {
        &self.params
    }

    /// One vector per text, in order. Texts are tokenized as prompts are (with the model's
    /// BOS when it adds one). An empty list gives an empty list; an empty text, or one longer
    /// than `n_batch` tokens, is `InvalidArgument` naming its index, checked before any work.
    pub fn embed<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        let vocab = self.model.inner.llama.vocab();
        let n_batch = self.params.n_batch as usize;
        let mut tokenized: Vec<Vec<LlamaToken>> = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            if text.is_empty() {
                return Err(Error::invalid("texts", format!("text {i} is empty")));
            }
            let tokens = vocab.tokenize(text.as_bytes(), true, false);
            if tokens.len() > n_batch {
                return Err(Error::invalid("texts", format!("text {i} has {} tokens, more than n_batch = {n_batch}", tokens.len())));
            }
            tokenized.push(tokens);
        }
        let mut out = Vec::with_capacity(texts.len());
        let mut next = 0;
        while next < tokenized.len() {
            // As many whole texts as fit this call.
            let (mut end, mut used) = (next, 0);
            while end < tokenized.len() && end - next < self.params.max_texts as usize && used + tokenized[end].len() <= n_batch {
                used += tokenized[end].len();
                end += 1;
            }
            self.batch.clear();
            for (seq, tokens) in tokenized[next..end].iter().enumerate() {
                for (pos, t) in tokens.iter().enumerate() {
                    self.batch.add(t.0, pos, seq, true)?;
                }
            }
            let decoded = self.ctx.decode(&self.batch);
            let result = match decoded {
                Ok(Decoded::Done) => (0..end - next)
                    .map(|seq| {
                        let mut v = self.ctx.sequence_embedding(seq, self.n_embd)?.to_vec();
                        if self.params.normalize {
                            normalize(&mut v);
                        }
                        Ok(v)
                    })
                    .collect::<Result<Vec<_>>>(),
                // Nothing cancels an embedder's context (its handle is never shared).
                Ok(Decoded::Aborted) => Err(Error::Decode("llama.cpp aborted the computation".into())),
                Err(e) => Err(e),
            };
            self.ctx.clear();
            out.extend(result?);
            next = end;
        }
        Ok(out)
    }
}

/// Scale `v` to unit L2 norm (a zero vector stays zero). The norm is summed in f64.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// The cosine similarity of two vectors of equal length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += f64::from(x) * f64::from(y);
        na += f64::from(x) * f64::from(x);
        nb += f64::from(y) * f64::from(y);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
