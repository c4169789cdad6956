//! Corpus preparation for training a model from scratch: read text from files and directories,
//! clean it, remove duplicates, filter documents by length, and split the documents into
//! train, validation and test sets written as `{"text": ...}` JSONL, the format the rest of
//! lamina reads.
//!
//! # Inputs
//!
//! - a `.jsonl` file: one document per record, its string `text` field (other fields are
//!   ignored); a line that is not a JSON object, or a record without a string `text`, is an
//!   error naming the file and the line;
//! - a `.md` file: one document, the whole file;
//! - any other file (`.txt`, ...): documents separated by one or more blank lines;
//! - a directory: its `.txt`, `.md` and `.jsonl` files, recursively, in sorted path order
//!   (other files, and directories reached through symbolic links, are skipped).
//!
//! Text must be UTF-8 (an error names the file and the line of the first invalid byte). A
//! leading byte-order mark is dropped and CRLF or CR line ends read as LF. Blank documents
//! and files are skipped.
//!
//! # Steps
//!
//! In this order, each switched by a field of [`CorpusOptions`] (defaults in brackets):
//!
//! 1. `markup` [off]: HTML/XML tags removed and character references decoded (see
//!    [`clean::strip_markup`]); meant for text taken from web pages, as plain text may hold `<`.
//! 2. `normalization` [NFC]: Unicode normalisation, NFC, NFKC (which also folds compatibility
//!    characters: "ﬁ" becomes "fi", "①" becomes "1") or none.
//! 3. `lowercase` [off].
//! 4. `control_characters` [on]: control characters removed, except newline and tab.
//! 5. `whitespace` [on]: runs of whitespace within a line become one space, lines are trimmed,
//!    runs of blank lines become one.
//! 6. `exact_duplicates` [on]: a document equal to an earlier one (SHA-256 of the cleaned
//!    text) is removed.
//! 7. `near_duplicates` [on, Jaccard 0.8]: a document whose estimated Jaccard similarity to
//!    an earlier kept document reaches the threshold is removed (MinHash, see [`minhash`]).
//! 8. `line_duplicates` [on, lines of 40 characters or more]: a line seen before anywhere in
//!    the corpus (boilerplate, navigation, licences) is removed beyond its first occurrence;
//!    shorter lines ("", "Amen.", "Chapter 2") always stay.
//! 9. `length` [off]: documents shorter than `min_chars` characters or `min_words` words, or
//!    longer than `max_chars` characters, are removed.
//!
//! A document that a step leaves blank is removed and counted against that step; a step that
//! removes the last document is an error that names it. Each step's counts are in the
//! [`CorpusReport`].
//!
//! # Split
//!
//! The documents are split by a seeded shuffle into train, validation and test sets of the
//! given fractions [0.9, 0.05, 0.05; seed 0]; a document is never split across sets, and each
//! set keeps the corpus order. Every set with a non-zero fraction gets at least one document,
//! which needs at least as many documents as such sets (an error otherwise).
//!
//! The corpus is held in memory: its text, and 512 bytes a document for near-duplicate search.

pub mod clean;
mod dedup;
mod input;
pub mod minhash;
mod report;
mod split;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::atomic_file;
use crate::error::{Error, Result};

pub use report::{CorpusReport, SplitReport, StepReport, Totals};

/// Unicode normalisation form applied to every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// Canonical composition: the same text, one encoding of each accented letter.
    Nfc,
    /// Compatibility composition: NFC, and ligatures, full-width forms, superscripts and the
    /// like folded to their plain equivalents.
    Nfkc,
    /// Text left as it is.
    None,
}

