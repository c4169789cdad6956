//! Corpus preparation end to end: a directory with a text file, a JSONL file and a nested
//! directory becomes train/validation/test JSONL that the trainer reads, and the report's
//! counts are exactly what each step did to the known documents.

use std::path::{Path, PathBuf};

use lamina::corpus::{self, CorpusOptions, CorpusReport, Stage};
use lamina::native::train_records::{parse_records, Record};

const FOOTER: &str = "This text is published under a free licence by the Example Society.";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-corpus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A 300-word document of made-up words, the same for the same seed.
fn long_document(seed: u64) -> Vec<String> {
    let mut state = seed;
    (0..300)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let w = (state >> 33) % 400;
            format!("{}{w}", ["ka", "lo", "mi", "ne", "su", "ta"][(w % 6) as usize])
        })
        .collect()
}

/// The input directory; returns the documents that should come out, cleaned, in corpus order.
fn make_corpus(dir: &Path) -> Vec<String> {
    let long = long_document(7);
    let mut near = long.clone();
    near[123] = "changed".to_string();
    let first = "The first document of the text file.\nIt has two lines.";
    write(
        &dir.join("a.txt"),
        &format!(
            "{first}\n\n{}\n\n\nSecond document, with    extra   spaces.\u{7}\n\n{first}\n\nA story about a fox.\n{FOOTER}\n",
            long.join(" ")
        ),
    );
    let records = [
        serde_json::json!({ "text": first.replace('\n', "\r\n"), "id": 1 }),
        serde_json::json!({ "text": near.join(" "), "source": "web" }),
        serde_json::json!({ "text": format!("Notes on gardening in the spring, written by a member.\n{FOOTER}") }),
        serde_json::json!({ "text": "   " }),
        serde_json::json!({ "text": "Cafe\u{301} au lait." }),
    ];
    let jsonl: String = records.iter().map(|r| r.to_string() + "\n").collect();
    write(&dir.join("b.jsonl"), &jsonl);
    write(&dir.join("nested/d.txt"), "Short one.\n\nAnother short document here.\n");
    write(&dir.join("nested/deeper/c.md"), "# Title\n\nA paragraph of markdown.\n\nAnother paragraph.\n");
    write(&dir.join("nested/ignored.csv"), "not,read\n");
    vec![
        first.to_string(),
        long.join(" "),
        "Second document, with extra spaces.".to_string(),
        format!("A story about a fox.\n{FOOTER}"),
        "Notes on gardening in the spring, written by a member.".to_string(),
        "Caf\u{e9} au lait.".to_string(),
        "Short one.".to_string(),
        "Another short document here.".to_string(),
        "# Title\n\nA paragraph of markdown.\n\nAnother paragraph.".to_string(),
    ]
}

fn counts(report: &CorpusReport, stage: Stage) -> (bool, usize, usize, usize) {
    let s = report.step(stage).unwrap();
    (s.enabled, s.documents_in, s.documents_changed, s.documents_removed)
}

