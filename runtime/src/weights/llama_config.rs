//! [`LlamaConfig`]: the shape of a LLaMA-architecture model, read from a GGUF file's metadata
//! or from a Hugging Face `config.json`, validated the same way for both.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;

/// LLaMA 3 style RoPE frequency scaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// The hyper-parameters of a LLaMA-architecture decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    /// The LM head shares the token embedding matrix.
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl LlamaConfig {
    /// Read the configuration from a GGUF file's `llama.*` metadata. The architecture must be
    /// `llama`; the embeddings are tied when the file has no `output.weight` tensor.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let data_err = |reason: String| Error::Data { path: g.path().to_path_buf(), line: None, reason };
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(data_err(format!("unsupported architecture `{arch}` (general.architecture): only `llama` is supported")));
        }
        let u = |key: &str| g.get_u64(key).map(|v| v as usize);
        let opt_u = |key: &str| -> Result<Option<usize>> {
            if g.get(key).is_some() {
                u(key).map(Some)
            } else {
                Ok(None)
            }
        };
        let opt_f = |key: &str| -> Result<Option<f32>> {
            if g.get(key).is_some() {
                g.get_f32(key).map(Some)
            } else {
                Ok(None)
            }
        };
        let opt_id = |key: &str| -> Result<Option<u32>> {
            if g.get(key).is_some() {
                g.get_u32(key).map(Some)
            } else {
                Ok(None)
            }
        };

        let hidden_size = u("llama.embedding_length")?;
        let n_heads = u("llama.attention.head_count")?;
        let n_kv_heads = opt_u("llama.attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = match opt_u("llama.rope.dimension_count")? {
            Some(d) => d,
            None if n_heads > 0 => hidden_size / n_heads,
            None => 0,
        };
        let vocab_size = match opt_u("llama.vocab_size")? {
            Some(v) => v,
            None if g.get("tokenizer.ggml.tokens").is_some() => g.get_array("tokenizer.ggml.tokens")?.len(),
            None => return Err(data_err("missing metadata key `llama.vocab_size` (and no `tokenizer.ggml.tokens` to count)".into())),
        };
        let max_position_embeddings = u("llama.context_length")?;

        let rope_scaling = match g.get("llama.rope.scaling.type") {
            None => None,
            Some(_) => match g.get_str("llama.rope.scaling.type")? {
                "none" => None,
                "llama3" => Some(RopeScaling {
                    factor: g.get_f32("llama.rope.scaling.factor")?,
                    low_freq_factor: opt_f("llama.rope.scaling.low_freq_factor")?.unwrap_or(1.0),
                    high_freq_factor: opt_f("llama.rope.scaling.high_freq_factor")?.unwrap_or(4.0),
                    original_max_position_embeddings: opt_u("llama.rope.scaling.original_context_length")?
                        .unwrap_or(max_position_embeddings),
                }),
                other => {
                    return Err(data_err(format!(
                        "unsupported rope scaling type `{other}` (llama.rope.scaling.type): only `llama3` is supported"
                    )))
                }
            },
        };

        let config = LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size: u("llama.feed_forward_length")?,
            n_layers: u("llama.block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_norm_eps: g.get_f32("llama.attention.layer_norm_rms_epsilon")?,
            rope_theta: opt_f("llama.rope.freq_base")?.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings: !g.tensors().iter().any(|t| t.name == "output.weight"),
            bos_token_id: opt_id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: opt_id("tokenizer.ggml.eos_token_id")?,
        };
        config.check().map_err(|e| data_err(format!("invalid llama configuration: {e}")))?;
        Ok(config)
    }

    /// Read a Hugging Face `config.json` (`LlamaConfig` fields). Errors name the file: OS
    /// errors as [`Error::Io`], invalid JSON, a missing or mistyped field, an unsupported rope
    /// scaling type or inconsistent sizes as [`Error::Data`].
    pub fn from_hf_config_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_hf_config_bytes(path, &bytes)
    }

    /// [`from_hf_config_json`](Self::from_hf_config_json) on the file's bytes; `path` only
    /// names the file in errors (the fuzz targets call this from memory). Bytes that are not
    /// UTF-8 are invalid JSON, an [`Error::Data`] like any other malformed content, rather than
    /// the I/O error that reading the file as a `String` would give.
    pub(crate) fn from_hf_config_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let data_err = |reason: String| Error::Data { path: path.to_path_buf(), line: None, reason };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| data_err(format!("invalid JSON: {e}")))?;
        Self::from_hf_value(&value).map_err(data_err)
    }

    /// [`from_hf_config_json`](Self::from_hf_config_json) on an already parsed JSON value;
    /// the error is the reason only.
    fn from_hf_value(value: &Value) -> std::result::Result<Self, String> {
        let hf = HfConfig::deserialize(value).map_err(|e| format!("invalid config: {e}"))?;
        if let Some(model_type) = &hf.model_type {
            if model_type != "llama" {
                return Err(format!("unsupported model_type `{model_type}`: only `llama` is supported"));
            }
        }
        let n_kv_heads = hf.num_key_value_heads.unwrap_or(hf.num_attention_heads);
        let head_dim = match hf.head_dim {
            Some(d) => d,
            None if hf.num_attention_heads > 0 => hf.hidden_size / hf.num_attention_heads,
            None => 0,
        };
        let rope_scaling = match &hf.rope_scaling {
            None | Some(Value::Null) => None,
            Some(v) => parse_hf_rope_scaling(v)?,
        };
        let config = LlamaConfig {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            n_layers: hf.num_hidden_layers,
            n_heads: hf.num_attention_heads,
            n_kv_heads,
            head_dim,
            rms_norm_eps: hf.rms_norm_eps as f32,
            rope_theta: hf.rope_theta.unwrap_or(10_000.0) as f32,
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            bos_token_id: token_id("bos_token_id", hf.bos_token_id.as_ref())?,
            eos_token_id: token_id("eos_token_id", hf.eos_token_id.as_ref())?,
        };
        config.check().map_err(|e| format!("invalid llama configuration: {e}"))?;
        Ok(config)
    }

    /// Check the sizes: all positive, heads divide the width, KV heads divide the heads.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|reason| Error::invalid("config", reason))
    }

    fn check(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.n_heads) {
            return Err(format!("the head count ({}) does not divide hidden_size ({})", self.n_heads, self.hidden_size));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!("the KV head count ({}) does not divide the head count ({})", self.n_kv_heads, self.n_heads));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim ({}) must be even for RoPE", self.head_dim));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(format!("rms_norm_eps ({}) must be positive", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("rope_theta ({}) must be positive", self.rope_theta));
        }
        if let Some(s) = &self.rope_scaling {
            // Finite as well as ordered: an infinite factor (an f32 infinity in GGUF, or an f64
            // too large for f32 in config.json) passes the comparisons, but it scales nothing
            // sensibly and cannot be written back to config.json, which has no infinity.
            let finite = s.factor.is_finite() && s.low_freq_factor.is_finite() && s.high_freq_factor.is_finite();
            if !(finite && s.factor > 0.0 && s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor) {
                return Err(format!(
                    "rope_scaling needs finite factors, factor > 0 and high_freq_factor > low_freq_factor > 0 \
                     (got {s:?})"
                ));
            }
            if s.original_max_position_embeddings == 0 {
                return Err("rope_scaling.original_max_position_embeddings must be positive".into());
            }
        }
        Ok(())
    }

    /// This configuration as a Hugging Face `config.json` value (`LlamaForCausalLM`).
    pub fn to_hf_config_json(&self) -> Value {
        let mut v = json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": short_f64(self.rms_norm_eps),
            "rope_theta": short_f64(self.rope_theta),
            "rope_scaling": Value::Null,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
        });
        if let Some(s) = &self.rope_scaling {
            v["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": short_f64(s.factor),
                "low_freq_factor": short_f64(s.low_freq_factor),
                "high_freq_factor": short_f64(s.high_freq_factor),
                "original_max_position_embeddings": s.original_max_position_embeddings,
            });
        }
        if let Some(id) = self.bos_token_id {
            v["bos_token_id"] = json!(id);
        }
        if let Some(id) = self.eos_token_id {
            v["eos_token_id"] = json!(id);
        }
        v
    }
}

