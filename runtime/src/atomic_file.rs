//! Writing a file so that it appears under its final name complete or not at all.
//!
//! Everything lamina saves (adapters, checkpoints, converted models, reports) is written to a
//! temporary file beside the destination, flushed to disk, and renamed over the destination
//! only then. A full disk, an unwritable directory, a killed process or a power cut leaves
//! either the old file or none: never a truncated file under the final name that a later run
//! would take for a good one. The temporary file is removed on failure; one left by a killed
//! process starts with `.` and ends in `.tmp`, so it is not mistaken for a result.
//!
//! Failures are [`Error::Write`], whose message says that writing failed and names the
//! destination (not the temporary file, which the caller never asked for).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The temporary file [`commit`] renames to `path`: hidden, in the same directory (a rename
/// is atomic only within one file system), and unique to this process.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `path` through `write`, atomically (see the module docs).
pub fn write_file(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Write { path: path.to_path_buf(), source });
    }
    rename_into_place(&tmp, path)
}

/// [`write_file`] of a byte string.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, |out| out.write_all(bytes))
}

/// Finish a file that a library wrote to `tmp` (from [`temp_path`]): flush it to disk and
/// rename it to `path`. `written` is the library's result; on any failure `tmp` is removed
/// and the error names `path`.
pub fn commit(tmp: &Path, path: &Path, written: std::result::Result<(), String>) -> Result<()> {
    let synced = written.map_err(std::io::Error::other).and_then(|()| File::open(tmp)?.sync_all());
    if let Err(source) = synced {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::Write { path: path.to_path_buf(), source });
    }
    rename_into_place(tmp, path)
}

/// Create `dir` and its parents, as a write error when that fails.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}

fn rename_into_place(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(source) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::Write { path: path.to_path_buf(), source });
    }
    // The rename itself is durable once the directory is synced. Best effort: some file
    // systems refuse to open or sync a directory, and the file is already complete.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lamina-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = scratch("fail");
        let path = dir.join("out.bin");
        write_bytes(&path, b"old").unwrap();
        let err = write_file(&path, |out| {
            out.write_all(b"partial")?;
            Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot write") && msg.contains("out.bin") && msg.contains("no space"), "{msg}");
        assert_eq!(err.kind(), crate::ErrorKind::Io);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "a temporary file was left: {left:?}");
        write_bytes(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_destination_is_a_write_error() {
        let dir = scratch("missing");
        let path = dir.join("no-such-dir").join("out.bin");
        let msg = write_bytes(&path, b"x").unwrap_err().to_string();
        assert!(msg.starts_with("cannot write") && msg.contains("no-such-dir"), "{msg}");
        let tmp = dir.join("t.tmp");
        let msg = commit(&tmp, &dir.join("t.bin"), Err("the serializer failed".into())).unwrap_err().to_string();
        assert!(msg.starts_with("cannot write") && msg.contains("the serializer failed"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
