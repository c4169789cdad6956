//! A projection with an optional LoRA branch: `y = x Wᵀ + s · (x̃ Aᵀ) Bᵀ`, where W (out × in)
//! is frozen in the mapped file, A (r × in) and B (out × r) are the adapter's, `s` its scale
//! and x̃ the input after the branch's dropout.
//!
//! Shapes: x, dx `[n × in]`; y, dy `[n × out]`; the branch keeps u = x̃ Aᵀ, `[n × r]`.

use rayon::prelude::*;

use crate::native::gemm::{sgemm_par, Out, View};
use crate::native::lora::{LoraPair, SplitMix64};
use crate::native::matmul::{
    matmul_w, matmul_w_many, matmul_w_many_plus, matmul_w_plus, matmul_wt_many, LowRankTerm, Precision, WProduct, WeightMatrix, WtProduct,
};

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
    /// W packed for the bf16 kernel once at load, when the model keeps it so.
    pub packed: Option<&'a [u16]>,
    pub precision: Precision,
    pub lora: Option<&'a LoraPair>,
    /// The branch's scale `s`.
    pub scale: f32,
    /// Dropout of the branch's input: (probability, seed of this layer and target).
    pub dropout: Option<(f32, u64)>,
}

impl Linear<'_> {
    /// `y = x Wᵀ (+ branch)`, overwriting `y`; returns the branch's tape when adapted. The
    /// branch's `u = x̃ Aᵀ` comes first, so that the frozen product adds `s · u Bᵀ` as it
    /// writes y (see [`LowRankTerm`]).
    pub fn forward(&self, x: &[f32], n: usize, y: &mut [f32]) -> Option<BranchTape> {
        let tape = self.branch_tape(x, n);
        let low_rank = tape.as_ref().map(|t| self.forward_term(&t.u, self.lora.map_or(0, |p| p.rank)));
        matmul_wt_many(x, n, &mut [WtProduct { w: self.w, file: self.file, y, packed: self.packed, low_rank }], self.precision);
        tape
    }

    /// [`forward`](Self::forward) of several projections that read the same `x` (a block's
    /// q, k and v, or its gate and up), their frozen products run as one parallel loop (see
    /// [`matmul_wt_many`]); the same results as one call each.
    pub fn forward_many<const N: usize>(linears: [&Linear<'_>; N], x: &[f32], n: usize, ys: [&mut [f32]; N]) -> [Option<BranchTape>; N] {
        let precision = linears[0].precision;
        let group = BranchGroup::of(&linears);
        let (stacked_u, tapes) = match &group {
            Some(g) => {
                let (u, tapes) = g.tapes(&linears, x, n);
                (Some(u), tapes)
            }
            None => (None, linears.map(|l| l.branch_tape(x, n))),
        };
        let mut ys = ys;
        let mut products: Vec<WtProduct<'_>> = Vec::with_capacity(N);
        for (i, (l, y)) in linears.iter().zip(ys.iter_mut()).enumerate() {
            // A grouped branch's u_i is its columns of the stacked u, read in place.
            let low_rank = match (&group, &stacked_u, &tapes[i]) {
                (Some(g), Some(u), Some(_)) => Some(l.forward_term(&u[g.offsets[i]..], g.rows)),
                (_, _, Some(t)) => Some(l.forward_term(&t.u, l.lora.map_or(0, |p| p.rank))),
                _ => None,
            };
            products.push(WtProduct { w: l.w, file: l.file, y, packed: l.packed, low_rank });
        }
        matmul_wt_many(x, n, &mut products, precision);
        drop(products);
        tapes
    }

    /// The branch's term of the forward, `s · u Bᵀ`, with u's rows at stride `ldu`.
    fn forward_term<'t>(&'t self, u: &'t [f32], ldu: usize) -> LowRankTerm<'t> {
        let p = self.lora.expect("a term of a branch");
        LowRankTerm { u, ldu, v: &p.b, vs: (1, p.rank), rank: p.rank, scale: self.scale }
    }

    /// [`branch_backward`](Self::branch_backward) of several projections of the same input
    /// `x`, their gradients added into `dx` and `grads`. Branches without dropout run as one
    /// group (see [`BranchGroup`]); otherwise one call each, in order.
    pub fn branch_backward_many<const N: usize>(
        linears: [&Linear<'_>; N],
        x: &[f32],
        n: usize,
        tapes: [Option<&BranchTape>; N],
        dys: [&[f32]; N],
        dx: &mut [f32],
        grads: [Option<&mut LoraPair>; N],
    ) {
        match BranchGroup::of(&linears) {
            Some(group) if tapes.iter().all(Option::is_some) && grads.iter().all(Option::is_some) => {
                let tapes = tapes.map(|t| t.expect("checked"));
                let (du, a) = group.grads(&linears, x, n, tapes, dys, grads.map(|g| g.expect("checked")));
                // dx (n × in) += du (n × R) · stack (R × in).
                group.dx_term(&du, &a).add_f32_into(n, group.n_in, dx);
            }
            _ => {
                for ((l, (tape, dy)), grad) in linears.iter().zip(tapes.into_iter().zip(dys)).zip(grads) {
                    l.branch_backward(x, n, tape, dy, dx, grad);
                }
            }
        }
    }

    /// The whole LoRA-training backward of several projections of one input `x`:
    /// `dx = Σ dy_i W_i` plus the branches' part, overwriting `dx`, and the branches' A and B
    /// gradients added into `grads`. When the branches form a group, their part of dx is the
    /// frozen products' low-rank term (written with them, see [`LowRankTerm`]); otherwise the
    /// frozen products, then [`branch_backward_many`](Self::branch_backward_many).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_many<const N: usize>(
        linears: [&Linear<'_>; N],
        x: &[f32],
        n: usize,
        tapes: [Option<&BranchTape>; N],
        dys: [&[f32]; N],
        dx: &mut [f32],
        grads: [Option<&mut LoraPair>; N],
    ) {
        match BranchGroup::of(&linears) {
            Some(group) if tapes.iter().all(Option::is_some) && grads.iter().all(Option::is_some) => {
                let tapes = tapes.map(|t| t.expect("checked"));
                let (du, a) = group.grads(&linears, x, n, tapes, dys, grads.map(|g| g.expect("checked")));
                let products: Vec<WProduct<'_>> = linears.iter().zip(dys).map(|(l, dy)| WProduct { dy, w: l.w, file: l.file }).collect();
                matmul_w_many_plus(&products, n, dx, linears[0].precision, false, Some(group.dx_term(&du, &a)));
            }
            _ => {
                Self::frozen_backward_many(linears, dys, n, dx);
                Self::branch_backward_many(linears, x, n, tapes, dys, dx, grads);
            }
        }
    }

    /// The branch's tape: the dropout mask and x̃ (with dropout), and `u = x̃ Aᵀ`; nothing
    /// without an adapter.
    fn branch_tape(&self, x: &[f32], n: usize) -> Option<BranchTape> {
        let p = self.lora?;
        let dropped = self.dropout.map(|(prob, seed)| {
            let mut rng = SplitMix64(seed);
            let keep = 1.0 / (1.0 - prob);
            let mask: Vec<bool> = x.iter().map(|_| rng.next_f32() >= prob).collect();
            let xd = x.iter().zip(&mask).map(|(&v, &m)| if m { v * keep } else { 0.0 }).collect::<Vec<f32>>();
            (mask, xd)
        });
        let xd = dropped.as_ref().map_or(x, |(_, xd)| xd.as_slice());
        let (r, n_in) = (p.rank, p.n_in);
        let mut u = vec![0.0f32; n * r];
        // SAFETY: u = x̃ (n × in) · Aᵀ (A is r × in), written by this product alone. The
        // activations are read in place; only the small Aᵀ is packed.
        unsafe { sgemm_par(n, r, n_in, View::rows(xd, n_in), View::transposed(&p.a, n_in), Out::rows(&mut u, r), 1.0, false) };
        Some(BranchTape { dropped, u })
    }

    /// The LoRA branch alone: `y += s · (x̃ Aᵀ) Bᵀ` (nothing without an adapter), as its own
    /// products; [`forward`](Self::forward) adds the same term with the frozen product.
    pub fn branch_forward(&self, x: &[f32], n: usize, y: &mut [f32]) -> Option<BranchTape> {
        let tape = self.branch_tape(x, n)?;
        let n_out = self.lora.map_or(0, |p| p.n_out);
        self.forward_term(&tape.u, self.lora.map_or(0, |p| p.rank)).add_f32_into(n, n_out, y);
        Some(tape)
    }

    /// Gradient through the projection: `dx = dy W (+ the branch's)`, overwriting `dx`, the
    /// branch's A and B gradients added into `grad` (the pair's shapes), and, for
    /// full-parameter training, W's gradient `dw += dyᵀ x` (`out × in`). `x` is the forward
    /// input.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        n: usize,
        tape: Option<&BranchTape>,
        dy: &[f32],
        dx: &mut [f32],
        grad: Option<&mut LoraPair>,
        dw: Option<&mut [f32]>,
    ) {
        match (self.lora, tape, grad, dw) {
            // A branch without dropout: its gradients first, then its part of dx (`du A`) as
            // the frozen product's low-rank term.
            (Some(p), Some(tape), Some(gp), None) if tape.dropped.is_none() => {
                let du = self.branch_grads(x, n, tape, dy, gp);
                let term = LowRankTerm { u: &du, ldu: p.rank, v: &p.a, vs: (p.n_in, 1), rank: p.rank, scale: 1.0 };
                matmul_w_plus(dy, n, self.w, self.file, dx, self.precision, false, Some(term));
            }
            (_, tape, grad, dw) => {
                matmul_w(dy, n, self.w, self.file, dx, self.precision, false);
                self.trainable_backward(x, n, tape, dy, dx, grad, dw);
            }
        }
    }

    /// The frozen part of [`backward`](Self::backward) for several projections of one input,
    /// `dx = Σ dy_i W_i` (overwriting `dx`), as one parallel loop (see [`matmul_w_many`]);
    /// each projection's [`trainable_backward`](Self::trainable_backward) adds the rest.
    pub fn frozen_backward_many<const N: usize>(linears: [&Linear<'_>; N], dys: [&[f32]; N], n: usize, dx: &mut [f32]) {
        let products: Vec<WProduct<'_>> = linears.iter().zip(dys).map(|(l, dy)| WProduct { dy, w: l.w, file: l.file }).collect();
        matmul_w_many(&products, n, dx, linears[0].precision, false);
    }

    /// [`backward`](Self::backward) but for the frozen product `dx += dy W`: W's gradient
    /// (full-parameter training), and the branch's gradients and its part of `dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn trainable_backward(
        &self,
        x: &[f32],
        n: usize,
        tape: Option<&BranchTape>,
        dy: &[f32],
        dx: &mut [f32],
        grad: Option<&mut LoraPair>,
        dw: Option<&mut [f32]>,
    ) {
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
        let (r, n_in) = (p.rank, p.n_in);
        let du = self.branch_grads(x, n, tape, dy, gp);
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

    /// The branch's A and B gradients, added into `gp`; returns `du = s · dy B` (`n × r`),
    /// from which its part of dx follows.
    fn branch_grads(&self, x: &[f32], n: usize, tape: &BranchTape, dy: &[f32], gp: &mut LoraPair) -> Vec<f32> {
        let p = self.lora.expect("gradients of a branch");
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
        du
    }
}

/// The LoRA branches of projections that read the same input (a block's q, k and v, or its
/// gate and up), computed together: their A matrices stacked into one `R × in` matrix
/// (R = the sum of the ranks), so `x Aᵀ`, `duᵀ x` and `du A` are one product each instead of
/// one per branch. Why: at rank 8 each of those products is 8 columns (or rows) wide, a
/// quarter of the kernel's 32-column panel, and each pass streams all of x (or dx) through
/// memory; stacked, q/k/v fill 24 of 32 columns and x is read once.
///
/// `x Aᵀ` gives the same bits stacked or not (each output is the same dot product in the same
/// order); `duᵀ x` and `du A` sum the branches in one product, so their rounding differs from
/// adding the branches one after the other, and is the same for every thread count.
pub(crate) struct BranchGroup {
    /// First row of each branch's A in the stack.
    offsets: Vec<usize>,
    /// Rows of the stack (the sum of the ranks).
    rows: usize,
    n_in: usize,
}

impl BranchGroup {
    /// The group of `linears`, when every one has a branch and none has dropout (dropout
    /// gives each branch its own input).
    fn of(linears: &[&Linear<'_>]) -> Option<BranchGroup> {
        if linears.len() < 2 || linears.iter().any(|l| l.lora.is_none() || l.dropout.is_some()) {
            return None;
        }
        let n_in = linears[0].lora?.n_in;
        let mut offsets = Vec::with_capacity(linears.len());
        let mut rows = 0;
        for l in linears {
            let p = l.lora?;
            if p.n_in != n_in {
                return None;
            }
            offsets.push(rows);
            rows += p.rank;
        }
        Some(BranchGroup { offsets, rows, n_in })
    }

    /// The branches' A matrices stacked, `rows × n_in`.
    fn stacked_a(&self, linears: &[&Linear<'_>]) -> Vec<f32> {
        let mut a = Vec::with_capacity(self.rows * self.n_in);
        for l in linears {
            a.extend_from_slice(&l.lora.expect("a grouped branch").a);
        }
        a
    }

    /// `u = x · stackᵀ` (`n × R`), and each branch's tape (its columns of u).
    fn tapes<const N: usize>(&self, linears: &[&Linear<'_>; N], x: &[f32], n: usize) -> (Vec<f32>, [Option<BranchTape>; N]) {
        let (rows, n_in) = (self.rows, self.n_in);
        let a = self.stacked_a(linears);
        let mut u = vec![0.0f32; n * rows];
        // SAFETY: u (n × R) = x (n × in) · stackᵀ (the stack is R × in).
        unsafe { sgemm_par(n, rows, n_in, View::rows(x, n_in), View::transposed(&a, n_in), Out::rows(&mut u, rows), 1.0, false) };
        let mut i = 0;
        let tapes = [(); N].map(|_| {
            let (off, r) = (self.offsets[i], linears[i].lora.expect("a grouped branch").rank);
            i += 1;
            let u_i: Vec<f32> = u.chunks_exact(rows).flat_map(|row| &row[off..off + r]).copied().collect();
            Some(BranchTape { dropped: None, u: u_i })
        });
        (u, tapes)
    }

    /// `y_i += s · (x A_iᵀ) B_iᵀ` for each branch, as products of their own; their tapes.
    #[cfg(test)]
    fn forward<const N: usize>(&self, linears: &[&Linear<'_>; N], x: &[f32], n: usize, ys: [&mut [f32]; N]) -> [Option<BranchTape>; N] {
        let (u, tapes) = self.tapes(linears, x, n);
        for (i, y) in ys.into_iter().enumerate() {
            let l = linears[i];
            let n_out = l.lora.expect("a grouped branch").n_out;
            l.forward_term(&u[self.offsets[i]..], self.rows).add_f32_into(n, n_out, y);
        }
        tapes
    }

    /// Each branch's A and B gradients; returns `du` (`n × R`, every branch's `s · dy_i B_i`
    /// side by side) and the stack of A, whose product `du · stack` is their sum's part of dx.
    #[allow(clippy::too_many_arguments)]
    fn grads<const N: usize>(
        &self,
        linears: &[&Linear<'_>; N],
        x: &[f32],
        n: usize,
        tapes: [&BranchTape; N],
        dys: [&[f32]; N],
        grads: [&mut LoraPair; N],
    ) -> (Vec<f32>, Vec<f32>) {
        let (rows, n_in) = (self.rows, self.n_in);
        let mut du = vec![0.0f32; n * rows];
        let mut grads = grads;
        for (i, (l, (tape, dy))) in linears.iter().zip(tapes.iter().zip(dys)).enumerate() {
            let p = l.lora.expect("a grouped branch");
            let (r, s, n_out, off) = (p.rank, l.scale, p.n_out, self.offsets[i]);
            // SAFETY: dy_i is n × out, u_i n × r, B_i out × r, dB_i out × r; du_i is columns
            // off..off + r of du (row stride R), written by this product alone.
            unsafe {
                // dB_iᵀ += s · u_iᵀ · dy_i
                sgemm_par(r, n_out, n, View::transposed(&tape.u, r), View::rows(dy, n_out), Out::transposed(&mut grads[i].b, r), s, true);
                // du_i = s · dy_i · B_i
                let du_i = Out { ptr: du.as_mut_ptr().add(off), rs: rows, cs: 1 };
                sgemm_par(n, r, n_out, View::rows(dy, n_out), View::rows(&p.b, r), du_i, s, false);
            }
        }
        let a = self.stacked_a(linears);
        let mut da = vec![0.0f32; rows * n_in];
        // SAFETY: dA (R × in) = duᵀ (R × n) · x (n × in).
        unsafe { sgemm_par(rows, n_in, n, View::transposed(&du, rows), View::rows(x, n_in), Out::rows(&mut da, n_in), 1.0, false) };
        for (g, off) in grads.iter_mut().zip(&self.offsets) {
            let part = &da[off * n_in..off * n_in + g.a.len()];
            g.a.iter_mut().zip(part).for_each(|(d, v)| *d += v);
        }
        (du, a)
    }

    /// The branches' part of dx, `du · stack`, as a low-rank term.
    fn dx_term<'t>(&self, du: &'t [f32], stack: &'t [f32]) -> LowRankTerm<'t> {
        LowRankTerm { u: du, ldu: self.rows, v: stack, vs: (self.n_in, 1), rank: self.rows, scale: 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::matmul::Precision;
    use crate::weights::GgmlType;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i + seed) * 7919 % 1000) as f32 / 500.0) - 1.0).collect()
    }

    fn pair(n_in: usize, n_out: usize, rank: usize, seed: usize) -> LoraPair {
        LoraPair { n_in, n_out, rank, a: values(rank * n_in, seed), b: values(n_out * rank, seed + 1) }
    }

    /// Three branches of one input (q, k and v's shapes, scaled down, ranks that differ),
    /// grouped and one at a time: the same forward bits and tapes, and backward gradients
    /// that agree to f32 rounding (the grouped products sum the branches in one product).
    #[test]
    fn grouped_branches_match_one_at_a_time() {
        let (n, n_in) = (37, 48);
        let outs = [48usize, 16, 16];
        let pairs = [pair(n_in, outs[0], 8, 1), pair(n_in, outs[1], 4, 2), pair(n_in, outs[2], 8, 3)];
        let frozen = WeightMatrix { name: "unused".into(), ty: GgmlType::F32, rows: 0, cols: 0, range: 0..0 };
        let linear =
            |p| Linear { w: &frozen, file: &[], packed: None, precision: Precision::F32, lora: Some(p), scale: 0.75, dropout: None };
        let lins = [linear(&pairs[0]), linear(&pairs[1]), linear(&pairs[2])];
        let refs = [&lins[0], &lins[1], &lins[2]];
        let x = values(n * n_in, 5);
        let group = BranchGroup::of(&refs).expect("three branches without dropout form a group");
        let mut ys_group: Vec<Vec<f32>> = outs.iter().enumerate().map(|(i, &o)| values(n * o, 10 + i)).collect();
        let mut ys_single = ys_group.clone();
        let [g0, g1, g2] = &mut ys_group[..] else { unreachable!() };
        let tapes_group = group.forward(&refs, &x, n, [g0.as_mut_slice(), g1, g2]);
        let tapes_single: Vec<BranchTape> =
            refs.iter().zip(ys_single.iter_mut()).map(|(l, y)| l.branch_forward(&x, n, y).unwrap()).collect();
        assert_eq!(ys_group, ys_single, "grouped forward changed the outputs");
        for (g, s) in tapes_group.iter().zip(&tapes_single) {
            assert_eq!(g.as_ref().unwrap().u, s.u, "grouped forward changed a tape");
        }

        let dys: Vec<Vec<f32>> = outs.iter().enumerate().map(|(i, &o)| values(n * o, 20 + i)).collect();
        let zero = |p: &LoraPair| LoraPair { a: vec![0.0; p.a.len()], b: vec![0.0; p.b.len()], ..p.clone() };
        let mut grads_group: Vec<LoraPair> = pairs.iter().map(zero).collect();
        let mut grads_single = grads_group.clone();
        let (mut dx_group, mut dx_single) = (values(n * n_in, 30), values(n * n_in, 30));
        let [a, b, c] = &mut grads_group[..] else { unreachable!() };
        let tapes: Vec<&BranchTape> = tapes_single.iter().collect();
        Linear::branch_backward_many(
            refs,
            &x,
            n,
            [Some(tapes[0]), Some(tapes[1]), Some(tapes[2])],
            [&dys[0], &dys[1], &dys[2]],
            &mut dx_group,
            [Some(a), Some(b), Some(c)],
        );
        for (i, l) in refs.iter().enumerate() {
            l.branch_backward(&x, n, Some(tapes[i]), &dys[i], &mut dx_single, Some(&mut grads_single[i]));
        }
        let max_diff = |p: &[f32], q: &[f32]| p.iter().zip(q).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0f32, f32::max);
        let mut worst = max_diff(&dx_group, &dx_single);
        for (g, s) in grads_group.iter().zip(&grads_single) {
            worst = worst.max(max_diff(&g.a, &s.a)).max(max_diff(&g.b, &s.b));
            assert!(g.a.iter().chain(&g.b).any(|&v| v != 0.0), "a gradient stayed zero");
        }
        println!("grouped LoRA backward vs one branch at a time: max relative diff {worst:.2e}");
        assert!(worst < 1e-5, "grouped backward differs by {worst}");
    }
}
