//! The pipeline as a whole: the steps' counts, cancelling, and each kind of bad input or
//! option as its own error.

use std::path::{Path, PathBuf};

use super::*;
use crate::ErrorKind;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-corpus-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
}

fn run(inputs: &[PathBuf], options: &CorpusOptions) -> Result<Corpus> {
    prepare(inputs, options, |_| true).map(|c| c.expect("not cancelled"))
}

fn error(inputs: &[PathBuf], options: &CorpusOptions) -> Error {
    run(inputs, options).expect_err("an error")
}

/// `n` distinct, unrelated documents (no two near duplicates), separated by blank lines.
fn documents(n: usize) -> String {
    const WORDS: [&str; 16] = [
        "river", "lantern", "copper", "meadow", "signal", "harbor", "velvet", "orchid", "thunder", "pebble", "saddle", "glacier", "ember",
        "quill", "tundra", "marble",
    ];
    let mut state = 0x1234_5678_u64;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|i| format!("{i}: {}.", (0..12).map(|_| WORDS[next() % WORDS.len()]).collect::<Vec<_>>().join(" ")))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn every_step_counts_what_it_changed_and_removed() {
    let dir = scratch("steps");
    let footer = "Visit our website for more stories every single week.";
    let text = format!(
        "<p>Caf\u{e9} &amp; ﬁsh</p>\n\n  Spaced    out\u{7} text  \n\nA story.\n{footer}\n\nAnother story, much longer than the first and about something else.\n{footer}\n\nA story.\n{footer}\n\n<br/>"
    );
    let path = write(&dir, "a.txt", text);
    let options = CorpusOptions {
        strip_markup: true,
        normalization: Normalization::Nfkc,
        lowercase: true,
        min_words: 2,
        train_fraction: 1.0,
        validation_fraction: 0.0,
        test_fraction: 0.0,
        ..CorpusOptions::default()
    };
    let corpus = run(&[path], &options).unwrap();
    let r = &corpus.report;
    assert_eq!(r.files, 1);
    assert_eq!(r.input.documents, 6);
    let counts = |stage| {
        let s = r.step(stage).unwrap();
        (s.enabled, s.documents_changed, s.documents_removed)
    };
    assert_eq!(counts(Stage::Markup), (true, 1, 1), "the <p> document changes, the <br/> one is left blank");
    assert_eq!(counts(Stage::Normalization), (true, 1, 0));
    assert_eq!(counts(Stage::Lowercase), (true, 5, 0));
    assert_eq!(counts(Stage::ControlCharacters), (true, 1, 0));
    assert_eq!(counts(Stage::Whitespace), (true, 2, 0), "the markup left a line break, the spaced one is trimmed");
    assert_eq!(counts(Stage::ExactDuplicates), (true, 0, 1));
    assert_eq!(counts(Stage::NearDuplicates), (true, 0, 0));
    assert_eq!(counts(Stage::LineDuplicates), (true, 1, 0));
    assert_eq!(counts(Stage::Length), (true, 0, 0));
    assert_eq!(
        corpus.train,
        [
            "café & fish",
            "spaced out text",
            "a story.\nvisit our website for more stories every single week.",
            "another story, much longer than the first and about something else."
        ]
    );
    assert!(corpus.validation.is_empty() && corpus.test.is_empty());
    for pair in r.steps.windows(2) {
        assert_eq!(pair[0].documents_out(), pair[1].documents_in);
        assert_eq!(pair[0].bytes_out, pair[1].bytes_in);
    }
    assert_eq!(r.output, Totals::of(&corpus.train));
    assert_eq!(r.split("train").unwrap().documents, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_split_keeps_documents_whole_and_follows_the_seed() {
    let dir = scratch("split");
    let path = write(&dir, "many.txt", documents(200));
    let options = CorpusOptions { train_fraction: 0.8, validation_fraction: 0.1, test_fraction: 0.1, ..CorpusOptions::default() };
    let a = run(std::slice::from_ref(&path), &options).unwrap();
    assert_eq!((a.train.len(), a.validation.len(), a.test.len()), (160, 20, 20));
    let mut all: Vec<&String> = a.train.iter().chain(&a.validation).chain(&a.test).collect();
    all.sort();
    let mut expected = Vec::new();
    input::split_at_blank_lines(&documents(200), &mut expected);
    expected.sort();
    assert_eq!(all, expected.iter().collect::<Vec<_>>(), "every document is in exactly one set, whole");
    assert_eq!(a, run(std::slice::from_ref(&path), &options).unwrap());
    let b = run(&[path], &CorpusOptions { seed: 1, ..options }).unwrap();
    assert_ne!(a.validation, b.validation);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tiny_corpus_still_fills_every_set_or_says_why_not() {
    let dir = scratch("tiny");
    let three = write(&dir, "three.txt", "one doc\n\ntwo doc\n\nthree doc");
    let c = run(&[three], &CorpusOptions::default()).unwrap();
    assert_eq!((c.train.len(), c.validation.len(), c.test.len()), (1, 1, 1));
    let one = write(&dir, "one.txt", "a single document");
    let e = error(
        std::slice::from_ref(&one),
        &CorpusOptions { train_fraction: 0.9, validation_fraction: 0.1, test_fraction: 0.0, ..CorpusOptions::default() },
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("validation_fraction") && e.to_string().contains("1 document(s)"), "{e}");
    let c = run(&[one], &CorpusOptions { train_fraction: 1.0, validation_fraction: 0.0, test_fraction: 0.0, ..CorpusOptions::default() })
        .unwrap();
    assert_eq!(c.train, ["a single document"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cancelling_stops_the_work_and_writes_nothing() {
    let dir = scratch("cancel");
    let path = write(&dir, "a.txt", documents(10));
    let out = dir.join("out");
    for stop_at in [Stage::Read, Stage::Whitespace, Stage::NearDuplicates, Stage::Split, Stage::Write] {
        let mut seen = Vec::new();
        let result = build(std::slice::from_ref(&path), &out, &CorpusOptions::default(), |p| {
            seen.push(p.stage);
            p.stage != stop_at
        });
        assert!(result.unwrap().is_none(), "cancelled at {stop_at:?}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "cancelled at {stop_at:?}: files were left");
        assert_eq!(seen.last(), Some(&stop_at));
    }
    let report = build(&[path], &out, &CorpusOptions::default(), |_| true).unwrap().unwrap();
    assert_eq!(report.output.documents, 10);
    let mut names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["report.json", "test.jsonl", "train.jsonl", "validation.jsonl"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_errors_that_name_the_path_and_line() {
    let dir = scratch("bad-inputs");
    let none: [PathBuf; 0] = [];
    let e = error(&none, &CorpusOptions::default());
    assert!(e.kind() == ErrorKind::InvalidArgument && e.to_string().contains("no input"), "{e}");

    let missing = dir.join("missing.txt");
    let e = error(std::slice::from_ref(&missing), &CorpusOptions::default());
    assert!(e.kind() == ErrorKind::Data && e.to_string().contains("missing.txt") && e.to_string().contains("not found"), "{e}");

    let empty = write(&dir, "empty.txt", "\n  \n");
    let e = error(&[empty], &CorpusOptions::default());
    assert!(e.to_string().contains("the corpus is empty") && e.to_string().contains("empty.txt"), "{e}");

    let empty_dir = dir.join("nothing");
    std::fs::create_dir_all(&empty_dir).unwrap();
    write(&empty_dir, "data.csv", "a,b");
    let e = error(&[empty_dir], &CorpusOptions::default());
    assert!(e.kind() == ErrorKind::Data && e.to_string().contains("no .txt, .md or .jsonl file"), "{e}");

    let bad_text = write(&dir, "latin1.txt", b"fine\n\ncaf\xe9\n");
    let e = error(&[bad_text], &CorpusOptions::default()).to_string();
    assert!(e.contains("latin1.txt:3") && e.contains("invalid UTF-8"), "{e}");

    let bad_jsonl = write(&dir, "latin1.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n");
    let e = error(&[bad_jsonl], &CorpusOptions::default()).to_string();
    assert!(e.contains("latin1.jsonl:2") && e.contains("invalid UTF-8"), "{e}");

    let not_json = write(&dir, "broken.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": \n");
    let e = error(&[not_json], &CorpusOptions::default());
    assert!(e.kind() == ErrorKind::Data && e.to_string().contains("broken.jsonl:3: invalid JSON"), "{e}");

    let no_text = write(&dir, "no_text.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n");
    let e = error(&[no_text], &CorpusOptions::default()).to_string();
    assert!(e.contains("no_text.jsonl:2: the record has no `text` field"), "{e}");

    let number = write(&dir, "number.jsonl", "{\"text\": 3}\n");
    let e = error(&[number], &CorpusOptions::default()).to_string();
    assert!(e.contains("number.jsonl:1: `text` is a number, expected a string"), "{e}");

    let list = write(&dir, "list.jsonl", "[\"text\"]\n");
    let e = error(&[list], &CorpusOptions::default()).to_string();
    assert!(e.contains("list.jsonl:1: expected a JSON object"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_step_that_removes_everything_is_named() {
    let dir = scratch("emptied");
    let path = write(&dir, "a.txt", documents(5));
    let e = error(std::slice::from_ref(&path), &CorpusOptions { min_words: 1000, ..CorpusOptions::default() }).to_string();
    assert!(
        e.contains("empty after cleaning")
            && e.contains("the length step removed the last 5 document(s)")
            && e.contains("min_words = 1000"),
        "{e}"
    );
    let markup = write(&dir, "tags.txt", "<div></div>\n\n<br>");
    let e = error(&[markup], &CorpusOptions { strip_markup: true, ..CorpusOptions::default() }).to_string();
    assert!(e.contains("the markup step removed the last 2 document(s)"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn options_out_of_range_are_refused_before_reading() {
    let missing = [PathBuf::from("/nonexistent/corpus.txt")];
    let check = |options: CorpusOptions, name: &str| {
        let e = error(&missing, &options);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains(&format!("`{name}`")), "{name}: {e}");
    };
    let d = CorpusOptions::default;
    check(CorpusOptions { validation_fraction: -0.05, test_fraction: 0.15, ..d() }, "validation_fraction");
    check(CorpusOptions { test_fraction: f64::NAN, ..d() }, "test_fraction");
    check(CorpusOptions { train_fraction: 0.8, ..d() }, "split");
    check(CorpusOptions { train_fraction: 0.9 + 2e-6, ..d() }, "split");
    check(CorpusOptions { near_dedup_threshold: 0.0, ..d() }, "near_dedup_threshold");
    check(CorpusOptions { near_dedup_threshold: 1.5, ..d() }, "near_dedup_threshold");
    check(CorpusOptions { near_dedup_threshold: f64::NAN, ..d() }, "near_dedup_threshold");
    check(CorpusOptions { min_chars: 10, max_chars: 5, ..d() }, "max_chars");
    // Within 1e-6 of 1 is a valid split, and a threshold of exactly 1 is allowed.
    assert!(CorpusOptions { train_fraction: 0.9 + 5e-7, near_dedup_threshold: 1.0, ..d() }.validate().is_ok());
    assert_eq!(Normalization::parse("NFKC").unwrap(), Normalization::Nfkc);
    assert!(Normalization::parse("nfd").unwrap_err().to_string().contains("`normalization`"));
}
