//! A projection with an optional LoRA branch: `y = x Wᵀ + s · (x̃ Aᵀ) Bᵀ`, where W (out × in)
//! is frozen in the mapped file, A (r × in) and B (out × r) are the adapter's, `s` its scale
//! and x̃ the input after the branch's dropout.
//!
//! Shapes: x, dx `[n × in]`; y, dy `[n × out]`; the branch keeps u = x̃ Aᵀ, `[n × r]`.

use rayon::prelude::*;

use crate::native::gemm::{sgemm_par, Out, View};
use crate::native::lora::{LoraPair, SplitMix64};
use crate::native::matmul::{matmul_w_acc, matmul_w_acc_many, matmul_wt, matmul_wt_many, Precision, WAccProduct, WeightMatrix, WtProduct};

/// What the backward pass needs of a LoRA branch: the dropout mask and the input after
/// dropout (when dropout is on), and `u = x̃ Aᵀ`.
pub(crate) struct BranchTape {
    dropped: Option<(Vec<bool>, Vec<f32>)>,
    u: Vec<f32>,
}

/// One projection of one layer, borrowed for a pass.
pub(crate) struct Linear<'a> {
    pub w: &'a WeightMatrix,
    pub file: &'a [u8],
    pub precision: Precision,
    pub lora: Option<&'a LoraPair>,
    /// The branch's scale `s`.
    pub scale: f32,
    /// Dropout of the branch's input: (probability, seed of this layer and target).
    pub dropout: Option<(f32, u64)>,
}

