//! Causal grouped-query self-attention over whole sequences (no KV cache: the native engine
//! scores and trains on complete sequences), forward and backward.
//!
//! Shapes: q, dq, out `[N × n_heads·d]`; k, v, dk, dv `[N × n_kv·d]`; the rows of each
//! sequence are a range of 0..N; probabilities `[len × len]` per (sequence, head), never kept:
//! the backward pass recomputes them from q and k, as FlashAttention's does.
//!
//! For each sequence and query head h (sharing key/value head `h / (n_heads / n_kv_heads)`):
//! `S = Q_h K_hᵀ / sqrt(d)`, masked to `j <= i`, softmax per row, `O_h = P V_h`. The
//! products run through `gemm::sgemm` on strided views of the projection buffers (the score
//! products skip the blocks above the diagonal), or, when [`AttentionShape::precision`] is
//! bf16 and the CPU has AVX512-BF16, through the bf16 kernel (`attention_bf16.rs`, the same
//! steps); (sequence, head) pairs run in parallel, each
//! writing its own head's columns of the output (the backward adds the heads' key/value
//! gradients afterwards, in head order).
//!
//! Attention dropout (training only): the probabilities are multiplied by a [`Dropout`] mask
//! before they weight the values, `O_h = (P ∘ M) V_h`, with one mask per (sequence, head)
//! ([`head_dropout`]). The backward pass draws the same mask: `dV = (P ∘ M)ᵀ dO`, and the
//! gradient reaching the softmax is `dP ∘ M`.
//!
//! Why recompute rather than keep the probabilities: at 4 × 256 rows they are 28% of a
//! block's training tape (9.4 MB of 33 MB for the default model), so keeping them pushed
//! several whole blocks out of the activation budget and into a full recomputation. Redoing
//! `Q Kᵀ` and the softmax costs a sixth of the attention backward's FLOPs, and gives the same
//! bits as the forward's (the same code on the same inputs on one thread).

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::attention_bf16;
use super::dropout::Dropout;
use crate::native::gemm::{sgemm, Causal, Out, View};
use crate::native::matmul::{Precision, SharedMut};
use crate::native::vexp;

/// Attention geometry, and the precision of its products.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// `Bf16`: the products run on the bf16 path where the CPU has it (`attention_bf16.rs`),
    /// as the model's weight products do; anything else: f32.
    pub precision: Precision,
}

