//! The architecture of a model trained from scratch and its random initialisation.
//!
//! [`ModelSpec`] is a LLaMA decoder's shape (presets `1m`, `5m`, `20m`, or explicit sizes),
//! with its parameter count ([`ModelSpec::n_params`]) and the memory full-parameter training
//! needs ([`ModelSpec::training_memory`]). [`init_model`] draws the weights from a seed and
//! writes a Hugging Face directory (`model.safetensors` in f32 with Hugging Face names and
//! q/k rows in the `rotate_half` layout, `config.json`, the tokenizer files), then converts it
//! to GGUF with [`safetensors_to_gguf`], so one code path defines the GGUF.
//!
//! # Initialisation
//!
//! As GPT-2 and Hugging Face's LLaMA (`initializer_range` 0.02): the token embeddings, the LM
//! head when untied, and every projection are normal(0, `std`); the projections that write into
//! the residual stream, attention's `o_proj` and the MLP's `down_proj`, are scaled by
//! 1/sqrt(2 × layers), so that the stream's variance does not grow with depth; RMSNorm weights
//! are 1. Each tensor draws from its own generator, seeded by the seed and the tensor's name
//! (SplitMix64 with the Box-Muller transform), so a tensor does not depend on the others (a
//! tied or untied head, a copied embedding) nor on the thread count.
//!
//! The token embeddings may instead come from an existing GGUF model whose vocabulary is the
//! same token for token and whose width is the same ([`InitOptions::embeddings_from`]).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::native::convert::{expected_hf_tensors, safetensors_to_gguf};
use crate::native::lora::SplitMix64;
use crate::native::tokenizer::Tokenizer;
use crate::weights::dequant::dequantize_row;
use crate::weights::gguf::Gguf;
use crate::weights::llama_config::LlamaConfig;

use super::tokenizer_train::{TOKENIZER_CONFIG_FILE, TOKENIZER_FILE};

/// The preset names of [`ModelSpec::preset`], smallest first.
pub const PRESETS: [&str; 3] = ["1m", "5m", "20m"];

/// The vocabulary size the presets are named for: their parameter counts (about 1M, 5M and
/// 20M) are at this size; each 1,024 more tokens add 1,024 × width parameters (twice that
/// untied).
pub const PRESET_VOCAB_SIZE: usize = 4096;

/// The shape of a LLaMA decoder: SwiGLU MLP, RMSNorm, RoPE, grouped-query attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Transformer blocks.
    pub n_layers: usize,
    /// The residual stream's width (`hidden_size`).
    pub width: usize,
    /// Attention heads; each has width / heads dimensions, an even number (RoPE rotates pairs).
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); divides `n_heads`.
    pub n_kv_heads: usize,
    /// The MLP's inner width (`intermediate_size`).
    pub ffn_width: usize,
    /// Positions the model is trained for (`max_position_embeddings`).
    pub context_length: usize,
    /// RoPE's base frequency (`rope_theta`).
    pub rope_base: f32,
    pub rms_norm_eps: f32,
    /// The LM head is the token embedding matrix.
    pub tied_embeddings: bool,
    /// Rows of the embedding: the tokenizer's vocabulary size, or more (the extra rows get
    /// unused placeholder tokens in the GGUF).
    pub vocab_size: usize,
}

/// Bytes of full-parameter training, by what holds them ([`ModelSpec::training_memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrainingMemory {
    /// The trainable weights in f32.
    pub weights: u64,
    /// Their gradients in f32.
    pub gradients: u64,
    /// AdamW's two moments in f32.
    pub optimizer: u64,
    /// The F32 GGUF file the run starts from, memory-mapped.
    pub model_file: u64,
    /// Saved activations of one micro-batch with every block's tape kept (the trainer's
    /// activation budget can lower this by recomputing blocks), plus the residual stream, its
    /// gradient and the LM head's logits chunk.
    pub activations: u64,
}

impl TrainingMemory {
    pub fn total(&self) -> u64 {
        self.weights + self.gradients + self.optimizer + self.model_file + self.activations
    }
}

