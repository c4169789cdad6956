//! Vectorized `exp` for the native engine's softmaxes (attention, the LM head's loss) and the
//! SiLU gate: with one exponential per attention score, per vocabulary entry and per MLP unit,
//! a scalar `expf` (about 5 ns) costs as much as the products around it.
//!
//! The AVX-512 version is the usual range reduction: `x = n·ln2 + r` with `|r| <= ln2/2`,
//! `e^r` by a degree-6 Taylor polynomial (relative error below 2e-7 on that interval), and
//! `2^n` applied with `vscalefps`, which also handles the underflow to zero. Inputs are
//! clamped to [-104, 88.7]: below, the result is 0 (f32's smallest subnormal is e^-103.3);
//! above, it would overflow. Other CPUs use `f32::exp`.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::avx512;

/// `xs[i] = exp(xs[i] - shift)`; returns the sum of the results.
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { exp_shifted_sum_avx512(xs, shift) };
    }
    let mut sum = 0.0f32;
    for x in xs.iter_mut() {
        *x = (*x - shift).exp();
        sum += *x;
    }
    sum
}

/// The largest element of `xs` (−∞ when empty): a softmax's shift.
pub fn max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { max_avx512(xs) };
    }
    xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// A softmax's backward along one row: `g[i] = p[i] · (g[i] − Σ_j p[j] · g[j])`, where `p` is
/// the softmax's output and `g` holds the gradient of that output on entry. The dot product
/// is summed 16 lanes wide (a fixed order, whatever the thread count).
pub fn softmax_backward(p: &[f32], g: &mut [f32]) {
    assert_eq!(p.len(), g.len(), "softmax_backward: p and g differ in length");
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F; the lengths match.
        unsafe { softmax_backward_avx512(p, g) };
        return;
    }
    let dot: f32 = p.iter().zip(g.iter()).map(|(a, b)| a * b).sum();
    g.iter_mut().zip(p).for_each(|(gv, &pv)| *gv = pv * (*gv - dot));
}

/// `out[i] = g[i] · sigmoid(g[i]) · up[i]`: SwiGLU's product.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        unsafe { swiglu_avx512(gate, up, out) };
        return;
    }
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// Gradient of [`swiglu`]: `d_up = d_out · silu(g)`, `d_gate = d_out · u · σ(g)(1 + g(1 − σ(g)))`.
pub fn swiglu_backward(gate: &[f32], up: &[f32], d_out: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        unsafe { swiglu_backward_avx512(gate, up, d_out, d_gate, d_up) };
        return;
    }
    for i in 0..gate.len() {
        let (g, u, d) = (gate[i], up[i], d_out[i]);
        let sig = 1.0 / (1.0 + (-g).exp());
        d_up[i] = d * g * sig;
        d_gate[i] = d * u * sig * (1.0 + g * (1.0 - sig));
    }
}

/// e^x for 16 lanes (see the module docs for the method and its range).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn exp16(x: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0)), _mm512_set1_ps(88.7));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    // r = x − n·ln2, with ln2 split in two so that the product is exact enough.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_shifted_sum_avx512(xs: &mut [f32], shift: f32) -> f32 {
    let s = _mm512_set1_ps(shift);
    let mut acc = _mm512_setzero_ps();
    let mut chunks = xs.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: c holds 16 floats.
        unsafe {
            let v = exp16(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), s));
            _mm512_storeu_ps(c.as_mut_ptr(), v);
            acc = _mm512_add_ps(acc, v);
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mask: __mmask16 = ((1u32 << rest.len()) - 1) as __mmask16;
        // SAFETY: the mask limits the lanes to the remainder.
        unsafe {
            let v = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, rest.as_ptr()), s));
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, v);
            acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(mask, v));
        }
    }
    _mm512_reduce_add_ps(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_avx512(xs: &[f32]) -> f32 {
    let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < xs.len() {
        let live = 16.min(xs.len() - i);
        let m: __mmask16 = if live == 16 { 0xffff } else { ((1u32 << live) - 1) as __mmask16 };
        // SAFETY: lanes beyond the slice are masked off (and keep −∞).
        unsafe { acc = _mm512_mask_max_ps(acc, m, acc, _mm512_maskz_loadu_ps(m, xs.as_ptr().add(i))) };
        i += 16;
    }
    _mm512_reduce_max_ps(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_backward_avx512(p: &[f32], g: &mut [f32]) {
    let n = p.len();
    let mask = |i: usize| -> __mmask16 {
        let live = 16.min(n - i);
        if live == 16 {
            0xffff
        } else {
            ((1u32 << live) - 1) as __mmask16
        }
    };
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i < n {
        let m = mask(i);
        // SAFETY: lanes beyond the slices are masked off (and read as zero).
        unsafe { acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p.as_ptr().add(i)), _mm512_maskz_loadu_ps(m, g.as_ptr().add(i)), acc) };
        i += 16;
    }
    let dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
    let mut i = 0;
    while i < n {
        let m = mask(i);
        // SAFETY: as above.
        unsafe {
            let pv = _mm512_maskz_loadu_ps(m, p.as_ptr().add(i));
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(i));
            _mm512_mask_storeu_ps(g.as_mut_ptr().add(i), m, _mm512_mul_ps(pv, _mm512_sub_ps(gv, dot)));
        }
        i += 16;
    }
}

