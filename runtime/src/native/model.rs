//! [`NativeModel`]: a LLaMA-architecture decoder evaluated in Rust, straight from a memory-mapped
//! GGUF file or a Hugging Face safetensors checkpoint.
//!
//! The weights stay in the mapping in their stored type (quantized GGUF blocks, f16, bf16 or
//! f32); the model keeps only byte ranges into it, plus the small norm vectors as f32. Its
//! pass (inference, scoring and training alike) is in `pass.rs`, on the model's own rayon
//! pool.
//!
//! GGUF files store q/k rows permuted for interleaved RoPE, HF checkpoints in `rotate_half`
//! order; the model records which and rotates accordingly, so both give the same logits.

use std::path::{Path, PathBuf};

use super::buffer_pool::BufferPool;
use super::layers::rope::{rope_frequencies, RopeLayout};
use super::matmul::{Precision, WeightMatrix};
use super::packed::PackedWeights;
use super::tokenizer::{SpecialTokens, Tokenizer};
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;
use crate::weights::llama_config::LlamaConfig;
use crate::weights::names::gguf_to_hf_name;
use crate::weights::safetensors::{Dtype, SafeTensors};
use crate::weights::GgmlType;

/// Options for [`NativeModel::load`].
#[derive(Debug, Clone)]
pub struct NativeParams {
    /// Worker threads for the forward pass; 0 = one per available core.
    pub n_threads: usize,
    /// Precision of the frozen-weight products (Auto: bf16 where the CPU has AVX512-BF16).
    pub precision: Precision,
    /// With the bf16 path, pack every frozen weight into the kernel's panels once at load
    /// (2 bytes per weight, on top of the mapped file) instead of on every pass: faster
    /// inference and scoring, the same results bit for bit. Skipped when the panels would
    /// take more than a quarter of the available memory; [`NativeModel::packed_weight_bytes`]
    /// says whether it happened. Default on. Trainers load their model with it off.
    pub pack_weights: bool,
}

impl Default for NativeParams {
    fn default() -> NativeParams {
        NativeParams { n_threads: 0, precision: Precision::Auto, pack_weights: true }
    }
}

/// The mapped file the weight ranges point into.
pub(crate) enum WeightFile {
    Gguf(Gguf),
    SafeTensors(SafeTensors),
}

impl WeightFile {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            WeightFile::Gguf(g) => g.file_bytes(),
            WeightFile::SafeTensors(s) => s.file_bytes(),
        }
    }
    fn path(&self) -> &Path {
        match self {
            WeightFile::Gguf(g) => g.path(),
            WeightFile::SafeTensors(s) => s.path(),
        }
    }
}

/// One transformer block's weights.
pub(crate) struct Block {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) wq: WeightMatrix,
    pub(crate) wk: WeightMatrix,
    pub(crate) wv: WeightMatrix,
    pub(crate) wo: WeightMatrix,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) w_gate: WeightMatrix,
    pub(crate) w_up: WeightMatrix,
    pub(crate) w_down: WeightMatrix,
}

impl Block {
    /// The frozen weight a LoRA target adapts.
    pub(crate) fn weight(&self, t: super::lora::LoraTarget) -> &WeightMatrix {
        use super::lora::LoraTarget::*;
        match t {
            Q => &self.wq,
            K => &self.wk,
            V => &self.wv,
            O => &self.wo,
            Gate => &self.w_gate,
            Up => &self.w_up,
            Down => &self.w_down,
        }
    }
}

/// A LLaMA decoder over memory-mapped weights. Immutable once loaded: share it across threads
/// (`&NativeModel` is `Sync`); each forward call allocates its own activations.
pub struct NativeModel {
    pub(crate) config: LlamaConfig,
    pub(crate) file: WeightFile,
    pub(crate) rope_layout: RopeLayout,
    pub(crate) rope_freqs: Vec<f32>,
    pub(crate) embed: WeightMatrix,
    pub(crate) blocks: Vec<Block>,
    pub(crate) final_norm: Vec<f32>,
    pub(crate) lm_head: WeightMatrix,
    pub(crate) pool: rayon::ThreadPool,
    /// The resolved precision of the weight products (never Auto), and why it differs from
    /// the request when it does.
    pub(crate) precision: Precision,
    pub(crate) precision_note: Option<String>,
    /// Activation buffers kept from one pass to the next (see `buffer_pool`).
    pub(crate) buffers: BufferPool,
    /// The frozen weights packed for the bf16 kernel, when they are (see `packed`).
    pub(crate) packed: Option<PackedWeights>,
    /// Why the weights are not kept packed although that was asked for, when so.
    pub(crate) packing_note: Option<String>,
}