/// Most parameters a spec may have (about 1.1 × 10^12): beyond any machine lamina runs on,
/// and far from overflowing the size arithmetic.
const MAX_PARAMS: u128 = 1 << 40;

impl ModelSpec {
    /// The preset `name` (one of [`PRESETS`]) with a vocabulary of `vocab_size` tokens. At
    /// [`PRESET_VOCAB_SIZE`] tokens:
    ///
    /// | preset | layers | width | heads | KV heads | FFN | context | parameters |
    /// |---|---|---|---|---|---|---|---|
    /// | `1m` | 3 | 128 | 4 | 2 | 384 | 256 | 1,115,008 |
    /// | `5m` | 6 | 256 | 4 | 2 | 640 | 512 | 5,180,672 |
    /// | `20m` | 12 | 384 | 6 | 2 | 1024 | 1024 | 20,456,832 |
    ///
    /// All with head dimension 64 (32 for `1m`), RoPE base 10,000, RMSNorm eps 1e-5 and a
    /// tied LM head. Errors: an unknown name ([`Error::InvalidArgument`] `preset`).
    pub fn preset(name: &str, vocab_size: usize) -> Result<ModelSpec> {
        let (n_layers, width, n_heads, n_kv_heads, ffn_width, context_length) = match name.to_ascii_lowercase().as_str() {
            "1m" => (3, 128, 4, 2, 384, 256),
            "5m" => (6, 256, 4, 2, 640, 512),
            "20m" => (12, 384, 6, 2, 1024, 1024),
            _ => return Err(Error::invalid("preset", format!("unknown preset `{name}`: use {}", PRESETS.join(", ")))),
        };
        Ok(ModelSpec {
            n_layers,
            width,
            n_heads,
            n_kv_heads,
            ffn_width,
            context_length,
            rope_base: 10_000.0,
            rms_norm_eps: 1e-5,
            tied_embeddings: true,
            vocab_size,
        })
    }

    /// Dimensions per attention head (width / heads; 0 without heads).
    pub fn head_dim(&self) -> usize {
        self.width.checked_div(self.n_heads).unwrap_or(0)
    }

