//! The model's output: final RMSNorm, LM head (the token embedding when tied) and the summed
//! next-token NLL, forward and backward.
//!
//! Shapes: x, dx `[N × d]` (the final residual stream); `rows` picks the positions that are
//! scored; logits `[chunk × vocab]`. Rows go through in chunks of [`CHUNK`], so the logits
//! buffer stays a fixed size however many targets a batch has (49,152 logits per row for the
//! default model: a 1,024-target batch would otherwise need 200 MB for them alone).

use rayon::prelude::*;

use super::norm::{rms_norm, rms_norm_backward, rms_norm_weight_grad};
use crate::native::buffer_pool::BufferPool;
use crate::native::gemm::{sgemm_par, Out, View};
use crate::native::matmul::{matmul_w, matmul_wt_many, Precision, WeightMatrix, WtProduct};
use crate::native::vexp;

/// Rows per LM-head chunk.
const CHUNK: usize = 256;

/// Where the output layer's weight gradients go (full-parameter training).
pub(crate) struct HeadGrads<'a> {
    pub norm: &'a mut [f32],
    /// `vocab × d`: the LM head's, or the embedding's when they are tied.
    pub lm_head: &'a mut [f32],
}

/// The output layer's weights, borrowed for a pass.
pub(crate) struct Head<'a> {
    pub norm: &'a [f32],
    pub eps: f32,
    pub lm_head: &'a WeightMatrix,
    pub file: &'a [u8],
    /// The LM head packed for the bf16 kernel once at load, when the model keeps it so.
    pub packed: Option<&'a [u16]>,
    pub precision: Precision,
    /// Where the loss's logits chunk comes from and goes back to.
    pub buffers: &'a BufferPool,
}

impl Head<'_> {
    /// Normalised rows `rows` of x, `[rows.len() × d]`.
    fn normed(&self, x: &[f32], rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let d = self.norm.len();
        let picked: Vec<f32> = rows.iter().flat_map(|&r| x[r * d..(r + 1) * d].iter().copied()).collect();
        let mut normed = vec![0.0f32; picked.len()];
        rms_norm(&picked, self.norm, self.eps, &mut normed);
        (picked, normed)
    }

    /// `logits = normed · lm_headᵀ`, overwriting `logits`.
    fn project(&self, normed: &[f32], n: usize, logits: &mut [f32]) {
        let product = WtProduct { w: self.lm_head, file: self.file, y: logits, packed: self.packed, low_rank: None };
        matmul_wt_many(normed, n, &mut [product], self.precision);
    }

    /// Logits of rows `rows` of x, `[rows.len() × vocab]`, in a buffer from the pool (which
    /// [`NativeModel::recycle`](crate::native::NativeModel::recycle) gives back).
    pub fn logits(&self, x: &[f32], rows: &[usize]) -> Vec<f32> {
        let (_, normed) = self.normed(x, rows);
        // The product overwrites every element.
        let mut logits = self.buffers.take_for_overwrite(rows.len() * self.lm_head.rows);
        self.project(&normed, rows.len(), &mut logits);
        logits
    }

    /// Summed NLL of `labels[i]` at row `rows[i]` of x; with `dx`, the gradient of that sum
    /// with respect to x is added into it, and with `grads`, those of the norm and LM head.
    pub fn loss(&self, x: &[f32], rows: &[usize], labels: &[usize], mut dx: Option<&mut [f32]>, mut grads: Option<HeadGrads<'_>>) -> f64 {
        let (d, vocab) = (self.norm.len(), self.lm_head.rows);
        let mut nll = 0.0f64;
        // One chunk's logits, reused by every chunk (each overwrites it whole).
        let mut logits = self.buffers.take_for_overwrite(rows.len().min(CHUNK) * vocab);
        for (rows, labels) in rows.chunks(CHUNK).zip(labels.chunks(CHUNK)) {
            let (picked, normed) = self.normed(x, rows);
            logits.truncate(rows.len() * vocab);
            self.project(&normed, rows.len(), &mut logits);
            // Softmax in place (turning logits into the gradient softmax − onehot), NLL per row.
            nll += logits
                .par_chunks_mut(vocab)
                .zip(labels.par_iter())
                .map(|(row, &label)| {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let picked = row[label] - max;
                    let z = f64::from(vexp::exp_shifted_sum(row, max));
                    let inv = (1.0 / z) as f32;
                    row.iter_mut().for_each(|v| *v *= inv);
                    row[label] -= 1.0;
                    z.ln() - f64::from(picked)
                })
                .collect::<Vec<f64>>()
                .iter()
                .sum::<f64>();
            if let Some(dx) = dx.as_deref_mut() {
                let mut d_normed = self.buffers.take_for_overwrite(rows.len() * d);
                matmul_w(&logits, rows.len(), self.lm_head, self.file, &mut d_normed, self.precision, false);
                let mut d_picked = vec![0.0f32; rows.len() * d];
                rms_norm_backward(&picked, self.norm, self.eps, &d_normed, &mut d_picked);
                if let Some(g) = grads.as_mut() {
                    rms_norm_weight_grad(&picked, self.eps, &d_normed, g.norm);
                    // d lm_head += dlogitsᵀ · normed
                    // SAFETY: logits is rows × vocab, normed rows × d, lm_head vocab × d.
                    unsafe {
                        sgemm_par(
                            vocab,
                            d,
                            rows.len(),
                            View::transposed(&logits, vocab),
                            View::rows(&normed, d),
                            Out::rows(g.lm_head, d),
                            1.0,
                            true,
                        )
                    };
                }
                for (i, &r) in rows.iter().enumerate() {
                    dx[r * d..(r + 1) * d].iter_mut().zip(&d_picked[i * d..(i + 1) * d]).for_each(|(a, b)| *a += b);
                }
                self.buffers.give(d_normed);
            }
        }
        self.buffers.give(logits);
        nll
    }
}
