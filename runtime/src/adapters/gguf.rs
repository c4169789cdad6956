//! The GGUF LoRA adapter format: write, check and read.
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
//! only files that pass reach llama.cpp. Adapter files are untrusted input; the checks here
//! are fuzzed (`fuzz/`, target `gguf_adapter`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::weights::gguf::{Gguf, GgufWriter, MetaValue};
use crate::weights::GgmlType;

/// One LoRA target, borrowed: `a` is `(rank, n_in)` row-major (PyTorch's `lora_A`), `b` is
/// `(n_out, rank)` row-major (PyTorch's `lora_B`), both in llama.cpp's row order (q and k rows
/// of `b` already in the interleaved RoPE layout). `name` is the GGUF base tensor name, e.g.
/// `blk.0.attn_q.weight`.
#[derive(Debug, Clone, Copy)]
pub struct LoraTensorRef<'a> {
    pub name: &'a str,
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
}

/// One LoRA target, owned; see [`LoraTensorRef`] for the layout.
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
    pub fn as_ref(&self) -> LoraTensorRef<'_> {
        LoraTensorRef { name: &self.name, a: &self.a, b: &self.b, rank: self.rank, n_in: self.n_in, n_out: self.n_out }
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The GGUF LoRA adapter that llama.cpp loads, ready to write: F32 tensors, `adapter.lora.alpha = alpha`
/// (0 means llama.cpp applies `B·A` with the user's scale alone). `arch` is the base model's
/// `general.architecture`. Reusable by anything that produces adapters (import, training).
///
/// Errors: [`Error::InvalidArgument`] for a tensor whose slices do not match its shape, a zero
/// dimension, a non-finite alpha or an empty list.
pub fn gguf_adapter(arch: &str, alpha: f32, tensors: &[LoraTensorRef<'_>]) -> Result<GgufWriter<'static>> {
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
    Ok(w)
}

/// Write [`gguf_adapter`] to `path`, atomically. Errors: those of [`gguf_adapter`], and
/// [`Error::Io`] when writing fails.
pub fn write_gguf_adapter(path: &Path, arch: &str, alpha: f32, tensors: &[LoraTensorRef<'_>]) -> Result<()> {
    gguf_adapter(arch, alpha, tensors)?.write(path)
}

// ---------------------------------------------------------------------------------------------
// checking and reading
// ---------------------------------------------------------------------------------------------

/// What a validated GGUF adapter holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    /// `adapter.lora.alpha` (0 when absent).
    pub alpha: f32,
    /// Target base tensors with their rank, sorted by name.
    pub targets: Vec<(String, usize)>,
}

/// A GGUF adapter read into f32 tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufAdapter {
    /// `adapter.lora.alpha` (0 when absent).
    pub alpha: f32,
    /// One per target, sorted by name.
    pub tensors: Vec<LoraTensor>,
}

fn data_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason: reason.into() }
}

/// The `.lora_a` and `.lora_b` dims of one target.
struct Pair {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Pair {
    /// (n_in, rank, n_out).
    fn shape(&self) -> (u64, u64, u64) {
        (self.a[0], self.a[1], self.b[1])
    }
}

/// The checks that need no base model: the adapter keys with the types llama.cpp reads them
/// as, `lora_a`/`lora_b` pairs of F32 or F16 with two dimensions sharing a nonzero rank, no
/// target but linear weights. Returns the alpha, the architecture and the pairs by base name.
fn check_structure(adapter: &Gguf) -> Result<(f32, Option<&str>, BTreeMap<String, Pair>)> {
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
    let arch = string_key("general.architecture")?;
    let alpha = match adapter.get("adapter.lora.alpha") {
        None => 0.0,
        Some(MetaValue::F32(a)) if a.is_finite() && *a >= 0.0 => *a,
        Some(MetaValue::F32(a)) => return Err(err(format!("adapter.lora.alpha is {a}, expected a finite value >= 0"))),
        Some(other) => return Err(err(format!("adapter.lora.alpha is a {}, but llama.cpp requires an f32", other.meta_type()))),
    };
    if let Some(v) = adapter.get("adapter.alora.invocation_tokens") {
        return Err(err(format!("activated LoRA (adapter.alora.invocation_tokens, a {}) is not supported", v.meta_type())));
    }

    type Dims = Option<Vec<u64>>;
    let mut halves: BTreeMap<String, (Dims, Dims)> = BTreeMap::new();
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
        let entry = halves.entry(base_name.to_string()).or_default();
        let slot = if is_a { &mut entry.0 } else { &mut entry.1 };
        *slot = Some(t.dims.clone());
    }
    if halves.is_empty() {
        return Err(err("the adapter has no LoRA tensors".into()));
    }
    let mut pairs = BTreeMap::new();
    for (name, (a, b)) in halves {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(err(format!("`{name}` has only one of `.lora_a` and `.lora_b`")));
        };
        if name == "token_embd.weight" {
            return Err(err("LoRA on token_embd.weight is not supported".into()));
        }
        if a[1] != b[0] || a[1] == 0 || a[0] == 0 || b[1] == 0 {
            return Err(err(format!(
                "shape mismatch for `{name}`: lora_a is {a:?} and lora_b is {b:?}, which do not share a rank \
                 (expected lora_a [n_in, r] and lora_b [r, n_out], all nonzero)"
            )));
        }
        pairs.insert(name, Pair { a, b });
    }
    Ok((alpha, arch, pairs))
}