    /// Check the shape. Errors ([`Error::InvalidArgument`] naming the field): a size of zero,
    /// heads that do not divide the width, KV heads that do not divide the heads, an odd head
    /// dimension, a RoPE base or RMSNorm eps that is not a positive number, a vocabulary beyond
    /// 32-bit ids, more than 2^40 parameters.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("n_layers", self.n_layers),
            ("width", self.width),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("ffn_width", self.ffn_width),
            ("context_length", self.context_length),
            ("vocab_size", self.vocab_size),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(Error::invalid(name, "must be positive"));
            }
        }
        if !self.width.is_multiple_of(self.n_heads) {
            return Err(Error::invalid("n_heads", format!("{} heads do not divide the width {}", self.n_heads, self.width)));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::invalid("n_kv_heads", format!("{} KV heads do not divide the {} heads", self.n_kv_heads, self.n_heads)));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(Error::invalid(
                "n_heads",
                format!(
                    "the head dimension (width {} / {} heads = {}) is odd: RoPE rotates pairs of dimensions, so it must be even",
                    self.width,
                    self.n_heads,
                    self.head_dim()
                ),
            ));
        }
        if !(self.rope_base.is_finite() && self.rope_base > 0.0) {
            return Err(Error::invalid("rope_base", format!("{} is not a positive number", self.rope_base)));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(Error::invalid("rms_norm_eps", format!("{} is not a positive number", self.rms_norm_eps)));
        }
        if u32::try_from(self.vocab_size).is_err() {
            return Err(Error::invalid("vocab_size", format!("{} does not fit token ids of 32 bits", self.vocab_size)));
        }
        let n = self.n_params_wide();
        if n > MAX_PARAMS {
            return Err(Error::invalid("width", format!("the model would have {n} parameters, more than the 2^40 lamina initialises")));
        }
        self.to_llama_config(None, None).validate()
    }

    /// Number of parameters: the embedding (`vocab × width`, twice with an untied LM head),
    /// per block two norms (`2 × width`), q and o (`width × heads × head_dim` each), k and v
    /// (`width × kv_heads × head_dim` each) and the MLP (`3 × width × ffn`), and the final norm
    /// (`width`). Meaningful for a spec that [`validate`](Self::validate)s.
    pub fn n_params(&self) -> u64 {
        u64::try_from(self.n_params_wide()).unwrap_or(u64::MAX)
    }

    fn n_params_wide(&self) -> u128 {
        let u = |v: usize| v as u128;
        let (d, hd) = (u(self.width), u(self.head_dim()));
        let (q, kv) = (u(self.n_heads) * hd, u(self.n_kv_heads) * hd);
        let block = 2 * d + 2 * d * q + 2 * d * kv + 3 * d * u(self.ffn_width);
        let embeddings = u(self.vocab_size) * d * if self.tied_embeddings { 1 } else { 2 };
        embeddings + u(self.n_layers) * block + d
    }

    /// The [`LlamaConfig`] of this spec, with the tokenizer's BOS and EOS ids.
    pub fn to_llama_config(&self, bos_token_id: Option<u32>, eos_token_id: Option<u32>) -> LlamaConfig {
        LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.width,
            intermediate_size: self.ffn_width,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim(),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_base,
            rope_scaling: None,
            max_position_embeddings: self.context_length,
            tie_word_embeddings: self.tied_embeddings,
            bos_token_id,
            eos_token_id,
        }
    }

    /// The memory full-parameter training of this model takes with micro-batches of `batch`
    /// sequences of `seq_len` tokens: weights, gradients and AdamW's two moments in f32, the
    /// mapped model file, and the activations (the native trainer's own per-block tape size).
    pub fn training_memory(&self, batch: usize, seq_len: usize) -> TrainingMemory {
        let p = self.n_params();
        let n = batch.saturating_mul(seq_len);
        let config = self.to_llama_config(None, None);
        let tapes = self.n_layers as u64 * crate::native::pass::block_tape_bytes(&config, 0, n) as u64;
        // The residual stream, its gradient and the gradient being formed (f32), and one
        // chunk of 256 rows of logits in the LM head.
        let stream = 3 * 4 * n as u64 * self.width as u64;
        let head = 4 * 256 * self.vocab_size as u64;
        TrainingMemory { weights: 4 * p, gradients: 4 * p, optimizer: 8 * p, model_file: 4 * p, activations: tapes + stream + head }
    }

    /// [`training_memory`](Self::training_memory), refused when it exceeds the memory the
    /// system reports as available (where that cannot be read, nothing is refused).
    ///
    /// Errors ([`Error::InvalidArgument`]): an invalid spec, a batch or sequence length of 0, a
    /// sequence longer than the context length, or not enough memory (with the estimate).
    pub fn check_training_fits(&self, batch: usize, seq_len: usize) -> Result<TrainingMemory> {
        self.validate()?;
        if batch == 0 {
            return Err(Error::invalid("batch", "must be positive"));
        }
        if seq_len == 0 || seq_len > self.context_length {
            return Err(Error::invalid("seq_len", format!("{seq_len} is not in 1..={} (the context length)", self.context_length)));
        }
        let memory = self.training_memory(batch, seq_len);
        crate::native::full::check_memory_fits(
            "spec",
            memory.total(),
            &format!("full-parameter training of this {}-parameter model on {batch} × {seq_len} tokens", self.n_params()),
            "use a smaller model, batch or sequence length",
        )?;
        Ok(memory)
    }

    /// The Hugging Face tensors of this spec with their shapes, in model order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        expected_hf_tensors(&self.to_llama_config(None, None))
    }
}

