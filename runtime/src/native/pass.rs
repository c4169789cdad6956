//! The one model pass of the native engine, shared by inference ([`NativeModel::forward`],
//! [`NativeModel::logits`]), scoring ([`NativeModel::loss`]) and training
//! ([`NativeModel::loss_and_grads`]): embedding, then per block RMSNorm, q/k/v projections,
//! RoPE, causal GQA attention, output projection and residual, RMSNorm, SwiGLU MLP and
//! residual; then the final norm and the LM head. Each step is a layer of `layers/`; a LoRA
//! adapter, when given, adds its branch inside the projections.
//!
//! For training, each block's forward keeps what its backward needs (a tape), or, for the
//! blocks that do not fit the activation budget (all of them with checkpointing), only its
//! input, and the block is recomputed during the backward pass. Inputs of the norms and of the
//! SwiGLU product are recomputed rather than kept: they are cheap to redo and as large as the
//! tensors they come from. Dropout masks come from a generator seeded per (step seed, layer,
//! target), so a recomputed block draws the same masks. Full-parameter training may also drop
//! out parts of each block ([`BlockDropout`]): its attention and MLP outputs before they join
//! the residual stream, and its attention probabilities; those masks are seeded per (step
//! seed, layer, site) in the same way. Structure follows llm.c's `gpt2_forward`/`gpt2_backward`.
//!
//! The loss is the *sum* of `-ln p(target)` over the target positions, and the gradients are
//! of that sum: callers (the trainer) divide by the total number of targets across
//! accumulated micro-batches, which keeps gradient accumulation exact.

use std::ops::Range;

use rayon::prelude::*;

use super::buffer_pool::BufferPool;
use super::full::{as_bytes, f32_matrix, FullBlock, FullWeights};
use super::layers::attention::{causal_attention_backward_with, causal_attention_with, AttentionShape};
use super::layers::dropout::Dropout;
use super::layers::embedding::{embedding_backward, embedding_forward};
use super::layers::head::{Head, HeadGrads};
use super::layers::linear::{BranchTape, Linear};
use super::layers::norm::{rms_norm, rms_norm_backward, rms_norm_weight_grad};
use super::layers::rope::RopeTable;
use super::layers::swiglu::{swiglu, swiglu_backward};
use super::lora::{LoraPair, LoraTarget, LoraWeights};
use super::matmul::WeightMatrix;
use super::model::{Logits, NativeModel};
use crate::error::{Error, Result};

/// One training sequence: its tokens, and which of them are targets (`targets[t]` true means
/// token `t` is predicted from `tokens[..t]` and counts in the loss; `targets[0]` is ignored).
#[derive(Debug, Clone)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub targets: Vec<bool>,
}

impl Example {
    pub fn n_targets(&self) -> usize {
        self.targets.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Options of one pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassOptions {
    /// Seed of this pass's dropout masks; None = no dropout (evaluation).
    pub dropout_seed: Option<u64>,
    /// Keep only each layer's input and recompute every layer in the backward pass.
    pub checkpointing: bool,
    /// Bytes of saved activations the pass may keep (None = no limit). Blocks past the budget
    /// are checkpointed (recomputed in the backward pass), the first blocks first.
    pub activation_budget: Option<usize>,
}

/// Dropout inside the blocks of a training pass: on each block's attention output and MLP
/// output before they are added to the residual stream (`residual`), and on its attention
/// probabilities (`attention`). Both off (0) by default; a pass without a dropout seed
/// ([`PassOptions::dropout_seed`], as in evaluation) drops nothing.
///
/// Masks ([`Dropout`]): block `l`'s residual branch `site` (0 the attention output, 1 the MLP
/// output) draws [`residual_mask`](Self::residual_mask) over its `[N × d]` output, row-major
/// over the batch's rows laid end to end; its attention probabilities draw
/// [`attention_mask`](Self::attention_mask), forked per sequence and head by
/// [`head_dropout`](super::layers::attention::head_dropout).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockDropout {
    /// Probability of dropping an element of a block's attention or MLP output, in [0, 1).
    pub residual: f32,
    /// Probability of dropping an attention probability, in [0, 1).
    pub attention: f32,
}

impl BlockDropout {
    /// Errors ([`Error::InvalidArgument`] `dropout` or `attention_dropout`): a probability
    /// outside [0, 1).
    pub fn validate(&self) -> Result<()> {
        for (name, p) in [("dropout", self.residual), ("attention_dropout", self.attention)] {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                return Err(Error::invalid(name, format!("must be in [0, 1), got {p}")));
            }
        }
        Ok(())
    }

