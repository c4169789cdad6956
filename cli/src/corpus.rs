//! `lamina corpus`: prepare a text corpus for training from scratch (clean, deduplicate,
//! filter, split) with a progress bar, print what each step did, and write the sets as
//! `{"text": ...}` JSONL. Ctrl-C cancels and writes nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::corpus::{self, CorpusOptions, CorpusReport, Normalization, Stage};
use lamina::Error;

#[derive(Args, Debug)]
pub struct CorpusArgs {
    /// A .txt file (documents separated by blank lines), a .md file (one document), a .jsonl
    /// file of {"text": ...} records, or a directory of them (recursively, in path order).
    /// Repeatable.
    #[arg(long = "input", short = 'i', value_name = "PATH", required = true)]
    inputs: Vec<PathBuf>,
    /// Directory for train.jsonl, validation.jsonl, test.jsonl and report.json (created).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Unicode normalisation: nfc, nfkc (also folds ligatures, full-width forms, ...) or none.
    #[arg(long, default_value = "nfc", value_parser = ["nfc", "nfkc", "none"])]
    normalize: String,
    /// Lowercase every document.
    #[arg(long)]
    lowercase: bool,
    /// Remove HTML/XML tags and decode entities (&amp;, &#39;, ...): for text from web pages.
    #[arg(long)]
    strip_markup: bool,
    /// Keep control characters (removed by default, except newline and tab).
    #[arg(long)]
    keep_control: bool,
    /// Keep whitespace as it is (by default runs of spaces collapse, lines are trimmed and
    /// runs of blank lines become one).
    #[arg(long)]
    keep_whitespace: bool,
    /// Keep documents equal to an earlier one.
    #[arg(long)]
    no_dedup: bool,
    /// Keep near-duplicate documents (MinHash of character 5-shingles).
    #[arg(long)]
    no_near_dedup: bool,
    /// Estimated Jaccard similarity from which a document is a near duplicate, in (0, 1].
    #[arg(long, value_name = "X", default_value_t = CorpusOptions::default().near_dedup_threshold)]
    near_dedup_threshold: f64,
    /// Keep lines repeated across the corpus (by default removed beyond their first occurrence).
    #[arg(long)]
    no_dedup_lines: bool,
    /// Lines shorter than this (characters, trimmed) are never removed as repeated.
    #[arg(long, value_name = "N", default_value_t = CorpusOptions::default().min_line_chars)]
    min_line_chars: usize,
    /// Remove documents of fewer characters (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = CorpusOptions::default().min_chars)]
    min_chars: usize,
    /// Remove documents of more characters (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = CorpusOptions::default().max_chars)]
    max_chars: usize,
    /// Remove documents of fewer words (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = CorpusOptions::default().min_words)]
    min_words: usize,
    /// Fractions of the documents for the train, validation and test sets, summing to 1.
    #[arg(long, value_name = "TRAIN,VALIDATION,TEST", default_value = "0.9,0.05,0.05")]
    split: String,
    /// Seed of the split.
    #[arg(long, default_value_t = CorpusOptions::default().seed)]
    seed: u64,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { name, reason: reason.into() }
}

impl CorpusArgs {
    fn options(&self) -> Result<CorpusOptions, Error> {
        let bad_split = || invalid("split", format!("`{}`: give three numbers, TRAIN,VALIDATION,TEST, such as 0.9,0.05,0.05", self.split));
        let fractions: Vec<f64> =
            self.split.split(',').map(|f| f.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad_split())?;
        let [train, validation, test] = fractions[..] else { return Err(bad_split()) };
        let options = CorpusOptions {
            strip_markup: self.strip_markup,
            normalization: Normalization::parse(&self.normalize)?,
            lowercase: self.lowercase,
            strip_control: !self.keep_control,
            normalize_whitespace: !self.keep_whitespace,
            dedup_documents: !self.no_dedup,
            near_dedup: !self.no_near_dedup,
            near_dedup_threshold: self.near_dedup_threshold,
            dedup_lines: !self.no_dedup_lines,
            min_line_chars: self.min_line_chars,
            min_chars: self.min_chars,
            max_chars: self.max_chars,
            min_words: self.min_words,
            train_fraction: train,
            validation_fraction: validation,
            test_fraction: test,
            seed: self.seed,
        };
        options.validate()?;
        Ok(options)
    }
}

pub fn run(args: &CorpusArgs) -> Result<(), Error> {
    let options = args.options()?;
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("corpus {prefix:<18} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = corpus::build(&args.inputs, &args.output, &options, |p| {
        bar.set_prefix(p.stage.name());
        bar.set_message(if p.stage == Stage::Read { "files" } else { "documents" });
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        !cancelled.load(Ordering::SeqCst)
    });
    bar.finish_and_clear();
    let Some(report) = result? else {
        eprintln!("lamina: corpus preparation cancelled; nothing was written");
        std::process::exit(130);
    };
    print_report(&report);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(format!("the corpus report: {e}")))?;
        lamina::atomic_file::write_bytes(path, (json + "\n").as_bytes())?;
    }
    let out = |name: &str| args.output.join(name).display().to_string();
    eprintln!(
        "wrote {}, {}, {} and {}{}",
        out(corpus::TRAIN_FILE),
        out(corpus::VALIDATION_FILE),
        out(corpus::TEST_FILE),
        out(corpus::REPORT_FILE),
        args.report.as_deref().map(|p: &Path| format!(" (and {})", p.display())).unwrap_or_default()
    );
    Ok(())
}

/// The steps and the sets as two tables.
fn print_report(report: &CorpusReport) {
    println!(
        "read {} file(s): {} documents, {} bytes, {} words",
        report.files, report.input.documents, report.input.bytes, report.input.words
    );
    println!(
        "{:<20} {:>4} {:>13} {:>9} {:>9} {:>14} {:>14}",
        "step", "on", "documents out", "changed", "removed", "bytes out", "bytes removed"
    );
    for s in &report.steps {
        let name = match s.step {
            Stage::Normalization => format!("normalization ({})", report.options.normalization.name()),
            other => other.name().to_string(),
        };
        if s.enabled {
            println!(
                "{name:<20} {:>4} {:>13} {:>9} {:>9} {:>14} {:>14}",
                "yes",
                s.documents_out(),
                s.documents_changed,
                s.documents_removed,
                s.bytes_out,
                s.bytes_removed()
            );
        } else {
            println!("{name:<20} {:>4} {:>13} {:>9} {:>9} {:>14} {:>14}", "no", s.documents_out(), "-", "-", s.bytes_out, "-");
        }
    }
    println!();
    println!("{:<20} {:>11} {:>14} {:>14}", "set", "documents", "bytes", "words (approx)");
    for s in &report.splits {
        println!("{:<20} {:>11} {:>14} {:>14}", s.name, s.documents, s.bytes, s.words);
    }
    println!("{:<20} {:>11} {:>14} {:>14}", "total", report.output.documents, report.output.bytes, report.output.words);
}
