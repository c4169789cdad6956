//! LoRA adapters served through llama.cpp: the GGUF adapter format (write, validate, read),
//! the PEFT import, rank-concatenation merging, and the [`Adapter`] handle a [`Model`] hands out.
//!
//! Format (what llama.cpp's `llama_adapter_lora_init` reads): `general.type = "adapter"`,
//! `general.architecture` = the base model's, `adapter.type = "lora"`, `adapter.lora.alpha` as
//! an F32 (any other type aborts llama.cpp's reader), and per target weight `W` a pair
//! `W.lora_a` (ggml dims `[n_in, r]`, PyTorch `(r, in)`) and `W.lora_b` (ggml `[r, n_out]`,
//! PyTorch `(out, r)`). llama.cpp computes `y = W x + s·B(A x)` with `s = scale·alpha/r`
//! (`s = scale` when alpha is 0), `r` read per tensor from `lora_b`.
//!
//! Validation: llama.cpp aborts the process (rather than failing) on some malformed adapters,
//! so every file is checked with lamina's own GGUF reader first ([`validate_gguf_adapter`]):
//! only files that pass reach llama.cpp.
//!
//! Several adapters at once: llama-cpp-2's context can only activate one adapter, so a set
//! `{(A_i, B_i, scale_i)}` is served as one merged adapter of concatenated rank:
//! `A = [A_1; A_2; ...]`, `B = [f_1·B_1 | f_2·B_2 | ...]` with `f_i = scale_i·alpha_i/r_i`,
//! which gives exactly `Σ f_i·B_i·A_i`. The merged file is written with alpha 0 so that
//! llama.cpp applies it with factor 1 whatever each tensor's rank (targets of only some
//! adapters have a smaller concatenated rank than others).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use super::backend::{take_last_llama_error, CONTEXT_CREATION};
use super::model::{Model, ModelInner};
use crate::error::{Error, Result};
use crate::native::config::LlamaConfig;
use crate::native::convert::{hf_to_gguf_name, permute_qk_rows};
use crate::weights::gguf::{Gguf, GgufWriter, MetaValue};
use crate::weights::safetensors::SafeTensors;
use crate::weights::GgmlType;

// ---------------------------------------------------------------------------------------------
// tensors and the GGUF adapter writer
// ---------------------------------------------------------------------------------------------

/// One LoRA target, borrowed: `a` is `(rank, n_in)` row-major (PyTorch's `lora_A`), `b` is
/// `(n_out, rank)` row-major (PyTorch's `lora_B`), both in llama.cpp's row order (q and k rows
/// of `b` already in the interleaved RoPE layout). `name` is the GGUF base tensor name, e.g.
/// `blk.0.attn_q.weight`.
#[derive(Debug, Clone, Copy)]
pub struct LoraWeights<'a> {
    pub name: &'a str,
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
}

/// One LoRA target, owned; see [`LoraWeights`] for the layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTensor {
    pub name: String,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
}

impl LoraTensor {
    pub fn as_weights(&self) -> LoraWeights<'_> {
        LoraWeights { name: &self.name, a: &self.a, b: &self.b, rank: self.rank, n_in: self.n_in, n_out: self.n_out }
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Write a GGUF LoRA adapter that llama.cpp loads: F32 tensors, `adapter.lora.alpha = alpha`
/// (0 means llama.cpp applies `B·A` with the user's scale alone). `arch` is the base model's
/// `general.architecture`. Reusable by anything that produces adapters (import, training).
///
/// Errors: [`Error::InvalidArgument`] for a tensor whose slices do not match its shape, a zero
/// dimension, a non-finite alpha or an empty list; [`Error::Io`] when writing fails.
pub fn write_gguf_adapter(path: &Path, arch: &str, alpha: f32, tensors: &[LoraWeights<'_>]) -> Result<()> {
    if !alpha.is_finite() || alpha < 0.0 {
        return Err(Error::invalid("alpha", format!("must be finite and >= 0, got {alpha}")));
    }
    if tensors.is_empty() {
        return Err(Error::invalid("tensors", "an adapter needs at least one target tensor"));
    }
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", arch)?;
    w.add_metadata("general.type", "adapter")?;
    w.add_metadata("adapter.type", "lora")?;
    w.add_metadata("adapter.lora.alpha", MetaValue::F32(alpha))?;
    for t in tensors {
        if t.rank == 0 || t.n_in == 0 || t.n_out == 0 {
            return Err(Error::invalid("tensors", format!("`{}`: rank and sizes must be positive", t.name)));
        }
        if t.a.len() != t.rank * t.n_in || t.b.len() != t.n_out * t.rank {
            return Err(Error::invalid(
                "tensors",
                format!(
                    "`{}`: a has {} values and b {}, expected {}x{} and {}x{}",
                    t.name,
                    t.a.len(),
                    t.b.len(),
                    t.rank,
                    t.n_in,
                    t.n_out,
                    t.rank
                ),
            ));
        }
        w.add_tensor(format!("{}.lora_a", t.name), GgmlType::F32, &[t.n_in as u64, t.rank as u64], f32_bytes(t.a))?;
        w.add_tensor(format!("{}.lora_b", t.name), GgmlType::F32, &[t.rank as u64, t.n_out as u64], f32_bytes(t.b))?;
    }
    w.write(path)
}

// ---------------------------------------------------------------------------------------------
// validation and reading
// ---------------------------------------------------------------------------------------------

/// What a validated GGUF adapter holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    /// `adapter.lora.alpha` (0 when absent).
    pub alpha: f32,
    /// Target base tensors with their rank, sorted by name.
    pub targets: Vec<(String, usize)>,
}

fn data_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason: reason.into() }
}

