//! Per-shape throughput of the native engine's products on a loaded model: the numbers behind
//! "what fraction of the FMA peak does each product reach" (`lamina bench-native` prints them).
//!
//! For every distinct weight shape of the model (the seven block projections and the LM
//! head), with `n` rows of activations: the forward product `x · Wᵀ` and the backward product
//! through the frozen weight `dy · W`, each dequantizing its tiles as in a real pass; the
//! rank-8 LoRA branch of each projection shape alone (its two forward and four backward
//! products); then causal attention of `n` tokens as 4 sequences (all heads, forward and backward). Timings are
//! medians over `reps` runs after one warm-up, on the model's own thread pool.

use std::time::Instant;

use super::layers::attention::{causal_attention, causal_attention_backward, uses_bf16, AttentionShape};
use super::layers::linear::Linear;
use super::lora::{LoraPair, LoraTarget};
use super::matmul::{matmul_w, matmul_wt, WeightMatrix};
use super::model::NativeModel;

/// One measured product.
#[derive(Debug, Clone)]
pub struct ProductTiming {
    /// What was multiplied: `attn_q fwd`, `ffn_down bwd`, `attention fwd`, ...
    pub name: String,
    /// Output rows × output columns × depth, and the element type of the weight (or "f32").
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub weight_type: String,
    pub seconds: f64,
    pub flops: f64,
}

impl ProductTiming {
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps.max(1))
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Deterministic activations in [-1, 1).
fn activations(len: usize, salt: u64) -> Vec<f32> {
    let mut rng = super::lora::SplitMix64(salt);
    (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

impl NativeModel {
    /// Time every product shape of this model with `n` activation rows (see the module docs).
    pub fn benchmark_products(&self, n: usize, reps: usize) -> Vec<ProductTiming> {
        let n = n.max(1);
        self.pool.install(|| {
            let file = self.file.bytes();
            let mut out = Vec::new();
            let mut seen: Vec<(usize, usize, String)> = Vec::new();
            let mut weights: Vec<(&str, &WeightMatrix)> = Vec::new();
            if let Some(b) = self.blocks.first() {
                weights.extend([
                    ("attn_q", &b.wq),
                    ("attn_k", &b.wk),
                    ("attn_v", &b.wv),
                    ("attn_output", &b.wo),
                    ("ffn_gate", &b.w_gate),
                    ("ffn_up", &b.w_up),
                    ("ffn_down", &b.w_down),
                ]);
            }
            weights.push(("output", &self.lm_head));
            for (name, w) in weights {
                let key = (w.rows, w.cols, w.ty.to_string());
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let flops = 2.0 * (n * w.rows * w.cols) as f64;
                let x = activations(n * w.cols, 1);
                let mut y = vec![0.0f32; n * w.rows];
                let t = time(reps, || matmul_wt(&x, n, w, file, &mut y, self.precision));
                out.push(ProductTiming {
                    name: format!("{name} fwd"),
                    m: n,
                    n: w.rows,
                    k: w.cols,
                    weight_type: w.ty.to_string(),
                    seconds: t,
                    flops,
                });
                let dy = activations(n * w.rows, 2);
                let mut dx = vec![0.0f32; n * w.cols];
                let t = time(reps, || matmul_w(&dy, n, w, file, &mut dx, self.precision, false));
                out.push(ProductTiming {
                    name: format!("{name} bwd"),
                    m: n,
                    n: w.cols,
                    k: w.rows,
                    weight_type: w.ty.to_string(),
                    seconds: t,
                    flops,
                });
            }
            // The LoRA branch (rank 8) of each distinct projection shape, alone.
            let rank = 8;
            let mut seen_lora: Vec<(usize, usize)> = Vec::new();
            for t in LoraTarget::ALL {
                let (n_out, n_in) = t.shape(&self.config);
                if seen_lora.contains(&(n_out, n_in)) {
                    continue;
                }
                seen_lora.push((n_out, n_in));
                let pair = LoraPair { n_in, n_out, rank, a: activations(rank * n_in, 6), b: activations(n_out * rank, 7) };
                let mut grad = LoraPair { a: vec![0.0; rank * n_in], b: vec![0.0; n_out * rank], ..pair.clone() };
                let w = self.blocks[0].weight(t);
                let linear = Linear { w, file, packed: None, precision: self.precision, lora: Some(&pair), scale: 2.0, dropout: None };
                let x = activations(n * n_in, 8);
                let mut y = vec![0.0f32; n * n_out];
                let mut tape = None;
                let t_fwd = time(reps, || tape = linear.branch_forward(&x, n, &mut y));
                let flops = 2.0 * (n * rank * (n_in + n_out)) as f64;
                out.push(ProductTiming {
                    name: format!("lora {} fwd", t.hf_name()),
                    m: n,
                    n: n_out,
                    k: n_in,
                    weight_type: format!("r{rank}"),
                    seconds: t_fwd,
                    flops,
                });
                let dy = activations(n * n_out, 9);
                let mut dx = vec![0.0f32; n * n_in];
                let t_bwd = time(reps, || linear.branch_backward(&x, n, tape.as_ref(), &dy, &mut dx, Some(&mut grad)));
                out.push(ProductTiming {
                    name: format!("lora {} bwd", t.hf_name()),
                    m: n,
                    n: n_out,
                    k: n_in,
                    weight_type: format!("r{rank}"),
                    seconds: t_bwd,
                    flops: 2.0 * flops,
                });
            }
            let c = &self.config;
            let shape = AttentionShape {
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                precision: self.precision.for_attention(),
            };
            let (qw, kw) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
            let (q, k, v) = (activations(n * qw, 3), activations(n * kw, 4), activations(n * kw, 5));
            // The training batch's shape: 4 sequences of n / 4 tokens.
            let len = (n / 4).max(1);
            let seqs: Vec<_> = (0..n / len).map(|s| s * len..(s + 1) * len).collect();
            // QKᵀ and PV over the causal triangle: 2 products × 2 FLOPs × d per (i, j ≤ i) pair.
            let flops = seqs.len() as f64 * 2.0 * 2.0 * (c.n_heads * c.head_dim) as f64 * (len * (len + 1) / 2) as f64;
            let mut att = vec![0.0f32; n * qw];
            let attention_type = if uses_bf16(&shape) { "bf16" } else { "f32" };
            let t = time(reps, || causal_attention(&q, &k, &v, &seqs, shape, &mut att));
            out.push(ProductTiming {
                name: format!("attention fwd x{}", seqs.len()),
                m: len,
                n: len,
                k: c.head_dim,
                weight_type: attention_type.into(),
                seconds: t,
                flops,
            });
            let (mut dq, mut dk, mut dv) = (vec![0.0f32; n * qw], vec![0.0f32; n * kw], vec![0.0f32; n * kw]);
            let t = time(reps, || causal_attention_backward(&q, &k, &v, &att, &seqs, shape, &mut dq, &mut dk, &mut dv));
            // Four products of the forward's size, plus QKᵀ again (the probabilities are
            // recomputed, not kept): 2.5 times the forward's FLOPs.
            out.push(ProductTiming {
                name: format!("attention bwd x{}", seqs.len()),
                m: len,
                n: len,
                k: c.head_dim,
                weight_type: attention_type.into(),
                seconds: t,
                flops: 2.5 * flops,
            });
            out
        })
    }
}
