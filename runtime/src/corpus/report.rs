//! What corpus preparation did, step by step, written as report.json.

use serde::Serialize;

use super::{CorpusOptions, Stage};

/// Documents, bytes (UTF-8) and words (runs of non-whitespace, an approximation of what a
/// tokenizer will see) of a set of documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub documents: usize,
    pub bytes: u64,
    pub words: u64,
}

impl Totals {
    pub fn of(docs: &[String]) -> Totals {
        Totals {
            documents: docs.len(),
            bytes: docs.iter().map(|d| d.len() as u64).sum(),
            words: docs.iter().map(|d| d.split_whitespace().count() as u64).sum(),
        }
    }
}

/// What one step did. A step that was off has `enabled: false` and changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub step: Stage,
    pub enabled: bool,
    /// Documents the step was given.
    pub documents_in: usize,
    /// Documents it changed and kept.
    pub documents_changed: usize,
    /// Documents it removed (duplicates, filtered out, or left blank by the step).
    pub documents_removed: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl StepReport {
    pub fn documents_out(&self) -> usize {
        self.documents_in - self.documents_removed
    }

    /// Bytes removed by the step; negative where it added some (NFKC can lengthen a text).
    pub fn bytes_removed(&self) -> i64 {
        self.bytes_in as i64 - self.bytes_out as i64
    }
}

/// One of the three sets written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitReport {
    /// "train", "validation" or "test".
    pub name: &'static str,
    pub documents: usize,
    pub bytes: u64,
    pub words: u64,
}

impl SplitReport {
    pub(super) fn of(name: &'static str, docs: &[String]) -> SplitReport {
        let t = Totals::of(docs);
        SplitReport { name, documents: t.documents, bytes: t.bytes, words: t.words }
    }
}

/// Everything corpus preparation did, from the documents read to the documents of each set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusReport {
    /// The inputs as given.
    pub inputs: Vec<String>,
    /// Files read (a directory counts its files).
    pub files: usize,
    /// The documents read.
    pub input: Totals,
    /// Every step in the order run, including those switched off.
    pub steps: Vec<StepReport>,
    /// The documents written, over all sets.
    pub output: Totals,
    /// Train, validation and test, in this order.
    pub splits: Vec<SplitReport>,
    pub options: CorpusOptions,
}

impl CorpusReport {
    /// The report of `step`.
    pub fn step(&self, step: Stage) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// The report of the set named `name`.
    pub fn split(&self, name: &str) -> Option<&SplitReport> {
        self.splits.iter().find(|s| s.name == name)
    }
}