impl std::fmt::Debug for NativeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeModel")
            .field("path", &self.file.path())
            .field("config", &self.config)
            .field("rope_layout", &self.rope_layout)
            .field("threads", &self.pool.current_num_threads())
            .field("precision", &self.precision)
            .finish()
    }
}

/// Logits for a run of positions: `rows × n_vocab`, row-major.
#[derive(Debug, Clone)]
pub struct Logits {
    pub n_vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    pub fn rows(&self) -> usize {
        self.data.len() / self.n_vocab.max(1)
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_vocab..(i + 1) * self.n_vocab]
    }
}

impl NativeModel {
    /// Load a model: a `.gguf` file, a `.safetensors` file with `config.json` beside it, or a
    /// directory holding `model.safetensors` and `config.json`. Errors name the file and the
    /// problem: a missing tensor, a shape that disagrees with the configuration, an
    /// unsupported element type.
    pub fn load(path: impl AsRef<Path>, params: &NativeParams) -> Result<NativeModel> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(Error::ModelNotFound { path: path.to_path_buf() });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(params.n_threads)
            .thread_name(|i| format!("lamina-native-{i}"))
            .build()
            .map_err(|e| Error::invalid("n_threads", format!("cannot start the worker threads: {e}")))?;
        let (dir_st, config_json) = if path.is_dir() {
            (Some(path.join("model.safetensors")), path.join("config.json"))
        } else if path.extension().is_some_and(|e| e == "safetensors") {
            (Some(path.to_path_buf()), path.with_file_name("config.json"))
        } else {
            (None, PathBuf::new())
        };
        let mut model = match dir_st {
            Some(st) => {
                let config = LlamaConfig::from_hf_config_json(&config_json)?;
                let file = SafeTensors::open(&st)?;
                Self::from_safetensors(config, file, pool)?
            }
            None => {
                let g = Gguf::open(path)?;
                let config = LlamaConfig::from_gguf(&g)?;
                Self::from_gguf(config, g, pool)?
            }
        };
        (model.precision, model.precision_note) = params.precision.resolve();
        if params.pack_weights && model.precision == Precision::Bf16 {
            let bytes = PackedWeights::bytes_for(&model.blocks, &model.lm_head);
            if PackedWeights::fits(bytes) {
                let file = model.file.bytes();
                model.packed = Some(model.pool.install(|| PackedWeights::pack(&model.blocks, &model.lm_head, file)));
            } else {
                model.packing_note = Some(format!(
                    "weights packed per pass: keeping them packed would take {:.0} MiB, over a quarter of the available memory",
                    bytes as f64 / (1u64 << 20) as f64
                ));
            }
        }
        Ok(model)
    }

    fn from_gguf(config: LlamaConfig, g: Gguf, pool: rayon::ThreadPool) -> Result<NativeModel> {
        let c = &config;
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let matrix = |name: &str, rows: usize, cols: usize| gguf_matrix(&g, name, rows, cols);
        let vector = |name: &str, len: usize| gguf_vector(&g, name, len);
        let embed = matrix("token_embd.weight", c.vocab_size, d)?;
        let lm_head = if g.tensor("output.weight").is_some() { matrix("output.weight", c.vocab_size, d)? } else { embed.clone() };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: vector(&n("attn_norm"), d)?,
                wq: matrix(&n("attn_q"), qw, d)?,
                wk: matrix(&n("attn_k"), kw, d)?,
                wv: matrix(&n("attn_v"), kw, d)?,
                wo: matrix(&n("attn_output"), d, qw)?,
                ffn_norm: vector(&n("ffn_norm"), d)?,
                w_gate: matrix(&n("ffn_gate"), ff, d)?,
                w_up: matrix(&n("ffn_up"), ff, d)?,
                w_down: matrix(&n("ffn_down"), d, ff)?,
            });
        }
        let final_norm = vector("output_norm.weight", d)?;
        // llama3-style scaling is baked into GGUF files as per-frequency divisors.
        let divisors = if g.tensor("rope_freqs.weight").is_some() { Some(vector("rope_freqs.weight", c.head_dim / 2)?) } else { None };
        let rope_freqs = rope_frequencies(c.head_dim, c.rope_theta, c.rope_scaling.as_ref(), divisors.as_deref());
        Ok(NativeModel {
            config,
            file: WeightFile::Gguf(g),
            rope_layout: RopeLayout::Interleaved,
            rope_freqs,
            embed,
            blocks,
            final_norm,
            lm_head,
            pool,
            precision: Precision::F32,
            precision_note: None,
            buffers: BufferPool::default(),
            packed: None,
            packing_note: None,
        })
    }

    fn from_safetensors(config: LlamaConfig, st: SafeTensors, pool: rayon::ThreadPool) -> Result<NativeModel> {
        let c = &config;
        let (d, qw, kw, ff) = (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let matrix = |name: &str, rows: usize, cols: usize| st_matrix(&st, name, rows, cols);
        let vector = |name: &str, len: usize| st_vector(&st, name, len);
        let embed = matrix("model.embed_tokens.weight", c.vocab_size, d)?;
        let lm_head = if st.info("lm_head.weight").is_some() {
            matrix("lm_head.weight", c.vocab_size, d)?
        } else if c.tie_word_embeddings {
            embed.clone()
        } else {
            return Err(st_err(&st, "missing tensor `lm_head.weight` (the config does not tie the embeddings)".into()));
        };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            // The same stems as GGUF, through the one name table.
            let n = |s: &str| gguf_to_hf_name(&format!("blk.{i}.{s}.weight")).expect("a LLaMA layer tensor name");
            blocks.push(Block {
                attn_norm: vector(&n("attn_norm"), d)?,
                wq: matrix(&n("attn_q"), qw, d)?,
                wk: matrix(&n("attn_k"), kw, d)?,
                wv: matrix(&n("attn_v"), kw, d)?,
                wo: matrix(&n("attn_output"), d, qw)?,
                ffn_norm: vector(&n("ffn_norm"), d)?,
                w_gate: matrix(&n("ffn_gate"), ff, d)?,
                w_up: matrix(&n("ffn_up"), ff, d)?,
                w_down: matrix(&n("ffn_down"), d, ff)?,
            });
        }
        let final_norm = vector("model.norm.weight", d)?;
        let rope_freqs = rope_frequencies(c.head_dim, c.rope_theta, c.rope_scaling.as_ref(), None);
        Ok(NativeModel {
            config,
            file: WeightFile::SafeTensors(st),
            rope_layout: RopeLayout::Halves,
            rope_freqs,
            embed,
            blocks,
            final_norm,
            lm_head,
            pool,
            precision: Precision::F32,
            precision_note: None,
            buffers: BufferPool::default(),
            packed: None,
            packing_note: None,
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The file the weights are mapped from.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// How q/k rows are laid out for RoPE (interleaved for GGUF, halves for HF checkpoints).
    pub fn rope_layout(&self) -> RopeLayout {
        self.rope_layout
    }

    /// The tokenizer that goes with the weights: rebuilt from the GGUF vocabulary, or read
    /// from `tokenizer.json` (and `tokenizer_config.json`) beside a safetensors checkpoint.
    pub fn load_tokenizer(&self) -> Result<Tokenizer> {
        match &self.file {
            WeightFile::Gguf(g) => Tokenizer::from_gguf(g),
            WeightFile::SafeTensors(st) => Tokenizer::from_file(st.path().with_file_name("tokenizer.json")),
        }
    }

    /// Whether prompts start with BOS: `tokenizer.ggml.add_bos_token` in a GGUF, `add_bos_token`
    /// in `tokenizer_config.json` for a checkpoint (false when absent, as for the default model).
    pub fn adds_bos(&self) -> bool {
        match &self.file {
            WeightFile::Gguf(g) => g.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false),
            WeightFile::SafeTensors(st) => SpecialTokens::from_config(&st.path().with_file_name("tokenizer_config.json"))
                .ok()
                .and_then(|t| t.add_bos_token)
                .unwrap_or(false),
        }
    }

    /// The precision the weight products run in (bf16 or f32; never Auto).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Why [`precision`](Self::precision) differs from what was asked, when it does (a forced
    /// bf16 on a CPU without AVX512-BF16).
    pub fn precision_note(&self) -> Option<&str> {
        self.precision_note.as_deref()
    }

    /// Bytes of activation buffers the model keeps between passes: after a training step,
    /// about what the next step needs, so that it touches no fresh memory.
    pub fn kept_buffer_bytes(&self) -> usize {
        self.buffers.kept_bytes()
    }

    /// Give the kept activation buffers back to the system (a trainer does when it is
    /// dropped); the next pass allocates what it needs again.
    pub fn release_buffers(&self) {
        self.buffers.clear();
    }

    /// One line for reports: the precision, the kernels behind it, and whether the weights
    /// are kept packed.
    pub fn describe_kernels(&self) -> String {
        let kernels = describe_kernels(self.precision);
        match (&self.packed, &self.packing_note) {
            (Some(p), _) => format!("{kernels}; weights kept packed in bf16 ({:.0} MiB)", p.bytes() as f64 / (1u64 << 20) as f64),
            (None, Some(note)) => format!("{kernels}; {note}"),
            (None, None) => kernels,
        }
    }

    /// Bytes of bf16 panels the model keeps its frozen weights packed in (see
    /// [`NativeParams::pack_weights`]); 0 when the passes pack per tile.
    pub fn packed_weight_bytes(&self) -> u64 {
        self.packed.as_ref().map_or(0, PackedWeights::bytes)
    }

    /// Give a pass's logits back so that the next [`forward`](Self::forward) or
    /// [`logits`](Self::logits) call reuses their memory instead of faulting in fresh pages
    /// (50 MB for 256 positions of the default model's vocabulary).
    pub fn recycle(&self, logits: Logits) {
        self.buffers.give(logits.data);
    }

    /// Worker threads of the forward pass.
    pub fn n_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Multiply-adds per token of the weight matrices (2 FLOPs each), excluding attention
    /// scores: the figure throughput benchmarks quote GFLOP/s against.
    pub fn matmul_flops_per_token(&self) -> u64 {
        let per_block: usize = self
            .blocks
            .first()
            .map_or(0, |b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down].iter().map(|w| w.rows * w.cols).sum());
        2 * (per_block * self.blocks.len() + self.lm_head.rows * self.lm_head.cols) as u64
    }
}