impl Linear<'_> {
    /// `y = x Wᵀ (+ branch)`, overwriting `y`; returns the branch's tape when adapted.
    pub fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) -> Option<BranchTape> {
        matmul_wt(x, n, self.w, self.file, y, self.precision);
        self.branch_forward(x, n, y)
    }

    /// [`forward`](Self::forward) of several projections that read the same `x` (a block's
    /// q, k and v, or its gate and up), their frozen products run as one parallel loop (see
    /// [`matmul_wt_many`]); the same results as one call each.
    pub fn forward_many<const N: usize>(linears: [&Linear<'_>; N], x: &[f32], n: usize, ys: [&mut [f32]; N]) -> [Option<BranchTape>; N] {
        let precision = linears[0].precision;
        let mut ys = ys;
        let mut products: Vec<WtProduct<'_>> = linears.iter().zip(ys.iter_mut()).map(|(l, y)| WtProduct { w: l.w, file: l.file, y: &mut **y }).collect();
        matmul_wt_many(x, n, &mut products, precision);
        drop(products);
        let mut i = 0;
        ys.map(|y| {
            let tape = linears[i].branch_forward(x, n, y);
            i += 1;
            tape
        })
    }

    /// The LoRA branch alone: `y += s · (x̃ Aᵀ) Bᵀ` (nothing without an adapter).
    pub fn branch_forward(&self, x: &[f32], n: usize, y: &mut [f32]) -> Option<BranchTape> {
        let p = self.lora?;
        let dropped = self.dropout.map(|(prob, seed)| {
            let mut rng = SplitMix64(seed);
            let keep = 1.0 / (1.0 - prob);
            let mask: Vec<bool> = x.iter().map(|_| rng.next_f32() >= prob).collect();
            let xd = x.iter().zip(&mask).map(|(&v, &m)| if m { v * keep } else { 0.0 }).collect::<Vec<f32>>();
            (mask, xd)
        });
        let xd = dropped.as_ref().map_or(x, |(_, xd)| xd.as_slice());
        let (r, n_in, n_out) = (p.rank, p.n_in, p.n_out);
        let mut u = vec![0.0f32; n * r];
        // SAFETY (both): u = x̃ (n × in) · Aᵀ (A is r × in); y += s · u · Bᵀ (B is out × r).
        // Every view addresses its operand's shape; y and u are written by these products
        // alone. The activations are read in place; only the small Aᵀ and Bᵀ are packed.
        unsafe {
            sgemm_par(n, r, n_in, View::rows(xd, n_in), View::transposed(&p.a, n_in), Out::rows(&mut u, r), 1.0, false);
            sgemm_par(n, n_out, r, View::rows(&u, r), View::transposed(&p.b, r), Out::rows(y, n_out), self.scale, true);
        }
        Some(BranchTape { dropped, u })
    }

    /// Gradient through the projection: `dx += dy W (+ the branch's)`, the branch's A and B
    /// gradients added into `grad` (the pair's shapes), and, for full-parameter training, W's
    /// gradient `dw += dyᵀ x` (`out × in`). `x` is the forward input.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, x: &[f32], n: usize, tape: Option<&BranchTape>, dy: &[f32], dx: &mut [f32], grad: Option<&mut LoraPair>, dw: Option<&mut [f32]>) {
        matmul_w_acc(dy, n, self.w, self.file, dx, self.precision);
        self.trainable_backward(x, n, tape, dy, dx, grad, dw);
    }

    /// The frozen part of [`backward`](Self::backward) for several projections of one input,
    /// `dx += Σ dy_i W_i`, as one parallel loop (see [`matmul_w_acc_many`]); each projection's
    /// [`trainable_backward`](Self::trainable_backward) does the rest.
    pub fn frozen_backward_many<const N: usize>(linears: [&Linear<'_>; N], dys: [&[f32]; N], n: usize, dx: &mut [f32]) {
        let products: Vec<WAccProduct<'_>> = linears.iter().zip(dys).map(|(l, dy)| WAccProduct { dy, w: l.w, file: l.file }).collect();
        matmul_w_acc_many(&products, n, dx, linears[0].precision);
    }

    /// [`backward`](Self::backward) but for the frozen product `dx += dy W`: W's gradient
    /// (full-parameter training), and the branch's gradients and its part of `dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn trainable_backward(&self, x: &[f32], n: usize, tape: Option<&BranchTape>, dy: &[f32], dx: &mut [f32], grad: Option<&mut LoraPair>, dw: Option<&mut [f32]>) {
        if let Some(dw) = dw {
            let (n_out, n_in) = (self.w.rows, self.w.cols);
            assert_eq!(dw.len(), n_out * n_in, "linear backward: dw is not out × in");
            // SAFETY: dyᵀ is out × n (dy is n × out), x is n × in, dw is out × in.
            unsafe { sgemm_par(n_out, n_in, n, View::transposed(dy, n_out), View::rows(x, n_in), Out::rows(dw, n_in), 1.0, true) };
        }
        self.branch_backward(x, n, tape, dy, dx, grad);
    }

    /// The LoRA branch's part of [`backward`](Self::backward): its A and B gradients and its
    /// contribution to `dx`.
    pub fn branch_backward(&self, x: &[f32], n: usize, tape: Option<&BranchTape>, dy: &[f32], dx: &mut [f32], grad: Option<&mut LoraPair>) {
        let (Some(p), Some(tape), Some(gp)) = (self.lora, tape, grad) else { return };
        let (r, s, n_in, n_out) = (p.rank, self.scale, p.n_in, p.n_out);
        let xd = tape.dropped.as_ref().map_or(x, |(_, xd)| xd.as_slice());
        let mut du = vec![0.0f32; n * r];
        // SAFETY: shapes as documented on each product (dy: n × out, x̃: n × in, u and du:
        // n × r, A: r × in, B: out × r); each output is written by its product alone. The
        // large operands (dy, x̃) are read in place as rows; only the n × r ones are packed.
        unsafe {
            // dBᵀ += s · uᵀ · dy  (dB is out × r)
            sgemm_par(r, n_out, n, View::transposed(&tape.u, r), View::rows(dy, n_out), Out::transposed(&mut gp.b, r), s, true);
            // du = s · dy · B
            sgemm_par(n, r, n_out, View::rows(dy, n_out), View::rows(&p.b, r), Out::rows(&mut du, r), s, false);
            // dA += duᵀ · x̃
            sgemm_par(r, n_in, n, View::transposed(&du, r), View::rows(xd, n_in), Out::rows(&mut gp.a, n_in), 1.0, true);
        }
        let du_rows = View::rows(&du, r);
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
}
