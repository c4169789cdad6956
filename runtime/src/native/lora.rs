//! LoRA adapters for the native engine: which projections they target, their shapes and
//! scaling, and their parameters in memory.
//!
//! A target `W` (out × in) computes `y = W x + s · B (A dropout(x))` with `A` (r × in) and `B`
//! (out × r), `s = alpha / r` (or `alpha / sqrt(r)` with rsLoRA). As in PEFT, `A` starts
//! uniform in ±1/sqrt(in) (Kaiming-uniform with a = sqrt(5)) and `B` at zero, so a fresh
//! adapter leaves the model unchanged. Matrices are row-major in PyTorch orientation, which
//! is also the byte layout of llama.cpp's GGUF adapters (`lora_a` = [in, r] in ggml order).

use crate::error::{Error, Result};
use crate::weights::names::LAYER_NAMES;

use crate::weights::llama_config::LlamaConfig;

/// A projection LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] =
        [LoraTarget::Q, LoraTarget::K, LoraTarget::V, LoraTarget::O, LoraTarget::Gate, LoraTarget::Up, LoraTarget::Down];

    /// Index in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The PEFT / Hugging Face module name (`q_proj`, ..., `down_proj`), from the name table.
    pub fn hf_name(self) -> &'static str {
        let gguf = self.gguf_name();
        let (hf, _) =
            LAYER_NAMES.iter().find(|(_, g)| g.strip_suffix(".weight") == Some(gguf)).expect("every LoRA target is in the name table");
        let module = hf.strip_suffix(".weight").expect("table names end in .weight");
        module.rsplit('.').next().unwrap_or(module)
    }

    /// The GGUF tensor stem (`attn_q`, ..., `ffn_down`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "attn_q",
            LoraTarget::K => "attn_k",
            LoraTarget::V => "attn_v",
            LoraTarget::O => "attn_output",
            LoraTarget::Gate => "ffn_gate",
            LoraTarget::Up => "ffn_up",
            LoraTarget::Down => "ffn_down",
        }
    }

    /// Parse `q`, `q_proj`, `attn_q`, ... (case-insensitive).
    pub fn parse(s: &str) -> Result<LoraTarget> {
        let l = s.trim().to_ascii_lowercase();
        LoraTarget::ALL
            .into_iter()
            .find(|t| l == t.hf_name() || l == t.gguf_name() || l == t.hf_name().trim_end_matches("_proj"))
            .ok_or_else(|| Error::invalid("targets", format!("unknown LoRA target `{s}`: use q, k, v, o, gate, up or down")))
    }

    /// (out, in) of this projection in `config`.
    pub fn shape(self, c: &LlamaConfig) -> (usize, usize) {
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        match self {
            LoraTarget::Q => (qw, d),
            LoraTarget::K | LoraTarget::V => (kw, d),
            LoraTarget::O => (d, qw),
            LoraTarget::Gate | LoraTarget::Up => (ff, d),
            LoraTarget::Down => (d, ff),
        }
    }
}

/// Hyper-parameters of an adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    /// Probability of zeroing an input element of the LoRA branch during training.
    pub dropout: f32,
    /// rsLoRA: scale by alpha / sqrt(rank) instead of alpha / rank.
    pub rslora: bool,
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, rslora: false, targets: LoraTarget::ALL.to_vec() }
    }
}