impl Normalization {
    /// `nfc`, `nfkc` or `none` (any case).
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "nfc" => Ok(Normalization::Nfc),
            "nfkc" => Ok(Normalization::Nfkc),
            "none" => Ok(Normalization::None),
            _ => Err(Error::invalid("normalization", format!("`{name}`: use nfc, nfkc or none"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalization::Nfc => "nfc",
            Normalization::Nfkc => "nfkc",
            Normalization::None => "none",
        }
    }
}

/// What corpus preparation does; see the module documentation for each step. The defaults
/// clean and deduplicate but drop no document for its length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusOptions {
    /// Remove HTML/XML tags and decode character references. Default false.
    pub strip_markup: bool,
    /// Default [`Normalization::Nfc`].
    pub normalization: Normalization,
    /// Default false.
    pub lowercase: bool,
    /// Remove control characters other than newline and tab. Default true.
    pub strip_control: bool,
    /// Collapse runs of whitespace, trim lines, collapse blank lines. Default true.
    pub normalize_whitespace: bool,
    /// Remove documents equal to an earlier one. Default true.
    pub dedup_documents: bool,
    /// Remove documents nearly equal to an earlier one. Default true.
    pub near_dedup: bool,
    /// The estimated Jaccard similarity of character 5-shingles from which a document counts
    /// as a near duplicate, in (0, 1]. Default 0.8.
    pub near_dedup_threshold: f64,
    /// Remove lines seen before in the corpus. Default true.
    pub dedup_lines: bool,
    /// Lines shorter than this many characters (after trimming) are never removed as
    /// duplicates. Default 40.
    pub min_line_chars: usize,
    /// Remove documents of fewer characters. Default 0 (no limit).
    pub min_chars: usize,
    /// Remove documents of more characters. Default 0 (no limit).
    pub max_chars: usize,
    /// Remove documents of fewer whitespace-separated words. Default 0 (no limit).
    pub min_words: usize,
    /// Fractions of the documents in the train, validation and test sets: each at least 0,
    /// summing to 1 (within 1e-6). Default 0.9, 0.05, 0.05.
    pub train_fraction: f64,
    pub validation_fraction: f64,
    pub test_fraction: f64,
    /// Seed of the split. Default 0.
    pub seed: u64,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            strip_markup: false,
            normalization: Normalization::Nfc,
            lowercase: false,
            strip_control: true,
            normalize_whitespace: true,
            dedup_documents: true,
            near_dedup: true,
            near_dedup_threshold: 0.8,
            dedup_lines: true,
            min_line_chars: 40,
            min_chars: 0,
            max_chars: 0,
            min_words: 0,
            train_fraction: 0.9,
            validation_fraction: 0.05,
            test_fraction: 0.05,
            seed: 0,
        }
    }
}

impl CorpusOptions {
    /// Check every option against its documented range.
    pub fn validate(&self) -> Result<()> {
        let fractions = [
            ("train_fraction", self.train_fraction),
            ("validation_fraction", self.validation_fraction),
            ("test_fraction", self.test_fraction),
        ];
        for (name, f) in fractions {
            if !f.is_finite() || f < 0.0 {
                return Err(Error::invalid(name, format!("{f}: a fraction of the documents must be a number of at least 0")));
            }
        }
        let sum: f64 = fractions.iter().map(|(_, f)| f).sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(Error::invalid(
                "split",
                format!(
                    "the train, validation and test fractions {}, {}, {} sum to {sum}, not 1",
                    self.train_fraction, self.validation_fraction, self.test_fraction
                ),
            ));
        }
        let t = self.near_dedup_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::invalid("near_dedup_threshold", format!("{t}: a Jaccard similarity in (0, 1]")));
        }
        if self.max_chars > 0 && self.min_chars > self.max_chars {
            return Err(Error::invalid("max_chars", format!("{} is less than min_chars = {}", self.max_chars, self.min_chars)));
        }
        Ok(())
    }

    fn fractions(&self) -> [f64; 3] {
        [self.train_fraction, self.validation_fraction, self.test_fraction]
    }
}

/// A stage of corpus preparation: reading, one of the steps of the module documentation,
/// splitting or writing. Reports and progress name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Read,
    Markup,
    Normalization,
    Lowercase,
    ControlCharacters,
    Whitespace,
    ExactDuplicates,
    NearDuplicates,
    LineDuplicates,
    Length,
    Split,
    Write,
}

