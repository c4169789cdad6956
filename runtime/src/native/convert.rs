//! Model conversion between GGUF (llama.cpp) and Hugging Face safetensors directories, for
//! LLaMA-architecture models.
//!
//! - [`gguf_to_safetensors`]: every tensor dequantized to F32/F16/BF16 under its Hugging Face
//!   name, q and k rows restored to the `rotate_half` layout, plus `config.json`,
//!   `tokenizer.json` and `tokenizer_config.json`, so the directory loads like a Hugging Face
//!   checkpoint (and feeds the native engine and LoRA training).
//! - [`safetensors_to_gguf`]: the inverse, a llama GGUF that llama.cpp loads: F32/F16/BF16 kept,
//!   norms in F32, q and k rows permuted to llama.cpp's interleaved RoPE layout.
//!
//! RoPE layout: Hugging Face rotates dimension pairs (i, i + hd/2) of each head, llama.cpp's
//! `llama` architecture rotates (2i, 2i+1). Per head h, GGUF row `h*hd + 2i + half` holds
//! Hugging Face row `h*hd + half*hd/2 + i` (k with the KV head count).
//!
//! Both directions report progress per tensor; the callback returning false cancels, and the
//! function then returns `Ok(None)` and removes what it had started to write.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::tokenizer::{token_type, SpecialTokens, Tokenizer};
use crate::error::{Error, Result};
use crate::weights::dequant::dequantize_row;
use crate::weights::gguf::{Gguf, GgufWriter, MetaType, MetaValue};
use crate::weights::llama_config::LlamaConfig;
use crate::weights::names::LAYER_NAMES;
use crate::weights::names::{gguf_to_hf_name, hf_to_gguf_name, permute_qk_rows};
use crate::weights::safetensors::{Dtype as StDtype, SafeTensors};
use crate::weights::GgmlType;

/// The element type of the converted safetensors weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    #[default]
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
    fn safetensors(self) -> StDtype {
        match self {
            Dtype::F32 => StDtype::F32,
            Dtype::F16 => StDtype::F16,
            Dtype::BF16 => StDtype::BF16,
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Dtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Dtype::F32),
            "f16" | "float16" => Ok(Dtype::F16),
            "bf16" | "bfloat16" => Ok(Dtype::BF16),
            _ => Err(Error::invalid("dtype", format!("unknown dtype `{s}`: use f32, f16 or bf16"))),
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// The files written, main weight file first.
    pub files: Vec<PathBuf>,
    /// Number of weight tensors written.
    pub n_tensors: usize,
    /// Number of weight elements written.
    pub n_params: u64,
}

