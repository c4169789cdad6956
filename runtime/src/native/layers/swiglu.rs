//! The SwiGLU gate of the MLP: `out = silu(gate) ∘ up`, element-wise over `[n × ffn]`
//! buffers, vectorized (see `vexp`) and parallel over chunks.

use rayon::prelude::*;

use crate::native::vexp;

/// `out = silu(gate) * up`, element-wise.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(4096).zip(gate.par_chunks(4096).zip(up.par_chunks(4096))).for_each(|(o, (g, u))| vexp::swiglu(g, u, o));
}

/// Gradient of [`swiglu`]: from `d_out`, write `d_gate` and `d_up`.
pub fn swiglu_backward(gate: &[f32], up: &[f32], d_out: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    const C: usize = 4096;
    d_gate
        .par_chunks_mut(C)
        .zip(d_up.par_chunks_mut(C))
        .zip(gate.par_chunks(C).zip(up.par_chunks(C)).zip(d_out.par_chunks(C)))
        .for_each(|((dg, du), ((g, u), dout))| vexp::swiglu_backward(g, u, dout, dg, du));
}
