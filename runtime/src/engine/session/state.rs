//! Saved sessions: a session's state (the KV cache of its conversation, the tokens it holds,
//! the chat history and the adapters in use) as bytes or a file, restored into another
//! session over the same model, so an app resumes a conversation without processing its
//! prompt again. Under greedy decoding the restored session continues byte for byte as the
//! saved one would have: the cache entries are llama.cpp's own, copied, not recomputed.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! MAGIC (8 bytes) | version u32 | model fingerprint (32 bytes)
//! metadata length u64 | metadata (JSON: model path, history, cached tokens, adapters)
//! cache length u64 | cache (llama.cpp's sequence state)
//! SHA-256 of everything above (32 bytes)
//! ```
//!
//! The checksum catches a truncated or corrupted file before anything is restored; the
//! fingerprint (a hash of the model file's size, first and last MiB) refuses a state made with
//! another model, even one of the same shape. A failed restore leaves the session empty (no
//! history, no cache), never half restored.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Session;
use crate::atomic_file::write_bytes;
use crate::chat::ChatMessage;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"LAMSESS\0";
const VERSION: u32 = 1;
/// The part of the model file at each end that the fingerprint hashes.
const FINGERPRINT_SPAN: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Metadata {
    /// The model file the state was saved from (for messages).
    model: PathBuf,
    history: Vec<ChatMessage>,
    /// The tokens whose cache entries follow, positions 0.., sequence 0.
    cached: Vec<i32>,
    /// The adapters that were applied, with their scales.
    adapters: Vec<(PathBuf, f32)>,
}

/// The model file's fingerprint: SHA-256 of its size and its first and last MiB (the header
/// with the vocabulary, and the end of the last tensor).
fn fingerprint(path: &Path) -> Result<[u8; 32]> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    let mut buf = vec![0u8; FINGERPRINT_SPAN.min(len) as usize];
    f.read_exact(&mut buf).map_err(io)?;
    hasher.update(&buf);
    f.seek(SeekFrom::Start(len - buf.len() as u64)).map_err(io)?;
    f.read_exact(&mut buf).map_err(io)?;
    hasher.update(&buf);
    Ok(hasher.finalize().into())
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("state", reason)
}

/// Reads the sections of a state in order, each bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad(format!("it ends inside its {what}")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn section(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| bad(format!("its {what} is too large")))?;
        self.take(len, what)
    }
}

impl Session {
    /// This session's state as bytes (see the module docs): restore it with
    /// [`restore_state`](Self::restore_state) into a session over the same model.
    pub fn save_state(&mut self) -> Result<Vec<u8>> {
        let meta = Metadata {
            model: self.model.path().to_path_buf(),
            history: self.history.clone(),
            cached: self.cached.iter().map(|t| t.0).collect(),
            adapters: self.adapters.iter().map(|(a, s)| (a.path().to_path_buf(), *s)).collect(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| Error::Internal(format!("cannot serialise the session: {e}")))?;
        let cache = if self.cached.is_empty() { Vec::new() } else { self.ctx.sequence_state(0)? };
        let mut out = Vec::with_capacity(8 + 4 + 32 + 16 + meta.len() + cache.len() + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&fingerprint(self.model.path())?);
        for section in [&meta, &cache] {
            out.extend_from_slice(&(section.len() as u64).to_le_bytes());
            out.extend_from_slice(section);
        }
        let digest: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// [`save_state`](Self::save_state) into `path`, atomically (a crash leaves the old file
    /// or the new one, never a torn one).
    pub fn save_state_to_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.save_state()?;
        write_bytes(path.as_ref(), &bytes)
    }

    /// Replace this session's conversation with a saved state: its chat history, its cache
    /// (so the next call processes only what is new) and its adapters (loaded again from
    /// their files, with their scales, unless this session already has exactly those).
    ///
    /// Errors (each `InvalidArgument` on `state`, saying what is wrong): not a lamina session
    /// state, a newer format version, a checksum mismatch (corrupted or truncated), a state
    /// of another model, more cached tokens than this session's context holds, a cache that
    /// llama.cpp cannot load. Adapter files that cannot be loaded give their own errors. On
    /// any error the session is left empty (as after [`reset`](Self::reset)) with its
    /// adapters unchanged.
    pub fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        self.reset();
        let (meta, cache) = self.check_state(state)?;
        let previous = self.adapters.clone();
        let result = self.apply_state(meta, cache);
        if result.is_err() {
            // Back to the adapters the session had; they were valid, so this cannot fail for
            // a reason the caller's error does not already cover.
            let _ = self.set_adapters(&previous);
            self.reset();
        }
        result
    }

    /// The adapters, the cache and the history of a checked state.
    fn apply_state(&mut self, meta: Metadata, cache: &[u8]) -> Result<()> {
        let same_adapters = meta.adapters.len() == self.adapters.len()
            && meta.adapters.iter().zip(&self.adapters).all(|((path, scale), (a, s))| path == a.path() && scale == s);
        if !same_adapters {
            let adapters =
                meta.adapters.iter().map(|(path, scale)| Ok((self.model.load_adapter(path)?, *scale))).collect::<Result<Vec<_>>>()?;
            self.set_adapters(&adapters)?;
        }
        if !meta.cached.is_empty() {
            self.ctx.set_sequence_state(0, cache)?;
        }
        self.cached = meta.cached.into_iter().map(LlamaToken).collect();
        self.history = meta.history;
        Ok(())
    }

    /// [`restore_state`](Self::restore_state) from a file written by
    /// [`save_state_to_file`](Self::save_state_to_file); errors name the file.
    pub fn restore_state_from_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        self.restore_state(&bytes).map_err(|e| match e {
            Error::InvalidArgument { name, reason } => Error::invalid(name, format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// The metadata and the cache bytes of `state`, after every check that needs no llama.cpp.
    fn check_state<'a>(&self, state: &'a [u8]) -> Result<(Metadata, &'a [u8])> {
        if state.len() < MAGIC.len() || &state[..MAGIC.len()] != MAGIC {
            return Err(bad("it is not a lamina session state"));
        }
        if state.len() < 32 {
            return Err(bad("it is truncated"));
        }
        let (body, digest) = state.split_at(state.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad("its checksum does not match: the data is corrupted or truncated"));
        }
        let mut r = Reader(&body[MAGIC.len()..]);
        let version = u32::from_le_bytes(r.take(4, "version")?.try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!("format version {version}, but this lamina reads version {VERSION}")));
        }
        let saved_fingerprint = r.take(32, "model fingerprint")?;
        let meta: Metadata = serde_json::from_slice(r.section("metadata")?).map_err(|e| bad(format!("its metadata is unreadable: {e}")))?;
        if saved_fingerprint != fingerprint(self.model.path())? {
            return Err(bad(format!("it was saved with another model ({}), not {}", meta.model.display(), self.model.path().display())));
        }
        let cache = r.section("cache")?;
        if !r.0.is_empty() {
            return Err(bad("it has data after its last section"));
        }
        if meta.cached.len() >= self.n_ctx {
            return Err(bad(format!("it holds {} tokens, but this session's context has room for {}", meta.cached.len(), self.n_ctx)));
        }
        let n_vocab = self.model.n_vocab();
        if let Some(t) = meta.cached.iter().find(|&&t| t < 0 || t as usize >= n_vocab) {
            return Err(bad(format!("it holds token {t}, outside the model's vocabulary")));
        }
        Ok((meta, cache))
    }
}
