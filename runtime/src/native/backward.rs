//! Training pass of the native engine: the forward pass with LoRA branches, keeping what the
//! backward pass needs, then the gradients of the summed next-token loss with respect to every
//! LoRA matrix. Base weights are frozen and stay in their stored (possibly quantized) type;
//! gradients flow through them with the same tile-by-tile dequantization as the forward pass.
//!
//! Structure follows llm.c's `gpt2_forward`/`gpt2_backward`: one function per layer each way,
//! activations saved per layer (or only each layer's input, with the layer recomputed during
//! the backward pass when gradient checkpointing is on). Dropout masks come from a generator
//! seeded per (step seed, layer, target), so a recomputed layer draws the same masks.
//!
//! The loss is the *sum* of `-ln p(target)` over the target positions, and the gradients are
//! of that sum: callers (the trainer) divide by the total number of targets across
//! accumulated micro-batches, which keeps gradient accumulation exact.

use std::ops::Range;

use rayon::prelude::*;

use super::attention::{causal_attention_backward, causal_attention_with_probs, AttentionShape};
use super::lora::{LoraPair, LoraTarget, LoraWeights, SplitMix64};
use super::gemm::{sgemm_par, Out, View};
use super::matmul::{matmul_w_acc, matmul_wt};
use super::model::{Block, NativeModel};
use super::vexp;
use super::ops::{rms_norm, rms_norm_backward, swiglu, swiglu_backward, RopeTable};
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
    /// Keep only each layer's input and recompute the layer in the backward pass.
    pub checkpointing: bool,
}

/// Loss of one pass: the sum of target NLLs (nats) and how many targets it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PassLoss {
    pub nll_sum: f64,
    pub n_targets: usize,
}

/// Per-target intermediate of a LoRA branch: the dropout mask and the input after dropout
/// (when dropout is on) and `u = x̃ Aᵀ`, stored transposed (`rank × tokens`).
struct BranchTape {
    dropped: Option<(Vec<bool>, Vec<f32>)>,
    u: Vec<f32>,
}

/// What one layer's backward pass needs.
struct LayerTape {
    x_in: Vec<f32>,
    h1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Vec<Vec<f32>>,
    att: Vec<f32>,
    x_mid: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    branches: [Option<BranchTape>; 7],
}

/// Shared state of one pass.
struct Pass<'a> {
    model: &'a NativeModel,
    lora: Option<&'a LoraWeights>,
    file: &'a [u8],
    n: usize,
    seqs: Vec<Range<usize>>,
    positions: Vec<usize>,
    rope: RopeTable,
    shape: AttentionShape,
    scale: f32,
    dropout: Option<(f32, u64)>,
}

impl NativeModel {
    /// Loss of `batch` under the base model plus `lora` (None = base only), without gradients.
    pub fn loss(&self, lora: Option<&LoraWeights>, batch: &[Example]) -> Result<PassLoss> {
        self.check_batch(lora, batch)?;
        Ok(self.pool.install(|| {
            let pass = Pass::new(self, lora, batch, PassOptions::default());
            let mut x = pass.embed(batch);
            for l in 0..self.blocks.len() {
                pass.layer_forward(l, &mut x, false);
            }
            pass.head(&x, batch, None).0
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
            let pass = Pass::new(self, Some(lora), batch, options);
            let mut x = pass.embed(batch);
            let mut tapes = Vec::with_capacity(self.blocks.len());
            let mut inputs = Vec::with_capacity(self.blocks.len());
            for l in 0..self.blocks.len() {
                if options.checkpointing {
                    inputs.push(x.clone());
                    pass.layer_forward(l, &mut x, false);
                } else {
                    tapes.push(pass.layer_forward(l, &mut x, true).expect("tape requested"));
                }
            }
            let mut dx = vec![0.0f32; x.len()];
            let loss = pass.head(&x, batch, Some(dx.as_mut_slice())).0;
            for l in (0..self.blocks.len()).rev() {
                let tape = if options.checkpointing {
                    let mut x = inputs.pop().expect("one input per layer");
                    pass.layer_forward(l, &mut x, true).expect("tape requested")
                } else {
                    tapes.pop().expect("one tape per layer")
                };
                dx = pass.layer_backward(l, &tape, &dx, &mut grads.layers[l]);
            }
            loss
        }))
    }

