//! RMSNorm: `y = x / sqrt(mean(x²) + eps) ∘ w`, per row of a row-major `[tokens × width]`
//! buffer, parallel over rows. Squares are summed in f64, as ggml's CPU kernel does, which
//! keeps the native engine's logits close to llama.cpp's.
//!
//! Shapes: x, y, dx, dy `[n × d]`; w, dw `[d]`.

use rayon::prelude::*;

/// `out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight` for every row of width `weight.len()`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(o, xr)| {
        let scale = rms_scale(xr, eps);
        for ((o, &v), &w) in o.iter_mut().zip(xr).zip(weight) {
            *o = v * scale * w;
        }
    });
}

/// `1 / sqrt(mean(x²) + eps)`, the per-row factor of RMSNorm.
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mean = (dot_f64(x, x) / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `Σ a·b` in f64, in [`LANES`] running sums added in a fixed order at the end. Why not one
/// running sum: each addition would wait for the one before it (four cycles a step, a third
/// of a forward pass's norm time); independent sums let the compiler vectorize the loop, and
/// in f64 the different order changes the result by far less than an f32 rounding.
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += f64::from(x[i]) * f64::from(y[i]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ (w·g)·x` (the product `w·g` in f32), summed as [`dot_f64`] sums.
fn weighted_dot_f64(g: &[f32], w: &[f32], x: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let (cg, cw, cx) = (g.chunks_exact(LANES), w.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f64 =
        cg.remainder().iter().zip(cw.remainder()).zip(cx.remainder()).map(|((&g, &w), &x)| f64::from(w * g) * f64::from(x)).sum();
    for ((g, w), x) in cg.zip(cw).zip(cx) {
        for i in 0..LANES {
            acc[i] += f64::from(w[i] * g[i]) * f64::from(x[i]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Gradient of [`rms_norm`]: `dx += ∂/∂x` for upstream `dy`, per row:
/// `dx = r·(w∘dy) − x·r³·mean(w∘dy∘x)` with `r = 1/sqrt(mean(x²) + eps)`.
pub fn rms_norm_backward(x: &[f32], weight: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    let d = weight.len();
    dx.par_chunks_mut(d).zip(x.par_chunks(d).zip(dy.par_chunks(d))).for_each(|(dxr, (xr, dyr))| {
        let r = rms_scale(xr, eps);
        let dot = weighted_dot_f64(dyr, weight, xr);
        let c = (dot / d as f64) as f32 * r * r * r;
        for (((o, &x), &g), &w) in dxr.iter_mut().zip(xr).zip(dyr).zip(weight) {
            *o += r * w * g - x * c;
        }
    });
}

/// Gradient of [`rms_norm`] with respect to its weight: `dw += Σ_rows dy ∘ x · r` (summed in
/// row order, so the result does not depend on the thread count).
pub fn rms_norm_weight_grad(x: &[f32], eps: f32, dy: &[f32], dw: &mut [f32]) {
    let d = dw.len();
    let mut acc = vec![0.0f64; d];
    for (xr, dyr) in x.chunks_exact(d).zip(dy.chunks_exact(d)) {
        let r = f64::from(rms_scale(xr, eps));
        for ((a, &x), &g) in acc.iter_mut().zip(xr).zip(dyr) {
            *a += f64::from(g) * f64::from(x) * r;
        }
    }
    dw.iter_mut().zip(&acc).for_each(|(w, a)| *w += *a as f32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_rows() {
        let x = [3.0f32, 4.0, 0.0, 0.0];
        let w = [1.0f32, 1.0, 2.0, 2.0];
        let mut out = [0.0f32; 4];
        rms_norm(&x, &w, 0.0, &mut out);
        // mean of squares = 25/4, rms = 2.5
        assert!((out[0] - 1.2).abs() < 1e-6 && (out[1] - 1.6).abs() < 1e-6);
    }

    /// Both gradients against central finite differences of the forward in f64.
    #[test]
    fn gradients_match_finite_differences() {
        let (n, d, eps) = (3usize, 5usize, 1e-5f32);
        let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.91).cos()).collect();
        let loss = |x: &[f32], w: &[f32]| -> f64 {
            let mut y = vec![0.0f32; n * d];
            rms_norm(x, w, eps, &mut y);
            y.iter().zip(&dy).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
        };
        let mut dx = vec![0.0f32; n * d];
        rms_norm_backward(&x, &w, eps, &dy, &mut dx);
        let mut dw = vec![0.0f32; d];
        rms_norm_weight_grad(&x, eps, &dy, &mut dw);
        let h = 1e-3f32;
        for i in 0..n * d {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (loss(&p, &w) - loss(&m, &w)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(dx[i])).abs() < 2e-3, "dx[{i}]: {} vs {fd}", dx[i]);
        }
        for j in 0..d {
            let (mut p, mut m) = (w.clone(), w.clone());
            p[j] += h;
            m[j] -= h;
            let fd = (loss(&x, &p) - loss(&x, &m)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(dw[j])).abs() < 2e-3, "dw[{j}]: {} vs {fd}", dw[j]);
        }
    }
}