/// Check that `adapter` is a LoRA adapter llama.cpp can apply to the model in `base` without
/// failing or aborting: the adapter keys with the types llama.cpp reads them as, the same
/// architecture, `lora_a`/`lora_b` pairs of F32 or F16 and two dimensions, each base tensor
/// present in the model with matching shapes. Errors: [`Error::Io`] (cannot open) or
/// [`Error::Data`] naming the adapter file and the problem.
pub fn validate_gguf_adapter(adapter: &Gguf, base: &Gguf) -> Result<AdapterSummary> {
    let path = adapter.path();
    let err = |reason: String| data_err(path, reason);
    let string_key = |key: &str| -> Result<Option<&str>> {
        match adapter.get(key) {
            None => Ok(None),
            Some(MetaValue::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(err(format!("metadata `{key}` is a {}, expected a string", other.meta_type()))),
        }
    };
    match string_key("general.type")? {
        Some("adapter") => {}
        other => {
            return Err(err(format!(
                "general.type is {}, expected \"adapter\": this is not a LoRA adapter (a model file?)",
                other.map(|t| format!("`{t}`")).unwrap_or_else(|| "missing".into())
            )))
        }
    }
    match string_key("adapter.type")? {
        Some("lora") => {}
        other => return Err(err(format!("adapter.type is {other:?}, expected \"lora\""))),
    }
    let base_arch = base.get_str("general.architecture")?;
    match string_key("general.architecture")? {
        Some(arch) if arch == base_arch => {}
        other => return Err(err(format!("general.architecture is {other:?} but the model is `{base_arch}`"))),
    }
    let alpha = match adapter.get("adapter.lora.alpha") {
        None => 0.0,
        Some(MetaValue::F32(a)) if a.is_finite() && *a >= 0.0 => *a,
        Some(MetaValue::F32(a)) => return Err(err(format!("adapter.lora.alpha is {a}, expected a finite value >= 0"))),
        Some(other) => {
            return Err(err(format!("adapter.lora.alpha is a {}, but llama.cpp requires an f32", other.meta_type())))
        }
    };
    if let Some(v) = adapter.get("adapter.alora.invocation_tokens") {
        return Err(err(format!("activated LoRA (adapter.alora.invocation_tokens, a {}) is not supported", v.meta_type())));
    }

    // (a dims, b dims) per base tensor.
    type Dims = Option<Vec<u64>>;
    let mut pairs: BTreeMap<String, (Dims, Dims)> = BTreeMap::new();
    for t in adapter.tensors() {
        let (base_name, is_a) = if let Some(n) = t.name.strip_suffix(".lora_a") {
            (n, true)
        } else if let Some(n) = t.name.strip_suffix(".lora_b") {
            (n, false)
        } else if t.name.ends_with("_norm.weight") {
            continue; // llama.cpp ignores norm tensors in adapters
        } else {
            return Err(err(format!("tensor `{}` is neither a `.lora_a` nor a `.lora_b`", t.name)));
        };
        if !matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16) {
            return Err(err(format!("tensor `{}` is {}, only f32 and f16 are supported", t.name, t.ggml_type)));
        }
        if t.dims.len() != 2 {
            return Err(err(format!("tensor `{}` has {} dimensions, expected 2", t.name, t.dims.len())));
        }
        let entry = pairs.entry(base_name.to_string()).or_default();
        let slot = if is_a { &mut entry.0 } else { &mut entry.1 };
        *slot = Some(t.dims.clone());
    }
    if pairs.is_empty() {
        return Err(err("the adapter has no LoRA tensors".into()));
    }
    let mut targets = Vec::with_capacity(pairs.len());
    for (name, (a, b)) in pairs {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(err(format!("`{name}` has only one of `.lora_a` and `.lora_b`")));
        };
        if name == "token_embd.weight" {
            return Err(err("LoRA on token_embd.weight is not supported".into()));
        }
        let Some(w) = base.tensors().iter().find(|t| t.name == name) else {
            return Err(err(format!("target `{name}` does not exist in the model {}", base.path().display())));
        };
        if w.dims.len() != 2 || w.dims[0] != a[0] || w.dims[1] != b[1] || a[1] != b[0] {
            return Err(err(format!(
                "shape mismatch for `{name}`: the model's weight is {:?}, lora_a is {a:?} and lora_b is {b:?} \
                 (expected lora_a [{}, r] and lora_b [r, {}])",
                w.dims,
                w.dims.first().copied().unwrap_or(0),
                w.dims.get(1).copied().unwrap_or(0)
            )));
        }
        targets.push((name, b[0] as usize));
    }
    Ok(AdapterSummary { alpha, targets })
}