fn read_set(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_directory_of_text_jsonl_and_markdown_becomes_three_sets_and_an_exact_report() {
    let root = scratch("pipeline");
    let input = root.join("input");
    let expected = make_corpus(&input);
    let out = root.join("out");
    let report = corpus::build(&[&input], &out, &CorpusOptions::default(), |_| true).unwrap().unwrap();

    assert_eq!(report.files, 4, "a.txt, b.jsonl, nested/d.txt, nested/deeper/c.md; not the .csv");
    // 5 from a.txt, 4 from b.jsonl (the blank record is no document), 2 + 1 from nested/.
    assert_eq!(report.input.documents, 12);
    assert_eq!(counts(&report, Stage::Markup), (false, 12, 0, 0));
    assert_eq!(counts(&report, Stage::Normalization), (true, 12, 1, 0), "the combining accent");
    assert_eq!(counts(&report, Stage::Lowercase), (false, 12, 0, 0));
    assert_eq!(counts(&report, Stage::ControlCharacters), (true, 12, 1, 0), "the bell");
    assert_eq!(counts(&report, Stage::Whitespace), (true, 12, 1, 0), "the extra spaces");
    assert_eq!(counts(&report, Stage::ExactDuplicates), (true, 12, 0, 2), "the repeat in a.txt and the CRLF copy in b.jsonl");
    assert_eq!(counts(&report, Stage::NearDuplicates), (true, 10, 0, 1), "the long document with one word changed");
    assert_eq!(counts(&report, Stage::LineDuplicates), (true, 9, 1, 0), "the repeated licence line");
    assert_eq!(counts(&report, Stage::Length), (false, 9, 0, 0));
    let normalization = report.step(Stage::Normalization).unwrap();
    assert_eq!(normalization.bytes_removed(), 1, "e + U+0301 (3 bytes) is U+00E9 (2 bytes)");
    let control = report.step(Stage::ControlCharacters).unwrap();
    assert_eq!(control.bytes_removed(), 1);
    assert_eq!(report.step(Stage::Whitespace).unwrap().bytes_removed(), 5);
    assert_eq!(report.step(Stage::LineDuplicates).unwrap().bytes_removed(), FOOTER.len() as i64 + 1);

    // 9 documents at 0.9 / 0.05 / 0.05: 8.1, 0.45, 0.45 round to 8, 1, 0, and the test set
    // takes its one document from train.
    let sizes: Vec<(&str, usize)> = report.splits.iter().map(|s| (s.name, s.documents)).collect();
    assert_eq!(sizes, [("train", 7), ("validation", 1), ("test", 1)]);
    let expected_bytes: u64 = expected.iter().map(|d| d.len() as u64).sum();
    let expected_words: u64 = expected.iter().map(|d| d.split_whitespace().count() as u64).sum();
    assert_eq!((report.output.documents, report.output.bytes, report.output.words), (9, expected_bytes, expected_words));

    let train = read_set(&out.join("train.jsonl"));
    let validation = read_set(&out.join("validation.jsonl"));
    let test = read_set(&out.join("test.jsonl"));
    assert_eq!((train.len(), validation.len(), test.len()), (7, 1, 1));
    for (set, docs) in [("train", &train), ("validation", &validation), ("test", &test)] {
        let r = report.split(set).unwrap();
        assert_eq!(r.bytes, docs.iter().map(|d| d.len() as u64).sum::<u64>(), "{set}");
    }
    // Every document whole in exactly one set, each set in corpus order.
    let mut all: Vec<String> = train.iter().chain(&validation).chain(&test).cloned().collect();
    let mut sorted_expected = expected.clone();
    all.sort();
    sorted_expected.sort();
    assert_eq!(all, sorted_expected);
    let position = |d: &String| expected.iter().position(|e| e == d).unwrap();
    assert!(train.windows(2).all(|w| position(&w[0]) < position(&w[1])));

    // The trainer reads the sets as text records.
    let records = parse_records(&out.join("train.jsonl")).unwrap();
    assert_eq!(records.len(), 7);
    assert!(records.iter().all(|r| matches!(&r.record, Record::Text(t) if train.contains(t))));

    // report.json is the report.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json, serde_json::to_value(&report).unwrap());
    assert_eq!(json["steps"][5]["step"], "exact_duplicates");
    assert_eq!(json["options"]["normalization"], "nfc");

    // The same inputs named one by one give the same corpus; the run is deterministic.
    let again = root.join("again");
    let parts = [input.join("a.txt"), input.join("b.jsonl"), input.join("nested")];
    let report2 = corpus::build(&parts, &again, &CorpusOptions::default(), |_| true).unwrap().unwrap();
    assert_eq!(report2.steps, report.steps);
    assert_eq!(report2.splits, report.splits);
    assert_eq!(std::fs::read(again.join("train.jsonl")).unwrap(), std::fs::read(out.join("train.jsonl")).unwrap());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_rerun_into_the_input_directory_replaces_the_sets_and_does_not_read_them() {
    let root = scratch("rerun");
    let input = root.join("input");
    make_corpus(&input);
    // The output inside the input directory: a second run must not read the first's sets.
    let out = input.join("prepared");
    write(&out.join("validation.jsonl"), "{\"text\": \"stale\"}\n");
    let options = CorpusOptions { train_fraction: 1.0, validation_fraction: 0.0, test_fraction: 0.0, ..CorpusOptions::default() };
    for _ in 0..2 {
        let report = corpus::build(&[&input], &out, &options, |_| true).unwrap().unwrap();
        assert_eq!((report.files, report.input.documents), (4, 12));
        assert_eq!(report.split("train").unwrap().documents, 9);
        assert_eq!(std::fs::read_to_string(out.join("validation.jsonl")).unwrap(), "", "an empty set is an empty file");
        let mut names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["report.json", "test.jsonl", "train.jsonl", "validation.jsonl"], "no temporary file is left");
    }
    std::fs::remove_dir_all(&root).unwrap();
}