/// `x` as the f64 with the same shortest decimal form (1e-5, not 9.999999747378752e-6); it
/// converts back to exactly `x`.
fn short_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// The fields of a Hugging Face LLaMA `config.json` that lamina reads; others are ignored.
#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

#[derive(Deserialize)]
struct HfLlama3Scaling {
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max_position_embeddings: usize,
}

fn parse_hf_rope_scaling(v: &Value) -> std::result::Result<Option<RopeScaling>, String> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| "rope_scaling has no `rope_type` (or `type`) string".to_string())?;
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let s = HfLlama3Scaling::deserialize(v).map_err(|e| format!("invalid rope_scaling: {e}"))?;
            Ok(Some(RopeScaling {
                factor: s.factor as f32,
                low_freq_factor: s.low_freq_factor as f32,
                high_freq_factor: s.high_freq_factor as f32,
                original_max_position_embeddings: s.original_max_position_embeddings,
            }))
        }
        other => Err(format!("unsupported rope scaling type `{other}`: only `llama3` is supported")),
    }
}

/// A token id given as an integer, a list of integers (the first is taken) or null.
fn token_id(field: &str, v: Option<&Value>) -> std::result::Result<Option<u32>, String> {
    let v = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => match items.first() {
            None => return Ok(None),
            Some(first) => first,
        },
        Some(v) => v,
    };
    v.as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .map(Some)
        .ok_or_else(|| format!("`{field}` must be a token id (a non-negative integer) or a list of them, got {v}"))
}