fn tensor_f32(g: &Gguf, name: &str) -> Result<Vec<f32>> {
    let view = g.tensor(name).ok_or_else(|| data_err(g.path(), format!("tensor `{name}` is missing")))?;
    let data = view.data();
    match view.ggml_type() {
        GgmlType::F32 => Ok(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        GgmlType::F16 => Ok(data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        other => Err(data_err(g.path(), format!("tensor `{name}` is {other}, only f32 and f16 are supported"))),
    }
}

/// The tensors of a validated adapter, as f32.
fn read_lora_tensors(adapter: &Gguf, summary: &AdapterSummary) -> Result<Vec<LoraTensor>> {
    let mut out = Vec::with_capacity(summary.targets.len());
    for (name, rank) in &summary.targets {
        let a = tensor_f32(adapter, &format!("{name}.lora_a"))?;
        let b = tensor_f32(adapter, &format!("{name}.lora_b"))?;
        let (n_in, n_out) = (a.len() / rank, b.len() / rank);
        out.push(LoraTensor { name: name.clone(), a, b, rank: *rank, n_in, n_out });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// PEFT import
// ---------------------------------------------------------------------------------------------

/// A PEFT LoRA directory read into llama.cpp's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapter {
    /// The alpha to store in the GGUF adapter (so that llama.cpp's `alpha/r` equals PEFT's
    /// scaling, `lora_alpha/r` or with rsLoRA `lora_alpha/sqrt(r)`).
    pub alpha: f32,
    pub tensors: Vec<LoraTensor>,
}

/// Read a PEFT LoRA directory (`adapter_config.json` + `adapter_model.safetensors`) for a
/// LLaMA model of shape `config`: strip `base_model.model.`, map Hugging Face names to GGUF
/// names, permute the rows of q's and k's `lora_B` to llama.cpp's RoPE layout (`lora_A` is
/// unchanged), and turn `r`/`lora_alpha`/`use_rslora` into the GGUF alpha.
///
/// Errors ([`Error::Data`] naming the file): missing files, `use_dora`, `alpha_pattern`,
/// rsLoRA with per-module ranks, a tensor that is not a LoRA weight of a linear layer, shapes
/// that do not fit `config`.
pub fn read_peft_adapter(dir: &Path, config: &LlamaConfig) -> Result<PeftAdapter> {
    let config_path = dir.join("adapter_config.json");
    if !dir.is_dir() {
        return Err(data_err(dir, "not a PEFT adapter directory"));
    }
    if !config_path.is_file() {
        return Err(data_err(&config_path, "missing: a PEFT adapter directory needs adapter_config.json"));
    }
    let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io { path: config_path.clone(), source })?;
    let json: Value = serde_json::from_str(&text).map_err(|e| data_err(&config_path, format!("invalid JSON: {e}")))?;
    let cfg_err = |reason: String| data_err(&config_path, reason);
    if let Some(kind) = json.get("peft_type").and_then(Value::as_str) {
        if kind != "LORA" {
            return Err(cfg_err(format!("peft_type is `{kind}`, only LORA is supported")));
        }
    }
    let r = json.get("r").and_then(Value::as_u64).filter(|&r| r > 0).ok_or_else(|| cfg_err("`r` must be a positive integer".into()))?;
    let lora_alpha = json
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .filter(|a| a.is_finite() && *a >= 0.0)
        .ok_or_else(|| cfg_err("`lora_alpha` must be a number >= 0".into()))?;
    let flag = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("use_dora") {
        return Err(cfg_err("DoRA adapters (use_dora) are not supported".into()));
    }
    if json.get("alpha_pattern").and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
        return Err(cfg_err("per-module alpha (alpha_pattern) is not supported".into()));
    }
    let rslora = flag("use_rslora");

    let st_path = dir.join("adapter_model.safetensors");
    if !st_path.is_file() {
        return Err(data_err(&st_path, "missing: a PEFT adapter directory needs adapter_model.safetensors"));
    }
    let st = SafeTensors::open(&st_path)?;
    let st_err = |reason: String| data_err(&st_path, reason);
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
        if a_shape.len() != 2 || b_shape.len() != 2 || a_shape[0] != b_shape[1] || a_shape[0] == 0 {
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
            let bytes = permute_qk_rows(&f32_bytes(&b), heads, rank * 4, true);
            b = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        }
        ranks.push(rank);
        tensors.push(LoraTensor { name: gguf_name, a, b, rank, n_in, n_out });
    }
    let same_rank = ranks.iter().all(|&x| x == ranks[0]);
    let alpha = if !rslora {
        lora_alpha
    } else if same_rank {
        // llama.cpp's alpha/r must equal lora_alpha/sqrt(r).
        lora_alpha * (ranks[0] as f64).sqrt()
    } else {
        return Err(cfg_err("rsLoRA with per-module ranks (rank_pattern) is not supported".into()));
    };
    if !same_rank && ranks.iter().any(|&x| x as u64 != r) && json.get("rank_pattern").is_none() {
        return Err(cfg_err(format!("tensor ranks {ranks:?} differ from r = {r}")));
    }
    Ok(PeftAdapter { alpha: alpha as f32, tensors })
}

