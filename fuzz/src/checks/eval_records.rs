//! Arbitrary bytes as an evaluation file, read as each record kind: QA, translation and
//! multiple choice.
//!
//! Contract: each reader either returns at least one record with the guarantees the metrics
//! rely on (at least one gold answer or reference, at least two non-blank choices and a label
//! among them, non-blank questions and sources) or `Error::Data` naming the file.

use std::path::Path;

use crate::eval::data::{parse_choices, parse_qa, parse_translations};
use crate::{assert_data_error, text_from_bytes, MEMORY_PATH};

pub fn run(data: &[u8]) {
    let text = match text_from_bytes(data) {
        Ok(t) => t,
        Err(e) => return assert_data_error(&e),
    };
    let path = Path::new(MEMORY_PATH);
    let nonblank = |s: &str| assert!(!s.trim().is_empty(), "a required field is blank");
    match parse_qa(path, &text) {
        Ok(records) => {
            assert!(!records.is_empty());
            for r in records {
                nonblank(&r.question);
                assert!(!r.answers.is_empty());
            }
        }
        Err(e) => assert_data_error(&e),
    }
    match parse_translations(path, &text) {
        Ok(records) => {
            assert!(!records.is_empty());
            for r in records {
                nonblank(&r.source);
                assert!(!r.references.is_empty());
            }
        }
        Err(e) => assert_data_error(&e),
    }
    match parse_choices(path, &text) {
        Ok(records) => {
            assert!(!records.is_empty());
            for r in records {
                nonblank(&r.question);
                assert!(r.choices.len() >= 2 && r.label < r.choices.len());
                r.choices.iter().for_each(|c| nonblank(c));
            }
        }
        Err(e) => assert_data_error(&e),
    }
}
