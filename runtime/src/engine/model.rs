//! A loaded model: llama.cpp weights (memory-mapped), vocabulary and chat template.
//!
//! [`Model`] is a cheap handle (an `Arc`): clone it freely and share it across threads. The
//! weights stay mapped until the last handle and the last [`Session`](super::Session) made from
//! it are gone.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::adapter::{Adapter, MergeCache};
use super::llama_global::{llama_backend, take_last_llama_error};
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    /// Number of layers to offload to a GPU backend (0 = CPU only; a large number = all): the
    /// last blocks of the model, then its output head. Ignored when no GPU backend is loaded
    /// (a static CPU build, or a dynamic build on a machine without a usable GPU library).
    pub n_gpu_layers: u32,
    /// Memory-map the weights (the default): loading is as fast as opening the file and the
    /// pages are shared with the OS cache. Disable only on file systems without mmap.
    pub use_mmap: bool,
    /// Lock the mapped weights in RAM so the OS cannot page them out.
    pub use_mlock: bool,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self { n_gpu_layers: 0, use_mmap: true, use_mlock: false }
    }
}

pub(crate) struct ModelInner {
    pub(crate) llama: LlamaModel,
    pub(crate) path: PathBuf,
    pub(crate) template: ChatTemplate,
    pub(crate) load_time: Duration,
    pub(crate) gpu_layers: u32,
    /// Merged LoRA adapters (several adapters with scales, served as one) loaded so far. Each
    /// costs llama.cpp memory equal to the sum of its parts and lives until the model is
    /// dropped, so that switching back to a set is free.
    pub(crate) merged: Mutex<MergeCache>,
}

// `LlamaModel` is `#[repr(transparent)]` over llama-cpp-2's `Ptr<llama_model>`, itself
// `#[repr(transparent)]` over `NonNull<llama_model>`: [`ModelInner::raw_model`] reads the
// pointer through that layout, which this assertion pins down at compile time.
const _: () = assert!(std::mem::size_of::<LlamaModel>() == std::mem::size_of::<NonNull<llama_cpp_sys_2::llama_model>>());

impl ModelInner {
    /// The raw llama.cpp model, for the calls llama-cpp-2 only offers through `&mut`
    /// (adapter loading, which must work on a shared model). Callers serialize mutation with
    /// the context-creation lock.
    pub(crate) fn raw_model(&self) -> NonNull<llama_cpp_sys_2::llama_model> {
        // SAFETY: see the layout assertion above; the value is a valid non-null pointer for as
        // long as `self.llama` lives.
        unsafe { *std::ptr::from_ref(&self.llama).cast::<NonNull<llama_cpp_sys_2::llama_model>>() }
    }
}

/// A model loaded from a GGUF file. Cloning shares the same weights.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

/// Summary of a model's architecture, for display (and, serialised, the C ABI's
/// `lamina_model_info_json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub architecture: String,
    pub name: Option<String>,
    pub n_params: u64,
    pub size_bytes: u64,
    pub n_layer: u32,
    pub n_embd: i32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_vocab: i32,
    pub n_ctx_train: u32,
    pub has_chat_template: bool,
    /// Layers running on a GPU (0 = all on the CPU), out of `n_layer + 1` (the blocks and
    /// the output head).
    pub gpu_layers: u32,
}

/// Read and compile the chat template of a loaded model, with its BOS and EOS tokens' text.
fn chat_template_of(model: &LlamaModel) -> ChatTemplate {
    let token_text = |token: LlamaToken| {
        if token.0 < 0 {
            return String::new();
        }
        String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
    };
    let source = model.chat_template(None).ok().and_then(|t| t.to_string().ok());
    let vocab = model.vocab();
    ChatTemplate::new(source, token_text(vocab.bos()), token_text(vocab.eos()))
}

/// Check the first bytes of `path` before handing it to llama.cpp, so that the common mistakes
/// (wrong path, wrong file) get a precise error instead of a generic load failure.
fn check_gguf_header(path: &Path) -> Result<()> {
    let mut file = File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound { path: path.to_path_buf() },
        _ => Error::Io { path: path.to_path_buf(), source },
    })?;
    let meta = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if meta.is_dir() {
        return Err(Error::NotGguf { path: path.to_path_buf(), reason: "it is a directory".into() });
    }
    let mut header = [0u8; 8];
    let mut filled = 0;
    while filled < header.len() {
        match file.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
        }
    }
    if filled < header.len() {
        return Err(Error::NotGguf { path: path.to_path_buf(), reason: format!("the file is only {filled} bytes long") });
    }
    if &header[..4] != b"GGUF" {
        return Err(Error::NotGguf { path: path.to_path_buf(), reason: format!("bad magic {:02x?} (expected \"GGUF\")", &header[..4]) });
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(2..=3).contains(&version) {
        return Err(Error::NotGguf {
            path: path.to_path_buf(),
            reason: format!("unsupported GGUF version {version} (2 and 3 are supported)"),
        });
    }
    Ok(())
}

