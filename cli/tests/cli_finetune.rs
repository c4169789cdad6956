//! `lamina finetune` on a tiny budget (3 steps, rank 4, on tests/data/made_up_facts.jsonl with
//! the default model): it writes a GGUF adapter, a PEFT directory and a checkpoint, reports the
//! validation loss before and after, resumes from the checkpoint, and `lamina ask --lora` runs
//! with the adapter (the answer is not checked: 3 steps teach nothing reliably). Bad arguments
//! fail before any training with a message naming the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lamina(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lamina")).args(args).output().expect("lamina runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn data() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/made_up_facts.jsonl").to_str().unwrap().to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-cli-finetune-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn finetune_writes_an_adapter_that_ask_uses() {
    let dir = temp_dir("run");
    let (adapter, peft, ckpt) = (dir.join("facts.gguf"), dir.join("facts-peft"), dir.join("checkpoint"));
    let data = data();
    let base = [
        "finetune",
        "--data",
        &data,
        "-t",
        "2",
        "--rank",
        "4",
        "--targets",
        "q,v",
        "--batch-size",
        "2",
        "--lr",
        "3e-3",
        "--val-fraction",
        "0.1",
        "--max-len",
        "256",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--steps",
        "3",
        "--output",
        adapter.to_str().unwrap(),
        "--peft",
        peft.to_str().unwrap(),
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
    ]);
    let o = lamina(&args);
    let err = stderr(&o);
    println!("{err}");
    assert!(o.status.success(), "{err}");
    assert!(adapter.is_file() && std::fs::metadata(&adapter).unwrap().len() > 0);
    assert!(peft.join("adapter_config.json").is_file() && peft.join("adapter_model.safetensors").is_file());
    assert!(ckpt.join("checkpoint-00000003.safetensors").is_file());
    assert!(err.contains("27 train") && err.contains("3 validation"), "{err}");
    assert!(err.contains("validation loss before: "), "{err}");
    assert!(err.contains("validation loss: ") && err.contains(" before, ") && err.contains(" after "), "{err}");
    assert!(err.contains("trained 3 step(s)"), "{err}");
    assert!(err.contains("loss curve (step:loss): 1:"), "{err}");

    // Resume to 4 steps from the checkpoint.
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--steps",
        "4",
        "--output",
        adapter.to_str().unwrap(),
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--resume",
    ]);
    let o = lamina(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming at step 3") && err.contains("trained 1 step(s)"), "{err}");

    // The adapter serves through llama.cpp.
    let o = lamina(&["ask", "-t", "2", "--ctx", "512", "--lora", adapter.to_str().unwrap(), "-p", "What is the capital of Vorlandia?"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = temp_dir("bad");
    let out = dir.join("a.gguf");
    let out = out.to_str().unwrap();
    let data = data();
    let fails = |args: &[&str], needle: &str| {
        let mut all = vec!["finetune"];
        all.extend_from_slice(args);
        let o = lamina(&all);
        let err = stderr(&o);
        assert!(!o.status.success(), "{all:?} succeeded");
        assert!(err.contains(needle), "{all:?}: {err:?} does not mention {needle:?}");
    };
    fails(&["--data", &data], "--output");
    fails(&["--output", out], "--data");
    fails(&["--data", &data, "--output", out, "--rank", "0"], "rank");
    fails(&["--data", &data, "--output", out, "--targets", "q,x"], "`x`");
    fails(&["--data", &data, "--output", out, "--targets", ","], "targets");
    fails(&["--data", &data, "--output", out, "--schedule", "exp"], "exp");
    fails(&["--data", &data, "--output", out, "--steps", "0"], "steps");
    fails(&["--data", &data, "--output", out, "--dropout", "1"], "dropout");
    fails(&["--data", &data, "--output", out, "--val-fraction", "1"], "val_fraction");
    fails(&["--data", &data, "--output", out, "--rank", "many"], "many");
    fails(&["--data", &data, "--output", out, "--resume"], "--checkpoint-dir");
    fails(&["--data", "/nonexistent/data.jsonl", "--output", out], "file not found");
    fails(&["--data", &data, "--output", out, "--model", "/nonexistent/model.gguf"], "/nonexistent/model.gguf");
    fails(&["--data", &data, "--output", out, "--max-len", "4"], "made_up_facts.jsonl:1:");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"Q\", \"completion\": \"A\"}\n{\"prompt\": 3}\n").unwrap();
    fails(&["--data", bad.to_str().unwrap(), "--output", out], "bad.jsonl:2:");
    fails(&["--data", &data, "--full", "--peft", out], "whole model");
    fails(&["--data", &data, "--full"], "--output");
    fails(&["--data", &data, "--output", out, "--precision", "fp8"], "fp8");
    let missing = dir.join("no-checkpoint");
    fails(&["--data", &data, "--output", out, "--checkpoint-dir", missing.to_str().unwrap(), "--resume"], "no-checkpoint");
    assert!(!Path::new(out).exists(), "a failed run wrote an adapter");
    std::fs::remove_dir_all(&dir).unwrap();
}