/// How [`init_model`] draws the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct InitOptions {
    pub seed: u64,
    /// Standard deviation of the embeddings and projections (0.02).
    pub std: f32,
    /// Take the token embeddings from this GGUF model instead of drawing them: its
    /// vocabulary must list the same tokens in the same order and its width must be the
    /// spec's.
    pub embeddings_from: Option<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { seed: 0, std: 0.02, embeddings_from: None }
    }
}

/// The standard deviation tensor `name` is drawn with (0 for the norms, which are 1).
pub fn init_std(spec: &ModelSpec, name: &str, std: f32) -> f32 {
    if name.ends_with("layernorm.weight") || name == "model.norm.weight" {
        0.0
    } else if name.ends_with("self_attn.o_proj.weight") || name.ends_with("mlp.down_proj.weight") {
        std / (2.0 * spec.n_layers as f32).sqrt()
    } else {
        std
    }
}

/// The initial values of the Hugging Face tensor `name` of `spec`, row-major in PyTorch
/// orientation (q and k rows in the `rotate_half` layout, as any Hugging Face checkpoint):
/// norms 1, everything else normal(0, [`init_std`]) from a generator seeded by `seed` and the
/// name. Errors: a name that is not one of [`ModelSpec::tensors`].
pub fn init_tensor(spec: &ModelSpec, name: &str, seed: u64, std: f32) -> Result<Vec<f32>> {
    let Some((_, shape)) = spec.tensors().into_iter().find(|(n, _)| n == name) else {
        return Err(Error::invalid("name", format!("`{name}` is not a tensor of this model")));
    };
    Ok(draw(name, shape.iter().product(), init_std(spec, name, std), seed))
}

fn draw(name: &str, len: usize, std: f32, seed: u64) -> Vec<f32> {
    if std == 0.0 {
        return vec![1.0; len];
    }
    let mut normal = Normal::new(seed ^ fnv1a(name.as_bytes()));
    (0..len).map(|_| (normal.sample() * f64::from(std)) as f32).collect()
}

/// FNV-1a: a tensor name to a seed offset.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3))
}

/// Standard normal samples: Box-Muller on SplitMix64.
struct Normal {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        // One round first, so that nearby seeds do not start on overlapping sequences.
        let mut rng = SplitMix64(seed);
        Normal { rng: SplitMix64(rng.next_u64()), spare: None }
    }

    fn sample(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let unit = |bits: u64| (bits >> 11) as f64 / (1u64 << 53) as f64;
        // u1 in (0, 1]: its logarithm is finite.
        let u1 = 1.0 - unit(self.rng.next_u64());
        let u2 = unit(self.rng.next_u64());
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * sin);
        r * cos
    }
}

/// What [`init_model`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitReport {
    pub spec: ModelSpec,
    pub n_params: u64,
    /// model.safetensors, config.json, tokenizer.json, tokenizer_config.json.
    pub hf_files: Vec<PathBuf>,
    /// The GGUF file, when one was asked for.
    pub gguf: Option<PathBuf>,
    /// Where the token embeddings came from, when not drawn.
    pub embeddings_from: Option<PathBuf>,
}