/// The kernels a model loaded with `precision` (Auto, or forced) runs on this CPU, in one line.
pub fn describe_kernels(precision: Precision) -> String {
    match precision.resolve().0 {
        Precision::Bf16 if super::amx::available() => {
            let attention = match Precision::Bf16.for_attention() {
                Precision::Bf16 => "attention products AVX512-BF16",
                _ => "attention products f32 (AVX512-BF16's dot product is slower than the f32 FMA here)",
            };
            format!("bf16 weight products on AMX tiles (f32 accumulation), {attention}; LoRA products f32, AVX-512 (lamina's kernel)")
        }
        Precision::Bf16 => "bf16 weight and attention products (AVX512-BF16, f32 accumulation); LoRA products f32, AVX-512 (lamina's kernel)".into(),
        _ => match (precision, super::bf16::dot_speedup()) {
            (Precision::Auto, Some(speedup)) => format!(
                "{}; not bf16: AVX512-BF16's dot product retires {speedup:.2}x the f32 FMA's multiply-adds here, under the {:.1}x that pays for its conversions (--precision bf16 forces it)",
                super::gemm::kernel_path(),
                super::bf16::MIN_SPEEDUP
            ),
            _ => super::gemm::kernel_path().to_string(),
        },
    }
}

fn data_err(path: &Path, reason: String) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason }
}

