//! The inputs of corpus preparation as documents: which files a path stands for, and how
//! each file's text divides into documents (the formats are in the module documentation of
//! `corpus`).

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{is_blank, CorpusProgress, Stage};
use crate::data_file::{data_error, decode_text, parse_jsonl, type_name};
use crate::error::{Error, Result};

/// The documents of the inputs, in input order, and the files they came from.
pub(super) struct Inputs {
    pub files: Vec<PathBuf>,
    pub documents: Vec<String>,
}

/// How a file's text divides into documents, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One document per record's `text`.
    Jsonl,
    /// One document, the whole file.
    Markdown,
    /// Documents separated by blank lines.
    Text,
}

impl Format {
    fn of(path: &Path) -> Format {
        match extension(path).as_deref() {
            Some("jsonl") => Format::Jsonl,
            Some("md") => Format::Markdown,
            _ => Format::Text,
        }
    }
}

fn extension(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// The files of a directory that are read: .txt, .md and .jsonl.
fn is_listed(path: &Path) -> bool {
    matches!(extension(path).as_deref(), Some("txt" | "md" | "jsonl"))
}

fn metadata(path: &Path) -> Result<Metadata> {
    std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => data_error(path, None, "not found (no such file or directory)"),
        _ => Error::Io { path: path.to_path_buf(), source },
    })
}

/// Fail when there is no input or an input does not exist.
pub(super) fn check_exist(inputs: &[&Path]) -> Result<()> {
    if inputs.is_empty() {
        return Err(Error::invalid("input", "no input: give at least one .txt, .md or .jsonl file, or a directory of them"));
    }
    inputs.iter().try_for_each(|p| metadata(p).map(drop))
}

/// Read every document of `inputs`; None when `progress` cancelled. A directory `skip`
/// (the output directory) is not entered, so that a rerun does not read its own output.
pub(super) fn read_inputs(
    inputs: &[&Path],
    skip: Option<&Path>,
    progress: &mut impl FnMut(&CorpusProgress) -> bool,
) -> Result<Option<Inputs>> {
    check_exist(inputs)?;
    let skip = skip.and_then(|dir| std::fs::canonicalize(dir).ok());
    let mut files = Vec::new();
    for &input in inputs {
        if metadata(input)?.is_dir() {
            let mut found = Vec::new();
            walk(input, skip.as_deref(), &mut found)?;
            if found.is_empty() {
                return Err(data_error(input, None, "the directory holds no .txt, .md or .jsonl file"));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(input.to_path_buf());
        }
    }
    let mut documents = Vec::new();
    for (done, file) in files.iter().enumerate() {
        if !progress(&CorpusProgress { stage: Stage::Read, done, total: files.len() }) {
            return Ok(None);
        }
        read_file(file, &mut documents)?;
    }
    if !progress(&CorpusProgress { stage: Stage::Read, done: files.len(), total: files.len() }) {
        return Ok(None);
    }
    Ok(Some(Inputs { files, documents }))
}

/// The listed files under `dir`, recursively, except under `skip` (canonical). Directories
/// reached through a symbolic link are not entered (a link cycle cannot make the walk
/// endless); linked files are read.
fn walk(dir: &Path, skip: Option<&Path>, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            if skip.is_some_and(|skip| std::fs::canonicalize(&path).is_ok_and(|p| p == skip)) {
                continue;
            }
            walk(&path, skip, out)?;
        } else if is_listed(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Append the documents of the file at `path` to `docs`.
fn read_file(path: &Path, docs: &mut Vec<String>) -> Result<()> {
    let mut bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => data_error(path, None, "file not found"),
        _ => Error::Io { path: path.to_path_buf(), source },
    })?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    // An empty file adds no document; a corpus of only such files is an error later.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let text = decode_text(path, bytes)?;
    match Format::of(path) {
        Format::Jsonl => {
            let texts = parse_jsonl(path, &text, |record, _| match record.get("text") {
                Some(Value::String(text)) => Ok(text.clone()),
                Some(other) => Err(format!("`text` is {}, expected a string", type_name(other))),
                None => Err("the record has no `text` field".to_string()),
            })?;
            docs.extend(texts.into_iter().map(unify_line_ends).filter(|t| !is_blank(t)));
        }
        // The file's last line end ends the file, not a line of the document.
        Format::Markdown => docs.push(unify_line_ends(text).trim_end_matches('\n').to_string()),
        Format::Text => split_at_blank_lines(&unify_line_ends(text), docs),
    }
    Ok(())
}

/// CRLF and lone CR as LF.
fn unify_line_ends(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    }
}

/// The documents of a plain text: runs of lines separated by one or more blank (empty or
/// whitespace-only) lines.
pub(super) fn split_at_blank_lines(text: &str, docs: &mut Vec<String>) {
    let mut current = String::new();
    for line in text.split('\n') {
        if is_blank(line) {
            if !current.is_empty() {
                docs.push(std::mem::take(&mut current));
            }
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(line);
        }
    }
    if !current.is_empty() {
        docs.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_splits_at_one_or_more_blank_lines() {
        let mut docs = Vec::new();
        split_at_blank_lines("\n\nfirst line\nsecond line\n\n\n  \t\nnext\n\n", &mut docs);
        assert_eq!(docs, ["first line\nsecond line", "next"]);
        assert_eq!(unify_line_ends("a\r\nb\rc\n".into()), "a\nb\nc\n");
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.JSONL")), Format::Jsonl);
        assert_eq!(Format::of(Path::new("notes.md")), Format::Markdown);
        assert_eq!(Format::of(Path::new("book.txt")), Format::Text);
        assert_eq!(Format::of(Path::new("README")), Format::Text);
        assert!(is_listed(Path::new("x.txt")) && is_listed(Path::new("x.Md")) && !is_listed(Path::new("x.json")));
    }
}
