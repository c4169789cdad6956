//! PEFT LoRA directories (`adapter_config.json` + `adapter_model.safetensors`), read into
//! llama.cpp's layout (GGUF names, q/k `lora_B` rows in the interleaved RoPE order, PEFT's
//! scaling turned into the GGUF alpha) and written from it. Both files are untrusted input
//! when read; the parsers here are fuzzed (`fuzz/`, target `peft_adapter`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::gguf::{write_gguf_adapter, LoraTensor, LoraTensorRef};
use crate::error::{Error, Result};
use crate::weights::llama_config::LlamaConfig;
use crate::weights::names::{gguf_to_hf_name, hf_to_gguf_name, permute_qk_rows_f32};
use crate::weights::safetensors::SafeTensors;

/// A PEFT LoRA directory read into llama.cpp's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapter {
    /// The alpha to store in the GGUF adapter (so that llama.cpp's `alpha/r` equals PEFT's
    /// scaling, `lora_alpha/r` or with rsLoRA `lora_alpha/sqrt(r)`).
    pub alpha: f32,
    pub tensors: Vec<LoraTensor>,
}

/// What lamina uses of `adapter_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// The file it was read from, for errors found later (ranks that contradict it).
    pub path: PathBuf,
    /// `r`, positive.
    pub r: u64,
    /// `lora_alpha`, finite and >= 0.
    pub lora_alpha: f64,
    /// `use_rslora`: scaling `lora_alpha / sqrt(r)` instead of `lora_alpha / r`.
    pub rslora: bool,
    /// Whether `rank_pattern` (per-module ranks) is present.
    pub rank_pattern: bool,
}

fn data_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason: reason.into() }
}

/// Parse the text of an `adapter_config.json` read from `path`. Errors ([`Error::Data`]
/// naming `path`): invalid JSON, a `peft_type` other than LORA, `r` or `lora_alpha` missing or
/// out of range, `use_dora`, a non-empty `alpha_pattern`.
pub fn parse_peft_config(path: &Path, text: &str) -> Result<PeftConfig> {
    let err = |reason: String| data_err(path, reason);
    let json: Value = serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    if !json.is_object() {
        return Err(err("expected a JSON object".into()));
    }
    if let Some(kind) = json.get("peft_type").and_then(Value::as_str) {
        if kind != "LORA" {
            return Err(err(format!("peft_type is `{kind}`, only LORA is supported")));
        }
    }
    let r = json.get("r").and_then(Value::as_u64).filter(|&r| r > 0).ok_or_else(|| err("`r` must be a positive integer".into()))?;
    let lora_alpha = json
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .filter(|a| a.is_finite() && *a >= 0.0)
        .ok_or_else(|| err("`lora_alpha` must be a number >= 0".into()))?;
    let flag = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("use_dora") {
        return Err(err("DoRA adapters (use_dora) are not supported".into()));
    }
    if json.get("alpha_pattern").and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
        return Err(err("per-module alpha (alpha_pattern) is not supported".into()));
    }
    Ok(PeftConfig { path: path.to_path_buf(), r, lora_alpha, rslora: flag("use_rslora"), rank_pattern: json.get("rank_pattern").is_some() })
}