    /// The mask of residual branch `site` (0 attention, 1 MLP) of block `layer` in the pass
    /// seeded `pass_seed`; None when residual dropout is off.
    pub fn residual_mask(&self, pass_seed: u64, layer: usize, site: usize) -> Option<Dropout> {
        // LoRA's masks use tags 1..=7 in bits 48 and up; these use 8 and 9, attention 10.
        (self.residual > 0.0)
            .then_some(Dropout { prob: self.residual, seed: pass_seed ^ ((layer as u64) << 32) ^ ((8 + site as u64) << 48) })
    }

    /// The mask of block `layer`'s attention probabilities in the pass seeded `pass_seed`
    /// (before the per-(sequence, head) fork); None when attention dropout is off.
    pub fn attention_mask(&self, pass_seed: u64, layer: usize) -> Option<Dropout> {
        (self.attention > 0.0).then_some(Dropout { prob: self.attention, seed: pass_seed ^ ((layer as u64) << 32) ^ (10 << 48) })
    }
}

/// Loss of one pass: the sum of target NLLs (nats) and how many targets it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PassLoss {
    pub nll_sum: f64,
    pub n_targets: usize,
}

/// What one block's backward pass needs besides what it recomputes.
struct LayerTape {
    x_in: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    x_mid: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    branches: [Option<BranchTape>; 7],
}

impl LayerTape {
    /// Give the tape's activations back to the pool once the block's backward is done.
    fn recycle(self, pool: &BufferPool) {
        for b in [self.x_in, self.q, self.k, self.v, self.att, self.x_mid, self.gate, self.up] {
            pool.give(b);
        }
    }
}

/// Shared state of one pass over a batch of sequences laid end to end.
struct Pass<'a> {
    model: &'a NativeModel,
    lora: Option<&'a LoraWeights>,
    file: &'a [u8],
    /// Rows of the batch (all sequences' tokens).
    n: usize,
    tokens: Vec<u32>,
    seqs: Vec<Range<usize>>,
    positions: Vec<usize>,
    rope: RopeTable,
    shape: AttentionShape,
    scale: f32,
    dropout: Option<(f32, u64)>,
    /// Residual and attention dropout, with the pass's seed (training passes only).
    block_dropout: Option<(BlockDropout, u64)>,
    /// Trainable f32 weights that replace the mapped ones (full-parameter training).
    full: Option<FullView<'a>>,
}

/// Full-parameter weights with the F32 matrices that read them.
struct FullView<'a> {
    weights: &'a FullWeights,
    proj: Vec<[WeightMatrix; 7]>,
    embed: WeightMatrix,
}

