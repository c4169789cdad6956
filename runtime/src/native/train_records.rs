//! Training records of the LoRA trainer, as read from a file, before tokenization
//! ([`super::train_data`] tokenizes, splits and packs them). Records are untrusted input: the
//! parser is fuzzed (`fuzz/`, target `train_records`).
//!
//! # Files
//!
//! JSONL (one JSON object per line, blank lines skipped) or a JSON array of objects (a file
//! whose first non-blank character is `[`, as llamafactory's `.json` datasets are). Formats may
//! be mixed within a file; each record is one of:
//!
//! - `{"text": str}`: plain language modelling; every token after the first is a target.
//! - `{"prompt": str, "completion": str}`: prompt and completion are tokenized separately and
//!   concatenated, so the boundary is exact whatever the tokenizer would merge across it; only
//!   the completion is a target, followed by EOS (also a target) when the tokenizer has one, so
//!   the model learns where to stop.
//! - `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`: rendered
//!   with the chat template; the targets are each assistant turn's text as the template renders
//!   it, i.e. the content and the end-of-turn marker (for ChatML: `content<|im_end|>\n`, the
//!   newline being part of the turn's rendering). Text after the last assistant turn carries no
//!   targets and is not kept.
//! - `{"instruction": str, "input"?: str, "output": str, "system"?: str}` (alpaca style): the
//!   prompt is `instruction` plus `"\n\n" + input` when `input` is non-empty. With a chat
//!   template it becomes a conversation (optional system message, the prompt as the user turn,
//!   `output` as the assistant turn); without one, a prompt/completion record whose prompt
//!   (after `system + "\n\n"` when given) ends with `"\n\n"` so the answer does not run on from
//!   the question.
//!
//! Other fields (`id`, metadata) are ignored, except `history` (multi-turn alpaca), which is
//! rejected rather than silently dropped. All text is tokenized with special-token parsing on,
//! so `<|im_end|>` written in the data is the special token, exactly as in rendered templates.
//! No BOS is added: the template, or the text, supplies whatever the model expects.
//!
//! # Errors
//!
//! Nothing is dropped silently. A bad record is an [`Error::Data`] naming the file and
//! the 1-based line (JSONL) or the 0-based record index (`record [i]: ...` in the reason, for
//! JSON arrays), with the reason: invalid JSON, not an object, no known fields, fields of
//! several formats, a field of the wrong type, empty text, an unknown role, a conversation with
//! no assistant turn. A file with no record at all, or that is not UTF-8, is an error too.

use std::path::Path;

use serde_json::{Map, Value};

use crate::chat::ChatMessage;
use crate::data_file::type_name;
use crate::error::{Error, Result};

/// One training record, as read from the file (before tokenization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Plain text: every token after the first is a target.
    Text(String),
    /// A prompt (context only) and its completion (the targets).
    PromptCompletion { prompt: String, completion: String },
    /// A conversation; the assistant turns are the targets. Roles are system, user or
    /// assistant, and there is at least one assistant turn.
    Messages(Vec<ChatMessage>),
    /// An alpaca-style instruction: `prompt` is already `instruction` (+ `"\n\n" + input`).
    Instruction { system: Option<String>, prompt: String, output: String },
}

/// Where a record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSONL file.
    Line(usize),
    /// 0-based index in a JSON array file.
    Item(usize),
}

/// A record and where it came from (for errors raised after parsing, such as length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedRecord {
    pub location: Location,
    pub record: Record,
}

pub(crate) fn data_error(path: &Path, location: Option<Location>, reason: impl Into<String>) -> Error {
    let reason = reason.into();
    match location {
        Some(Location::Line(line)) => Error::Data { path: path.to_path_buf(), line: Some(line), reason },
        Some(Location::Item(index)) => Error::Data { path: path.to_path_buf(), line: None, reason: format!("record [{index}]: {reason}") },
        None => Error::Data { path: path.to_path_buf(), line: None, reason },
    }
}

/// Read the records of a JSONL or JSON-array file. Errors: see the module documentation; a
/// file with no record at all is an error too.
pub fn parse_records(path: &Path) -> Result<Vec<SourcedRecord>> {
    parse_records_text(path, &crate::data_file::read_text(path)?)
}

