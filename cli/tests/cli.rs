//! The `lamina` command end to end, on the default model.

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

#[test]
fn greedy_generation_continues_with_paris_deterministically() {
    let args = ["generate", "--prompt", "The capital of France is", "--temperature", "0", "--max-tokens", "12", "--threads", "2"];
    let a = lamina(&args);
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(stdout(&a).contains("Paris"), "{}", stdout(&a));
    // llama.cpp's log stays silent without --verbose.
    assert!(stderr(&a).is_empty(), "unexpected stderr: {}", stderr(&a));
    let b = lamina(&args);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn verbose_shows_the_llama_cpp_log() {
    let o = lamina(&["generate", "-p", "Hi", "-n", "2", "--verbose"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("llama_model_loader"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_fail_with_a_clear_message() {
    let o = lamina(&["generate", "--prompt", "Hi", "--temperature", "-1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("temperature"), "{}", stderr(&o));

    let o = lamina(&["generate", "--prompt", "Hi", "--top-p", "NaN"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("top_p"), "{}", stderr(&o));

    let o = lamina(&["generate", "--prompt", "", "-n", "4"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));

    let o = lamina(&["generate", "--model", "/nonexistent/model.gguf", "--prompt", "Hi"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model file not found"), "{}", stderr(&o));

    let o = lamina(&["translate", "--from", "en", "--to", "klingon", "--prompt", "Hi"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown language `klingon`"), "{}", stderr(&o));

    let long = "word ".repeat(400);
    let o = lamina(&["generate", "--ctx", "128", "--prompt", &long]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("context holds 128 tokens"), "{}", stderr(&o));
}

#[test]
fn tasks_print_clean_answers() {
    let o = lamina(&["ask", "--prompt", "What is the capital of France?"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
    let o = lamina(&["translate", "--from", "en", "--to", "fr", "--prompt", "Good morning!"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).trim().is_empty());
    assert!(!stdout(&o).contains("<|im_"));
}

#[test]
fn info_describes_the_model() {
    let o = lamina(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("architecture  llama"), "{out}");
    assert!(out.contains("layers        30"), "{out}");
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["generate", "chat", "translate", "ask", "info", "bench", "bench-native", "perplexity", "eval"] {
        let o = lamina(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help");
        assert!(stdout(&o).contains("--model"), "{sub} --help lacks --model");
    }
}

#[test]
fn bench_prints_ratios() {
    let o = lamina(&["bench", "--reps", "1", "--prompt-tokens", "32", "--gen-tokens", "8", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench --json prints JSON");
    for key in ["prompt processing (tokens/s)", "generation (tokens/s)", "time to first token (ms)", "load time (ms)"] {
        let ratio = v[key]["ratio"].as_f64().unwrap_or(f64::NAN);
        assert!(ratio.is_finite() && ratio > 0.0, "{key}: {ratio}");
    }
}

#[test]
fn chat_reads_turns_from_stdin() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(["chat", "--max-tokens", "16", "--system", "You are a helpful assistant."])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\n/reset\nHello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
    assert!(stderr(&o).contains("conversation cleared"));
}

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn eval_runs_every_task_and_prints_its_table() {
    let out = std::env::temp_dir().join(format!("lamina-eval-{}.json", std::process::id()));
    let out_s = out.display().to_string();
    let cases: [(&str, String, &[&str]); 4] = [
        ("qa", repo("tests/data/qa.jsonl"), &["exact_match", "f1"]),
        ("translate", repo("tests/data/translate.jsonl"), &["bleu", "chrf"]),
        ("choice", repo("tests/data/choice.jsonl"), &["accuracy", "accuracy_norm"]),
        ("perplexity", "/usr/share/common-licenses/GPL-3".to_string(), &["ppl", "ppl_stderr"]),
    ];
    for (task, data, metrics) in cases {
        let o = lamina(&["eval", task, "--data", &data, "--limit", "2", "--chunk", "128", "--output", &out_s]);
        assert!(o.status.success(), "{task}: {}", stderr(&o));
        let table = stdout(&o);
        for m in metrics {
            assert!(table.contains(m), "{task}: no {m} in {table}");
        }
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(report["task"], task);
        assert_eq!(report["evaluated"], 2, "{task}");
        assert!(report["predictions"].as_array().is_some_and(|p| !p.is_empty()));
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let ppl = report["metrics"]["ppl"].as_f64().unwrap();
    assert!(ppl > 2.0 && ppl < 60.0, "{ppl}");
    std::fs::remove_file(&out).ok();
}

#[test]
fn eval_reports_bad_data_with_its_line() {
    let dir = std::env::temp_dir().join(format!("lamina-eval-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = r#"{"question": "The sky is", "choices": ["blue.", "loud."], "label": 0}"#;
    let cases = [
        (
            "choice",
            write("c.jsonl", &format!("{good}\n{{\"question\": \"x\", \"choices\": [\"a\", \"b\"], \"label\": 5}}\n")),
            "c.jsonl:2: `label` 5 is out of range",
        ),
        ("choice", write("j.jsonl", &format!("{good}\n{{oops\n")), "j.jsonl:2: invalid JSON"),
        ("qa", write("q.jsonl", "{\"question\": \"Q?\"}\n"), "q.jsonl:1: missing `answers`"),
        ("qa", write("e.jsonl", ""), "the file is empty"),
        (
            "translate",
            write("t.jsonl", "{\"source\": \"Hi\", \"reference\": \"Salut\", \"source_lang\": \"en\", \"target_lang\": \"xx\"}\n"),
            "unknown language `xx`",
        ),
        ("translate", write("n.jsonl", "{\"source\": \"Hi\", \"reference\": \"Salut\"}\n"), "names no source_lang"),
        ("qa", "/nonexistent/data.jsonl".to_string(), "file not found"),
        ("perplexity", write("short.txt", "Too short for two chunks."), "needs at least"),
    ];
    for (task, path, expected) in cases {
        let o = lamina(&["eval", task, "--data", &path, "--chunk", "128"]);
        assert!(!o.status.success(), "{task} {path} should fail");
        assert!(stderr(&o).contains(expected), "{task} {path}: expected {expected:?} in {}", stderr(&o));
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn convert_gguf_to_safetensors_and_back() {
    let dir = std::env::temp_dir().join(format!("lamina-convert-cli-{}", std::process::id()));
    let st_dir = dir.join("smollm-f16");
    let gguf = dir.join("smollm-f16.gguf");
    let model = lamina::paths::default_model_path();
    let model = model.to_str().unwrap();

    let o = lamina(&["convert", model, st_dir.to_str().unwrap(), "--dtype", "f16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(st_dir.join(name).is_file(), "{name}: {}", stdout(&o));
    }
    assert!(stderr(&o).contains("converted 272 tensors"), "{}", stderr(&o));

    let o = lamina(&["convert", st_dir.to_str().unwrap(), gguf.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lamina(&["generate", "--model", gguf.to_str().unwrap(), "-p", "The capital of France is", "-n", "8", "-t", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));

    let o = lamina(&["convert", "/nonexistent/model.gguf", dir.join("x").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/model.gguf"), "{}", stderr(&o));
    let o = lamina(&["convert", dir.to_str().unwrap(), dir.join("y.gguf").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    let o = lamina(&["convert", model, dir.join("z").to_str().unwrap(), "--dtype", "f8"]);
    assert!(!o.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn perplexity_matches_between_engines() {
    let text = repo("tests/data/prose.txt");
    let o = lamina(&["perplexity", "--engine", "both", "--chunk", "128", "--file", &text, "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let ppl = |engine: &str| -> f64 {
        let line = out.lines().find(|l| l.starts_with(engine)).unwrap_or_else(|| panic!("no {engine} line in {out}"));
        line.split("PPL = ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
    };
    let (llama, native) = (ppl("llama"), ppl("native"));
    println!("{out}");
    assert!((llama - native).abs() / llama < 0.01, "llama {llama} vs native {native}");
    assert!(out.contains("relative difference"), "{out}");

    // Bad input: a text too short for two chunks, an unknown engine, a missing file.
    let o = lamina(&["perplexity", "--engine", "native", "--chunk", "4096", "--file", &text]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("needs at least 8192"), "{}", stderr(&o));
    let o = lamina(&["perplexity", "--engine", "gpu", "--file", &text]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("gpu"), "{}", stderr(&o));
    let o = lamina(&["perplexity", "--file", "/nonexistent.txt"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent.txt"), "{}", stderr(&o));
}

#[test]
fn bench_native_prints_ratio_and_gflops() {
    let o = lamina(&["bench-native", "--seq-len", "64", "--reps", "1", "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    println!("{out}");
    for needle in ["ratio native / llama.cpp", "native achieved (GFLOP/s)", "f32 FMA peak", "peak: "] {
        assert!(out.contains(needle), "missing `{needle}` in {out}");
    }
}

/// `--forward-only` times the native forward alone: its JSON has the forward's figures and
/// none of llama.cpp's or the training pass's, and it refuses `--products`.
#[test]
fn bench_native_forward_only_runs_the_native_forward_alone() {
    let o = lamina(&["bench-native", "--forward-only", "--seq-len", "48", "--reps", "2", "--threads", "2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["forward_only"], true);
    assert!(json["native_tokens_per_s"].as_f64().is_some_and(|t| t > 0.0), "{json}");
    assert!(json["kernel_path"].as_str().is_some_and(|k| !k.is_empty()), "{json}");
    assert!(json.get("llama_pp_tokens_per_s").is_none() && json.get("train_tokens_per_s").is_none(), "{json}");
    let o = lamina(&["bench-native", "--forward-only", "--products"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--products"), "{}", stderr(&o));
}