impl LoraConfig {
    /// The factor `s` applied to `B A x`.
    pub fn scale(&self) -> f32 {
        if self.rslora {
            self.alpha / (self.rank as f32).sqrt()
        } else {
            self.alpha / self.rank as f32
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::invalid("rank", "must be at least 1"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::invalid("alpha", format!("must be a positive number, got {}", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid("dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        if self.targets.is_empty() {
            return Err(Error::invalid("targets", "at least one projection must be adapted"));
        }
        Ok(())
    }
}

/// One adapted projection: `a` is r × in, `b` is out × r, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub n_in: usize,
    pub n_out: usize,
    pub rank: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// An adapter's parameters: per layer, one optional pair per target (indexed by
/// [`LoraTarget::index`]). Gradients use the same type.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraWeights {
    pub config: LoraConfig,
    pub layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraWeights {
    /// A fresh adapter for `model`: A uniform in ±1/sqrt(in) from `seed`, B zero.
    pub fn new(model: &LlamaConfig, config: &LoraConfig, seed: u64) -> Result<LoraWeights> {
        config.validate()?;
        let mut rng = SplitMix64(seed);
        let layers = (0..model.n_layers)
            .map(|_| {
                std::array::from_fn(|i| {
                    let t = LoraTarget::ALL[i];
                    config.targets.contains(&t).then(|| {
                        let (n_out, n_in) = t.shape(model);
                        let bound = 1.0 / (n_in as f32).sqrt();
                        let a = (0..config.rank * n_in).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect();
                        LoraPair { n_in, n_out, rank: config.rank, a, b: vec![0.0; n_out * config.rank] }
                    })
                })
            })
            .collect();
        Ok(LoraWeights { config: config.clone(), layers })
    }

    /// Same shapes, all zeros (for gradients and optimizer moments).
    pub fn zeros_like(&self) -> LoraWeights {
        let mut z = self.clone();
        z.for_each_tensor_mut(|_, _, _, t| t.fill(0.0));
        z
    }

    /// Visit every parameter tensor: (layer, target, is_b, values).
    pub fn for_each_tensor_mut(&mut self, mut f: impl FnMut(usize, LoraTarget, bool, &mut [f32])) {
        for (l, layer) in self.layers.iter_mut().enumerate() {
            for (i, pair) in layer.iter_mut().enumerate() {
                if let Some(p) = pair {
                    f(l, LoraTarget::ALL[i], false, &mut p.a);
                    f(l, LoraTarget::ALL[i], true, &mut p.b);
                }
            }
        }
    }

    /// Visit every parameter tensor read-only.
    pub fn for_each_tensor(&self, mut f: impl FnMut(usize, LoraTarget, bool, &[f32])) {
        for (l, layer) in self.layers.iter().enumerate() {
            for (i, pair) in layer.iter().enumerate() {
                if let Some(p) = pair {
                    f(l, LoraTarget::ALL[i], false, &p.a);
                    f(l, LoraTarget::ALL[i], true, &p.b);
                }
            }
        }
    }

    /// Every parameter tensor, mutably, in the order of [`for_each_tensor`](Self::for_each_tensor)
    /// (A then B of each pair, layer by layer): adapters of the same shape line up index by
    /// index, which is how the optimizer walks weights and moments together.
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            for p in layer.iter_mut().flatten() {
                out.push(p.a.as_mut_slice());
                out.push(p.b.as_mut_slice());
            }
        }
        out
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        let mut n = 0;
        self.for_each_tensor(|_, _, _, t| n += t.len());
        n
    }

    pub fn pair(&self, layer: usize, target: LoraTarget) -> Option<&LoraPair> {
        self.layers.get(layer).and_then(|l| l[target.index()].as_ref())
    }

    /// Check that the adapter fits `model` (layer count and every pair's shape).
    pub fn check_fits(&self, model: &LlamaConfig) -> Result<()> {
        if self.layers.len() != model.n_layers {
            return Err(Error::invalid("adapter", format!("has {} layers, the model {}", self.layers.len(), model.n_layers)));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            for (i, pair) in layer.iter().enumerate() {
                if let Some(p) = pair {
                    let t = LoraTarget::ALL[i];
                    let (out, inp) = t.shape(model);
                    if (p.n_out, p.n_in) != (out, inp) || p.a.len() != p.rank * inp || p.b.len() != out * p.rank {
                        return Err(Error::invalid("adapter", format!("layer {l} {}: shape does not fit the model", t.hf_name())));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A small, fast, seedable generator (SplitMix64): deterministic initialisation and dropout
/// masks without a dependency; statistical quality is ample for both.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}