/// The LoRA tensors of a PEFT `adapter_model.safetensors` for a LLaMA model of shape `config`:
/// strip `base_model.model.`, map Hugging Face names to GGUF names, permute the rows of q's and
/// k's `lora_B` to llama.cpp's RoPE layout (`lora_A` is unchanged), and turn
/// `r`/`lora_alpha`/`use_rslora` into the GGUF alpha. Errors ([`Error::Data`] naming the file):
/// a tensor that is not a LoRA weight of a linear layer, a module with only one of its two
/// matrices, matrices that do not share a rank, q/k rows that do not fit `config`, rsLoRA with
/// per-module ranks, ranks that contradict `r` without a `rank_pattern`, an alpha beyond f32.
pub fn peft_tensors(st: &SafeTensors, peft: &PeftConfig, config: &LlamaConfig) -> Result<PeftAdapter> {
    let st_err = |reason: String| data_err(st.path(), reason);
    // module (Hugging Face weight name) -> (lora_A name, lora_B name)
    let mut modules: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for name in st.names() {
        let stripped = name.strip_prefix("base_model.model.").unwrap_or(name);
        let (module, is_a) = if let Some(m) = stripped.strip_suffix(".lora_A.weight") {
            (m, true)
        } else if let Some(m) = stripped.strip_suffix(".lora_B.weight") {
            (m, false)
        } else {
            return Err(st_err(format!("tensor `{name}` is not a LoRA weight of a linear layer (lora_A/lora_B)")));
        };
        let entry = modules.entry(format!("{module}.weight")).or_default();
        let slot = if is_a { &mut entry.0 } else { &mut entry.1 };
        if slot.is_some() {
            // `x.lora_A.weight` and `base_model.model.x.lora_A.weight` name the same matrix.
            return Err(st_err(format!("`{module}` has two {} tensors", if is_a { "lora_A" } else { "lora_B" })));
        }
        *slot = Some(name.to_string());
    }
    if modules.is_empty() {
        return Err(st_err("no LoRA tensors".into()));
    }
    let hd = config.head_dim;
    let mut tensors = Vec::with_capacity(modules.len());
    let mut ranks = Vec::new();
    for (module, (a_name, b_name)) in modules {
        let (Some(a_name), Some(b_name)) = (a_name, b_name) else {
            return Err(st_err(format!("`{module}` has only one of lora_A and lora_B")));
        };
        let gguf_name = hf_to_gguf_name(&module)
            .filter(|n| n != "token_embd.weight" && !n.ends_with("_norm.weight"))
            .ok_or_else(|| st_err(format!("`{module}` is not a LLaMA linear layer lamina can adapt")))?;
        let (a_shape, b_shape) = (st.tensor(&a_name).map(|t| t.shape().to_vec()), st.tensor(&b_name).map(|t| t.shape().to_vec()));
        let (Some(a_shape), Some(b_shape)) = (a_shape, b_shape) else {
            return Err(st_err(format!("`{module}`: tensors vanished")));
        };
        if a_shape.len() != 2 || b_shape.len() != 2 || a_shape[0] != b_shape[1] || a_shape[0] == 0 || a_shape[1] == 0 || b_shape[0] == 0 {
            return Err(st_err(format!("`{module}`: lora_A {a_shape:?} and lora_B {b_shape:?} do not share a rank")));
        }
        let (rank, n_in, n_out) = (a_shape[0], a_shape[1], b_shape[0]);
        let a = st.to_f32(&a_name)?;
        let mut b = st.to_f32(&b_name)?;
        let heads = if gguf_name.ends_with("attn_q.weight") {
            Some(config.n_heads)
        } else if gguf_name.ends_with("attn_k.weight") {
            Some(config.n_kv_heads)
        } else {
            None
        };
        if let Some(heads) = heads {
            if n_out != heads * hd {
                return Err(st_err(format!("`{module}`: lora_B has {n_out} rows, the model's weight has {}", heads * hd)));
            }
            b = permute_qk_rows_f32(&b, heads, rank, true);
        }
        ranks.push(rank);
        tensors.push(LoraTensor { name: gguf_name, a, b, rank, n_in, n_out });
    }
    let cfg_err = |reason: String| data_err(&peft.path, reason);
    let same_rank = ranks.iter().all(|&x| x == ranks[0]);
    let alpha = if !peft.rslora {
        peft.lora_alpha
    } else if same_rank {
        // llama.cpp's alpha/r must equal lora_alpha/sqrt(r).
        peft.lora_alpha * (ranks[0] as f64).sqrt()
    } else {
        return Err(cfg_err("rsLoRA with per-module ranks (rank_pattern) is not supported".into()));
    };
    if !same_rank && ranks.iter().any(|&x| x as u64 != peft.r) && !peft.rank_pattern {
        return Err(cfg_err(format!("tensor ranks {ranks:?} differ from r = {}", peft.r)));
    }
    let alpha = alpha as f32;
    if !alpha.is_finite() {
        return Err(cfg_err(format!("`lora_alpha` {} is too large for an adapter's f32 alpha", peft.lora_alpha)));
    }
    Ok(PeftAdapter { alpha, tensors })
}

/// Read a PEFT LoRA directory for a LLaMA model of shape `config` ([`parse_peft_config`], then
/// [`peft_tensors`]). Errors: theirs, a path that is not a directory or lacks one of the two
/// files ([`Error::Data`]), [`Error::Io`] when a file cannot be read.
pub fn read_peft_adapter(dir: &Path, config: &LlamaConfig) -> Result<PeftAdapter> {
    let config_path = dir.join("adapter_config.json");
    if !dir.is_dir() {
        return Err(data_err(dir, "not a PEFT adapter directory"));
    }
    if !config_path.is_file() {
        return Err(data_err(&config_path, "missing: a PEFT adapter directory needs adapter_config.json"));
    }
    let bytes = std::fs::read(&config_path).map_err(|source| Error::Io { path: config_path.clone(), source })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| data_err(&config_path, format!("not UTF-8 text (invalid byte at {})", e.utf8_error().valid_up_to())))?;
    let peft = parse_peft_config(&config_path, &text)?;
    let st_path = dir.join("adapter_model.safetensors");
    if !st_path.is_file() {
        return Err(data_err(&st_path, "missing: a PEFT adapter directory needs adapter_model.safetensors"));
    }
    peft_tensors(&SafeTensors::open(&st_path)?, &peft, config)
}

