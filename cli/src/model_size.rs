//! The flags that give a model's sizes, shared by `lamina init-model`, `lamina pretrain` (one
//! preset and overrides) and `lamina sweep` (several presets, each with the same overrides).

use clap::Args;
use lamina::pretrain::init::{ModelSpec, PRESETS};
use lamina::Error;

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { name, reason: reason.into() }
}

/// Sizes that override a preset's, or that make up a model without one.
#[derive(Args, Debug)]
pub struct SizeArgs {
    /// Transformer blocks.
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Width of the residual stream (hidden size).
    #[arg(long, value_name = "N")]
    width: Option<usize>,
    /// Attention heads (width / heads must be even).
    #[arg(long, value_name = "N")]
    heads: Option<usize>,
    /// Key/value heads (default: the preset's, or --heads).
    #[arg(long, value_name = "N")]
    kv_heads: Option<usize>,
    /// Inner width of the MLP.
    #[arg(long, value_name = "N")]
    ffn: Option<usize>,
    /// Context length (default: the preset's, or 512).
    #[arg(long, value_name = "N")]
    ctx: Option<usize>,
}

impl SizeArgs {
    /// Whether any size was given.
    pub fn any(&self) -> bool {
        [self.layers, self.width, self.heads, self.kv_heads, self.ffn, self.ctx].iter().any(Option::is_some)
    }

    /// The spec when no preset is named: --layers, --width, --heads and --ffn are then needed,
    /// the context defaults to 512 and every head has its own keys and values.
    pub fn without_preset(&self, vocab_size: usize) -> Result<ModelSpec, Error> {
        let missing: Vec<&str> = [("--layers", self.layers), ("--width", self.width), ("--heads", self.heads), ("--ffn", self.ffn)]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(flag, _)| *flag)
            .collect();
        if !missing.is_empty() {
            return Err(invalid(
                "preset",
                format!("give a --preset ({}) or the sizes; missing: {}", PRESETS.join(", "), missing.join(", ")),
            ));
        }
        let mut spec = ModelSpec::preset(PRESETS[0], vocab_size)?;
        spec.context_length = 512;
        spec.n_kv_heads = self.heads.unwrap_or(1);
        self.apply(&mut spec);
        Ok(spec)
    }

    /// The given sizes written over `spec`'s (a preset's). Not validated: the caller does that
    /// once everything is set.
    pub fn apply(&self, spec: &mut ModelSpec) {
        let set = |field: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut spec.n_layers, self.layers);
        set(&mut spec.width, self.width);
        if let Some(heads) = self.heads {
            spec.n_heads = heads;
            // A preset's KV heads need not divide other head counts: with --heads alone,
            // every head has its own keys and values.
            if self.kv_heads.is_none() && !heads.is_multiple_of(spec.n_kv_heads.max(1)) {
                spec.n_kv_heads = heads;
            }
        }
        set(&mut spec.n_kv_heads, self.kv_heads);
        set(&mut spec.ffn_width, self.ffn);
        set(&mut spec.context_length, self.ctx);
    }
}

/// The model's sizes: a preset and the flags that override it (`lamina pretrain` and `lamina
/// init-model` both take them).
#[derive(Args, Debug)]
pub struct ModelSpecArgs {
    /// Sizes to start from: 1m, 5m or 20m (parameters at a 4096-token vocabulary); the flags
    /// below override them. Without a preset, --layers, --width, --heads and --ffn are needed.
    #[arg(long, value_parser = PRESETS)]
    preset: Option<String>,
    #[command(flatten)]
    sizes: SizeArgs,
    /// RoPE base frequency.
    #[arg(long, value_name = "F")]
    rope_base: Option<f32>,
    /// RMSNorm epsilon.
    #[arg(long, value_name = "F")]
    rms_eps: Option<f32>,
    /// Tie the LM head to the token embeddings (the default).
    #[arg(long, conflicts_with = "untied")]
    tied: bool,
    /// A separate LM head.
    #[arg(long)]
    untied: bool,
    /// Rows of the embedding, when more than the tokenizer's vocabulary (e.g. a multiple of 64).
    #[arg(long, value_name = "N")]
    vocab_size: Option<usize>,
}

impl ModelSpecArgs {
    /// Whether any size was given.
    pub fn given(&self) -> bool {
        self.preset.is_some()
            || self.sizes.any()
            || self.vocab_size.is_some()
            || self.rope_base.is_some()
            || self.rms_eps.is_some()
            || self.tied
            || self.untied
    }

    /// The spec these flags describe for a tokenizer of `vocab_size` tokens.
    pub fn spec(&self, vocab_size: usize) -> Result<ModelSpec, Error> {
        let mut spec = match &self.preset {
            Some(name) => {
                let mut spec = ModelSpec::preset(name, vocab_size)?;
                self.sizes.apply(&mut spec);
                spec
            }
            None => self.sizes.without_preset(vocab_size)?,
        };
        if let Some(rows) = self.vocab_size {
            spec.vocab_size = rows;
        }
        if let Some(base) = self.rope_base {
            spec.rope_base = base;
        }
        if let Some(eps) = self.rms_eps {
            spec.rms_norm_eps = eps;
        }
        if self.untied {
            spec.tied_embeddings = false;
        } else if self.tied {
            spec.tied_embeddings = true;
        }
        spec.validate()?;
        Ok(spec)
    }
}