impl Stage {
    /// The cleaning and filtering steps, in the order they run.
    pub const STEPS: [Stage; 9] = [
        Stage::Markup,
        Stage::Normalization,
        Stage::Lowercase,
        Stage::ControlCharacters,
        Stage::Whitespace,
        Stage::ExactDuplicates,
        Stage::NearDuplicates,
        Stage::LineDuplicates,
        Stage::Length,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Markup => "markup",
            Stage::Normalization => "normalization",
            Stage::Lowercase => "lowercase",
            Stage::ControlCharacters => "control_characters",
            Stage::Whitespace => "whitespace",
            Stage::ExactDuplicates => "exact_duplicates",
            Stage::NearDuplicates => "near_duplicates",
            Stage::LineDuplicates => "line_duplicates",
            Stage::Length => "length",
            Stage::Split => "split",
            Stage::Write => "write",
        }
    }

    fn enabled(self, o: &CorpusOptions) -> bool {
        match self {
            Stage::Markup => o.strip_markup,
            Stage::Normalization => o.normalization != Normalization::None,
            Stage::Lowercase => o.lowercase,
            Stage::ControlCharacters => o.strip_control,
            Stage::Whitespace => o.normalize_whitespace,
            Stage::ExactDuplicates => o.dedup_documents,
            Stage::NearDuplicates => o.near_dedup,
            Stage::LineDuplicates => o.dedup_lines,
            Stage::Length => o.min_chars > 0 || o.max_chars > 0 || o.min_words > 0,
            Stage::Read | Stage::Split | Stage::Write => true,
        }
    }

    /// What turns this step off or relaxes it, for the error of a step that removed everything.
    fn remedy(self, o: &CorpusOptions) -> String {
        match self {
            Stage::Markup => "strip_markup".into(),
            Stage::Normalization => "normalization".into(),
            Stage::Lowercase => "lowercase".into(),
            Stage::ControlCharacters => "strip_control".into(),
            Stage::Whitespace => "normalize_whitespace".into(),
            Stage::ExactDuplicates => "dedup_documents".into(),
            Stage::NearDuplicates => format!("near_dedup, near_dedup_threshold = {}", o.near_dedup_threshold),
            Stage::LineDuplicates => format!("dedup_lines, min_line_chars = {}", o.min_line_chars),
            Stage::Length => format!("min_chars = {}, max_chars = {}, min_words = {}", o.min_chars, o.max_chars, o.min_words),
            Stage::Read | Stage::Split | Stage::Write => String::new(),
        }
    }
}

/// Where corpus preparation is: `done` of `total` files (reading) or documents (every other
/// stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorpusProgress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// A prepared corpus: the documents of each set, in corpus order, and what was done to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    pub train: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
    pub report: CorpusReport,
}

/// The files [`Corpus::write`] writes into its directory.
pub const TRAIN_FILE: &str = "train.jsonl";
pub const VALIDATION_FILE: &str = "validation.jsonl";
pub const TEST_FILE: &str = "test.jsonl";
pub const REPORT_FILE: &str = "report.json";

/// Documents between two progress calls (and two chances to cancel).
const CHUNK: usize = 2048;

/// Read `inputs` (files or directories, see the module documentation), clean, deduplicate,
/// filter and split them. `progress` is called as the work goes on; when it returns false the
/// work stops and the result is `Ok(None)`.
///
/// Errors: no inputs, options out of range, a missing or unreadable input, invalid UTF-8, a
/// bad JSONL record (each naming the path, and the line where one is at fault), a corpus with
/// no documents, a step that removes the last document (named in the message), and too few
/// documents for the sets asked for.
pub fn prepare<P: AsRef<Path>>(
    inputs: &[P],
    options: &CorpusOptions,
    progress: impl FnMut(&CorpusProgress) -> bool,
) -> Result<Option<Corpus>> {
    prepare_skipping(inputs, None, options, progress)
}