/// Initialise a model of `spec` with the tokenizer in `tokenizer_dir` (`tokenizer.json`,
/// optionally `tokenizer_config.json`) and write it as a Hugging Face directory `hf_dir`
/// (created) and, when `gguf` is given, as a GGUF file through [`safetensors_to_gguf`].
///
/// The weights are streamed: one tensor is in memory at a time (two with
/// [`InitOptions::embeddings_from`]). `progress(done, total)` is called after each tensor
/// written (each twice with a GGUF: once per file); returning false cancels and returns
/// `Ok(None)`: during the safetensors file nothing is left of it, during the GGUF the Hugging
/// Face directory, complete by then, stays.
///
/// Errors: an invalid spec, a vocabulary size below the tokenizer's
/// ([`Error::InvalidArgument`]); a tokenizer that is missing, unreadable or does not convert
/// to GGUF ([`Error::Io`]/[`Error::Data`]); embeddings from a model whose vocabulary or width
/// differs ([`Error::InvalidArgument`] `embeddings_from`); writing fails.
pub fn init_model(
    spec: &ModelSpec,
    tokenizer_dir: &Path,
    hf_dir: &Path,
    gguf: Option<&Path>,
    options: &InitOptions,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<Option<InitReport>> {
    spec.validate()?;
    if !(options.std.is_finite() && options.std > 0.0) {
        return Err(Error::invalid("std", format!("{} is not a positive number", options.std)));
    }
    let tokenizer_path = tokenizer_dir.join(TOKENIZER_FILE);
    let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
    if spec.vocab_size < tokenizer.vocab_size() {
        return Err(Error::invalid(
            "vocab_size",
            format!("{} is smaller than the tokenizer's vocabulary ({} tokens)", spec.vocab_size, tokenizer.vocab_size()),
        ));
    }
    // Fails now, before any weight is written, where the GGUF could not hold this tokenizer.
    let vocab = tokenizer.to_gguf_vocab()?;
    let embed = match &options.embeddings_from {
        Some(path) => Some(source_embeddings(path, spec, &vocab.tokens)?),
        None => None,
    };

    crate::atomic_file::create_dir_all(hf_dir)?;
    let tensors = spec.tensors();
    let n_tensors = tensors.len() as u64;
    let total = if gguf.is_some() { 2 * n_tensors } else { n_tensors };
    let weights = hf_dir.join("model.safetensors");
    let state = WriteState {
        spec,
        options,
        embed: embed.as_deref(),
        progress: RefCell::new(&mut progress),
        done: Cell::new(0),
        total,
        cancelled: Cell::new(false),
    };
    let views: Vec<(String, LazyInit<'_, '_, '_>)> =
        tensors.into_iter().map(|(name, shape)| (name.clone(), LazyInit { state: &state, name, shape })).collect();
    let tmp = crate::atomic_file::temp_path(&weights);
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let written = ::safetensors::serialize_to_file(views, Some(meta), &tmp);
    if state.cancelled.get() {
        let _ = std::fs::remove_file(&tmp);
        return Ok(None);
    }
    crate::atomic_file::commit(&tmp, &weights, written.map_err(|e| e.to_string()))?;

    // The tokenizer files as they are, with the context length; config.json last: without it
    // the directory is not taken for a model.
    let mut hf_files = vec![weights];
    let copied = hf_dir.join(TOKENIZER_FILE);
    let bytes = std::fs::read(&tokenizer_path).map_err(|source| Error::Io { path: tokenizer_path.clone(), source })?;
    crate::atomic_file::write_bytes(&copied, &bytes)?;
    hf_files.push(copied);
    let source_config = tokenizer_dir.join(TOKENIZER_CONFIG_FILE);
    let mut tokenizer_config = if source_config.is_file() {
        let text = crate::data_file::read_text(&source_config)?;
        serde_json::from_str::<Value>(&text).ok().filter(Value::is_object).ok_or_else(|| Error::Data {
            path: source_config.clone(),
            line: None,
            reason: "not a JSON object".into(),
        })?
    } else {
        json!({"tokenizer_class": "PreTrainedTokenizerFast"})
    };
    tokenizer_config["model_max_length"] = json!(spec.context_length);
    hf_files.push(write_json(hf_dir, TOKENIZER_CONFIG_FILE, &tokenizer_config)?);
    let mut config = spec.to_llama_config(tokenizer.bos_token(), tokenizer.eos_token()).to_hf_config_json();
    config["torch_dtype"] = json!("float32");
    config["initializer_range"] = json!(f64::from(options.std));
    hf_files.insert(1, write_json(hf_dir, "config.json", &config)?);

    if let Some(out) = gguf {
        let converted = safetensors_to_gguf(hf_dir, out, |done, _| progress(n_tensors + done, total))?;
        let Some(converted) = converted else { return Ok(None) };
        if converted.n_params != spec.n_params() {
            return Err(Error::Internal(format!("the GGUF holds {} parameters, the spec counts {}", converted.n_params, spec.n_params())));
        }
    }
    Ok(Some(InitReport {
        spec: spec.clone(),
        n_params: spec.n_params(),
        hf_files,
        gguf: gguf.map(Path::to_path_buf),
        embeddings_from: options.embeddings_from.clone(),
    }))
}

fn write_json(dir: &Path, name: &str, value: &Value) -> Result<PathBuf> {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal(format!("{name}: {e}")))? + "\n";
    crate::atomic_file::write_bytes(&path, text.as_bytes())?;
    Ok(path)
}

/// The token embeddings of the GGUF model at `path` (`vocab × width`, f32), which must have
/// the vocabulary `tokens` (padded to the spec's size as the converter pads it) and the
/// spec's width.
fn source_embeddings(path: &Path, spec: &ModelSpec, tokens: &[String]) -> Result<Vec<f32>> {
    let g = Gguf::open(path)?;
    let config = LlamaConfig::from_gguf(&g)?;
    let theirs = g.get_str_array("tokenizer.ggml.tokens")?;
    let ours: Vec<String> = tokens.iter().cloned().chain((tokens.len()..spec.vocab_size).map(|i| format!("[PAD{i}]"))).collect();
    let mismatch = |reason: String| {
        Error::invalid("embeddings_from", format!("{}: {reason}; its embeddings cannot be shared with this model", path.display()))
    };
    if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        return Err(mismatch(format!("its vocabulary differs from the tokenizer's at id {i}: {:?} there, {:?} here", theirs[i], ours[i])));
    }
    if theirs.len() != ours.len() {
        return Err(mismatch(format!("its vocabulary has {} tokens, this model {}", theirs.len(), ours.len())));
    }
    if config.hidden_size != spec.width {
        return Err(mismatch(format!("its width is {}, this model's {}", config.hidden_size, spec.width)));
    }
    let name = "token_embd.weight";
    let view = g.tensor(name).ok_or_else(|| Error::Data { path: path.to_path_buf(), line: None, reason: format!("no `{name}` tensor") })?;
    let len = spec.vocab_size * spec.width;
    if view.n_elements() != len as u64 {
        return Err(mismatch(format!("`{name}` has {} elements, this model needs {len}", view.n_elements())));
    }
    let mut values = vec![0f32; len];
    dequantize_row(view.ggml_type(), view.data(), &mut values).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        line: None,
        reason: format!("tensor `{name}`: {e}"),
    })?;
    Ok(values)
}

