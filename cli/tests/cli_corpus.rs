//! `lamina corpus` end to end: the sets, the report table and JSON, and bad arguments. No
//! model is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lamina(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lamina")).args(args).output().expect("lamina runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-cli-corpus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn corpus_writes_the_sets_and_the_report() {
    let dir = temp_dir("ok");
    let docs: Vec<String> = (0..20).map(|i| format!("Document {i} of the corpus, about topic number {}.", i * 37 % 101)).collect();
    std::fs::write(dir.join("a.txt"), docs[..10].join("\n\n") + "\n\n" + &docs[0]).unwrap();
    let jsonl: String = docs[10..].iter().map(|d| serde_json::json!({ "text": d }).to_string() + "\n").collect();
    std::fs::write(dir.join("b.jsonl"), jsonl).unwrap();
    let out = dir.join("out");
    let report = dir.join("report-copy.json");
    let o = lamina(&[
        "corpus",
        "--input",
        s(&dir.join("a.txt")),
        "-i",
        s(&dir.join("b.jsonl")),
        "--output",
        s(&out),
        "--report",
        s(&report),
        "--split",
        "0.8,0.1,0.1",
        "--seed",
        "3",
        // The made-up documents differ in a few digits only: not near duplicates here.
        "--no-near-dedup",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("read 2 file(s): 21 documents"), "{table}");
    assert!(table.contains("exact_duplicates"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("near_duplicates") && l.contains(" no ")), "{table}");
    assert!(table.contains("train") && table.contains("validation") && table.contains("total"), "{table}");
    assert_eq!((lines(&out.join("train.jsonl")), lines(&out.join("validation.jsonl")), lines(&out.join("test.jsonl"))), (16, 2, 2));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json, serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap());
    assert_eq!(json["input"]["documents"], 21);
    assert_eq!(json["output"]["documents"], 20);
    assert_eq!(json["options"]["seed"], 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_corpus_arguments_fail_with_a_clear_message() {
    let dir = temp_dir("bad");
    let text = dir.join("a.txt");
    std::fs::write(&text, "one\n\ntwo\n\nthree\n").unwrap();
    let out = dir.join("out");

    let o = lamina(&["corpus", "--output", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("--input"), "{}", stderr(&o));

    let o = lamina(&["corpus", "-i", s(&dir.join("missing.txt")), "-o", s(&out)]);
    assert!(!o.status.success() && stderr(&o).contains("missing.txt: not found"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing is created for a missing input");

    let o = lamina(&["corpus", "-i", s(&text), "-o", s(&out), "--split", "0.9,0.2,0.1"]);
    assert!(!o.status.success() && stderr(&o).contains("invalid argument `split`") && stderr(&o).contains("sum to"), "{}", stderr(&o));

    let o = lamina(&["corpus", "-i", s(&text), "-o", s(&out), "--split", "0.9,0.1"]);
    assert!(!o.status.success() && stderr(&o).contains("give three numbers"), "{}", stderr(&o));

    let o = lamina(&["corpus", "-i", s(&text), "-o", s(&out), "--near-dedup-threshold", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("near_dedup_threshold"), "{}", stderr(&o));

    let o = lamina(&["corpus", "-i", s(&text), "-o", s(&out), "--min-words", "5"]);
    assert!(!o.status.success() && stderr(&o).contains("the length step removed the last 3 document(s)"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
