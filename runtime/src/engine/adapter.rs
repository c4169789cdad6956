//! LoRA adapters served through llama.cpp: loading a validated file into a model, the
//! [`Adapter`] handle a [`Model`] hands out, and the cache of merged adapter sets. The file
//! formats (GGUF adapters, PEFT directories, the merge) are [`crate::adapters`]; every file is
//! validated there before llama.cpp sees it, because llama.cpp aborts the process on some
//! malformed adapters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::llama_global::{take_last_llama_error, CONTEXT_CREATION};
use super::model::{Model, ModelInner};
use crate::adapters::{
    merge_lora, read_lora_tensors, read_peft_adapter, validate_gguf_adapter, write_gguf_adapter, LoraTensor, LoraTensorRef,
};
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;
use crate::weights::llama_config::LlamaConfig;

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
    std::mem::size_of::<llama_cpp_2::model::LlamaLoraAdapter>() == std::mem::size_of::<NonNull<llama_cpp_sys_2::llama_adapter_lora>>()
);

fn data_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason: reason.into() }
}

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
        let weights: Vec<LoraTensorRef<'_>> = peft.tensors.iter().map(LoraTensor::as_ref).collect();
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
    let parts: Vec<(&[LoraTensor], f32, f32)> = sorted.iter().zip(&tensors).map(|((a, s), t)| (t.as_slice(), a.alpha(), *s)).collect();
    let merged = merge_lora(&parts);
    let arch = model.meta("general.architecture").unwrap_or_else(|| "llama".into());
    let tmp = temp_adapter_path("merged")?;
    let weights: Vec<LoraTensorRef<'_>> = merged.iter().map(LoraTensor::as_ref).collect();
    let loaded = write_gguf_adapter(&tmp, &arch, 0.0, &weights).and_then(|()| llama_load_adapter(&model.inner, &tmp));
    let _ = std::fs::remove_file(&tmp);
    let ptr = loaded?;
    cache.insert(key, ptr);
    Ok(ptr)
}