/// [`parse_records`] on the text of a file read from `path` (which errors name).
pub fn parse_records_text(path: &Path, text: &str) -> Result<Vec<SourcedRecord>> {
    let mut records = Vec::new();
    if text.trim_start().starts_with('[') {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| data_error(path, Some(Location::Line(e.line().max(1))), format!("invalid JSON: {e}")))?;
        let Value::Array(items) = value else { unreachable!("a JSON text starting with `[` is an array") };
        for (index, item) in items.iter().enumerate() {
            let location = Location::Item(index);
            let record = parse_value(item).map_err(|reason| data_error(path, Some(location), reason))?;
            records.push(SourcedRecord { location, record });
        }
    } else {
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let location = Location::Line(index + 1);
            let value: Value = serde_json::from_str(line).map_err(|e| data_error(path, Some(location), format!("invalid JSON: {e}")))?;
            let record = parse_value(&value).map_err(|reason| data_error(path, Some(location), reason))?;
            records.push(SourcedRecord { location, record });
        }
    }
    if records.is_empty() {
        return Err(data_error(path, None, "no records"));
    }
    Ok(records)
}

/// One record from its JSON value; the error is the reason.
pub fn parse_value(value: &Value) -> std::result::Result<Record, String> {
    let Value::Object(o) = value else { return Err(format!("expected a JSON object, got {}", type_name(value))) };
    let has = |k: &str| o.contains_key(k);
    let formats: Vec<&str> = [
        ("`text`", has("text")),
        ("`prompt`/`completion`", has("prompt") || has("completion")),
        ("`messages`", has("messages")),
        ("`instruction`/`output`", has("instruction") || has("output")),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    match formats.as_slice() {
        [] => {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            Err(format!(
                "no known fields (expected `text`, `prompt` and `completion`, `messages`, or `instruction` and `output`); found {}",
                if keys.is_empty() { "none".to_string() } else { keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ") }
            ))
        }
        [_] => {
            if has("text") {
                Ok(Record::Text(string_field(o, "text")?))
            } else if has("messages") {
                parse_messages(&o["messages"])
            } else if has("prompt") || has("completion") {
                Ok(Record::PromptCompletion { prompt: string_field(o, "prompt")?, completion: string_field(o, "completion")? })
            } else {
                if has("history") {
                    return Err("`history` (earlier turns) is not supported; write the record as `messages`".into());
                }
                let instruction = string_field(o, "instruction")?;
                let input = optional_string(o, "input")?.unwrap_or_default();
                let output = string_field(o, "output")?;
                let system = optional_string(o, "system")?.filter(|s| !s.trim().is_empty());
                let prompt = if input.trim().is_empty() { instruction } else { format!("{instruction}\n\n{input}") };
                Ok(Record::Instruction { system, prompt, output })
            }
        }
        several => Err(format!("fields of several formats in one record: {}", several.join(", "))),
    }
}

fn string_field(o: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    match o.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("`{key}` is empty")),
        Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
        None => Err(format!("missing `{key}`")),
    }
}

fn optional_string(o: &Map<String, Value>, key: &str) -> std::result::Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
    }
}

fn parse_messages(value: &Value) -> std::result::Result<Record, String> {
    let Value::Array(items) = value else { return Err(format!("`messages` must be a list, got {}", type_name(value))) };
    if items.is_empty() {
        return Err("`messages` is an empty list".into());
    }
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else { return Err(format!("`messages[{i}]` must be an object, got {}", type_name(item))) };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.as_str(),
            Some(other) => return Err(format!("`messages[{i}].role` must be a string, got {}", type_name(other))),
            None => return Err(format!("missing `messages[{i}].role`")),
        };
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(format!("`messages[{i}]`: unknown role `{role}` (expected system, user or assistant)"));
        }
        let content = match m.get("content") {
            Some(Value::String(c)) => c.clone(),
            Some(other) => return Err(format!("`messages[{i}].content` must be a string, got {}", type_name(other))),
            None => return Err(format!("missing `messages[{i}].content`")),
        };
        // An empty system prompt is a legitimate choice; an empty user or assistant turn is
        // almost certainly a broken record.
        if role != "system" && content.trim().is_empty() {
            return Err(format!("`messages[{i}].content` is empty ({role} turn)"));
        }
        messages.push(ChatMessage::new(role, content));
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err("`messages` has no assistant turn (nothing to train on)".into());
    }
    Ok(Record::Messages(messages))
}