/// Where one block's gradients go: the LoRA pairs' (adapter training) or every weight's
/// (full-parameter training).
enum BlockGrads<'g> {
    Lora(&'g mut [Option<LoraPair>; 7]),
    Full(&'g mut FullBlock),
}

impl NativeModel {
    /// Logits of positions `from..tokens.len()` of one sequence evaluated from position 0.
    pub fn logits(&self, tokens: &[u32], from: usize) -> Result<Logits> {
        if from > tokens.len() {
            return Err(Error::invalid("from", format!("must be at most the sequence length {}, got {from}", tokens.len())));
        }
        self.forward(&[tokens], std::slice::from_ref(&(from..tokens.len())))
    }

    /// Evaluate several independent sequences in one pass (their rows are batched through
    /// every matrix product; attention stays within each sequence). Returns logits for the
    /// positions in `wanted[i]` of each sequence `i`, concatenated in order.
    pub fn forward(&self, seqs: &[&[u32]], wanted: &[Range<usize>]) -> Result<Logits> {
        self.forward_with_lora(None, seqs, wanted)
    }

    /// Logits of positions `from..tokens.len()` of one sequence under the base model plus
    /// `lora` (None = base only): inference with an in-memory adapter.
    pub fn logits_with_lora(&self, lora: Option<&LoraWeights>, tokens: &[u32], from: usize) -> Result<Logits> {
        if from > tokens.len() {
            return Err(Error::invalid("from", format!("must be at most the sequence length {}, got {from}", tokens.len())));
        }
        self.forward_with_lora(lora, &[tokens], std::slice::from_ref(&(from..tokens.len())))
    }

    /// [`forward`](Self::forward) with an optional in-memory adapter.
    pub fn forward_with_lora(&self, lora: Option<&LoraWeights>, seqs: &[&[u32]], wanted: &[Range<usize>]) -> Result<Logits> {
        if seqs.len() != wanted.len() {
            return Err(Error::invalid("wanted", format!("{} ranges for {} sequences", wanted.len(), seqs.len())));
        }
        let n_vocab = self.config.vocab_size;
        for (s, w) in seqs.iter().zip(wanted) {
            if s.is_empty() {
                return Err(Error::EmptyPrompt { what: "token sequence" });
            }
            if w.start > w.end || w.end > s.len() {
                return Err(Error::invalid("wanted", format!("range {w:?} is outside a sequence of {} tokens", s.len())));
            }
            if let Some(bad) = s.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(Error::invalid("tokens", format!("token id {bad} is outside the vocabulary (0..{n_vocab})")));
            }
        }
        lora.map(|l| l.check_fits(&self.config)).transpose()?;
        Ok(self.pool.install(|| {
            let pass = Pass::new(self, lora, seqs, PassOptions::default());
            let x = pass.forward();
            let rows: Vec<usize> = pass.seqs.iter().zip(wanted).flat_map(|(r, w)| (r.start + w.start)..(r.start + w.end)).collect();
            let data = pass.head().logits(&x, &rows);
            self.buffers.give(x);
            Logits { n_vocab, data }
        }))
    }

    /// Loss of `batch` under the base model plus `lora` (None = base only), without gradients.
    pub fn loss(&self, lora: Option<&LoraWeights>, batch: &[Example]) -> Result<PassLoss> {
        self.check_batch(lora, batch)?;
        Ok(self.pool.install(|| {
            let seqs: Vec<&[u32]> = batch.iter().map(|e| e.tokens.as_slice()).collect();
            let pass = Pass::new(self, lora, &seqs, PassOptions::default());
            let x = pass.forward();
            let loss = pass.loss(&x, batch, None, None);
            self.buffers.give(x);
            loss
        }))
    }

    /// Loss of `batch` and, added into `grads` (same shapes as `lora`), the gradients of the
    /// summed target NLL with respect to every LoRA matrix.
    pub fn loss_and_grads(&self, lora: &LoraWeights, batch: &[Example], options: PassOptions, grads: &mut LoraWeights) -> Result<PassLoss> {
        self.check_batch(Some(lora), batch)?;
        grads.check_fits(&self.config)?;
        if grads.layers.iter().zip(&lora.layers).any(|(g, w)| g.iter().zip(w).any(|(a, b)| a.is_some() != b.is_some())) {
            return Err(Error::invalid("grads", "must have the adapter's shapes (use LoraWeights::zeros_like)"));
        }
        Ok(self.pool.install(|| {
            let seqs: Vec<&[u32]> = batch.iter().map(|e| e.tokens.as_slice()).collect();
            let pass = Pass::new(self, Some(lora), &seqs, options);
            let (loss, dx) = pass.forward_backward(batch, options, grads.layers.iter_mut().map(BlockGrads::Lora).collect(), None);
            self.buffers.give(dx);
            loss
        }))
    }

    /// Loss of `batch` under the full-parameter `weights` (from [`full_weights`](Self::full_weights)),
    /// without gradients.
    pub fn loss_full(&self, weights: &FullWeights, batch: &[Example]) -> Result<PassLoss> {
        self.check_batch(None, batch)?;
        self.check_full_fits(weights, "weights")?;
        Ok(self.pool.install(|| {
            let seqs: Vec<&[u32]> = batch.iter().map(|e| e.tokens.as_slice()).collect();
            let pass = Pass::new(self, None, &seqs, PassOptions::default()).with_full(weights);
            let x = pass.forward();
            let loss = pass.loss(&x, batch, None, None);
            self.buffers.give(x);
            loss
        }))
    }

    /// Loss of `batch` under `weights` and, added into `grads` (`weights.zeros_like()`), the
    /// gradients of the summed target NLL with respect to every weight: embeddings, norms,
    /// projections and the LM head (into the embedding's gradient when tied).
    pub fn loss_and_full_grads(
        &self,
        weights: &FullWeights,
        batch: &[Example],
        options: PassOptions,
        grads: &mut FullWeights,
    ) -> Result<PassLoss> {
        self.loss_and_full_grads_with(weights, batch, options, BlockDropout::default(), grads)
    }

    /// [`loss_and_full_grads`](Self::loss_and_full_grads) with residual and attention
    /// `dropout` (drawn only when `options` has a dropout seed).
    pub fn loss_and_full_grads_with(
        &self,
        weights: &FullWeights,
        batch: &[Example],
        options: PassOptions,
        dropout: BlockDropout,
        grads: &mut FullWeights,
    ) -> Result<PassLoss> {
        dropout.validate()?;
        self.check_batch(None, batch)?;
        self.check_full_fits(weights, "weights")?;
        self.check_full_fits(grads, "grads")?;
        if grads.lm_head.is_some() != weights.lm_head.is_some() {
            return Err(Error::invalid("grads", "must tie the LM head as the weights do (use FullWeights::zeros_like)"));
        }
        let d = self.config.hidden_size;
        Ok(self.pool.install(|| {
            let seqs: Vec<&[u32]> = batch.iter().map(|e| e.tokens.as_slice()).collect();
            let mut pass = Pass::new(self, None, &seqs, options).with_full(weights);
            pass.block_dropout = options.dropout_seed.map(|seed| (dropout, seed));
            let FullWeights { embed, blocks, final_norm, lm_head } = grads;
            let head_grads = HeadGrads { norm: final_norm, lm_head: lm_head.as_deref_mut().unwrap_or(&mut embed[..]) };
            let (loss, dx) = pass.forward_backward(batch, options, blocks.iter_mut().map(BlockGrads::Full).collect(), Some(head_grads));
            embedding_backward(&pass.tokens, &dx, d, embed);
            self.buffers.give(dx);
            loss
        }))
    }

    fn check_batch(&self, lora: Option<&LoraWeights>, batch: &[Example]) -> Result<()> {
        if let Some(l) = lora {
            l.check_fits(&self.config)?;
        }
        if batch.is_empty() {
            return Err(Error::invalid("batch", "no examples"));
        }
        let n_vocab = self.config.vocab_size;
        for (i, e) in batch.iter().enumerate() {
            if e.tokens.len() < 2 {
                return Err(Error::invalid("batch", format!("example {i} has {} tokens; at least 2 are needed", e.tokens.len())));
            }
            if e.targets.len() != e.tokens.len() {
                return Err(Error::invalid(
                    "batch",
                    format!("example {i}: {} target flags for {} tokens", e.targets.len(), e.tokens.len()),
                ));
            }
            if let Some(bad) = e.tokens.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(Error::invalid("batch", format!("example {i}: token id {bad} is outside the vocabulary (0..{n_vocab})")));
            }
        }
        Ok(())
    }

    /// Bytes of one block's tape for `n` rows in sequences of the given lengths, with `lora`
    /// (what [`PassOptions::activation_budget`] is measured against).
    pub fn tape_bytes(&self, lora: Option<&LoraWeights>, seq_lens: &[usize]) -> usize {
        let rank = lora.map_or(0, |l| l.config.rank * l.config.targets.len());
        block_tape_bytes(&self.config, rank, seq_lens.iter().sum())
    }
}