/// Check that `adapter` is a LoRA adapter llama.cpp can apply to the model in `base` without
/// failing or aborting: the structure (adapter keys, `lora_a`/`lora_b` pairs of F32 or F16
/// sharing a rank), the same architecture, each base tensor present in the model with
/// matching shapes. Errors: [`Error::Data`] naming the adapter file and the problem.
pub fn validate_gguf_adapter(adapter: &Gguf, base: &Gguf) -> Result<AdapterSummary> {
    let path = adapter.path();
    let err = |reason: String| data_err(path, reason);
    let (alpha, arch, pairs) = check_structure(adapter)?;
    let base_arch = base.get_str("general.architecture")?;
    if arch != Some(base_arch) {
        return Err(err(format!("general.architecture is {arch:?} but the model is `{base_arch}`")));
    }
    let mut targets = Vec::with_capacity(pairs.len());
    for (name, pair) in pairs {
        let Some(w) = base.tensors().iter().find(|t| t.name == name) else {
            return Err(err(format!("target `{name}` does not exist in the model {}", base.path().display())));
        };
        let (n_in, rank, n_out) = pair.shape();
        if w.dims.len() != 2 || w.dims[0] != n_in || w.dims[1] != n_out {
            return Err(err(format!(
                "shape mismatch for `{name}`: the model's weight is {:?}, lora_a is {:?} and lora_b is {:?} \
                 (expected lora_a [{}, r] and lora_b [r, {}])",
                w.dims,
                pair.a,
                pair.b,
                w.dims.first().copied().unwrap_or(0),
                w.dims.get(1).copied().unwrap_or(0)
            )));
        }
        targets.push((name, rank as usize));
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

/// The tensors of `adapter` validated as `summary` says, as f32.
pub fn read_lora_tensors(adapter: &Gguf, summary: &AdapterSummary) -> Result<Vec<LoraTensor>> {
    let mut out = Vec::with_capacity(summary.targets.len());
    for (name, rank) in &summary.targets {
        let a = tensor_f32(adapter, &format!("{name}.lora_a"))?;
        let b = tensor_f32(adapter, &format!("{name}.lora_b"))?;
        let (n_in, n_out) = (a.len() / rank, b.len() / rank);
        if a.len() != n_in * rank || b.len() != n_out * rank {
            return Err(data_err(adapter.path(), format!("`{name}`: the tensors changed since validation")));
        }
        out.push(LoraTensor { name: name.clone(), a, b, rank: *rank, n_in, n_out });
    }
    Ok(out)
}

/// Read a GGUF adapter without a base model to check it against (the native engine checks the
/// shapes against its own model): the structural checks of [`validate_gguf_adapter`], then
/// every target as f32.
pub fn read_gguf_adapter(adapter: &Gguf) -> Result<GgufAdapter> {
    let (alpha, _, pairs) = check_structure(adapter)?;
    let targets: Vec<(String, usize)> = pairs.into_iter().map(|(name, pair)| (name, pair.shape().1 as usize)).collect();
    let tensors = read_lora_tensors(adapter, &AdapterSummary { alpha, targets })?;
    Ok(GgufAdapter { alpha, tensors })
}