    /// Logits of positions `from..tokens.len()` of one sequence under the base model plus
    /// `lora` (None = base only): inference with an in-memory adapter.
    pub fn logits_with_lora(&self, lora: Option<&LoraWeights>, tokens: &[u32], from: usize) -> Result<super::model::Logits> {
        if lora.is_none() {
            return self.logits(tokens, from);
        }
        let example = Example { tokens: tokens.to_vec(), targets: vec![false; tokens.len()] };
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt { what: "token sequence" });
        }
        if from > tokens.len() {
            return Err(Error::invalid("from", format!("must be at most the sequence length {}, got {from}", tokens.len())));
        }
        let n_vocab = self.config.vocab_size;
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::invalid("tokens", format!("token id {bad} is outside the vocabulary (0..{n_vocab})")));
        }
        lora.map(|l| l.check_fits(&self.config)).transpose()?;
        let batch = [example];
        Ok(self.pool.install(|| {
            let pass = Pass::new(self, lora, &batch, PassOptions::default());
            let mut x = pass.embed(&batch);
            for l in 0..self.blocks.len() {
                pass.layer_forward(l, &mut x, false);
            }
            let c = &self.config;
            let d = c.hidden_size;
            let rows = tokens.len() - from;
            let mut normed = vec![0.0f32; rows * d];
            rms_norm(&x[from * d..], &self.final_norm, c.rms_norm_eps, &mut normed);
            let mut logits = vec![0.0f32; rows * c.vocab_size];
            matmul_wt(&normed, rows, &self.lm_head, pass.file, &mut logits, self.precision);
            super::model::Logits { n_vocab: c.vocab_size, data: logits }
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
                return Err(Error::invalid("batch", format!("example {i}: {} target flags for {} tokens", e.targets.len(), e.tokens.len())));
            }
            if let Some(bad) = e.tokens.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(Error::invalid("batch", format!("example {i}: token id {bad} is outside the vocabulary (0..{n_vocab})")));
            }
        }
        Ok(())
    }
}