/// The expected Hugging Face tensors of `config`, with their PyTorch shapes, in model order.
pub(crate) fn expected_hf_tensors(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (h, ffn, hd) = (config.hidden_size, config.intermediate_size, config.head_dim);
    let (q, kv) = (config.n_heads * hd, config.n_kv_heads * hd);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![config.vocab_size, h])];
    for l in 0..config.n_layers {
        let shapes: [Vec<usize>; 9] =
            [vec![h], vec![q, h], vec![kv, h], vec![kv, h], vec![h, q], vec![h], vec![ffn, h], vec![ffn, h], vec![h, ffn]];
        for ((hf, _), shape) in LAYER_NAMES.iter().zip(shapes) {
            out.push((format!("model.layers.{l}.{hf}"), shape));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}

/// The attention heads whose rows a tensor's RoPE permutation works on: Some for q and k.
fn rope_heads(hf_name: &str, config: &LlamaConfig) -> Option<usize> {
    if hf_name.ends_with("self_attn.q_proj.weight") {
        Some(config.n_heads)
    } else if hf_name.ends_with("self_attn.k_proj.weight") {
        Some(config.n_kv_heads)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// GGUF -> safetensors
// ---------------------------------------------------------------------------------------------

/// Shared state of a streaming GGUF -> safetensors write: the safetensors serializer asks each
/// tensor for its bytes one at a time, so only one converted tensor is in memory at once.
struct StreamState<'g, F> {
    gguf: &'g Gguf,
    config: &'g LlamaConfig,
    dtype: Dtype,
    progress: RefCell<F>,
    done: Cell<u64>,
    total: u64,
    cancelled: Cell<bool>,
    error: RefCell<Option<Error>>,
}

/// One output tensor; its bytes are computed when the serializer asks for them.
struct LazyTensor<'s, 'g, F> {
    state: &'s StreamState<'g, F>,
    gguf_name: String,
    hf_name: String,
    shape: Vec<usize>,
}

impl<F: FnMut(u64, u64) -> bool> LazyTensor<'_, '_, F> {
    fn convert(&self) -> Result<Vec<u8>> {
        let s = self.state;
        let view = s.gguf.tensor(&self.gguf_name).expect("listed from this file");
        let mut values = vec![0f32; view.n_elements() as usize];
        dequantize_row(view.ggml_type(), view.data(), &mut values)
            .map_err(|e| data_error(s.gguf.path(), format!("tensor `{}`: {e}", self.gguf_name)))?;
        let mut bytes: Vec<u8> = match s.dtype {
            Dtype::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Dtype::F16 => values.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
            Dtype::BF16 => values.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
        };
        drop(values);
        if let Some(heads) = rope_heads(&self.hf_name, s.config) {
            let row_bytes = self.shape[1] * s.dtype.size();
            bytes = permute_qk_rows(&bytes, heads, row_bytes, false);
        }
        Ok(bytes)
    }
}

impl<F: FnMut(u64, u64) -> bool> ::safetensors::View for LazyTensor<'_, '_, F> {
    fn dtype(&self) -> StDtype {
        self.state.dtype.safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.state.dtype.size()
    }
    /// The converted bytes; after a cancel or an error, nothing: the serializer then writes no
    /// more data (the file is pre-sized, so this is fast) and the caller deletes the file.
    fn data(&self) -> Cow<'_, [u8]> {
        let s = self.state;
        if !s.cancelled.get() && s.error.borrow().is_none() {
            match self.convert() {
                Ok(bytes) => {
                    s.done.set(s.done.get() + 1);
                    if !(s.progress.borrow_mut())(s.done.get(), s.total) {
                        s.cancelled.set(true);
                    }
                    return Cow::Owned(bytes);
                }
                Err(e) => *s.error.borrow_mut() = Some(e),
            }
        }
        Cow::Borrowed(&[])
    }
}

/// Convert a llama GGUF file to a Hugging Face directory `out_dir` (created if needed):
/// `model.safetensors` (every tensor dequantized and stored as `dtype`, Hugging Face names,
/// `lm_head.weight` only when the GGUF has `output.weight`), `config.json`, `tokenizer.json`
/// and `tokenizer_config.json` (with the GGUF's chat template).
///
/// The weights are streamed: one converted tensor is in memory at a time. `progress(done,
/// total)` is called after each tensor; returning false cancels, removes the files written so
/// far and returns `Ok(None)`.
///
/// Errors: the GGUF cannot be read ([`Error::Io`]/[`Error::Data`]), is not a llama model, has
/// a tensor with an unexpected name or shape, or a vocabulary [`Tokenizer::from_gguf`] does not
/// support ([`Error::Data`] naming the file and the tensor or key); writing fails ([`Error::Io`]).
pub fn gguf_to_safetensors(
    gguf: &Path,
    out_dir: &Path,
    dtype: Dtype,
    progress: impl FnMut(u64, u64) -> bool,
) -> Result<Option<ConvertReport>> {
    let g = Gguf::open(gguf)?;
    let config = LlamaConfig::from_gguf(&g)?;
    let tokenizer = Tokenizer::from_gguf(&g)?;

    // Plan: every GGUF tensor maps to an expected Hugging Face tensor of the right shape.
    let expected: HashMap<String, Vec<usize>> = expected_hf_tensors(&config).into_iter().collect();
    let mut plan = Vec::with_capacity(g.tensors().len());
    for t in g.tensors() {
        if t.name == "rope_freqs.weight" {
            continue; // derived from the rope scaling in config.json
        }
        let hf_name = gguf_to_hf_name(&t.name).ok_or_else(|| data_error(gguf, format!("tensor `{}` is not a llama weight", t.name)))?;
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        match expected.get(&hf_name) {
            Some(want) if *want == shape => {}
            Some(want) => {
                return Err(data_error(gguf, format!("tensor `{}` has shape {shape:?}, the configuration needs {want:?}", t.name)))
            }
            None => return Err(data_error(gguf, format!("tensor `{}` does not fit the configuration", t.name))),
        }
        plan.push((t.name.clone(), hf_name, shape));
    }
    for name in expected.keys() {
        if !plan.iter().any(|(_, hf, _)| hf == name) {
            let gguf_name = hf_to_gguf_name(name).unwrap_or_default();
            return Err(data_error(gguf, format!("tensor `{gguf_name}` is missing")));
        }
    }

    crate::atomic_file::create_dir_all(out_dir)?;
    let weights = out_dir.join("model.safetensors");
    let tmp = crate::atomic_file::temp_path(&weights);
    let state = StreamState {
        gguf: &g,
        config: &config,
        dtype,
        progress: RefCell::new(progress),
        done: Cell::new(0),
        total: plan.len() as u64,
        cancelled: Cell::new(false),
        error: RefCell::new(None),
    };
    let n_params: u64 = plan.iter().map(|(_, _, s)| s.iter().product::<usize>() as u64).sum();
    let n_tensors = plan.len();
    let tensors: Vec<(String, LazyTensor<'_, '_, _>)> = plan
        .into_iter()
        .map(|(gguf_name, hf_name, shape)| (hf_name.clone(), LazyTensor { state: &state, gguf_name, hf_name, shape }))
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    // Into a temporary file, renamed into place only when complete (see `atomic_file`).
    let written = ::safetensors::serialize_to_file(tensors, Some(meta), &tmp);
    let remove = || {
        let _ = std::fs::remove_file(&tmp);
    };
    if let Some(e) = state.error.take() {
        remove();
        return Err(e);
    }
    if state.cancelled.get() {
        remove();
        return Ok(None);
    }
    crate::atomic_file::commit(&tmp, &weights, written.map_err(|e| e.to_string()))?;

    let mut files = vec![weights];
    let write_json = |name: &str, value: &Value| -> Result<PathBuf> {
        let path = out_dir.join(name);
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        crate::atomic_file::write_bytes(&path, text.as_bytes())?;
        Ok(path)
    };
    // config.json last: without it the directory is not taken for a model.
    let tokenizer_path = out_dir.join("tokenizer.json");
    tokenizer.save(&tokenizer_path)?;
    files.push(tokenizer_path);
    files.push(write_json("tokenizer_config.json", &tokenizer_config(&g, &tokenizer)?)?);
    files.insert(1, write_json("config.json", &config.to_hf_config_json())?);
    Ok(Some(ConvertReport { files, n_tensors, n_params }))
}

/// A `tokenizer_config.json` for a GGUF's vocabulary: special token strings, BOS handling and
/// the chat template.
fn tokenizer_config(g: &Gguf, tokenizer: &Tokenizer) -> Result<Value> {
    let name = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id));
    let add_bos = match g.get("tokenizer.ggml.add_bos_token") {
        Some(_) => g.get_bool("tokenizer.ggml.add_bos_token")?,
        None => false,
    };
    let mut v = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": LlamaConfig::from_gguf(g)?.max_position_embeddings,
        "bos_token": name(tokenizer.bos_token()),
        "eos_token": name(tokenizer.eos_token()),
        "unk_token": name(tokenizer.unk_token()),
    });
    if g.get("tokenizer.chat_template").is_some() {
        v["chat_template"] = json!(g.get_str("tokenizer.chat_template")?);
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// safetensors -> GGUF
// ---------------------------------------------------------------------------------------------

/// Convert a Hugging Face LLaMA directory (`config.json`, `model.safetensors` or a sharded
/// `model.safetensors.index.json`, `tokenizer.json`, optionally `tokenizer_config.json`) to a
/// GGUF file llama.cpp loads. F32, F16 and BF16 weights keep their type, 1-D tensors (norms)
/// are stored as F32, q and k rows are permuted to llama.cpp's RoPE layout.
///
/// `progress(done, total)` is called after each tensor is prepared; returning false cancels
/// before anything is written and returns `Ok(None)`. The file is written in one pass at the
/// end; tensors are borrowed from the memory-mapped inputs except the permuted q/k and the
/// norms, which are copied.
///
/// Errors ([`Error::Data`] naming the file and the tensor): a missing file or tensor, a shape
/// that does not match `config.json`, an unsupported dtype, rope scaling or tokenizer.
pub fn safetensors_to_gguf(input_dir: &Path, out: &Path, mut progress: impl FnMut(u64, u64) -> bool) -> Result<Option<ConvertReport>> {
    let config = LlamaConfig::from_hf_config_json(input_dir.join("config.json"))?;
    if config.rope_scaling.is_some() {
        return Err(data_error(&input_dir.join("config.json"), "llama3 rope scaling is not supported by the GGUF converter yet".into()));
    }
    let tokenizer_path = input_dir.join("tokenizer.json");
    let mut tokenizer = Tokenizer::from_file(&tokenizer_path)?;
    let tokenizer_config_path = input_dir.join("tokenizer_config.json");
    let special =
        if tokenizer_config_path.is_file() { SpecialTokens::from_config(&tokenizer_config_path)? } else { SpecialTokens::default() };
    if tokenizer.bos_token().is_none() && tokenizer.eos_token().is_none() {
        let in_vocab = |id: Option<u32>| id.filter(|&id| (id as usize) < tokenizer.vocab_size());
        let (bos, eos, unk) = (in_vocab(config.bos_token_id), in_vocab(config.eos_token_id), tokenizer.unk_token());
        tokenizer.set_special_ids(bos, eos, unk)?;
    }
    let vocab = tokenizer.to_gguf_vocab()?;
    if vocab.tokens.len() > config.vocab_size {
        return Err(data_error(
            &tokenizer_path,
            format!("the tokenizer has {} tokens but config.json's vocab_size is {}", vocab.tokens.len(), config.vocab_size),
        ));
    }

    let shards = WeightShards::open(input_dir)?;
    let expected = expected_hf_tensors(&config);
    for name in shards.names() {
        let known = expected.iter().any(|(n, _)| n == name)
            || name.ends_with("rotary_emb.inv_freq")
            || (name == "lm_head.weight" && config.tie_word_embeddings);
        if !known {
            return Err(data_error(shards.file_of(name), format!("tensor `{name}` is not a llama weight")));
        }
    }

    let mut w = GgufWriter::new();
    add_metadata(&mut w, &config, &vocab, &special, input_dir)?;
    let total = expected.len() as u64;
    let mut n_params = 0u64;
    let mut any_bf16 = false;
    let mut any_f16 = false;
    for (done, (hf_name, shape)) in expected.iter().enumerate() {
        let (st, file) = shards.get(hf_name)?;
        let view = st.tensor(hf_name).expect("listed by the shard");
        if view.shape() != shape.as_slice() {
            return Err(data_error(file, format!("tensor `{hf_name}` has shape {:?}, config.json needs {shape:?}", view.shape())));
        }
        let ggml_type = match view.dtype() {
            StDtype::F32 => GgmlType::F32,
            StDtype::F16 => GgmlType::F16,
            StDtype::BF16 => GgmlType::BF16,
            other => return Err(data_error(file, format!("tensor `{hf_name}` has dtype {other:?}: only F32, F16 and BF16 convert"))),
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let gguf_name = hf_to_gguf_name(hf_name).expect("expected names map");
        if shape.len() == 1 {
            let values = st.to_f32(hf_name)?;
            let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.add_tensor(gguf_name, GgmlType::F32, &dims, bytes)?;
        } else if let Some(heads) = rope_heads(hf_name, &config) {
            let row_bytes = view.data().len() / shape[0];
            w.add_tensor(gguf_name, ggml_type, &dims, permute_qk_rows(view.data(), heads, row_bytes, true))?;
        } else {
            w.add_tensor(gguf_name, ggml_type, &dims, view.data())?;
        }
        if shape.len() > 1 {
            any_bf16 |= ggml_type == GgmlType::BF16;
            any_f16 |= ggml_type == GgmlType::F16;
        }
        n_params += shape.iter().product::<usize>() as u64;
        if !progress(done as u64 + 1, total) {
            return Ok(None);
        }
    }
    // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32.
    let file_type: u32 = if any_bf16 {
        32
    } else if any_f16 {
        1
    } else {
        0
    };
    w.add_metadata("general.file_type", file_type)?;
    // Atomic: a failed write leaves whatever `out` held before.
    w.write(out)?;
    Ok(Some(ConvertReport { files: vec![out.to_path_buf()], n_tensors: expected.len(), n_params }))
}

/// The `general.*`, `llama.*` and `tokenizer.*` metadata of a converted model.
fn add_metadata(
    w: &mut GgufWriter<'_>,
    config: &LlamaConfig,
    vocab: &super::tokenizer::GgufVocab,
    special: &SpecialTokens,
    input_dir: &Path,
) -> Result<()> {
    let u = |v: usize| v as u32;
    w.add_metadata("general.architecture", "llama")?;
    if let Some(name) = input_dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())) {
        w.add_metadata("general.name", name)?;
    }
    w.add_metadata("llama.vocab_size", u(config.vocab_size))?;
    w.add_metadata("llama.context_length", u(config.max_position_embeddings))?;
    w.add_metadata("llama.embedding_length", u(config.hidden_size))?;
    w.add_metadata("llama.block_count", u(config.n_layers))?;
    w.add_metadata("llama.feed_forward_length", u(config.intermediate_size))?;
    w.add_metadata("llama.attention.head_count", u(config.n_heads))?;
    w.add_metadata("llama.attention.head_count_kv", u(config.n_kv_heads))?;
    w.add_metadata("llama.rope.dimension_count", u(config.head_dim))?;
    if config.head_dim * config.n_heads != config.hidden_size {
        w.add_metadata("llama.attention.key_length", u(config.head_dim))?;
        w.add_metadata("llama.attention.value_length", u(config.head_dim))?;
    }
    w.add_metadata("llama.rope.freq_base", config.rope_theta)?;
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", config.rms_norm_eps)?;

    // Embedding rows beyond the tokenizer's vocabulary get unused placeholder tokens.
    let mut tokens = vocab.tokens.clone();
    let mut types = vocab.token_types.clone();
    for i in tokens.len()..config.vocab_size {
        tokens.push(format!("[PAD{i}]"));
        types.push(token_type::UNUSED);
    }
    w.add_metadata("tokenizer.ggml.model", "gpt2")?;
    w.add_metadata("tokenizer.ggml.pre", vocab.pre)?;
    w.add_metadata("tokenizer.ggml.tokens", MetaValue::string_array(tokens))?;
    w.add_metadata(
        "tokenizer.ggml.token_type",
        MetaValue::Array { elem: MetaType::I32, items: types.into_iter().map(MetaValue::I32).collect() },
    )?;
    w.add_metadata("tokenizer.ggml.merges", MetaValue::string_array(vocab.merges.iter().cloned()))?;
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", vocab.bos),
        ("tokenizer.ggml.eos_token_id", vocab.eos),
        ("tokenizer.ggml.unknown_token_id", vocab.unk),
    ] {
        if let Some(id) = id {
            w.add_metadata(key, id)?;
        }
    }
    w.add_metadata("tokenizer.ggml.add_bos_token", special.add_bos_token.unwrap_or(false))?;
    if let Some(template) = &special.chat_template {
        w.add_metadata("tokenizer.chat_template", template.as_str())?;
    }
    Ok(())
}