/// Bytes of one block's tape for `n` rows of a model shaped `c`, with `lora_columns` LoRA
/// columns (rank × targets; 0 without an adapter): [`NativeModel::tape_bytes`] before a model
/// exists.
pub(crate) fn block_tape_bytes(c: &crate::weights::llama_config::LlamaConfig, lora_columns: usize, n: usize) -> usize {
    let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
    4 * n * (2 * d + 2 * qw + 2 * kw + 2 * ff + lora_columns)
}

impl<'a> Pass<'a> {
    fn new(model: &'a NativeModel, lora: Option<&'a LoraWeights>, seqs: &[&[u32]], options: PassOptions) -> Pass<'a> {
        let c = &model.config;
        let mut ranges = Vec::with_capacity(seqs.len());
        let mut positions = Vec::new();
        for s in seqs {
            let start = positions.len();
            positions.extend(0..s.len());
            ranges.push(start..positions.len());
        }
        let max_len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let scale = lora.map_or(0.0, |l| l.config.scale());
        let dropout = match (lora, options.dropout_seed) {
            (Some(l), Some(seed)) if l.config.dropout > 0.0 => Some((l.config.dropout, seed)),
            _ => None,
        };
        Pass {
            model,
            lora,
            file: model.file.bytes(),
            n: positions.len(),
            tokens: seqs.iter().flat_map(|s| s.iter().copied()).collect(),
            seqs: ranges,
            positions,
            rope: RopeTable::new(&model.rope_freqs, max_len, model.rope_layout),
            shape: AttentionShape {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                precision: model.precision.for_attention(),
            },
            scale,
            dropout,
            block_dropout: None,
            full: None,
        }
    }

    /// Use full-parameter `weights` instead of the mapped ones.
    fn with_full(mut self, weights: &'a FullWeights) -> Pass<'a> {
        let c = &self.model.config;
        let proj = (0..self.model.blocks.len())
            .map(|l| {
                LoraTarget::ALL.map(|t| {
                    let (o, i) = t.shape(c);
                    f32_matrix(&format!("blk.{l}.{}", t.gguf_name()), o, i)
                })
            })
            .collect();
        self.full = Some(FullView { weights, proj, embed: f32_matrix("token_embd", c.vocab_size, c.hidden_size) });
        self
    }

    /// The training pass: forward keeping tapes (within the activation budget), loss, then
    /// every block backward with its gradients sent where `block_grads` (one per block) says.
    /// Returns the loss and the gradient at the embedding's output.
    fn forward_backward(
        &self,
        batch: &[Example],
        options: PassOptions,
        mut block_grads: Vec<BlockGrads<'_>>,
        head_grads: Option<HeadGrads<'_>>,
    ) -> (PassLoss, Vec<f32>) {
        let n_layers = self.model.blocks.len();
        let pool = &self.model.buffers;
        let mut x = self.embed();
        // Tapes are kept for the last blocks, as many as the budget allows; the blocks before
        // them keep only their input (`None` in `tapes`) and are recomputed.
        let mut tapes: Vec<Option<LayerTape>> = Vec::with_capacity(n_layers);
        let mut inputs: Vec<Option<Vec<f32>>> = Vec::with_capacity(n_layers);
        let n_checkpointed = self.checkpointed_blocks(options);
        for l in 0..n_layers {
            if l < n_checkpointed {
                inputs.push(Some(pool.take_copy(&x)));
                self.block_forward(l, &mut x, false);
                tapes.push(None);
            } else {
                inputs.push(None);
                tapes.push(self.block_forward(l, &mut x, true));
            }
        }
        let mut dx = pool.take_zeroed(x.len());
        let loss = self.loss(&x, batch, Some(dx.as_mut_slice()), head_grads);
        pool.give(x);
        for l in (0..n_layers).rev() {
            let tape = match (tapes.pop().flatten(), inputs.pop().flatten()) {
                (Some(t), _) => t,
                (None, Some(mut x)) => {
                    let tape = self.block_forward(l, &mut x, true).expect("tape requested");
                    pool.give(x);
                    tape
                }
                (None, None) => unreachable!("every block keeps its tape or its input"),
            };
            let dx_in = self.block_backward(l, &tape, &dx, block_grads.pop().expect("one gradient slot per block"));
            tape.recycle(pool);
            pool.give(std::mem::replace(&mut dx, dx_in));
        }
        (loss, dx)
    }

    /// Weight matrix `t` of block `l`, the bytes it reads, and its panels when the model keeps
    /// the mapped weights packed (never for the trainable weights of full-parameter training).
    fn proj(&self, l: usize, t: LoraTarget) -> (&WeightMatrix, &[u8], Option<&[u16]>) {
        match &self.full {
            Some(f) => (&f.proj[l][t.index()], as_bytes(&f.weights.blocks[l].proj[t.index()]), None),
            None => (self.model.blocks[l].weight(t), self.file, self.model.packed.as_ref().map(|p| p.proj(l, t))),
        }
    }

    /// The two norm weights of block `l`.
    fn norms(&self, l: usize) -> (&[f32], &[f32]) {
        match &self.full {
            Some(f) => (&f.weights.blocks[l].attn_norm, &f.weights.blocks[l].ffn_norm),
            None => (&self.model.blocks[l].attn_norm, &self.model.blocks[l].ffn_norm),
        }
    }

    /// How many of the first blocks recompute their forward in the backward pass.
    fn checkpointed_blocks(&self, options: PassOptions) -> usize {
        let n_layers = self.model.blocks.len();
        if options.checkpointing {
            return n_layers;
        }
        let Some(budget) = options.activation_budget else { return 0 };
        let lens: Vec<usize> = self.seqs.iter().map(|s| s.len()).collect();
        let per_block = self.model.tape_bytes(self.lora, &lens).max(1);
        n_layers - (budget / per_block).min(n_layers)
    }

    /// The residual stream after every block (no tapes): inference and scoring.
    fn forward(&self) -> Vec<f32> {
        let mut x = self.embed();
        for l in 0..self.model.blocks.len() {
            self.block_forward(l, &mut x, false);
        }
        x
    }

    fn embed(&self) -> Vec<f32> {
        // embedding_forward writes every row.
        let mut x = self.model.buffers.take_for_overwrite(self.n * self.model.config.hidden_size);
        match &self.full {
            Some(f) => embedding_forward(&f.embed, as_bytes(&f.weights.embed), &self.tokens, &mut x),
            None => embedding_forward(&self.model.embed, self.file, &self.tokens, &mut x),
        }
        x
    }

    fn head(&self) -> Head<'_> {
        let m = self.model;
        let eps = m.config.rms_norm_eps;
        match &self.full {
            Some(f) => {
                let head = f.weights.lm_head.as_deref().unwrap_or(&f.weights.embed);
                Head {
                    norm: &f.weights.final_norm,
                    eps,
                    lm_head: &f.embed,
                    file: as_bytes(head),
                    packed: None,
                    precision: m.precision,
                    buffers: &m.buffers,
                }
            }
            None => Head {
                norm: &m.final_norm,
                eps,
                lm_head: &m.lm_head,
                file: self.file,
                packed: m.packed.as_ref().map(|p| p.lm_head()),
                precision: m.precision,
                buffers: &m.buffers,
            },
        }
    }

    /// Summed NLL of the batch's targets from the final residual stream `x`; with `dx`, its
    /// gradient with respect to `x` is added into it.
    fn loss(&self, x: &[f32], batch: &[Example], dx: Option<&mut [f32]>, grads: Option<HeadGrads<'_>>) -> PassLoss {
        // Row i of x predicts token i+1 of its sequence.
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for (e, s) in batch.iter().zip(&self.seqs) {
            for t in 1..e.tokens.len() {
                if e.targets[t] {
                    rows.push(s.start + t - 1);
                    labels.push(e.tokens[t] as usize);
                }
            }
        }
        if rows.is_empty() {
            return PassLoss::default();
        }
        PassLoss { nll_sum: self.head().loss(x, &rows, &labels, dx, grads), n_targets: rows.len() }
    }

    /// The residual dropout mask of branch `site` (0 attention, 1 MLP) of block `l`.
    fn residual_mask(&self, l: usize, site: usize) -> Option<Dropout> {
        self.block_dropout.and_then(|(d, seed)| d.residual_mask(seed, l, site))
    }

    /// The attention dropout mask of block `l`.
    fn attention_mask(&self, l: usize) -> Option<Dropout> {
        self.block_dropout.and_then(|(d, seed)| d.attention_mask(seed, l))
    }

    /// Projection `t` of block `l`, with its LoRA pair and this pass's dropout for it.
    fn linear(&self, l: usize, t: LoraTarget) -> Linear<'_> {
        let pair = self.lora.and_then(|w| w.pair(l, t));
        let dropout = self.dropout.map(|(prob, seed)| (prob, seed ^ ((l as u64) << 32) ^ ((t.index() as u64 + 1) << 48)));
        let (w, file, packed) = self.proj(l, t);
        Linear { w, file, packed, precision: self.model.precision, lora: pair, scale: self.scale, dropout }
    }

    /// One block forward, updating the residual stream `x` in place; with `keep`, returns
    /// what the backward pass needs. Every buffer comes from the model's pool, and what the
    /// tape does not keep goes back to it; each is overwritten whole by its producer
    /// (products, norms, RoPE'd projections, attention, SwiGLU) before it is read.
    fn block_forward(&self, l: usize, x: &mut [f32], keep: bool) -> Option<LayerTape> {
        let c = &self.model.config;
        let pool = &self.model.buffers;
        let (attn_norm, ffn_norm) = self.norms(l);
        let n = self.n;
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let x_in = if keep { pool.take_copy(x) } else { Vec::new() };
        let mut h = pool.take_for_overwrite(n * d);
        rms_norm(x, attn_norm, c.rms_norm_eps, &mut h);
        let (mut q, mut k, mut v) = (pool.take_for_overwrite(n * qw), pool.take_for_overwrite(n * kw), pool.take_for_overwrite(n * kw));
        let (lq, lk, lv) = (self.linear(l, LoraTarget::Q), self.linear(l, LoraTarget::K), self.linear(l, LoraTarget::V));
        let [tq, tk, tv] = Linear::forward_many([&lq, &lk, &lv], &h, n, [&mut q, &mut k, &mut v]);
        self.rope.apply(&mut q, c.n_heads, &self.positions, false);
        self.rope.apply(&mut k, c.n_kv_heads, &self.positions, false);
        let mut att = pool.take_for_overwrite(n * qw);
        causal_attention_with(&q, &k, &v, &self.seqs, self.shape, self.attention_mask(l).as_ref(), &mut att);
        let mut proj = pool.take_for_overwrite(n * d);
        let to = self.linear(l, LoraTarget::O).forward(&att, n, &mut proj);
        if let Some(m) = self.residual_mask(l, 0) {
            m.apply(&mut proj, 0);
        }
        add_assign(x, &proj);
        let x_mid = if keep { pool.take_copy(x) } else { Vec::new() };
        rms_norm(x, ffn_norm, c.rms_norm_eps, &mut h);
        let (mut gate, mut up, mut act) =
            (pool.take_for_overwrite(n * ff), pool.take_for_overwrite(n * ff), pool.take_for_overwrite(n * ff));
        let (lg, lu) = (self.linear(l, LoraTarget::Gate), self.linear(l, LoraTarget::Up));
        let [tg, tu] = Linear::forward_many([&lg, &lu], &h, n, [&mut gate, &mut up]);
        swiglu(&gate, &up, &mut act);
        let td = self.linear(l, LoraTarget::Down).forward(&act, n, &mut proj);
        if let Some(m) = self.residual_mask(l, 1) {
            m.apply(&mut proj, 0);
        }
        add_assign(x, &proj);
        for b in [h, proj, act] {
            pool.give(b);
        }
        if !keep {
            for b in [q, k, v, att, gate, up] {
                pool.give(b);
            }
            return None;
        }
        Some(LayerTape { x_in, q, k, v, att, x_mid, gate, up, branches: [tq, tk, tv, to, tg, tu, td] })
    }

    /// One block backward: from the gradient at the block's output, the gradient at its input;
    /// the weights' gradients added where `g` says.
    fn block_backward(&self, l: usize, t: &LayerTape, dy: &[f32], mut g: BlockGrads<'_>) -> Vec<f32> {
        let c = &self.model.config;
        let (attn_norm, ffn_norm) = self.norms(l);
        let eps = c.rms_norm_eps;
        let n = self.n;
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let br = |tg: LoraTarget| t.branches[tg.index()].as_ref();
        use LoraTarget::*;

        // MLP: x_out = x_mid + drop(down(silu(gate) * up)), gate/up from h2 = norm(x_mid).
        let pool = &self.model.buffers;
        let masked = |m: Option<Dropout>, g: &[f32]| {
            m.map(|m| {
                let mut g = pool.take_copy(g);
                m.apply(&mut g, 0);
                g
            })
        };
        let mut act = pool.take_for_overwrite(n * ff);
        swiglu(&t.gate, &t.up, &mut act);
        // Every buffer below is overwritten whole by its first product (or copy).
        let mut d_act = pool.take_for_overwrite(n * ff);
        let (lg, dw) = g.target(Down);
        let d_down = masked(self.residual_mask(l, 1), dy);
        self.linear(l, Down).backward(&act, n, br(Down), d_down.as_deref().unwrap_or(dy), &mut d_act, lg, dw);
        pool.give(act);
        d_down.into_iter().for_each(|b| pool.give(b));
        let (mut d_gate, mut d_up) = (pool.take_for_overwrite(n * ff), pool.take_for_overwrite(n * ff));
        swiglu_backward(&t.gate, &t.up, &d_act, &mut d_gate, &mut d_up);
        pool.give(d_act);
        let mut h = pool.take_for_overwrite(n * d);
        rms_norm(&t.x_mid, ffn_norm, eps, &mut h);
        let mut dh = pool.take_for_overwrite(n * d);
        let (l_gate, l_up) = (self.linear(l, Gate), self.linear(l, Up));
        g.backward_many([&l_gate, &l_up], [Gate, Up], &h, n, [br(Gate), br(Up)], [&d_gate, &d_up], &mut dh);
        pool.give(d_gate);
        pool.give(d_up);
        let mut dx_mid = pool.take_copy(dy);
        rms_norm_backward(&t.x_mid, ffn_norm, eps, &dh, &mut dx_mid);
        if let BlockGrads::Full(b) = &mut g {
            rms_norm_weight_grad(&t.x_mid, eps, &dh, &mut b.ffn_norm);
        }

        // Attention: x_mid = x_in + drop(o(attn(rope(q), rope(k), v))), q/k/v from h1 = norm(x_in).
        let mut d_att = pool.take_for_overwrite(n * qw);
        let (lg, dw) = g.target(O);
        let d_o = masked(self.residual_mask(l, 0), &dx_mid);
        self.linear(l, O).backward(&t.att, n, br(O), d_o.as_deref().unwrap_or(&dx_mid), &mut d_att, lg, dw);
        d_o.into_iter().for_each(|b| pool.give(b));
        // The attention backward overwrites dq, dk and dv.
        let (mut dq, mut dk, mut dv) = (pool.take_for_overwrite(n * qw), pool.take_for_overwrite(n * kw), pool.take_for_overwrite(n * kw));
        let mask = self.attention_mask(l);
        causal_attention_backward_with(&t.q, &t.k, &t.v, &d_att, &self.seqs, self.shape, mask.as_ref(), &mut dq, &mut dk, &mut dv);
        pool.give(d_att);
        // RoPE is a rotation: its transpose is the inverse rotation.
        self.rope.apply(&mut dq, c.n_heads, &self.positions, true);
        self.rope.apply(&mut dk, c.n_kv_heads, &self.positions, true);
        rms_norm(&t.x_in, attn_norm, eps, &mut h);
        let (lq, lk, lv) = (self.linear(l, Q), self.linear(l, K), self.linear(l, V));
        g.backward_many([&lq, &lk, &lv], [Q, K, V], &h, n, [br(Q), br(K), br(V)], [&dq, &dk, &dv], &mut dh);
        let mut dx = dx_mid;
        rms_norm_backward(&t.x_in, attn_norm, eps, &dh, &mut dx);
        if let BlockGrads::Full(b) = &mut g {
            rms_norm_weight_grad(&t.x_in, eps, &dh, &mut b.attn_norm);
        }
        for b in [h, dh, dq, dk, dv] {
            pool.give(b);
        }
        dx
    }
}