thread_local! {
    /// Scores, then probabilities (forward and backward), one `len × len` matrix.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// dP, then dS (backward).
    static SCORE_GRADS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[N × n_heads·d]` = causal attention of `q[N × n_heads·d]` over `k, v[N × n_kv·d]`,
/// independently within each of `seqs` (row ranges of the buffers that partition 0..N).
pub fn causal_attention(q: &[f32], k: &[f32], v: &[f32], seqs: &[Range<usize>], shape: AttentionShape, out: &mut [f32]) {
    causal_attention_with(q, k, v, seqs, shape, None, out);
}

/// [`causal_attention`] with `dropout` on the probabilities (None: none).
pub fn causal_attention_with(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seqs: &[Range<usize>],
    shape: AttentionShape,
    dropout: Option<&Dropout>,
    out: &mut [f32],
) {
    check_sizes(q, k, v, out, seqs, shape);
    let dst = SharedMut(out.as_mut_ptr());
    if attention_bf16::applies(&shape) {
        let (qb, kb) =
            (attention_bf16::converted(q, shape.n_heads * shape.head_dim), attention_bf16::converted(k, shape.n_kv_heads * shape.head_dim));
        tasks(seqs, shape.n_heads).into_par_iter().for_each(|(seq, h)| {
            SCORES.with(|cell| {
                let mut scores = cell.borrow_mut();
                let mask = dropout.map(|d| head_dropout(d, seq.start, h));
                let apply = |p: &mut [f32]| mask.iter().for_each(|m| drop_probabilities(p, seq.len(), m));
                // SAFETY: sizes checked, the path's CPU features checked by `applies`; this
                // (sequence, head) task owns its output block.
                unsafe { attention_bf16::attend(&qb, &kb, v, &seq, h, &shape, apply, dst, &mut scores) };
            });
        });
        return;
    }
    tasks(seqs, shape.n_heads).into_par_iter().for_each(|(seq, h)| {
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            let mask = dropout.map(|d| head_dropout(d, seq.start, h));
            // SAFETY: sizes checked; this (sequence, head) task owns its output block.
            unsafe { attend(q, k, v, &seq, h, shape, mask.as_ref(), dst, &mut scores) };
        });
    });
}

/// The mask of the probabilities of one (sequence, head) under `dropout`: element `i · len + j`
/// is query row `i`, key row `j` of the sequence of `len` rows that starts at row `seq_start`
/// of the batch.
pub fn head_dropout(dropout: &Dropout, seq_start: usize, head: usize) -> Dropout {
    dropout.fork(((seq_start as u64) << 16) | head as u64)
}

/// `P ∘ M` in place over the lower triangle of one `len × len` matrix (the rest is zero).
fn drop_probabilities(p: &mut [f32], len: usize, mask: &Dropout) {
    for (i, row) in p.chunks_exact_mut(len).enumerate() {
        for (j, v) in row[..=i].iter_mut().enumerate() {
            *v *= mask.scale((i * len + j) as u64);
        }
    }
}

/// Gradients of [`causal_attention`]: given `d_out` and the forward's inputs, write `dq`, `dk`
/// and `dv` (each overwritten). The probabilities are
/// recomputed per (sequence, head). [`causal_attention_backward_with`] is the backward of
/// [`causal_attention_with`].
///
/// Tasks run per (sequence, query head), as in the forward: a small model has few key/value
/// heads (3 here), too few tasks to keep every thread busy. Each task writes its head's
/// columns of `dq` and returns its contributions to its key/value head's `dk` and `dv`; those
/// are then added in head order, so the sums do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f32],
    seqs: &[Range<usize>],
    shape: AttentionShape,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    causal_attention_backward_with(q, k, v, d_out, seqs, shape, None, dq, dk, dv);
}

/// The backward of [`causal_attention_with`]: the same mask is drawn again.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward_with(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f32],
    seqs: &[Range<usize>],
    shape: AttentionShape,
    dropout: Option<&Dropout>,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    check_sizes(q, k, v, d_out, seqs, shape);
    let AttentionShape { n_heads, n_kv_heads, head_dim: d, .. } = shape;
    let (qw, kw) = (n_heads * d, n_kv_heads * d);
    assert!(dq.len() >= q.len() && dk.len() >= k.len() && dv.len() >= v.len(), "attention backward: gradient buffers too small");
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let dq_p = SharedMut(dq.as_mut_ptr());
    let bf16_inputs = attention_bf16::applies(&shape).then(|| {
        (
            attention_bf16::converted(q, qw),
            attention_bf16::converted(k, kw),
            attention_bf16::converted(v, kw),
            attention_bf16::converted(d_out, qw),
        )
    });
    // Per (sequence, head): its `len × d` parts of dK and dV.
    let parts: Vec<(Vec<f32>, Vec<f32>)> = tasks(seqs, n_heads)
        .into_par_iter()
        .map(|(seq, h)| {
            if let Some((qb, kb, vb, d_out_b)) = &bf16_inputs {
                let inputs = attention_bf16::BackwardInputs { q, k, d_out, qb, kb, vb, d_out_b };
                let mask = dropout.map(|m| head_dropout(m, seq.start, h));
                let apply = |p: &mut [f32]| mask.iter().for_each(|m| drop_probabilities(p, seq.len(), m));
                let (mut probs, mut dp) = (SCORES.with(|cell| cell.take()), SCORE_GRADS.with(|cell| cell.take()));
                let len = seq.len();
                // SAFETY: sizes checked by check_sizes, the CPU's features by `applies`; dq's
                // columns of head h are written by this task alone.
                let part = unsafe {
                    attention_bf16::backward_head(
                        &inputs,
                        &seq,
                        h,
                        &shape,
                        apply,
                        |p, g| causal_softmax_backward(p, g, len),
                        dq_p,
                        &mut probs,
                        &mut dp,
                    )
                };
                SCORE_GRADS.with(|cell| cell.replace(dp));
                SCORES.with(|cell| cell.replace(probs));
                return part;
            }
            let len = seq.len();
            let kv = h / group;
            let (mut dk_h, mut dv_h) = (vec![0.0f32; len * d], vec![0.0f32; len * d]);
            // P, then dP and dS, in this thread's buffers: fresh `len × len` allocations per
            // head would be mapped and zeroed by the kernel each time.
            let mut probs = SCORES.with(|cell| cell.take());
            // SAFETY: sizes checked by check_sizes.
            unsafe { probabilities(q, k, &seq, h, shape, &mut probs) };
            let mask = dropout.map(|m| head_dropout(m, seq.start, h));
            let mut scratch = SCORE_GRADS.with(|cell| cell.take());
            scratch.resize(len * len, 0.0);
            let dp = &mut scratch[..];
            let o_h = d_out.as_ptr().wrapping_add(seq.start * qw + h * d);
            // SAFETY (all products below): every view addresses rows `seq` of its buffer at
            // its head's columns, inside the checked sizes, or a task-local `len × len` /
            // `len × d` buffer. dq's columns of head h are written by this task alone.
            unsafe {
                let v_kv = v.as_ptr().add(seq.start * kw + kv * d);
                // dP = dO · Vᵀ, lower triangle only (P is zero above it): with dropout, the
                // gradient of P ∘ M, which the mask turns into P's.
                sgemm(
                    len,
                    len,
                    d,
                    View { ptr: o_h, rs: qw, cs: 1 },
                    View { ptr: v_kv, rs: 1, cs: kw },
                    Out::rows(dp, len),
                    1.0,
                    false,
                    Causal::Cols,
                );
            }
            if let Some(m) = &mask {
                drop_probabilities(dp, len, m);
            }
            causal_softmax_backward(&probs[..len * len], dp, len);
            // P is not needed any more: the values saw P ∘ M.
            if let Some(m) = &mask {
                drop_probabilities(&mut probs[..len * len], len, m);
            }
            let p = &probs[..];
            // SAFETY: as above.
            unsafe {
                // dV_h = Pᵀ · dO (Pᵀ is zero below the diagonal)
                sgemm(
                    len,
                    d,
                    len,
                    View::transposed(p, len),
                    View { ptr: o_h, rs: qw, cs: 1 },
                    Out::rows(&mut dv_h, d),
                    1.0,
                    true,
                    Causal::DepthFrom,
                );
                let k_kv = k.as_ptr().add(seq.start * kw + kv * d);
                let q_h = q.as_ptr().add(seq.start * qw + h * d);
                // dQ = scale · dS · K (dS is zero above the diagonal)
                let dq_h = Out { ptr: dq_p.at(seq.start * qw + h * d), rs: qw, cs: 1 };
                sgemm(len, d, len, View::rows(dp, len), View { ptr: k_kv, rs: kw, cs: 1 }, dq_h, scale, false, Causal::DepthTo);
                // dK_h = scale · dSᵀ · Q
                sgemm(
                    len,
                    d,
                    len,
                    View::transposed(dp, len),
                    View { ptr: q_h, rs: qw, cs: 1 },
                    Out::rows(&mut dk_h, d),
                    scale,
                    true,
                    Causal::DepthFrom,
                );
            }
            SCORE_GRADS.with(|cell| cell.replace(scratch));
            SCORES.with(|cell| cell.replace(probs));
            (dk_h, dv_h)
        })
        .collect();
    // dK, dV of each (sequence, key/value head) = the sum of its query heads' parts, in head
    // order.
    let (dk_p, dv_p) = (SharedMut(dk.as_mut_ptr()), SharedMut(dv.as_mut_ptr()));
    let sums: Vec<(usize, Range<usize>, usize)> =
        seqs.iter().enumerate().flat_map(|(si, s)| (0..n_kv_heads).map(move |kv| (si, s.clone(), kv))).collect();
    sums.into_par_iter().for_each(|(si, seq, kv)| {
        for h in kv * group..(kv + 1) * group {
            let (dk_h, dv_h) = &parts[si * n_heads + h];
            for (r, row) in seq.clone().enumerate() {
                // SAFETY: row `row`, columns kv*d..kv*d+d of dk and dv: inside the checked
                // sizes, and this (sequence, kv head) task's alone.
                let (dk_row, dv_row) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(dk_p.at(row * kw + kv * d), d),
                        std::slice::from_raw_parts_mut(dv_p.at(row * kw + kv * d), d),
                    )
                };
                if h == kv * group {
                    dk_row.copy_from_slice(&dk_h[r * d..(r + 1) * d]);
                    dv_row.copy_from_slice(&dv_h[r * d..(r + 1) * d]);
                } else {
                    dk_row.iter_mut().zip(&dk_h[r * d..(r + 1) * d]).for_each(|(a, b)| *a += b);
                    dv_row.iter_mut().zip(&dv_h[r * d..(r + 1) * d]).for_each(|(a, b)| *a += b);
                }
            }
        }
    });
}

/// Whether attention of `shape` runs on the bf16 path on this CPU (for reports).
pub fn uses_bf16(shape: &AttentionShape) -> bool {
    attention_bf16::applies(shape)
}

fn check_sizes(q: &[f32], k: &[f32], v: &[f32], out: &[f32], seqs: &[Range<usize>], shape: AttentionShape) {
    let (qw, kw) = (shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim);
    let n = seqs.iter().map(|r| r.end).max().unwrap_or(0);
    assert!(q.len() >= n * qw && k.len() >= n * kw && v.len() >= n * kw && out.len() >= n * qw, "attention: buffers too small");
    assert!(shape.n_kv_heads > 0 && shape.n_heads.is_multiple_of(shape.n_kv_heads), "attention: heads must be a multiple of kv heads");
}

fn tasks(seqs: &[Range<usize>], n_heads: usize) -> Vec<(Range<usize>, usize)> {
    seqs.iter().flat_map(|s| (0..n_heads).map(move |h| (s.clone(), h))).collect()
}

/// One (sequence, head): probabilities (times `mask`, when given) into `scores` (len × len),
/// output into its block of `dst`.
///
/// # Safety
/// Buffer sizes as checked by `check_sizes`; no one else writes the block of `dst` at rows
/// `seq`, columns of head `h`.
#[allow(clippy::too_many_arguments)]
unsafe fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seq: &Range<usize>,
    h: usize,
    shape: AttentionShape,
    mask: Option<&Dropout>,
    dst: SharedMut,
    scores: &mut Vec<f32>,
) {
    let AttentionShape { n_heads, n_kv_heads, head_dim: d, .. } = shape;
    let (qw, kw) = (n_heads * d, n_kv_heads * d);
    let kv = h / (n_heads / n_kv_heads);
    let len = seq.len();
    // SAFETY: the caller's sizes.
    unsafe { probabilities(q, k, seq, h, shape, scores) };
    if let Some(m) = mask {
        drop_probabilities(&mut scores[..len * len], len, m);
    }
    // SAFETY: V_h is rows seq of v at column kv*d (row stride kw); the output block is the
    // caller's.
    unsafe {
        let v_kv = View { ptr: v.as_ptr().add(seq.start * kw + kv * d), rs: kw, cs: 1 };
        let o_h = Out { ptr: dst.at(seq.start * qw + h * d), rs: qw, cs: 1 };
        // P is zero above the diagonal.
        sgemm(len, d, len, View::rows(scores, len), v_kv, o_h, 1.0, false, Causal::DepthTo);
    }
}

/// `P = softmax(Q_h K_hᵀ / sqrt(d))` of one (sequence, head), causal (zero above the
/// diagonal), into `scores` (len × len). The forward and the backward both call this, so the
/// backward's P is the forward's, bit for bit.
///
/// # Safety
/// Buffer sizes as checked by `check_sizes`.
unsafe fn probabilities(q: &[f32], k: &[f32], seq: &Range<usize>, h: usize, shape: AttentionShape, scores: &mut Vec<f32>) {
    let AttentionShape { n_heads, n_kv_heads, head_dim: d, .. } = shape;
    let (qw, kw) = (n_heads * d, n_kv_heads * d);
    let kv = h / (n_heads / n_kv_heads);
    let len = seq.len();
    let scale = 1.0 / (d as f32).sqrt();
    scores.resize(len * len, 0.0);
    // SAFETY: Q_h is rows seq of q at column h*d (row stride qw); K_h is rows seq of k at
    // column kv*d (row stride kw).
    unsafe {
        let q_h = View { ptr: q.as_ptr().add(seq.start * qw + h * d), rs: qw, cs: 1 };
        let k_t = View { ptr: k.as_ptr().add(seq.start * kw + kv * d), rs: 1, cs: kw };
        // Causal: the upper triangle is never read (the softmax masks it).
        sgemm(len, len, d, q_h, k_t, Out::rows(scores, len), scale, false, Causal::Cols);
    }
    for (i, row) in scores.chunks_exact_mut(len).enumerate() {
        causal_softmax_row(row, i);
    }
}

/// dS = P ∘ (dP − rowsum(P ∘ dP)) in place in `dp` (both `len × len`); zero above the
/// diagonal, where dP need not have been computed.
fn causal_softmax_backward(p: &[f32], dp: &mut [f32], len: usize) {
    for (i, (prow, dprow)) in p.chunks_exact(len).zip(dp.chunks_exact_mut(len)).enumerate() {
        let (live, masked) = dprow.split_at_mut(i + 1);
        vexp::softmax_backward(&prow[..=i], live);
        masked.fill(0.0);
    }
}

/// Softmax over `row[..=i]`, zeros after (the causal mask).
pub(super) fn causal_softmax_row(row: &mut [f32], i: usize) {
    let (live, masked) = row.split_at_mut(i + 1);
    let max = vexp::max(live);
    let inv = 1.0 / vexp::exp_shifted_sum(live, max);
    live.iter_mut().for_each(|s| *s *= inv);
    masked.fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference: loops over positions, in f64.
    fn naive_f64(q: &[f64], k: &[f64], v: &[f64], len: usize, s: AttentionShape) -> Vec<f64> {
        let (qw, kw, d) = (s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim, s.head_dim);
        let mut out = vec![0.0f64; len * qw];
        for h in 0..s.n_heads {
            let kv = h / (s.n_heads / s.n_kv_heads);
            for i in 0..len {
                let scores: Vec<f64> = (0..=i)
                    .map(|j| (0..d).map(|c| q[i * qw + h * d + c] * k[j * kw + kv * d + c]).sum::<f64>() / (d as f64).sqrt())
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                for c in 0..d {
                    out[i * qw + h * d + c] = (0..=i).map(|j| (scores[j] - max).exp() / z * v[j * kw + kv * d + c]).sum();
                }
            }
        }
        out
    }

    fn naive(q: &[f32], k: &[f32], v: &[f32], len: usize, s: AttentionShape) -> Vec<f32> {
        let wide = |x: &[f32]| x.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
        naive_f64(&wide(q), &wide(k), &wide(v), len, s).into_iter().map(|x| x as f32).collect()
    }

    /// The backward against central differences of the f64 reference, for the loss
    /// `Σ out ∘ w`: two sequences, two query heads per key/value head, every element of q, k
    /// and v checked; and the same gradients on one thread and on three.
    #[test]
    fn backward_matches_finite_differences() {
        let shape = AttentionShape { n_heads: 4, n_kv_heads: 2, head_dim: 8, precision: Precision::F32 };
        let (qw, kw) = (32, 16);
        let seqs = [0..5, 5..12];
        let n = 12;
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0) - 1.0;
        let q: Vec<f32> = (0..n * qw).map(val).collect();
        let k: Vec<f32> = (0..n * kw).map(|i| val(i + 17)).collect();
        let v: Vec<f32> = (0..n * kw).map(|i| val(i + 31)).collect();
        let w: Vec<f32> = (0..n * qw).map(|i| val(i + 57)).collect();
        let grads = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut out = vec![0.0f32; n * qw];
                causal_attention(&q, &k, &v, &seqs, shape, &mut out);
                let (mut dq, mut dk, mut dv) = (vec![f32::NAN; n * qw], vec![f32::NAN; n * kw], vec![f32::NAN; n * kw]);
                causal_attention_backward(&q, &k, &v, &w, &seqs, shape, &mut dq, &mut dk, &mut dv);
                (dq, dk, dv)
            })
        };
        let (dq, dk, dv) = grads(1);
        let again = grads(3);
        assert!(dq == again.0 && dk == again.1 && dv == again.2, "the gradients depend on the thread count");

        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            seqs.iter()
                .map(|s| {
                    let out =
                        naive_f64(&q[s.start * qw..s.end * qw], &k[s.start * kw..s.end * kw], &v[s.start * kw..s.end * kw], s.len(), shape);
                    out.iter().zip(&w[s.start * qw..s.end * qw]).map(|(o, &wv)| o * f64::from(wv)).sum::<f64>()
                })
                .sum()
        };
        let wide = |x: &[f32]| x.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
        let (q64, k64, v64) = (wide(&q), wide(&k), wide(&v));
        let eps = 1e-5;
        let mut max_err = 0.0f64;
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            for i in 0..grad.len() {
                let probe = |delta: f64| {
                    let (mut a, mut b, mut c) = (q64.clone(), k64.clone(), v64.clone());
                    [&mut a, &mut b, &mut c][which][i] += delta;
                    loss(&a, &b, &c)
                };
                let fd = (probe(eps) - probe(-eps)) / (2.0 * eps);
                max_err = max_err.max((fd - f64::from(grad[i])).abs());
            }
        }
        println!("attention backward vs f64 central differences: max |diff| {max_err:.2e}");
        assert!(max_err < 1e-4, "max |diff| {max_err}");
    }

    #[test]
    fn matches_naive_reference_with_two_sequences() {
        let shape = AttentionShape { n_heads: 4, n_kv_heads: 2, head_dim: 8, precision: Precision::F32 };
        let (qw, kw) = (32, 16);
        let n = 11;
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0) - 1.0;
        let q: Vec<f32> = (0..n * qw).map(val).collect();
        let k: Vec<f32> = (0..n * kw).map(|i| val(i + 17)).collect();
        let v: Vec<f32> = (0..n * kw).map(|i| val(i + 31)).collect();
        let mut out = vec![0.0f32; n * qw];
        causal_attention(&q, &k, &v, &[0..5, 5..11], shape, &mut out);
        let first = naive(&q[..5 * qw], &k[..5 * kw], &v[..5 * kw], 5, shape);
        let second = naive(&q[5 * qw..], &k[5 * kw..], &v[5 * kw..], 6, shape);
        let expected: Vec<f32> = first.into_iter().chain(second).collect();
        let max_diff = out.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff < 1e-5, "max diff {max_diff}");
    }

    /// The bf16 path against the f32 path, forward and backward, with and without attention
    /// dropout: sequences of 1, 37 and 100 rows (partial row blocks and panels, odd depths),
    /// 64-wide heads, three query heads per key/value head; then 16 heads of 64 and a sequence
    /// of 1,024 rows, whose bf16 rows take the padded stride (`bf16::row_stride`). The two
    /// paths may differ only by bf16's rounding of the operands: each output is compared with
    /// the f32 one relative to that output's largest magnitude, and the gradients must point
    /// the same way (cosine). The bf16 path must also give the same bits on one thread and on
    /// three.
    #[test]
    fn bf16_path_agrees_with_f32() {
        if !crate::native::bf16::available() {
            println!("skipped: this CPU has no AVX512-BF16, so attention has no bf16 path here");
            return;
        }
        let small = (AttentionShape { n_heads: 6, n_kv_heads: 2, head_dim: 64, precision: Precision::F32 }, vec![0..1, 1..38, 38..138]);
        let wide = (AttentionShape { n_heads: 16, n_kv_heads: 16, head_dim: 64, precision: Precision::F32 }, vec![0..1024, 1024..1030]);
        for (f32_shape, seqs) in [small, wide] {
            bf16_agrees_with_f32(f32_shape, &seqs);
        }
    }

    fn bf16_agrees_with_f32(f32_shape: AttentionShape, seqs: &[Range<usize>]) {
        let bf16_shape = AttentionShape { precision: Precision::Bf16, ..f32_shape };
        assert!(attention_bf16::applies(&bf16_shape) && !attention_bf16::applies(&f32_shape));
        let (qw, kw) = (f32_shape.n_heads * f32_shape.head_dim, f32_shape.n_kv_heads * f32_shape.head_dim);
        let n = seqs.last().unwrap().end;
        let mut rng = crate::native::lora::SplitMix64(11);
        let mut draw = |len: usize, amp: f32| (0..len).map(|_| (rng.next_f32() - 0.5) * amp).collect::<Vec<f32>>();
        // Queries and keys large enough that the softmax is far from uniform.
        let (q, k, v, w) = (draw(n * qw, 4.0), draw(n * kw, 4.0), draw(n * kw, 2.0), draw(n * qw, 2.0));
        let run = |shape: AttentionShape, dropout: Option<&Dropout>, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut out = vec![f32::NAN; n * qw];
                causal_attention_with(&q, &k, &v, seqs, shape, dropout, &mut out);
                let (mut dq, mut dk, mut dv) = (vec![f32::NAN; n * qw], vec![f32::NAN; n * kw], vec![f32::NAN; n * kw]);
                causal_attention_backward_with(&q, &k, &v, &w, seqs, shape, dropout, &mut dq, &mut dk, &mut dv);
                [out, dq, dk, dv]
            })
        };
        let mask = Dropout { prob: 0.2, seed: 5 };
        for dropout in [None, Some(&mask)] {
            let (exact, rounded) = (run(f32_shape, dropout, 2), run(bf16_shape, dropout, 2));
            assert_eq!(rounded, run(bf16_shape, dropout, 3), "the bf16 path depends on the thread count");
            for (name, (e, r)) in ["out", "dq", "dk", "dv"].iter().zip(exact.iter().zip(&rounded)) {
                assert!(r.iter().all(|x| x.is_finite()), "{name}: the bf16 path left an element unwritten");
                let scale = e.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let worst = e.iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
                let dot: f64 = e.iter().zip(r).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let norm = |x: &[f32]| x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
                let cosine = dot / (norm(e) * norm(r));
                println!(
                    "attention bf16 vs f32, {} heads, {n} rows, dropout {}: {name} max |diff| / max |f32| {worst:.2e}, cosine {cosine:.6}",
                    f32_shape.n_heads,
                    dropout.is_some()
                );
                assert!(e != r, "{name}: the bf16 path gave the f32 bits: it did not run");
                assert!(worst < 2e-2 && cosine > 0.9999, "{name}: max relative diff {worst}, cosine {cosine}");
            }
        }
    }
}