fn st_err(st: &SafeTensors, reason: String) -> Error {
    data_err(st.path(), reason)
}

/// A `rows × cols` matrix from a GGUF file (ggml dims `[cols, rows]`).
fn gguf_matrix(g: &Gguf, name: &str, rows: usize, cols: usize) -> Result<WeightMatrix> {
    let t = g.tensor(name).ok_or_else(|| data_err(g.path(), format!("missing tensor `{name}`")))?;
    let dims = t.dims();
    if dims.len() != 2 || dims[0] != cols as u64 || dims[1] != rows as u64 {
        return Err(data_err(
            g.path(),
            format!("tensor `{name}` has shape {dims:?} (ggml order), expected [{cols}, {rows}] from the model config"),
        ));
    }
    let ty = t.ggml_type();
    check_rows(g.path(), name, ty, rows, cols, t.data().len())?;
    let start = (g.data_offset() + t.info().offset) as usize;
    Ok(WeightMatrix { name: name.to_string(), ty, rows, cols, range: start..start + t.data().len() })
}

fn gguf_vector(g: &Gguf, name: &str, len: usize) -> Result<Vec<f32>> {
    let t = g.tensor(name).ok_or_else(|| data_err(g.path(), format!("missing tensor `{name}`")))?;
    if t.dims() != [len as u64] {
        return Err(data_err(g.path(), format!("tensor `{name}` has shape {:?}, expected [{len}]", t.dims())));
    }
    check_rows(g.path(), name, t.ggml_type(), 1, len, t.data().len())?;
    let mut out = vec![0.0f32; len];
    crate::weights::dequant::dequantize_row(t.ggml_type(), t.data(), &mut out)?;
    Ok(out)
}