/// Convert a PEFT LoRA directory to a GGUF adapter file at `out` (see [`read_peft_adapter`]).
pub fn peft_to_gguf(dir: &Path, out: &Path, config: &LlamaConfig, arch: &str) -> Result<()> {
    let peft = read_peft_adapter(dir, config)?;
    let weights: Vec<LoraWeights<'_>> = peft.tensors.iter().map(LoraTensor::as_weights).collect();
    write_gguf_adapter(out, arch, peft.alpha, &weights)
}

// ---------------------------------------------------------------------------------------------
// merging
// ---------------------------------------------------------------------------------------------

/// Merge adapters `(tensors, alpha, scale)` into one adapter of concatenated rank whose
/// `B·A` is `Σ scale_i·(alpha_i/r_i)·B_i·A_i` (`scale_i` alone when alpha_i is 0), to be
/// written with alpha 0 and applied with scale 1.
pub fn merge_lora(parts: &[(&[LoraTensor], f32, f32)]) -> Vec<LoraTensor> {
    let mut merged: BTreeMap<&str, LoraTensor> = BTreeMap::new();
    for &(tensors, alpha, scale) in parts {
        for t in tensors {
            let factor = if alpha != 0.0 { scale * alpha / t.rank as f32 } else { scale };
            let m = merged.entry(&t.name).or_insert_with(|| LoraTensor {
                name: t.name.clone(),
                a: Vec::new(),
                b: Vec::new(),
                rank: 0,
                n_in: t.n_in,
                n_out: t.n_out,
            });
            // A: stack rows.
            m.a.extend_from_slice(&t.a);
            // B: append columns, row by row.
            let old_rank = m.rank;
            let new_rank = old_rank + t.rank;
            let mut b = Vec::with_capacity(t.n_out * new_rank);
            for row in 0..t.n_out {
                b.extend_from_slice(&m.b[row * old_rank..(row + 1) * old_rank]);
                b.extend(t.b[row * t.rank..(row + 1) * t.rank].iter().map(|v| v * factor));
            }
            m.b = b;
            m.rank = new_rank;
        }
    }
    merged.into_values().collect()
}

// ---------------------------------------------------------------------------------------------
// loading into llama.cpp, and the handle
// ---------------------------------------------------------------------------------------------