/// The safetensors files of a checkpoint: one `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json`.
struct WeightShards {
    shards: Vec<(PathBuf, SafeTensors)>,
    /// Tensor name -> shard index.
    index: BTreeMap<String, usize>,
}

impl WeightShards {
    fn open(dir: &Path) -> Result<WeightShards> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        if !single.exists() && index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| Error::Io { path: index_path.clone(), source })?;
            let v: Value = serde_json::from_str(&text).map_err(|e| data_error(&index_path, format!("invalid JSON: {e}")))?;
            let map = v["weight_map"].as_object().ok_or_else(|| data_error(&index_path, "no `weight_map` object".into()))?;
            let mut files: Vec<String> = Vec::new();
            let mut index = BTreeMap::new();
            for (name, file) in map {
                let file = file
                    .as_str()
                    .filter(|f| !f.contains('/') && !f.contains('\\'))
                    .ok_or_else(|| data_error(&index_path, format!("weight_map[{name:?}] is not a file name")))?;
                let i = match files.iter().position(|f| f == file) {
                    Some(i) => i,
                    None => {
                        files.push(file.to_string());
                        files.len() - 1
                    }
                };
                index.insert(name.clone(), i);
            }
            let shards = files
                .iter()
                .map(|f| {
                    let path = dir.join(f);
                    SafeTensors::open(&path).map(|st| (path, st))
                })
                .collect::<Result<Vec<_>>>()?;
            for (name, &i) in &index {
                if shards[i].1.info(name).is_none() {
                    return Err(data_error(&shards[i].0, format!("tensor `{name}` (listed in {}) is missing", index_path.display())));
                }
            }
            return Ok(WeightShards { shards, index });
        }
        let st = SafeTensors::open(&single)?;
        let index = st.names().map(|n| (n.to_string(), 0)).collect();
        Ok(WeightShards { shards: vec![(single, st)], index })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    fn file_of(&self, name: &str) -> &Path {
        let i = self.index.get(name).copied().unwrap_or(0);
        &self.shards[i].0
    }

    /// The shard holding `name`, or an error naming the weight file and the tensor.
    fn get(&self, name: &str) -> Result<(&SafeTensors, &Path)> {
        match self.index.get(name) {
            Some(&i) => Ok((&self.shards[i].1, &self.shards[i].0)),
            None => Err(data_error(&self.shards[0].0, format!("tensor `{name}` is missing"))),
        }
    }
}

fn data_error(path: &Path, reason: String) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason }
}