/// Convert a PEFT LoRA directory to a GGUF adapter file at `out` (see [`read_peft_adapter`]).
pub fn peft_to_gguf(dir: &Path, out: &Path, config: &LlamaConfig, arch: &str) -> Result<()> {
    let peft = read_peft_adapter(dir, config)?;
    let tensors: Vec<LoraTensorRef<'_>> = peft.tensors.iter().map(LoraTensor::as_ref).collect();
    write_gguf_adapter(out, arch, peft.alpha, &tensors)
}

/// What `adapter_config.json` records of an adapter that lamina writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeftSettings {
    /// `r`.
    pub rank: usize,
    /// `lora_alpha`: PEFT scales by `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    pub lora_alpha: f32,
    /// `lora_dropout`.
    pub dropout: f32,
    /// `use_rslora`.
    pub rslora: bool,
}

/// Write a PEFT LoRA directory at `dir` (created if needed) that [`read_peft_adapter`] and
/// Hugging Face's peft read: `tensors` are given as [`LoraTensorRef`] documents them (GGUF
/// names, llama.cpp's row order) for a model of shape `config`, and are written with PEFT's
/// names and q/k `lora_B` rows in the Hugging Face RoPE order. The weights are written first
/// and the config last, each atomically, so a directory whose config is missing is never
/// taken for an adapter.
///
/// Errors: [`Error::InvalidArgument`] for a tensor whose name is not a LLaMA projection or
/// whose slices do not match its shape; [`Error::Io`] from the writes.
pub fn write_peft_adapter(dir: &Path, settings: &PeftSettings, tensors: &[LoraTensorRef<'_>], config: &LlamaConfig) -> Result<()> {
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(2 * tensors.len());
    let mut modules: Vec<String> = Vec::new();
    for t in tensors {
        if t.a.len() != t.rank * t.n_in || t.b.len() != t.n_out * t.rank {
            return Err(Error::invalid(
                "tensors",
                format!("`{}`: the slices do not match rank {} and shape {} x {}", t.name, t.rank, t.n_out, t.n_in),
            ));
        }
        let hf = gguf_to_hf_name(t.name).ok_or_else(|| Error::invalid("tensors", format!("`{}` is not a LLaMA weight", t.name)))?;
        let stem = hf.strip_suffix(".weight").unwrap_or(&hf);
        let module = stem.rsplit('.').next().unwrap_or(stem).to_string();
        if !modules.contains(&module) {
            modules.push(module);
        }
        let heads = if t.name.contains(".attn_q.") {
            Some(config.n_heads)
        } else if t.name.contains(".attn_k.") {
            Some(config.n_kv_heads)
        } else {
            None
        };
        let b = match heads {
            Some(heads) => permute_qk_rows_f32(t.b, heads, t.rank, false),
            None => t.b.to_vec(),
        };
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        named.push((format!("base_model.model.{stem}.lora_A.weight"), vec![t.rank, t.n_in], bytes(t.a)));
        named.push((format!("base_model.model.{stem}.lora_B.weight"), vec![t.n_out, t.rank], bytes(&b)));
    }
    crate::atomic_file::create_dir_all(dir)?;
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Internal(format!("adapter tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let weights = dir.join("adapter_model.safetensors");
    let tmp = crate::atomic_file::temp_path(&weights);
    let written = safetensors::serialize_to_file(views, None, &tmp).map_err(|e| e.to_string());
    crate::atomic_file::commit(&tmp, &weights, written)?;
    let config_json = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": settings.rank,
        "lora_alpha": settings.lora_alpha,
        "lora_dropout": settings.dropout,
        "use_rslora": settings.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "target_modules": modules,
    });
    let text =
        serde_json::to_string_pretty(&config_json).map_err(|e| Error::Internal(format!("the adapter config does not serialise: {e}")))?;
    crate::atomic_file::write_bytes(&dir.join("adapter_config.json"), (text + "\n").as_bytes())
}