/// σ(g) for 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn sigmoid16(g: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn swiglu_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(up.len() == gate.len() && out.len() == gate.len());
    let mut i = 0;
    while i < gate.len() {
        let live = 16.min(gate.len() - i);
        let m: __mmask16 = if live == 16 { 0xffff } else { ((1u32 << live) - 1) as __mmask16 };
        // SAFETY: lanes beyond the slices are masked off.
        unsafe {
            let g = _mm512_maskz_loadu_ps(m, gate.as_ptr().add(i));
            let u = _mm512_maskz_loadu_ps(m, up.as_ptr().add(i));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid16(g)), u));
        }
        i += 16;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn swiglu_backward_avx512(gate: &[f32], up: &[f32], d_out: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    let n = gate.len();
    assert!(up.len() == n && d_out.len() == n && d_gate.len() == n && d_up.len() == n);
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i < n {
        let live = 16.min(n - i);
        let m: __mmask16 = if live == 16 { 0xffff } else { ((1u32 << live) - 1) as __mmask16 };
        // SAFETY: lanes beyond the slices are masked off.
        unsafe {
            let g = _mm512_maskz_loadu_ps(m, gate.as_ptr().add(i));
            let u = _mm512_maskz_loadu_ps(m, up.as_ptr().add(i));
            let d = _mm512_maskz_loadu_ps(m, d_out.as_ptr().add(i));
            let sig = sigmoid16(g);
            _mm512_mask_storeu_ps(d_up.as_mut_ptr().add(i), m, _mm512_mul_ps(d, _mm512_mul_ps(g, sig)));
            // σ(g)(1 + g(1 − σ(g)))
            let dsilu = _mm512_mul_ps(sig, _mm512_fmadd_ps(g, _mm512_sub_ps(one, sig), one));
            _mm512_mask_storeu_ps(d_gate.as_mut_ptr().add(i), m, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
        }
        i += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_scalar_exp() {
        let xs: Vec<f32> = (0..2001).map(|i| -110.0 + i as f32 * 0.1).collect();
        let mut got = xs.clone();
        let sum = exp_shifted_sum(&mut got, 10.0);
        let mut max_rel = 0.0f64;
        let mut expect_sum = 0.0f64;
        for (&x, &g) in xs.iter().zip(&got) {
            // The reference takes the same f32 argument the kernel sees.
            let e = f64::from(x - 10.0).exp();
            expect_sum += e;
            if e > 1e-37 {
                max_rel = max_rel.max((f64::from(g) - e).abs() / e);
            } else {
                assert!(f64::from(g) <= 2e-37, "exp({x} - 10) = {g}");
            }
        }
        println!("vectorized exp (AVX-512: {}): max relative error {max_rel:.2e}", avx512::available());
        assert!(max_rel < 1e-6, "max relative error {max_rel}");
        assert!((f64::from(sum) - expect_sum).abs() / expect_sum < 1e-5);
    }

    #[test]
    fn max_and_softmax_backward_match_the_scalar_formulas() {
        for n in [1usize, 15, 16, 17, 40] {
            let p: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 + 0.5) / 60.0).collect();
            let g0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
            let expect_max = g0.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&g0), expect_max, "max of {n}");
            let dot: f64 = p.iter().zip(&g0).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            let mut g = g0.clone();
            softmax_backward(&p, &mut g);
            let err = g
                .iter()
                .zip(p.iter().zip(&g0))
                .map(|(&got, (&pv, &gv))| (f64::from(got) - f64::from(pv) * (f64::from(gv) - dot)).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-6, "softmax_backward of {n}: max |diff| {err}");
        }
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn swiglu_and_its_gradient_match_the_scalar_formulas() {
        let n = 37;
        let g: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 9.0).collect();
        let u: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.05).collect();
        let d: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
        let (mut o, mut dg, mut du) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        swiglu(&g, &u, &mut o);
        swiglu_backward(&g, &u, &d, &mut dg, &mut du);
        for i in 0..n {
            let (g, u, d) = (f64::from(g[i]), f64::from(u[i]), f64::from(d[i]));
            let sig = 1.0 / (1.0 + (-g).exp());
            let close = |a: f32, b: f64| (f64::from(a) - b).abs() <= 1e-5 * (1.0 + b.abs());
            assert!(
                close(o[i], g * sig * u) && close(du[i], d * g * sig) && close(dg[i], d * u * sig * (1.0 + g * (1.0 - sig))),
                "element {i}"
            );
        }
    }
}
