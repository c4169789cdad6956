//! Data files as lamina reads them, for evaluation sets and training records alike: a text
//! file decoded as UTF-8, JSONL parsed line by line, and errors that name the file and, when
//! one line is at fault, its 1-based number ("path:line: reason"). Below both engines.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// A data error at `path` (and `line`, 1-based, when one line is at fault).
pub(crate) fn data_error(path: &Path, line: Option<usize>, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), line, reason: reason.into() }
}

/// Read a whole text file as UTF-8, with errors naming the file.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => data_error(path, None, "file not found"),
        _ => Error::Io { path: path.to_path_buf(), source },
    })?;
    decode_text(path, bytes)
}

/// The bytes of a file read from `path` as text: UTF-8 and not blank, or an error naming the
/// file (and the line of the first invalid byte).
pub fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    match String::from_utf8(bytes) {
        Ok(text) if text.trim().is_empty() => Err(data_error(path, None, "the file is empty")),
        Ok(text) => Ok(text),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(data_error(path, Some(line), format!("invalid UTF-8 at byte {offset}")))
        }
    }
}

/// Parse every non-blank line of the JSONL text of `path` with `parse` (given the object and
/// its line number, for default ids).
pub fn parse_jsonl<T>(
    path: &Path,
    text: &str,
    parse: impl Fn(&serde_json::Map<String, Value>, usize) -> Result<T, String>,
) -> Result<Vec<T>> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| data_error(path, Some(number), format!("invalid JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| data_error(path, Some(number), "expected a JSON object"))?;
        records.push(parse(object, number).map_err(|reason| data_error(path, Some(number), reason))?);
    }
    if records.is_empty() {
        return Err(data_error(path, None, "no records"));
    }
    Ok(records)
}

/// How a JSON value's type reads in an error message ("a string", "a list", ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