impl BlockGrads<'_> {
    /// The gradient slots of projection `t`: its LoRA pair's, or its weight's.
    fn target(&mut self, t: LoraTarget) -> (Option<&mut LoraPair>, Option<&mut [f32]>) {
        match self {
            BlockGrads::Lora(g) => (g[t.index()].as_mut(), None),
            BlockGrads::Full(b) => (None, Some(b.proj[t.index()].as_mut_slice())),
        }
    }

    /// The backward of several projections of one input `x` (a block's q, k and v, or its
    /// gate and up): `dx = Σ dy_i W_i` plus their trainable parts, overwriting `dx`. LoRA
    /// branches go as one group with the frozen products ([`Linear::backward_many`]); weights
    /// of full-parameter training get their gradients after the frozen products.
    #[allow(clippy::too_many_arguments)]
    fn backward_many<const N: usize>(
        &mut self,
        linears: [&Linear<'_>; N],
        targets: [LoraTarget; N],
        x: &[f32],
        n: usize,
        tapes: [Option<&BranchTape>; N],
        dys: [&[f32]; N],
        dx: &mut [f32],
    ) {
        match self {
            BlockGrads::Lora(g) => {
                let grads = g.get_disjoint_mut(targets.map(LoraTarget::index)).expect("distinct targets").map(Option::as_mut);
                Linear::backward_many(linears, x, n, tapes, dys, dx, grads);
            }
            BlockGrads::Full(_) => {
                Linear::frozen_backward_many(linears, dys, n, dx);
                for (((lin, t), tape), dy) in linears.iter().zip(targets).zip(tapes).zip(dys) {
                    let (lg, dw) = self.target(t);
                    lin.trainable_backward(x, n, tape, dy, dx, lg, dw);
                }
            }
        }
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096).zip(y.par_chunks(4096)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}