/// [`prepare`], not entering the directory `skip` when walking the inputs.
fn prepare_skipping<P: AsRef<Path>>(
    inputs: &[P],
    skip: Option<&Path>,
    options: &CorpusOptions,
    mut progress: impl FnMut(&CorpusProgress) -> bool,
) -> Result<Option<Corpus>> {
    options.validate()?;
    let inputs: Vec<&Path> = inputs.iter().map(AsRef::as_ref).collect();
    let Some(read) = input::read_inputs(&inputs, skip, &mut progress)? else { return Ok(None) };
    if read.documents.is_empty() {
        return Err(Error::invalid("input", format!("the corpus is empty: {} hold(s) no document", list_paths(&inputs))));
    }
    let mut docs = read.documents;
    let mut report = CorpusReport {
        inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
        files: read.files.len(),
        input: Totals::of(&docs),
        steps: Vec::with_capacity(Stage::STEPS.len()),
        output: Totals::default(),
        splits: Vec::new(),
        options: options.clone(),
    };
    for stage in Stage::STEPS {
        let documents_in = docs.len();
        let bytes_in = byte_count(&docs);
        let enabled = stage.enabled(options);
        let changed = if enabled {
            match run_step(stage, &mut docs, options, &mut progress) {
                Some(changed) => changed,
                None => return Ok(None),
            }
        } else {
            0
        };
        report.steps.push(StepReport {
            step: stage,
            enabled,
            documents_in,
            documents_changed: changed,
            documents_removed: documents_in - docs.len(),
            bytes_in,
            bytes_out: byte_count(&docs),
        });
        if docs.is_empty() {
            return Err(Error::invalid(
                "input",
                format!(
                    "the corpus is empty after cleaning: the {} step removed the last {documents_in} document(s) (see {})",
                    stage.name(),
                    stage.remedy(options)
                ),
            ));
        }
    }

    if !progress(&CorpusProgress { stage: Stage::Split, done: 0, total: docs.len() }) {
        return Ok(None);
    }
    let counts = split::split_counts(docs.len(), options.fractions())?;
    let sets = split::assign(docs.len(), counts, options.seed);
    let mut split_docs: [Vec<String>; 3] = Default::default();
    for (doc, set) in docs.into_iter().zip(sets) {
        split_docs[set].push(doc);
    }
    let [train, validation, test] = split_docs;
    report.splits = vec![SplitReport::of("train", &train), SplitReport::of("validation", &validation), SplitReport::of("test", &test)];
    report.output = Totals {
        documents: report.splits.iter().map(|s| s.documents).sum(),
        bytes: report.splits.iter().map(|s| s.bytes).sum(),
        words: report.splits.iter().map(|s| s.words).sum(),
    };
    let total = report.output.documents;
    if !progress(&CorpusProgress { stage: Stage::Split, done: total, total }) {
        return Ok(None);
    }
    Ok(Some(Corpus { train, validation, test, report }))
}

/// The documents of `inputs` as [`prepare`] reads them (see "Inputs" above), in input order,
/// neither cleaned nor split: what tokenizer training reads. Blank documents are skipped; no
/// document at all is not an error here.
pub(crate) fn read_documents(inputs: &[&Path]) -> Result<Vec<String>> {
    Ok(input::read_inputs(inputs, None, &mut |_: &CorpusProgress| true)?.map(|read| read.documents).unwrap_or_default())
}