impl<'a> Pass<'a> {
    fn new(model: &'a NativeModel, lora: Option<&'a LoraWeights>, batch: &[Example], options: PassOptions) -> Pass<'a> {
        let c = &model.config;
        let mut seqs = Vec::with_capacity(batch.len());
        let mut positions = Vec::new();
        for e in batch {
            let start = positions.len();
            positions.extend(0..e.tokens.len());
            seqs.push(start..positions.len());
        }
        let max_len = batch.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
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
            seqs,
            positions,
            rope: RopeTable::new(&model.rope_freqs, max_len, model.rope_layout),
            shape: AttentionShape { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim },
            scale,
            dropout,
        }
    }

    fn embed(&self, batch: &[Example]) -> Vec<f32> {
        let d = self.model.config.hidden_size;
        let tokens: Vec<u32> = batch.iter().flat_map(|e| e.tokens.iter().copied()).collect();
        let mut x = vec![0.0f32; self.n * d];
        x.par_chunks_mut(d).zip(tokens.par_iter()).for_each(|(row, &t)| self.model.embed.dequantize_row_into(self.file, t as usize, row));
        x
    }

    fn pair(&self, l: usize, t: LoraTarget) -> Option<&'a LoraPair> {
        self.lora.and_then(|w| w.pair(l, t))
    }

    /// `y = x Wᵀ (+ s · (x̃ Aᵀ) Bᵀ)`, returning the branch's tape when adapted.
    fn linear(&self, l: usize, t: LoraTarget, x: &[f32], y: &mut [f32]) -> Option<BranchTape> {
        let block: &Block = &self.model.blocks[l];
        matmul_wt(x, self.n, block.weight(t), self.file, y, self.model.precision);
        let p = self.pair(l, t)?;
        let dropped = self.dropout.map(|(prob, seed)| {
            let mut rng = SplitMix64(seed ^ ((l as u64) << 32) ^ ((t.index() as u64 + 1) << 48));
            let keep = 1.0 / (1.0 - prob);
            let mask: Vec<bool> = x.iter().map(|_| rng.next_f32() >= prob).collect();
            let xd = x.iter().zip(&mask).map(|(&v, &m)| if m { v * keep } else { 0.0 }).collect::<Vec<f32>>();
            (mask, xd)
        });
        let xd = dropped.as_ref().map_or(x, |(_, xd)| xd.as_slice());
        let (n, r, (n_in, n_out)) = (self.n, p.rank, (p.n_in, p.n_out));
        // u is kept transposed (r × n): the rank is small, so the token dimension is the one
        // wide enough for the kernel's panels.
        let mut u = vec![0.0f32; r * n];
        // SAFETY (both): uᵀ = A (r × in) · x̃ᵀ (x̃ is n × in); y += s · u · Bᵀ (B is out × r).
        // Every view addresses its operand's asserted shape; y and u are written by these
        // products alone.
        unsafe {
            sgemm_par(r, n, n_in, View::rows(&p.a, n_in), View::transposed(xd, n_in), Out::rows(&mut u, n), 1.0, false);
            sgemm_par(n, n_out, r, View::transposed(&u, n), View::transposed(&p.b, r), Out::rows(y, n_out), self.scale, true);
        }
        Some(BranchTape { dropped, u })
    }

    /// Gradient through `y = x Wᵀ + s·B A x̃`: `dx += dy W (+ branch)`, and the branch's A and B
    /// gradients added into `g`.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(&self, l: usize, t: LoraTarget, x: &[f32], tape: Option<&BranchTape>, dy: &[f32], dx: &mut [f32], g: &mut [Option<LoraPair>; 7]) {
        let block: &Block = &self.model.blocks[l];
        matmul_w_acc(dy, self.n, block.weight(t), self.file, dx, self.model.precision);
        let (Some(p), Some(tape)) = (self.pair(l, t), tape) else { return };
        let gp = g[t.index()].as_mut().expect("gradient shapes match the adapter");
        let (n, r, s) = (self.n, p.rank, self.scale);
        let xd = tape.dropped.as_ref().map_or(x, |(_, xd)| xd.as_slice());
        let (n_in, n_out) = (p.n_in, p.n_out);
        // du is kept transposed (r × n), as u is.
        let mut du = vec![0.0f32; r * n];
        let u = View::rows(&tape.u, n);
        // SAFETY: shapes as documented on each product (dy: n × out, x̃: n × in, uᵀ and duᵀ:
        // r × n, A: r × in, B: out × r); each output is written by its product alone.
        unsafe {
            // dBᵀ += s · uᵀ · dy  (dB is out × r)
            sgemm_par(r, n_out, n, u, View::rows(dy, n_out), Out::transposed(&mut gp.b, r), s, true);
            // duᵀ = s · Bᵀ · dyᵀ
            sgemm_par(r, n, n_out, View::transposed(&p.b, r), View::transposed(dy, n_out), Out::rows(&mut du, n), s, false);
            // dA += duᵀ · x̃
            sgemm_par(r, n_in, n, View::rows(&du, n), View::rows(xd, n_in), Out::rows(&mut gp.a, n_in), 1.0, true);
        }
        let du_rows = View::transposed(&du, n);
        match &tape.dropped {
            // x̃ = x · mask / (1 − p): dx += (du · A) ∘ mask / (1 − p).
            Some((mask, _)) => {
                let mut dxd = vec![0.0f32; n * n_in];
                // SAFETY: dx̃ = du · A, n × in.
                unsafe { sgemm_par(n, n_in, r, du_rows, View::rows(&p.a, n_in), Out::rows(&mut dxd, n_in), 1.0, false) };
                let keep = 1.0 / (1.0 - self.dropout.map_or(0.0, |d| d.0));
                dx.par_iter_mut().zip(dxd.par_iter().zip(mask.par_iter())).for_each(|(d, (&g, &m))| {
                    if m {
                        *d += g * keep;
                    }
                });
            }
            // SAFETY: dx += du · A, n × in.
            None => unsafe { sgemm_par(n, n_in, r, du_rows, View::rows(&p.a, n_in), Out::rows(dx, n_in), 1.0, true) },
        }
    }

    /// One block forward, updating the residual stream `x` in place.
    fn layer_forward(&self, l: usize, x: &mut [f32], keep: bool) -> Option<LayerTape> {
        let c = &self.model.config;
        let b = &self.model.blocks[l];
        let n = self.n;
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let x_in = if keep { x.to_vec() } else { Vec::new() };
        let mut h1 = vec![0.0f32; n * d];
        rms_norm(x, &b.attn_norm, c.rms_norm_eps, &mut h1);
        let (mut q, mut k, mut v) = (vec![0.0f32; n * qw], vec![0.0f32; n * kw], vec![0.0f32; n * kw]);
        let tq = self.linear(l, LoraTarget::Q, &h1, &mut q);
        let tk = self.linear(l, LoraTarget::K, &h1, &mut k);
        let tv = self.linear(l, LoraTarget::V, &h1, &mut v);
        self.rope.apply(&mut q, c.n_heads, &self.positions, false);
        self.rope.apply(&mut k, c.n_kv_heads, &self.positions, false);
        let mut att = vec![0.0f32; n * qw];
        let probs = causal_attention_with_probs(&q, &k, &v, &self.seqs, self.shape, &mut att);
        let mut proj = vec![0.0f32; n * d];
        let to = self.linear(l, LoraTarget::O, &att, &mut proj);
        add_assign(x, &proj);
        let x_mid = if keep { x.to_vec() } else { Vec::new() };
        let mut h2 = vec![0.0f32; n * d];
        rms_norm(x, &b.ffn_norm, c.rms_norm_eps, &mut h2);
        let (mut gate, mut up, mut act) = (vec![0.0f32; n * ff], vec![0.0f32; n * ff], vec![0.0f32; n * ff]);
        let tg = self.linear(l, LoraTarget::Gate, &h2, &mut gate);
        let tu = self.linear(l, LoraTarget::Up, &h2, &mut up);
        swiglu(&gate, &up, &mut act);
        let td = self.linear(l, LoraTarget::Down, &act, &mut proj);
        add_assign(x, &proj);
        keep.then_some(LayerTape { x_in, h1, q, k, v, probs, att, x_mid, h2, gate, up, act, branches: [tq, tk, tv, to, tg, tu, td] })
    }

    /// One block backward: from the gradient at the block's output, the gradient at its input;
    /// LoRA gradients added into `g`.
    fn layer_backward(&self, l: usize, t: &LayerTape, dy: &[f32], g: &mut [Option<LoraPair>; 7]) -> Vec<f32> {
        let c = &self.model.config;
        let b = &self.model.blocks[l];
        let n = self.n;
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let br = |tg: LoraTarget| t.branches[tg.index()].as_ref();

        // MLP: x_out = x_mid + down(silu(gate) * up), gate/up from h2 = norm(x_mid).
        let mut d_act = vec![0.0f32; n * ff];
        self.linear_backward(l, LoraTarget::Down, &t.act, br(LoraTarget::Down), dy, &mut d_act, g);
        let (mut d_gate, mut d_up) = (vec![0.0f32; n * ff], vec![0.0f32; n * ff]);
        swiglu_backward(&t.gate, &t.up, &d_act, &mut d_gate, &mut d_up);
        drop(d_act);
        let mut dh2 = vec![0.0f32; n * d];
        self.linear_backward(l, LoraTarget::Gate, &t.h2, br(LoraTarget::Gate), &d_gate, &mut dh2, g);
        self.linear_backward(l, LoraTarget::Up, &t.h2, br(LoraTarget::Up), &d_up, &mut dh2, g);
        let mut dx_mid = dy.to_vec();
        rms_norm_backward(&t.x_mid, &b.ffn_norm, c.rms_norm_eps, &dh2, &mut dx_mid);

        // Attention: x_mid = x_in + o(attn(rope(q), rope(k), v)), q/k/v from h1 = norm(x_in).
        let mut d_att = vec![0.0f32; n * qw];
        self.linear_backward(l, LoraTarget::O, &t.att, br(LoraTarget::O), &dx_mid, &mut d_att, g);
        let (mut dq, mut dk, mut dv) = (vec![0.0f32; n * qw], vec![0.0f32; n * kw], vec![0.0f32; n * kw]);
        causal_attention_backward(&t.q, &t.k, &t.v, &t.probs, &d_att, &self.seqs, self.shape, &mut dq, &mut dk, &mut dv);
        // RoPE is a rotation: its transpose is the inverse rotation.
        self.rope.apply(&mut dq, c.n_heads, &self.positions, true);
        self.rope.apply(&mut dk, c.n_kv_heads, &self.positions, true);
        let mut dh1 = vec![0.0f32; n * d];
        self.linear_backward(l, LoraTarget::Q, &t.h1, br(LoraTarget::Q), &dq, &mut dh1, g);
        self.linear_backward(l, LoraTarget::K, &t.h1, br(LoraTarget::K), &dk, &mut dh1, g);
        self.linear_backward(l, LoraTarget::V, &t.h1, br(LoraTarget::V), &dv, &mut dh1, g);
        let mut dx = dx_mid;
        rms_norm_backward(&t.x_in, &b.attn_norm, c.rms_norm_eps, &dh1, &mut dx);
        dx
    }

    /// Final norm, LM head and summed NLL over the target rows; with `dx`, the gradient of
    /// that sum with respect to the final residual stream is written into it.
    fn head(&self, x: &[f32], batch: &[Example], dx: Option<&mut [f32]>) -> (PassLoss, ()) {
        let c = &self.model.config;
        let d = c.hidden_size;
        let vocab = c.vocab_size;
        // Row i of x predicts token i+1 of its sequence.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (e, s) in batch.iter().zip(&self.seqs) {
            for t in 1..e.tokens.len() {
                if e.targets[t] {
                    rows.push(s.start + t - 1);
                    labels.push(e.tokens[t] as usize);
                }
            }
        }
        if rows.is_empty() {
            return (PassLoss::default(), ());
        }
        let picked: Vec<f32> = rows.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
        let mut normed = vec![0.0f32; picked.len()];
        rms_norm(&picked, &self.model.final_norm, c.rms_norm_eps, &mut normed);
        let mut logits = vec![0.0f32; rows.len() * vocab];
        matmul_wt(&normed, rows.len(), &self.model.lm_head, self.file, &mut logits, self.model.precision);
        // Softmax in place (turning logits into the gradient softmax − onehot), NLL per row.
        let nll: f64 = logits
            .par_chunks_mut(vocab)
            .zip(labels.par_iter())
            .map(|(row, &label)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let picked = row[label] - max;
                let z = f64::from(vexp::exp_shifted_sum(row, max));
                let nll = z.ln() - f64::from(picked);
                let inv = (1.0 / z) as f32;
                row.iter_mut().for_each(|v| *v *= inv);
                row[label] -= 1.0;
                nll
            })
            .sum();
        let loss = PassLoss { nll_sum: nll, n_targets: rows.len() };
        if let Some(dx) = dx {
            let mut d_normed = vec![0.0f32; rows.len() * d];
            matmul_w_acc(&logits, rows.len(), &self.model.lm_head, self.file, &mut d_normed, self.model.precision);
            let mut d_picked = vec![0.0f32; rows.len() * d];
            rms_norm_backward(&picked, &self.model.final_norm, c.rms_norm_eps, &d_normed, &mut d_picked);
            for (i, &r) in rows.iter().enumerate() {
                dx[r * d..(r + 1) * d].iter_mut().zip(&d_picked[i * d..(i + 1) * d]).for_each(|(a, b)| *a += b);
            }
        }
        (loss, ())
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096).zip(y.par_chunks(4096)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
}