impl Model {
    /// Load a GGUF model. The weights are memory-mapped (unless `params.use_mmap` is false).
    ///
    /// Errors: [`Error::ModelNotFound`], [`Error::NotGguf`] for a file that is not GGUF,
    /// [`Error::ModelLoad`] with llama.cpp's reason for a truncated or unsupported file,
    /// [`Error::Backend`] when no CPU backend is loaded or when `params.n_gpu_layers` layers'
    /// weights do not fit in the GPUs' free memory (the message says how many do). With no GPU
    /// device loaded, `n_gpu_layers` is ignored and the model runs on the CPU.
    pub fn load(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        let path = path.as_ref();
        let start = Instant::now();
        check_gguf_header(path)?;
        let path_str = path.to_str().ok_or_else(|| Error::invalid("path", "the path is not valid UTF-8"))?;
        if path_str.contains('\0') {
            return Err(Error::invalid("path", "the path contains a NUL byte"));
        }
        let backend = llama_backend();
        super::compute_backends::require_cpu_backend()?;
        let offload = super::offload::plan(path, params.n_gpu_layers)?;
        let mut llama_params = LlamaModelParams::default()
            .with_n_gpu_layers(params.n_gpu_layers)
            .with_use_mmap(params.use_mmap)
            .with_use_mlock(params.use_mlock);
        if offload.layers == 0 {
            // An empty device list keeps the model off every GPU: with a GPU backend loaded,
            // llama.cpp would otherwise still send large prompt batches to it ("op offload")
            // and reserve GPU buffers. `n_gpu_layers == 0` means CPU only.
            llama_params =
                llama_params.with_devices(&[]).map_err(|e| Error::Backend(format!("could not restrict the model to the CPU: {e}")))?;
        }
        let _ = take_last_llama_error();
        let llama = LlamaModel::load_from_file(backend, path, &llama_params).map_err(|e| {
            let reason = take_last_llama_error().unwrap_or_else(|| e.to_string());
            Error::ModelLoad { path: path.to_path_buf(), reason }
        })?;
        let template = chat_template_of(&llama);
        let load_time = start.elapsed();
        Ok(Model {
            inner: Arc::new(ModelInner {
                llama,
                path: path.to_path_buf(),
                template,
                load_time,
                gpu_layers: offload.layers,
                merged: Mutex::new(MergeCache::new()),
            }),
        })
    }

    /// Load a LoRA adapter for this model: a llama.cpp GGUF adapter file, or a PEFT directory
    /// (`adapter_config.json` + `adapter_model.safetensors`, converted on load). Apply it to a
    /// session with [`Session::set_adapters`](super::Session::set_adapters). The adapter's
    /// weights stay in memory until the model is dropped (llama.cpp frees adapters with their
    /// model), whether or not the [`Adapter`] handle is kept.
    ///
    /// The file is validated before llama.cpp sees it. Errors: [`Error::Io`] (cannot open),
    /// [`Error::Data`] naming the file and the problem (not a GGUF, a model rather than an
    /// adapter, alpha not an f32, unpaired tensors, targets the model lacks, shape mismatch,
    /// missing PEFT files), [`Error::ModelLoad`] with llama.cpp's reason if it still refuses.
    pub fn load_adapter(&self, path: impl AsRef<Path>) -> Result<Adapter> {
        super::adapter::load_adapter(self, path.as_ref())
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Wall time [`Model::load`] took.
    pub fn load_time(&self) -> Duration {
        self.inner.load_time
    }

    /// The underlying llama-cpp-2 model, for callers that need llama.cpp directly.
    pub fn llama(&self) -> &LlamaModel {
        &self.inner.llama
    }

    /// A metadata value from the GGUF header, rendered as a string by llama.cpp.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.inner.llama.meta_val_str(key).ok()
    }

    /// All GGUF metadata as (key, value) pairs, in file order. Long values (vocabularies)
    /// are abbreviated by llama.cpp.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let llama = &self.inner.llama;
        (0..llama.meta_count()).filter_map(|i| Some((llama.meta_key_by_index(i).ok()?, llama.meta_val_str_by_index(i).ok()?))).collect()
    }

    /// Architecture summary.
    pub fn info(&self) -> ModelInfo {
        let llama = &self.inner.llama;
        ModelInfo {
            path: self.inner.path.clone(),
            architecture: self.meta("general.architecture").unwrap_or_else(|| "unknown".into()),
            name: self.meta("general.name"),
            n_params: llama.n_params(),
            size_bytes: llama.size(),
            n_layer: llama.n_layer(),
            n_embd: llama.n_embd(),
            n_head: llama.n_head(),
            n_head_kv: llama.n_head_kv(),
            n_vocab: llama.n_vocab(),
            n_ctx_train: llama.n_ctx_train(),
            has_chat_template: self.inner.template.source().is_some(),
            gpu_layers: self.inner.gpu_layers,
        }
    }

    /// The chat template source stored in the GGUF (`tokenizer.chat_template`), if any.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.inner.template.source()
    }

    /// Tokenize `text`. With `add_special`, llama.cpp adds BOS/EOS where the model asks for them; `parse_special`
    /// turns special-token text such as `<|im_start|>` into its token.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<i32> {
        self.inner.llama.vocab().tokenize(text.as_bytes(), add_special, parse_special).into_iter().map(|t| t.0).collect()
    }

    /// The bytes of one token (special tokens rendered as text when `special`).
    pub fn token_bytes(&self, token: i32, special: bool) -> Vec<u8> {
        self.inner.llama.vocab().token_to_piece(LlamaToken(token), special, None)
    }

    /// Whether `token` ends generation (end of sequence / end of turn).
    pub fn is_end_of_generation(&self, token: i32) -> bool {
        self.inner.llama.vocab().is_eog(LlamaToken(token))
    }

    /// Whether llama.cpp adds a BOS token when tokenizing with `add_special`.
    pub fn adds_bos(&self) -> bool {
        self.inner.llama.vocab().should_add_bos()
    }

    /// The BOS token id.
    pub fn bos_token(&self) -> i32 {
        self.inner.llama.vocab().bos().0
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        usize::try_from(self.inner.llama.n_vocab()).unwrap_or(0)
    }
}
