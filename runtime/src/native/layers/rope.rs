//! Rotary position embeddings. Forward rotates each pair of a head by its position's angle;
//! the backward pass applies the inverse rotation (a rotation's transpose is its inverse).
//!
//! Shapes: x `[n × n_heads·head_dim]`, row r at position `positions[r]`; the table holds
//! `[positions × head_dim/2]` cosines and sines.

use rayon::prelude::*;

use crate::weights::llama_config::RopeScaling;

/// How the two halves of each rotated pair are laid out within a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs (2i, 2i+1): llama.cpp's `llama` layout. GGUF converters permute the q and k rows
    /// of Hugging Face checkpoints into it.
    Interleaved,
    /// Pairs (i, i + d/2): Hugging Face's `rotate_half`, as safetensors checkpoints store q/k.
    Halves,
}

/// Rotation angles per position and frequency, computed once per forward call.
pub struct RopeTable {
    half: usize,
    /// `[positions × half]` cosines and sines.
    cos: Vec<f32>,
    sin: Vec<f32>,
    layout: RopeLayout,
}

/// Per-frequency inverse wavelengths `base^(-2i/d)`, with llama3-style scaling applied (from
/// the config, or from a GGUF's `rope_freqs` tensor of divisors when given).
pub fn rope_frequencies(head_dim: usize, base: f32, scaling: Option<&RopeScaling>, freq_divisors: Option<&[f32]>) -> Vec<f32> {
    let half = head_dim / 2;
    (0..half)
        .map(|i| {
            let freq = (f64::from(base).powf(-2.0 * i as f64 / head_dim as f64)) as f32;
            if let Some(div) = freq_divisors {
                return freq / div[i];
            }
            match scaling {
                None => freq,
                Some(s) => llama3_scale(freq, s),
            }
        })
        .collect()
}

/// Hugging Face's `_compute_llama3_parameters` for one frequency: long wavelengths are divided
/// by `factor`, short ones kept, and the band between interpolated smoothly.
fn llama3_scale(freq: f32, s: &RopeScaling) -> f32 {
    let old = s.original_max_position_embeddings as f32;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    let wavelen = 2.0 * std::f32::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor
    } else {
        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

impl RopeTable {
    /// Angles for positions `0..n_pos`.
    pub fn new(freqs: &[f32], n_pos: usize, layout: RopeLayout) -> RopeTable {
        let half = freqs.len();
        let mut cos = Vec::with_capacity(n_pos * half);
        let mut sin = Vec::with_capacity(n_pos * half);
        for p in 0..n_pos {
            for &f in freqs {
                let theta = p as f32 * f;
                cos.push(theta.cos());
                sin.push(theta.sin());
            }
        }
        RopeTable { half, cos, sin, layout }
    }

    /// Rotate every head of every row in place: `x` is `[rows × n_heads·head_dim]` and row r
    /// sits at position `positions[r]`. `inverse` rotates by the negative angle (the adjoint,
    /// which the backward pass needs).
    pub fn apply(&self, x: &mut [f32], n_heads: usize, positions: &[usize], inverse: bool) {
        let hd = 2 * self.half;
        let width = n_heads * hd;
        x.par_chunks_mut(width).zip(positions.par_iter()).for_each(|(row, &p)| {
            let cos = &self.cos[p * self.half..(p + 1) * self.half];
            let sin = &self.sin[p * self.half..(p + 1) * self.half];
            for head in row.chunks_exact_mut(hd) {
                for i in 0..self.half {
                    let (a, b) = match self.layout {
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        RopeLayout::Halves => (i, i + self.half),
                    };
                    let (c, s) = (cos[i], if inverse { -sin[i] } else { sin[i] });
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_layouts_agree_up_to_permutation() {
        let freqs = rope_frequencies(8, 10_000.0, None, None);
        let inter = RopeTable::new(&freqs, 5, RopeLayout::Interleaved);
        let halves = RopeTable::new(&freqs, 5, RopeLayout::Halves);
        let hf: Vec<f32> = (0..8).map(|i| i as f32 * 0.37 - 1.0).collect();
        // GGUF row 2i+h = HF row h*4+i.
        let gguf: Vec<f32> = (0..8).map(|j| hf[(j % 2) * 4 + j / 2]).collect();
        let (mut a, mut b) = (gguf.clone(), hf.clone());
        inter.apply(&mut a, 1, &[4], false);
        halves.apply(&mut b, 1, &[4], false);
        for j in 0..8 {
            assert!((a[j] - b[(j % 2) * 4 + j / 2]).abs() < 1e-6);
        }
        // Rotation is orthogonal: the inverse undoes it.
        inter.apply(&mut a, 1, &[4], true);
        for j in 0..8 {
            assert!((a[j] - gguf[j]).abs() < 1e-5);
        }
    }

    #[test]
    fn llama3_scaling_bands() {
        let s = RopeScaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 };
        assert_eq!(llama3_scale(1.0, &s), 1.0);
        assert!((llama3_scale(1e-5, &s) - 1e-5 / 8.0).abs() < 1e-12);
    }
}
