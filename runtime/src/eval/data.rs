//! Evaluation data: JSONL records for QA, translation and multiple choice, and plain text.
//!
//! One JSON object per line; blank lines are ignored. Every malformed line is an error that
//! names the file, the 1-based line number and what is wrong: nothing is skipped silently.
//!
//! - qa: `{"question": str, "answers": [str, ...], "context"?: str, "id"?: any}`
//!   (`"answer": str` is accepted for a single gold answer)
//! - translate: `{"source": str, "reference": str | "references": [str, ...],
//!   "source_lang"?: str, "target_lang"?: str, "id"?: any}`
//! - choice: `{"question": str, "choices": [str, ...], "label": int, "id"?: any}`

use std::path::Path;

use serde_json::Value;

use crate::error::Result;

// The file-level parts (text decoding, JSONL lines, error messages) are shared with the
// training records, so they live below both engines.
use crate::data_file::type_name;
pub use crate::data_file::{decode_text, parse_jsonl, read_text};

/// A question with its gold answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaRecord {
    pub id: String,
    pub question: String,
    pub context: Option<String>,
    pub answers: Vec<String>,
}

/// A source segment with one or more reference translations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslationRecord {
    pub id: String,
    pub source: String,
    pub references: Vec<String>,
    pub source_lang: Option<String>,
    pub target_lang: Option<String>,
}

/// A multiple-choice question; `label` indexes `choices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceRecord {
    pub id: String,
    pub question: String,
    pub choices: Vec<String>,
    pub label: usize,
}

fn string_field(o: &serde_json::Map<String, Value>, key: &str) -> Result<String, String> {
    match o.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("`{key}` is empty")),
        Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
        None => Err(format!("missing `{key}`")),
    }
}

fn optional_string(o: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
    }
}

fn string_list(o: &serde_json::Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(value) = o.get(key) else { return Err(format!("missing `{key}`")) };
    let Value::Array(items) = value else { return Err(format!("`{key}` must be a list of strings, got {}", type_name(value))) };
    if items.is_empty() {
        return Err(format!("`{key}` is an empty list"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!("`{key}[{i}]` must be a string, got {}", type_name(other))),
        })
        .collect()
}

fn id_of(o: &serde_json::Map<String, Value>, line: usize) -> String {
    match o.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("line {line}"),
    }
}

/// Read QA records.
pub fn read_qa(path: &Path) -> Result<Vec<QaRecord>> {
    parse_qa(path, &read_text(path)?)
}

/// [`read_qa`] on the text of a file read from `path` (which errors name).
pub fn parse_qa(path: &Path, text: &str) -> Result<Vec<QaRecord>> {
    parse_jsonl(path, text, |o, line| {
        let answers = if o.contains_key("answers") {
            string_list(o, "answers")?
        } else {
            vec![string_field(o, "answer").map_err(|_| "missing `answers` (a list of gold answers)".to_string())?]
        };
        Ok(QaRecord { id: id_of(o, line), question: string_field(o, "question")?, context: optional_string(o, "context")?, answers })
    })
}

/// Read translation records.
pub fn read_translations(path: &Path) -> Result<Vec<TranslationRecord>> {
    parse_translations(path, &read_text(path)?)
}

/// [`read_translations`] on the text of a file read from `path` (which errors name).
pub fn parse_translations(path: &Path, text: &str) -> Result<Vec<TranslationRecord>> {
    parse_jsonl(path, text, |o, line| {
        let references = match (o.contains_key("reference"), o.contains_key("references")) {
            (true, false) => vec![string_field(o, "reference")?],
            (false, true) => string_list(o, "references")?,
            (true, true) => return Err("give either `reference` or `references`, not both".into()),
            (false, false) => return Err("missing `reference` (or `references`)".into()),
        };
        Ok(TranslationRecord {
            id: id_of(o, line),
            source: string_field(o, "source")?,
            references,
            source_lang: optional_string(o, "source_lang")?,
            target_lang: optional_string(o, "target_lang")?,
        })
    })
}

/// Read multiple-choice records.
pub fn read_choices(path: &Path) -> Result<Vec<ChoiceRecord>> {
    parse_choices(path, &read_text(path)?)
}

/// [`read_choices`] on the text of a file read from `path` (which errors name).
pub fn parse_choices(path: &Path, text: &str) -> Result<Vec<ChoiceRecord>> {
    parse_jsonl(path, text, |o, line| {
        let choices = string_list(o, "choices")?;
        if choices.len() < 2 {
            return Err("`choices` needs at least two options".into());
        }
        if let Some(i) = choices.iter().position(|c| c.trim().is_empty()) {
            return Err(format!("`choices[{i}]` is empty"));
        }
        let label = match o.get("label") {
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("`label` must be a non-negative integer, got {n}"))?,
            Some(other) => return Err(format!("`label` must be an integer, got {}", type_name(other))),
            None => return Err("missing `label`".into()),
        } as usize;
        if label >= choices.len() {
            return Err(format!("`label` {label} is out of range: there are {} choices (0..{})", choices.len(), choices.len() - 1));
        }
        Ok(ChoiceRecord { id: id_of(o, line), question: string_field(o, "question")?, choices, label })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lamina-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn reads_good_records() {
        let p = file(
            "qa.jsonl",
            "{\"question\": \"Q?\", \"answers\": [\"a\", 3]}\n\n{\"id\": 7, \"question\": \"R?\", \"answer\": \"b\", \"context\": \"c\"}\n",
        );
        let r = read_qa(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].answers, vec!["a", "3"]);
        assert_eq!(r[0].id, "line 1");
        assert_eq!(r[1].id, "7");
        assert_eq!(r[1].context.as_deref(), Some("c"));
        let p = file("tr.jsonl", "{\"source\": \"s\", \"references\": [\"r1\", \"r2\"]}\n");
        assert_eq!(read_translations(&p).unwrap()[0].references.len(), 2);
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers() {
        let p = file("bad1.jsonl", "{\"question\": \"Q?\", \"answers\": [\"a\"]}\n{not json\n");
        assert!(err(read_qa(&p)).contains("bad1.jsonl:2: invalid JSON"));
        let p = file("bad2.jsonl", "[1, 2]\n");
        assert!(err(read_qa(&p)).contains(":1: expected a JSON object"));
        let p = file("bad3.jsonl", "{\"question\": \"Q?\"}\n");
        assert!(err(read_qa(&p)).contains(":1: missing `answers`"));
        let p = file("bad4.jsonl", "{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"label\": 2}\n");
        assert!(err(read_choices(&p)).contains("`label` 2 is out of range"));
        let p = file("bad5.jsonl", "{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"label\": -1}\n");
        assert!(err(read_choices(&p)).contains("non-negative"));
        let p = file("bad6.jsonl", "{\"source\": \"s\"}\n");
        assert!(err(read_translations(&p)).contains("missing `reference`"));
        let p = file("empty.jsonl", "\n\n");
        assert!(err(read_qa(&p)).contains("empty"));
        assert!(err(read_qa(Path::new("/nonexistent/x.jsonl"))).contains("file not found"));
        let p = file("latin1.txt", "");
        std::fs::write(&p, b"ok\n\xff\n").unwrap();
        assert!(err(read_text(&p)).contains("latin1.txt:2: invalid UTF-8"));
    }
}
