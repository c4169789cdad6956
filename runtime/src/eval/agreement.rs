//! How closely two engines (or two devices) agree on next-token distributions, position by
//! position: top-1 agreement, mean KL divergence and the largest logit difference.
//!
//! Used to check that a GPU backend computes what the CPU computes. Compare teacher-forced
//! logits (every position conditioned on the same reference text), not free-running
//! generations: one early near-tie flipping would make every later token differ.

pub use crate::logits::argmax;

/// Running totals over compared positions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Agreement {
    /// Positions compared.
    pub positions: usize,
    /// Positions where both sides' most likely token is the same.
    pub top1_matches: usize,
    /// Sum over positions of KL(reference || other) in nats.
    pub kl_sum: f64,
    /// Largest |reference logit - other logit| seen.
    pub max_logit_diff: f32,
}

/// Probabilities from logits, in f64 with the maximum subtracted first.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let z: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / z).collect()
}

/// KL(p || q) in nats for the distributions given by two logit vectors.
pub fn kl_divergence(reference: &[f32], other: &[f32]) -> f64 {
    let (p, q) = (softmax(reference), softmax(other));
    p.iter().zip(&q).filter(|(&p, _)| p > 0.0).map(|(&p, &q)| p * (p / q.max(f64::MIN_POSITIVE)).ln()).sum()
}

impl Agreement {
    /// Add one position. Both slices must have the vocabulary's length.
    ///
    /// # Panics
    /// If the lengths differ (a caller bug: the two sides ran different models).
    pub fn add(&mut self, reference: &[f32], other: &[f32]) {
        assert_eq!(reference.len(), other.len(), "logit vectors of different vocabularies");
        self.positions += 1;
        self.top1_matches += usize::from(argmax(reference) == argmax(other));
        self.kl_sum += kl_divergence(reference, other);
        let diff = reference.iter().zip(other).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        self.max_logit_diff = self.max_logit_diff.max(diff);
    }

    /// Fraction of positions with the same top-1 token (NaN before any position).
    pub fn top1(&self) -> f64 {
        self.top1_matches as f64 / self.positions as f64
    }

    /// Mean KL(reference || other) per position, in nats (NaN before any position).
    pub fn mean_kl(&self) -> f64 {
        self.kl_sum / self.positions as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_agree_fully() {
        let mut a = Agreement::default();
        let l = [0.5f32, -1.0, 3.0, 2.9];
        a.add(&l, &l);
        a.add(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(a.positions, 2);
        assert_eq!(a.top1(), 1.0);
        assert_eq!(a.mean_kl(), 0.0);
        assert_eq!(a.max_logit_diff, 0.0);
    }

    #[test]
    fn kl_matches_the_closed_form_for_two_tokens() {
        // p = softmax(0, 0) = (1/2, 1/2); q = softmax(ln 3, 0) = (3/4, 1/4):
        // KL(p||q) = 1/2 ln(2/3) + 1/2 ln 2.
        let kl = kl_divergence(&[0.0, 0.0], &[3f32.ln(), 0.0]);
        let expected = 0.5 * (2.0f64 / 3.0).ln() + 0.5 * 2.0f64.ln();
        assert!((kl - expected).abs() < 1e-7, "{kl} vs {expected}");
        // Adding a constant to all logits changes nothing.
        assert!(kl_divergence(&[5.0, 5.0], &[3f32.ln() - 2.0, -2.0]) - expected < 1e-6);
    }

    #[test]
    fn argmax_picks_what_llama_cpp_greedy_picks() {
        use llama_cpp_2::sampling::LlamaSampler;
        use llama_cpp_2::token::data::LlamaTokenData;
        use llama_cpp_2::token::data_array::LlamaTokenDataArray;
        use llama_cpp_2::token::LlamaToken;
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..200 {
            let n = 1 + (next() % 300) as usize;
            // Few distinct values, so that ties for the maximum are common.
            let mut logits: Vec<f32> = (0..n).map(|_| (next() % 7) as f32 - 3.0).collect();
            if case % 10 == 0 {
                logits[(next() % n as u64) as usize] = f32::NAN;
            }
            let mut data = LlamaTokenDataArray::from_iter(
                logits.iter().enumerate().map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
                false,
            );
            data.apply_sampler(&mut LlamaSampler::greedy());
            let llama = data.selected_token().map(|t| t.0 as usize);
            assert_eq!(llama, Some(argmax(&logits)), "case {case}: {logits:?}");
        }
    }

    #[test]
    fn a_flipped_top_token_counts_as_disagreement() {
        let mut a = Agreement::default();
        a.add(&[2.0, 1.0, 0.0], &[1.0, 2.0, 0.0]);
        a.add(&[2.0, 1.0, 0.0], &[2.5, 1.0, 0.0]);
        assert_eq!(a.top1_matches, 1);
        assert_eq!(a.top1(), 0.5);
        assert_eq!(a.max_logit_diff, 1.0);
        assert!(a.mean_kl() > 0.0);
    }
}
