//! Trainer checkpoints on disk.
//!
//! A checkpoint is one safetensors file, `checkpoint-<step>.safetensors` (the step zero-padded
//! to 8 digits), holding the trained tensors and the optimizer's moments in f32, with the
//! trainer's state (configuration, position in the data, loss history) as JSON in the file's
//! metadata, and a SHA-256 digest of the state and of every tensor's name and bytes beside it.
//!
//! Crash safety:
//! - a checkpoint is written to a temporary file, flushed to disk and renamed into place
//!   (`atomic_file`), so a process killed at any moment leaves the previous checkpoints
//!   whole, and at most a hidden `.tmp` file, removed by the next save;
//! - one file per checkpoint, so the state and the tensors can never come from two different
//!   steps;
//! - the newest [`KEEP`] checkpoints are kept: when the newest is truncated or damaged on disk
//!   (its digest does not match, or it does not parse), [`load_latest`] says so, naming the
//!   file, and takes the one before.
//!
//! Directories written before this format (`trainer_state.json` beside
//! `trainer_tensors.safetensors`) are still read when they hold nothing newer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use sha2::{Digest, Sha256};

use crate::atomic_file;
use crate::error::{Error, Result};

/// Checkpoints kept in a directory: the newest and the one before it, the fallback when the
/// newest turns out damaged.
pub const KEEP: usize = 2;

const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".safetensors";
const FORMAT_KEY: &str = "lamina.format";
const FORMAT: &str = "lamina-trainer-checkpoint-2";
const STATE_KEY: &str = "lamina.trainer_state";
const DIGEST_KEY: &str = "lamina.sha256";
const LEGACY_STATE: &str = "trainer_state.json";
const LEGACY_TENSORS: &str = "trainer_tensors.safetensors";

/// Where a resumed run came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumedFrom {
    /// The checkpoint file the run continues from.
    pub path: PathBuf,
    /// Newer checkpoints that were refused, each with the reason (truncated, damaged).
    pub skipped: Vec<(PathBuf, String)>,
}

/// The file of the checkpoint at `step` in `dir`.
pub fn path_for(dir: &Path, step: usize) -> PathBuf {
    dir.join(format!("{PREFIX}{step:08}{SUFFIX}"))
}

/// Write the checkpoint of `step` into `dir` (created if needed): `state` is the trainer's
/// JSON, `tensors` every tensor by a unique name. Then remove all but the newest [`KEEP`]
/// checkpoints, temporary files that killed saves left, and a directory's old-format files.
pub fn save(dir: &Path, step: usize, state: &str, tensors: &[(String, &[f32])]) -> Result<PathBuf> {
    atomic_file::create_dir_all(dir)?;
    let bytes: BTreeMap<&str, (usize, Vec<u8>)> = tensors
        .iter()
        .map(|(name, values)| (name.as_str(), (values.len(), values.iter().flat_map(|v| v.to_le_bytes()).collect())))
        .collect();
    if bytes.len() != tensors.len() {
        return Err(Error::invalid("checkpoint", "two tensors share a name"));
    }
    let digest = digest(state, bytes.iter().map(|(name, (_, b))| (*name, b.as_slice())));
    let views = bytes
        .iter()
        .map(|(name, (len, b))| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*len], b).map(|v| (name.to_string(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("checkpoint tensor: {e}")))?;
    let metadata = HashMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (STATE_KEY.to_string(), state.to_string()),
        (DIGEST_KEY.to_string(), digest),
    ]);
    let path = path_for(dir, step);
    let tmp = atomic_file::temp_path(&path);
    let written = safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| e.to_string());
    atomic_file::commit(&tmp, &path, written)?;
    prune(dir, step);
    Ok(path)
}

/// Read the newest sound checkpoint in `dir` through `read(state, tensors)`, newest first:
/// a file that is truncated, does not parse or fails its digest is skipped (and reported in
/// [`ResumedFrom::skipped`]) for the one before it. Errors from `read` itself (a checkpoint of
/// another kind of run, or of other data) are returned as they are: an older checkpoint would
/// not fit either.
///
/// Errors: [`Error::Io`] when `dir` holds no checkpoint; [`Error::Data`] naming every file
/// when none is sound.
pub fn load_latest<T>(dir: &Path, mut read: impl FnMut(&str, &SafeTensors<'_>) -> Result<T>) -> Result<(T, ResumedFrom)> {
    let found = list(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let mut skipped = Vec::new();
    for (_, path) in found.iter().rev() {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                skipped.push((path.clone(), format!("cannot read it: {e}")));
                continue;
            }
        };
        match verify(&bytes) {
            Ok((state, tensors)) => {
                let value = read(&state, &tensors)?;
                return Ok((value, ResumedFrom { path: path.clone(), skipped }));
            }
            Err(reason) => skipped.push((path.clone(), reason)),
        }
    }
    if found.is_empty() {
        if dir.join(LEGACY_STATE).is_file() {
            return load_legacy(dir, read);
        }
        let reason = format!("no trainer checkpoint ({PREFIX}<step>{SUFFIX}) in this directory");
        return Err(Error::Io { path: dir.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::NotFound, reason) });
    }
    let each: Vec<String> = skipped.iter().map(|(p, r)| format!("{}: {r}", p.display())).collect();
    Err(Error::Data { path: dir.to_path_buf(), line: None, reason: format!("no sound checkpoint here: {}", each.join("; ")) })
}