/// A llama.cpp adapter pointer. llama.cpp owns it and frees it with its model; lamina never
/// frees it, and keeps the model alive while any handle to it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoraPtr(pub(crate) NonNull<llama_cpp_sys_2::llama_adapter_lora>);

// SAFETY: a loaded adapter is immutable (llama.cpp only reads it while decoding).
unsafe impl Send for LoraPtr {}
// SAFETY: as above.
unsafe impl Sync for LoraPtr {}

// `LlamaLoraAdapter` is `#[repr(transparent)]` over llama-cpp-2's `Ptr`, itself
// `#[repr(transparent)]` over `NonNull<llama_adapter_lora>`; session.rs relies on that to hand a
// lamina-loaded adapter to `LlamaContext::lora_adapter_set`.
const _: () = assert!(
    std::mem::size_of::<llama_cpp_2::model::LlamaLoraAdapter>()
        == std::mem::size_of::<NonNull<llama_cpp_sys_2::llama_adapter_lora>>()
);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A path for a short-lived adapter file under the cache directory (`adapters/`).
fn temp_adapter_path(kind: &str) -> Result<PathBuf> {
    let dir = crate::paths::cache_dir().join("adapters");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("{kind}-{}-{n}.gguf", std::process::id())))
}

/// Hand a validated GGUF adapter file to llama.cpp. Serialized with context creation: adapter
/// initialisation registers the adapter in the model, which contexts read when they size their
/// compute graphs.
pub(crate) fn llama_load_adapter(model: &ModelInner, path: &Path) -> Result<LoraPtr> {
    let path_str = path.to_str().ok_or_else(|| Error::invalid("path", "the path is not valid UTF-8"))?;
    let c_path = std::ffi::CString::new(path_str).map_err(|_| Error::invalid("path", "the path contains a NUL byte"))?;
    let model_ptr = model.raw_model();
    let _guard = CONTEXT_CREATION.lock().unwrap_or_else(|p| p.into_inner());
    let _ = take_last_llama_error();
    // SAFETY: `model_ptr` is the live model owned by `model`; the file passed lamina's
    // validation, so llama.cpp fails (returns NULL) rather than aborting on it; the lock keeps
    // other threads from creating contexts (reading the model's adapter set) meanwhile.
    let raw = unsafe { llama_cpp_sys_2::llama_adapter_lora_init(model_ptr.as_ptr(), c_path.as_ptr()) };
    NonNull::new(raw).map(LoraPtr).ok_or_else(|| Error::ModelLoad {
        path: path.to_path_buf(),
        reason: take_last_llama_error().unwrap_or_else(|| "llama.cpp could not load the LoRA adapter".into()),
    })
}

/// Where an adapter's weights come from, to read them again when merging.
#[derive(Debug, Clone)]
enum Source {
    Gguf(PathBuf),
    Peft(PathBuf),
}

pub(crate) struct AdapterInner {
    id: u64,
    model: Model,
    ptr: LoraPtr,
    source: Source,
    path: PathBuf,
    alpha: f32,
    targets: Vec<(String, usize)>,
}

/// A LoRA adapter loaded into a [`Model`] with [`Model::load_adapter`]. Cheap to clone; it keeps
/// its model alive. Apply it to a session with [`Session::set_adapters`](super::Session::set_adapters).
#[derive(Clone)]
pub struct Adapter {
    pub(crate) inner: Arc<AdapterInner>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").field("path", &self.inner.path).field("rank", &self.rank()).finish_non_exhaustive()
    }
}

impl PartialEq for Adapter {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}
impl Eq for Adapter {}

impl Adapter {
    /// The file or PEFT directory it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
    /// The largest rank over its targets.
    pub fn rank(&self) -> usize {
        self.inner.targets.iter().map(|(_, r)| *r).max().unwrap_or(0)
    }
    /// `adapter.lora.alpha` (0 = none: llama.cpp then applies the user's scale alone).
    pub fn alpha(&self) -> f32 {
        self.inner.alpha
    }
    /// The GGUF names of the weights it adapts, sorted.
    pub fn targets(&self) -> Vec<&str> {
        self.inner.targets.iter().map(|(n, _)| n.as_str()).collect()
    }
    /// The model it belongs to.
    pub fn model(&self) -> &Model {
        &self.inner.model
    }
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }
    pub(crate) fn ptr(&self) -> LoraPtr {
        self.inner.ptr
    }

    /// Its tensors as f32, read again from the source.
    fn tensors(&self) -> Result<Vec<LoraTensor>> {
        match &self.inner.source {
            Source::Gguf(path) => {
                let g = Gguf::open(path)?;
                let base = Gguf::open(self.inner.model.path())?;
                let summary = validate_gguf_adapter(&g, &base)?;
                if summary.targets != self.inner.targets {
                    return Err(data_err(path, "the file changed since it was loaded"));
                }
                read_lora_tensors(&g, &summary)
            }
            Source::Peft(dir) => {
                let base = Gguf::open(self.inner.model.path())?;
                Ok(read_peft_adapter(dir, &LlamaConfig::from_gguf(&base)?)?.tensors)
            }
        }
    }
}

