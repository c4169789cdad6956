//! Arbitrary bytes as a training-data file (JSONL or a JSON array, every record format).
//!
//! Contract: the file either parses into at least one record, each of a known format with the
//! guarantees the tokenizer relies on (non-empty required strings, known roles, at least one
//! assistant turn), or gives `Error::Data` naming the file, with a line number inside it.

use crate::native::train_records::{parse_records_text, Location, Record};
use crate::{assert_data_error, text_from_bytes, Error};

pub fn run(data: &[u8]) {
    let text = match text_from_bytes(data) {
        Ok(t) => t,
        Err(e) => return assert_data_error(&e),
    };
    // Lines as an editor numbers them: a final newline opens one more (empty) line, where an
    // error at the end of the file is reported.
    let lines = text.split('\n').count();
    let records = match parse_records_text(std::path::Path::new(crate::MEMORY_PATH), &text) {
        Ok(r) => r,
        Err(e) => {
            assert_data_error(&e);
            if let Error::Data { line: Some(line), .. } = e {
                assert!(line >= 1 && line <= lines, "line {line} of a {lines}-line file");
            }
            return;
        }
    };
    assert!(!records.is_empty());
    for r in &records {
        match r.location {
            Location::Line(line) => assert!(line >= 1 && line <= lines),
            Location::Item(_) => {}
        }
        let nonblank = |s: &str| assert!(!s.trim().is_empty(), "a required field is blank: {r:?}");
        match &r.record {
            Record::Text(t) => nonblank(t),
            Record::PromptCompletion { prompt, completion } => {
                nonblank(prompt);
                nonblank(completion);
            }
            Record::Messages(messages) => {
                assert!(messages.iter().any(|m| m.role == "assistant"));
                for m in messages {
                    assert!(matches!(m.role.as_str(), "system" | "user" | "assistant"));
                    if m.role != "system" {
                        nonblank(&m.content);
                    }
                }
            }
            Record::Instruction { system, prompt, output } => {
                nonblank(prompt);
                nonblank(output);
                if let Some(s) = system {
                    nonblank(s);
                }
            }
        }
    }
}
