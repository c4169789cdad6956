//! Arithmetic on one position's logits, as llama.cpp does it: the greedy choice and the
//! log-probability of a token. Below both engines, because the llama.cpp engine samples and
//! scores with them and evaluation compares engines by them.

/// Index of the largest logit: the first one on ties, NaNs never chosen over a number that
/// came before them. The same choice as llama.cpp's greedy sampler (a `>` scan from index 0).
/// 0 for an empty slice.
pub fn argmax(logits: &[f32]) -> usize {
    let Some(&first) = logits.first() else { return 0 };
    if first.is_nan() {
        return 0; // nothing compares greater than NaN
    }
    // Two passes that the compiler vectorises (a running index does not): the maximum, kept
    // in 16 lanes, then the first position holding it. `v > m` ignores NaNs as the scan does.
    let mut lanes = [first; 16];
    let chunks = logits.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lanes.iter().chain(tail).fold(first, |m, &v| if v > m { v } else { m });
    logits.iter().position(|&v| v == max).unwrap_or(0)
}

/// ln p(token) from raw logits, computed as llama.cpp's perplexity tool does (f32 logits, the
/// sum of exponentials in f64).
pub fn log_softmax_at(logits: &[f32], token: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(logits[token] - max) - sum_exp.ln()
}