/// [`prepare`] `inputs` and [`Corpus::write`] the result into `dir`. `Ok(None)` when `progress`
/// cancelled; nothing is written then. The directory is created before the inputs are read,
/// so that an unwritable one fails first, and is skipped where it lies inside an input
/// directory, so that a rerun does not read the previous run's output.
pub fn build<P: AsRef<Path>>(
    inputs: &[P],
    dir: &Path,
    options: &CorpusOptions,
    mut progress: impl FnMut(&CorpusProgress) -> bool,
) -> Result<Option<CorpusReport>> {
    options.validate()?;
    let paths: Vec<&Path> = inputs.iter().map(AsRef::as_ref).collect();
    input::check_exist(&paths)?;
    atomic_file::create_dir_all(dir)?;
    let Some(corpus) = prepare_skipping(inputs, Some(dir), options, &mut progress)? else { return Ok(None) };
    Ok(corpus.write(dir, &mut progress)?.map(|_| corpus.report))
}

impl Corpus {
    /// Write `dir`/train.jsonl, validation.jsonl and test.jsonl (one `{"text": ...}` record a
    /// line; a set without documents gives an empty file) and report.json, and return their
    /// paths. Each file is written beside its name and all four are renamed into place only
    /// when all are complete, so a failure or a cancel (`progress` returning false: `Ok(None)`)
    /// leaves the files that were there before. `dir` must exist.
    pub fn write(&self, dir: &Path, mut progress: impl FnMut(&CorpusProgress) -> bool) -> Result<Option<Vec<PathBuf>>> {
        let report = serde_json::to_string_pretty(&self.report).map_err(|e| Error::Internal(format!("the corpus report: {e}")))? + "\n";
        let paths: Vec<PathBuf> = [TRAIN_FILE, VALIDATION_FILE, TEST_FILE, REPORT_FILE].iter().map(|name| dir.join(name)).collect();
        let temps: Vec<PathBuf> = paths.iter().map(|p| atomic_file::temp_path(p)).collect();
        let remove_temps = || {
            for t in &temps {
                let _ = std::fs::remove_file(t);
            }
        };
        let total = self.train.len() + self.validation.len() + self.test.len();
        let mut done = 0;
        for (i, docs) in [&self.train, &self.validation, &self.test].into_iter().enumerate() {
            match write_jsonl(&temps[i], docs, &mut done, total, &mut progress) {
                Ok(true) => {}
                Ok(false) => {
                    remove_temps();
                    return Ok(None);
                }
                Err(source) => {
                    remove_temps();
                    return Err(Error::Write { path: paths[i].clone(), source });
                }
            }
        }
        if let Err(source) = std::fs::write(&temps[3], report.as_bytes()) {
            remove_temps();
            return Err(Error::Write { path: paths[3].clone(), source });
        }
        for (i, (tmp, path)) in temps.iter().zip(&paths).enumerate() {
            if let Err(e) = atomic_file::commit(tmp, path, Ok(())) {
                for t in &temps[i + 1..] {
                    let _ = std::fs::remove_file(t);
                }
                return Err(e);
            }
        }
        Ok(Some(paths))
    }
}

/// Write `docs` as JSONL to `path`; false when `progress` cancelled.
fn write_jsonl(
    path: &Path,
    docs: &[String],
    done: &mut usize,
    total: usize,
    progress: &mut impl FnMut(&CorpusProgress) -> bool,
) -> std::io::Result<bool> {
    #[derive(Serialize)]
    struct Record<'a> {
        text: &'a str,
    }
    let mut out = BufWriter::new(File::create(path)?);
    for chunk in docs.chunks(CHUNK) {
        if !progress(&CorpusProgress { stage: Stage::Write, done: *done, total }) {
            return Ok(false);
        }
        for text in chunk {
            serde_json::to_writer(&mut out, &Record { text })?;
            out.write_all(b"\n")?;
        }
        *done += chunk.len();
    }
    out.flush()?;
    Ok(progress(&CorpusProgress { stage: Stage::Write, done: *done, total }))
}