/// Shared state of the streaming safetensors write: the serializer asks each tensor for its
/// bytes in turn.
struct WriteState<'a, 'p> {
    spec: &'a ModelSpec,
    options: &'a InitOptions,
    embed: Option<&'a [f32]>,
    progress: RefCell<&'p mut dyn FnMut(u64, u64) -> bool>,
    done: Cell<u64>,
    total: u64,
    cancelled: Cell<bool>,
}

/// One tensor; drawn when the serializer asks for its bytes.
struct LazyInit<'s, 'a, 'p> {
    state: &'s WriteState<'a, 'p>,
    name: String,
    shape: Vec<usize>,
}

impl ::safetensors::View for LazyInit<'_, '_, '_> {
    fn dtype(&self) -> ::safetensors::Dtype {
        ::safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
    /// The tensor's bytes; after a cancel, nothing (the serializer then writes no more data
    /// and the caller removes the file).
    fn data(&self) -> Cow<'_, [u8]> {
        let s = self.state;
        if s.cancelled.get() {
            return Cow::Borrowed(&[]);
        }
        let values: Cow<'_, [f32]> = match s.embed {
            Some(embed) if self.name == "model.embed_tokens.weight" => Cow::Borrowed(embed),
            _ => Cow::Owned(draw(&self.name, self.shape.iter().product(), init_std(s.spec, &self.name, s.options.std), s.options.seed)),
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        s.done.set(s.done.get() + 1);
        if !(s.progress.borrow_mut())(s.done.get(), s.total) {
            s.cancelled.set(true);
        }
        Cow::Owned(bytes)
    }
}
