//! Dropout with counter-based masks, for the residual stream and the attention probabilities
//! of full-parameter training.
//!
//! Element `i` of the mask of a [`Dropout`] is the `i`-th draw of `SplitMix64(seed)`: kept
//! (scaled by `1 / (1 − prob)`, so that the expectation is unchanged) when that draw, uniform
//! in [0, 1), is at least `prob`, else 0. A draw of SplitMix64 is a function of the seed and
//! its index alone, so a mask is the same whichever thread draws which part of it, and
//! whenever it is drawn again (a block recomputed in the backward pass). `y = x ∘ m` is its own
//! transpose: the backward multiplies the gradient by the same mask ([`Dropout::apply`] again).

use rayon::prelude::*;

use crate::native::lora::SplitMix64;

/// SplitMix64's increment: draw `i` of `SplitMix64(s)` is the first draw of
/// `SplitMix64(s + i · GAMMA)`.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One dropout mask: a probability in [0, 1) and a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub prob: f32,
    pub seed: u64,
}

impl Dropout {
    /// The mask at `index`: 0 (dropped) or `1 / (1 − prob)`.
    pub fn scale(&self, index: u64) -> f32 {
        let u = SplitMix64(self.seed.wrapping_add(index.wrapping_mul(GAMMA))).next_f32();
        if u < self.prob {
            0.0
        } else {
            1.0 / (1.0 - self.prob)
        }
    }

    /// `x[i] *= scale(offset + i)`: the forward on activations, the backward on their gradient.
    pub fn apply(&self, x: &mut [f32], offset: u64) {
        const CHUNK: usize = 4096;
        x.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
            let base = offset + (c * CHUNK) as u64;
            for (i, v) in chunk.iter_mut().enumerate() {
                *v *= self.scale(base + i as u64);
            }
        });
    }

    /// An independent mask for part `key` of this one (a sequence and head of the attention
    /// probabilities): same probability, a seed drawn from this seed and the key.
    pub fn fork(&self, key: u64) -> Dropout {
        Dropout { prob: self.prob, seed: SplitMix64(self.seed ^ key.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_expectation_and_are_the_sequential_draws() {
        let d = Dropout { prob: 0.25, seed: 42 };
        let mut x = vec![1.0f32; 100_000];
        d.apply(&mut x, 7);
        let kept = x.iter().filter(|&&v| v > 0.0).count() as f64 / x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
        // x[i] is draw 7 + i of the sequential generator.
        let mut rng = SplitMix64(42);
        for _ in 0..7 {
            rng.next_u64();
        }
        for &v in &x[..50] {
            assert_eq!(v > 0.0, rng.next_f32() >= 0.25);
        }
    }
}