fn st_type(st: &SafeTensors, name: &str, dtype: Dtype) -> Result<GgmlType> {
    match dtype {
        Dtype::F32 => Ok(GgmlType::F32),
        Dtype::F16 => Ok(GgmlType::F16),
        Dtype::BF16 => Ok(GgmlType::BF16),
        other => Err(st_err(st, format!("tensor `{name}` has dtype {other:?}; the native engine reads F32, F16 and BF16"))),
    }
}

fn st_matrix(st: &SafeTensors, name: &str, rows: usize, cols: usize) -> Result<WeightMatrix> {
    let info = st.info(name).ok_or_else(|| st_err(st, format!("missing tensor `{name}`")))?;
    if info.shape != [rows, cols] {
        return Err(st_err(st, format!("tensor `{name}` has shape {:?}, expected [{rows}, {cols}] from config.json", info.shape)));
    }
    let ty = st_type(st, name, info.dtype)?;
    check_rows(st.path(), name, ty, rows, cols, info.range.len())?;
    Ok(WeightMatrix { name: name.to_string(), ty, rows, cols, range: info.range.clone() })
}

fn st_vector(st: &SafeTensors, name: &str, len: usize) -> Result<Vec<f32>> {
    let info = st.info(name).ok_or_else(|| st_err(st, format!("missing tensor `{name}`")))?;
    if info.shape != [len] {
        return Err(st_err(st, format!("tensor `{name}` has shape {:?}, expected [{len}] from config.json", info.shape)));
    }
    st.to_f32(name)
}

/// The stored bytes must be exactly `rows` whole rows of `cols` elements of `ty`.
fn check_rows(path: &Path, name: &str, ty: GgmlType, rows: usize, cols: usize, bytes: usize) -> Result<()> {
    if !cols.is_multiple_of(ty.block_size()) {
        return Err(data_err(
            path,
            format!("tensor `{name}`: row length {cols} is not a multiple of the {ty} block size {}", ty.block_size()),
        ));
    }
    let expected = (cols / ty.block_size()).checked_mul(ty.type_size()).and_then(|rb| rb.checked_mul(rows));
    if expected != Some(bytes) {
        return Err(data_err(path, format!("tensor `{name}`: {bytes} bytes of data, expected {rows} rows of {cols} {ty} elements")));
    }
    Ok(())
}