/// The checkpoint files in `dir`, oldest first.
fn list(dir: &Path) -> std::io::Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(step) = name.strip_prefix(PREFIX).and_then(|rest| rest.strip_suffix(SUFFIX)).and_then(|n| n.parse::<usize>().ok()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The state and tensors of a checkpoint file's bytes, or why they cannot be trusted.
fn verify(bytes: &[u8]) -> std::result::Result<(String, SafeTensors<'_>), String> {
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a complete safetensors file ({e}): truncated or damaged"))?;
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| format!("not a complete safetensors file ({e}): truncated or damaged"))?;
    let meta = metadata.metadata().clone().unwrap_or_default();
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(format!("not a lamina trainer checkpoint (no `{FORMAT_KEY}: {FORMAT}` in its metadata)"));
    }
    let (Some(state), Some(expected)) = (meta.get(STATE_KEY), meta.get(DIGEST_KEY)) else {
        return Err("its metadata lacks the trainer state or the digest".into());
    };
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut data = Vec::with_capacity(names.len());
    for name in &names {
        let view = tensors.tensor(name).map_err(|e| format!("tensor `{name}`: {e}"))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!("tensor `{name}` is {:?}, not F32", view.dtype()));
        }
        data.push((name.as_str(), view.data()));
    }
    if digest(state, data.into_iter()) != *expected {
        return Err("its contents do not match the digest written with it: the file is damaged".into());
    }
    Ok((state.clone(), tensors))
}

/// Hex SHA-256 of the state and of every tensor's name and bytes, in the order given (by name).
fn digest<'a>(state: &str, tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Sha256::new();
    h.update((state.len() as u64).to_le_bytes());
    h.update(state.as_bytes());
    for (name, bytes) in tensors {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// After the checkpoint of `newest` was written: keep it and the newest one before it, and
/// remove the rest, stale temporary files and old-format files. Best effort: a file that
/// cannot be removed costs disk space, not correctness.
fn prune(dir: &Path, newest: usize) {
    if let Ok(found) = list(dir) {
        let older: Vec<&(usize, PathBuf)> = found.iter().filter(|(s, _)| *s != newest).collect();
        let drop = older.len().saturating_sub(KEEP - 1);
        for (_, path) in older.into_iter().take(drop) {
            let _ = std::fs::remove_file(path);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for legacy in [LEGACY_STATE, LEGACY_TENSORS] {
        let _ = std::fs::remove_file(dir.join(legacy));
    }
}

/// A directory in the format before this one: `trainer_state.json` and
/// `trainer_tensors.safetensors`, without a digest.
fn load_legacy<T>(dir: &Path, mut read: impl FnMut(&str, &SafeTensors<'_>) -> Result<T>) -> Result<(T, ResumedFrom)> {
    let state_path = dir.join(LEGACY_STATE);
    let state = std::fs::read_to_string(&state_path).map_err(|source| Error::Io { path: state_path.clone(), source })?;
    let tensors_path = dir.join(LEGACY_TENSORS);
    let bytes = std::fs::read(&tensors_path).map_err(|source| Error::Io { path: tensors_path.clone(), source })?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| Error::Data {
        path: tensors_path.clone(),
        line: None,
        reason: format!("not a safetensors file: {e}"),
    })?;
    let value = read(&state, &tensors)?;
    Ok((value, ResumedFrom { path: state_path, skipped: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lamina-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn save_step(dir: &Path, step: usize) -> PathBuf {
        let a: Vec<f32> = (0..100).map(|i| (i * step) as f32 * 0.5).collect();
        let b = vec![step as f32; 7];
        save(dir, step, &format!("{{\"step\":{step}}}"), &[("a".into(), a.as_slice()), ("b".into(), b.as_slice())]).unwrap()
    }

    fn load(dir: &Path) -> Result<(String, ResumedFrom)> {
        load_latest(dir, |state, t| {
            assert_eq!(t.tensor("b").unwrap().data().len(), 28);
            Ok(state.to_string())
        })
    }

    #[test]
    fn keeps_two_and_falls_back_past_a_damaged_one() {
        let dir = scratch("fallback");
        for step in 1..=4 {
            save_step(&dir, step);
        }
        std::fs::write(dir.join(".checkpoint-00000009.safetensors.1.tmp"), b"half").unwrap();
        save_step(&dir, 5);
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["checkpoint-00000004.safetensors", "checkpoint-00000005.safetensors"]);
        let (state, from) = load(&dir).unwrap();
        assert_eq!((state.as_str(), from.skipped.len()), ("{\"step\":5}", 0));

        // One flipped byte in the tensor data: the digest catches it.
        let newest = path_for(&dir, 5);
        let mut bytes = std::fs::read(&newest).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x40;
        std::fs::write(&newest, &bytes).unwrap();
        let (state, from) = load(&dir).unwrap();
        assert_eq!(state, "{\"step\":4}");
        assert_eq!(from.path, path_for(&dir, 4));
        assert_eq!(from.skipped.len(), 1);
        assert!(from.skipped[0].0 == newest && from.skipped[0].1.contains("damaged"), "{:?}", from.skipped);

        // Truncated: safetensors cannot read it.
        std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        let (_, from) = load(&dir).unwrap();
        assert!(from.skipped[0].1.contains("truncated"), "{:?}", from.skipped);

        // Both damaged: an error that names each file.
        std::fs::write(path_for(&dir, 4), b"garbage").unwrap();
        let msg = load(&dir).unwrap_err().to_string();
        assert!(msg.contains("checkpoint-00000004.safetensors") && msg.contains("checkpoint-00000005.safetensors"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_directory_has_no_checkpoint() {
        let dir = scratch("empty");
        std::fs::create_dir_all(&dir).unwrap();
        let err = load(&dir).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Io);
        assert!(err.to_string().contains("no trainer checkpoint"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(load(&dir).unwrap_err().kind(), crate::ErrorKind::Io);
    }
}