/// Merged adapters already loaded into a model, by (adapter id, scale bits) sorted by id.
pub(crate) type MergeCache = HashMap<Vec<(u64, u32)>, LoraPtr>;

/// Load the adapter at `path` (GGUF file or PEFT directory) into `model`.
pub(crate) fn load_adapter(model: &Model, path: &Path) -> Result<Adapter> {
    let base = Gguf::open(model.path())?;
    let (source, summary, ptr) = if path.is_dir() {
        let config = LlamaConfig::from_gguf(&base)?;
        let arch = base.get_str("general.architecture")?.to_string();
        let peft = read_peft_adapter(path, &config)?;
        let tmp = temp_adapter_path("peft")?;
        let weights: Vec<LoraWeights<'_>> = peft.tensors.iter().map(LoraTensor::as_weights).collect();
        let loaded = write_gguf_adapter(&tmp, &arch, peft.alpha, &weights).and_then(|()| {
            let g = Gguf::open(&tmp)?;
            let summary = validate_gguf_adapter(&g, &base).map_err(|e| match e {
                // Name the PEFT directory, not the temporary file.
                Error::Data { reason, .. } => data_err(path, reason),
                other => other,
            })?;
            drop(g);
            Ok((summary, llama_load_adapter(&model.inner, &tmp)?))
        });
        // llama.cpp copied the weights into its own buffers: the file is not needed any more.
        let _ = std::fs::remove_file(&tmp);
        let (summary, ptr) = loaded?;
        (Source::Peft(path.to_path_buf()), summary, ptr)
    } else {
        let g = Gguf::open(path)?;
        let summary = validate_gguf_adapter(&g, &base)?;
        drop(g);
        let ptr = llama_load_adapter(&model.inner, path)?;
        (Source::Gguf(path.to_path_buf()), summary, ptr)
    };
    Ok(Adapter {
        inner: Arc::new(AdapterInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            model: model.clone(),
            ptr,
            source,
            path: path.to_path_buf(),
            alpha: summary.alpha,
            targets: summary.targets,
        }),
    })
}

/// The llama.cpp adapter that applies `set` (at least two adapters of `model`, nonzero scales)
/// with scale 1: from the model's cache, or merged, written to a temporary file, loaded and
/// cached. Merged adapters stay in memory until the model is dropped.
pub(crate) fn merged_adapter(model: &Model, set: &[(Adapter, f32)]) -> Result<LoraPtr> {
    let mut key: Vec<(u64, u32)> = set.iter().map(|(a, s)| (a.id(), s.to_bits())).collect();
    key.sort_unstable();
    let mut cache = model.inner.merged.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ptr) = cache.get(&key) {
        return Ok(*ptr);
    }
    let mut sorted: Vec<&(Adapter, f32)> = set.iter().collect();
    sorted.sort_by_key(|(a, _)| a.id());
    let tensors: Vec<Vec<LoraTensor>> = sorted.iter().map(|(a, _)| a.tensors()).collect::<Result<_>>()?;
    let parts: Vec<(&[LoraTensor], f32, f32)> =
        sorted.iter().zip(&tensors).map(|((a, s), t)| (t.as_slice(), a.alpha(), *s)).collect();
    let merged = merge_lora(&parts);
    let arch = model.meta("general.architecture").unwrap_or_else(|| "llama".into());
    let tmp = temp_adapter_path("merged")?;
    let weights: Vec<LoraWeights<'_>> = merged.iter().map(LoraTensor::as_weights).collect();
    let loaded = write_gguf_adapter(&tmp, &arch, 0.0, &weights).and_then(|()| llama_load_adapter(&model.inner, &tmp));
    let _ = std::fs::remove_file(&tmp);
    let ptr = loaded?;
    cache.insert(key, ptr);
    Ok(ptr)
}