/// Run one enabled step on `docs`, dropping the documents it leaves blank; the number of
/// documents it changed (and kept), or None when `progress` cancelled.
fn run_step(
    stage: Stage,
    docs: &mut Vec<String>,
    options: &CorpusOptions,
    progress: &mut impl FnMut(&CorpusProgress) -> bool,
) -> Option<usize> {
    let form = options.normalization;
    let changed = match stage {
        Stage::Markup => map_documents(stage, docs, progress, clean::strip_markup)?,
        Stage::Normalization => map_documents(stage, docs, progress, |t| clean::normalize_unicode(t, form))?,
        Stage::Lowercase => map_documents(stage, docs, progress, clean::lowercase)?,
        Stage::ControlCharacters => map_documents(stage, docs, progress, clean::strip_control)?,
        Stage::Whitespace => map_documents(stage, docs, progress, clean::normalize_whitespace)?,
        Stage::ExactDuplicates => {
            let total = docs.len();
            let keep = dedup::exact_duplicates(docs, |done| progress(&CorpusProgress { stage, done, total }))?;
            retain_marked(docs, &keep);
            0
        }
        Stage::NearDuplicates => {
            let total = docs.len();
            let keep =
                minhash::near_duplicates(docs, options.near_dedup_threshold, |done| progress(&CorpusProgress { stage, done, total }))?;
            retain_marked(docs, &keep);
            0
        }
        Stage::LineDuplicates => {
            let total = docs.len();
            dedup::duplicate_lines(docs, options.min_line_chars, |done| progress(&CorpusProgress { stage, done, total }))?
        }
        Stage::Length => {
            let (min_chars, max_chars, min_words) = (options.min_chars, options.max_chars, options.min_words);
            let keep: Vec<bool> = docs
                .par_iter()
                .map(|d| {
                    let chars = d.chars().count();
                    chars >= min_chars && (max_chars == 0 || chars <= max_chars) && d.split_whitespace().count() >= min_words
                })
                .collect();
            retain_marked(docs, &keep);
            if !progress(&CorpusProgress { stage, done: docs.len(), total: docs.len() }) {
                return None;
            }
            0
        }
        Stage::Read | Stage::Split | Stage::Write => 0,
    };
    // A changed document left blank counts as removed, not changed.
    let before = docs.len();
    docs.retain(|d| !is_blank(d));
    Some(changed.saturating_sub(before - docs.len()))
}

/// Apply `f` to every document (in parallel, a chunk between progress calls); the number of
/// documents it changed.
fn map_documents<F>(stage: Stage, docs: &mut [String], progress: &mut impl FnMut(&CorpusProgress) -> bool, f: F) -> Option<usize>
where
    F: for<'a> Fn(&'a str) -> Cow<'a, str> + Sync,
{
    let total = docs.len();
    let mut changed = 0;
    let mut done = 0;
    for chunk in docs.chunks_mut(CHUNK) {
        if !progress(&CorpusProgress { stage, done, total }) {
            return None;
        }
        changed += chunk
            .par_iter_mut()
            .map(|doc| {
                let new = match f(doc) {
                    Cow::Owned(new) => new,
                    Cow::Borrowed(_) => return 0,
                };
                if new == *doc {
                    return 0;
                }
                *doc = new;
                1
            })
            .sum::<usize>();
        done += chunk.len();
    }
    progress(&CorpusProgress { stage, done, total }).then_some(changed)
}

/// Keep the documents whose flag is true.
fn retain_marked(docs: &mut Vec<String>, keep: &[bool]) {
    let mut flags = keep.iter();
    docs.retain(|_| flags.next().copied().unwrap_or(true));
}

fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

fn byte_count(docs: &[String]) -> u64 {
    docs.iter().map(|d| d.len() as u64).sum()
}

/// Up to three paths, for messages ("a.txt, b.jsonl and 4 more").
fn list_paths(paths: &[&Path]) -> String {
    let shown: Vec<String> = paths.iter().take(3).map(|p| p.display().to_string()).collect();
    match paths.len() {
        0..=3 => shown.join(", "),
        n => format!("{} and {} more", shown.join(", "), n - 3),
    }
}

#[cfg(test)]
mod tests;
