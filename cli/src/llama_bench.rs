//! llama.cpp's own `llama-bench`, built outside lamina (`scripts/build-llama-bench.sh`), run as
//! a child process so that `lamina bench` can print lamina's speed against the best a user
//! could get from llama.cpp itself on this machine, in the same run.
//!
//! A binary that crashes (a CPU feature its build assumes but this host cannot use ends in
//! SIGILL) or fails is reported with the reason and left out of the comparison; the fastest
//! of the binaries that ran is the baseline.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One llama-bench binary's result: tokens per second for the prompt test and the generation
/// test, or why it produced none.
#[derive(Debug, Clone)]
pub struct External {
    pub path: PathBuf,
    pub pp_tokens_per_s: Vec<f64>,
    pub tg_tokens_per_s: Vec<f64>,
    pub failure: Option<String>,
}

/// What one test is: the model and the sizes shared by every binary.
pub struct Test<'a> {
    pub model: &'a Path,
    pub threads: u32,
    pub prompt_tokens: usize,
    pub gen_tokens: u32,
    pub gpu_layers: u32,
}

impl External {
    pub fn new(path: &Path) -> Self {
        External { path: path.to_path_buf(), pp_tokens_per_s: Vec::new(), tg_tokens_per_s: Vec::new(), failure: None }
    }

    /// Run one repetition of both tests and record the numbers (or the failure; a binary that
    /// failed once is not run again).
    pub fn run_once(&mut self, test: &Test) {
        if self.failure.is_some() {
            return;
        }
        match run_llama_bench(&self.path, test) {
            Ok((pp, tg)) => {
                self.pp_tokens_per_s.push(pp);
                self.tg_tokens_per_s.push(tg);
            }
            Err(reason) => self.failure = Some(reason),
        }
    }
}

fn run_llama_bench(path: &Path, test: &Test) -> Result<(f64, f64), String> {
    let output = Command::new(path)
        .arg("-m")
        .arg(test.model)
        .args(["-p", &test.prompt_tokens.to_string(), "-n", &test.gen_tokens.to_string()])
        .args(["-t", &test.threads.to_string(), "-ngl", &test.gpu_layers.to_string(), "-r", "1", "-o", "json"])
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(match exit_signal(&output.status) {
            Some(sig) => format!("killed by signal {sig}{}", signal_name(sig)),
            None => format!("exited with {} ({last})", output.status),
        });
    }
    parse_results(&String::from_utf8_lossy(&output.stdout), test)
}

/// llama-bench's `-o json` output: an array with one object per test, each with `n_prompt`,
/// `n_gen` and `avg_ts` (tokens per second).
fn parse_results(stdout: &str, test: &Test) -> Result<(f64, f64), String> {
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).map_err(|e| format!("unreadable JSON output: {e}"))?;
    let rows = value.as_array().ok_or("the JSON output is not an array")?;
    let find = |n_prompt: u64, n_gen: u64| {
        rows.iter()
            .find(|r| r["n_prompt"].as_u64() == Some(n_prompt) && r["n_gen"].as_u64() == Some(n_gen))
            .and_then(|r| r["avg_ts"].as_f64())
    };
    let pp = find(test.prompt_tokens as u64, 0).ok_or("no prompt-processing result in its output")?;
    let tg = find(0, u64::from(test.gen_tokens)).ok_or("no generation result in its output")?;
    Ok((pp, tg))
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn exit_signal(_status: &std::process::ExitStatus) -> Option<i32> {
    None
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => " (SIGILL: an instruction this CPU or kernel does not allow)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llama_bench_json() {
        let test = Test { model: Path::new("m.gguf"), threads: 2, prompt_tokens: 512, gen_tokens: 128, gpu_layers: 0 };
        let out = r#"[{"n_prompt": 512, "n_gen": 0, "avg_ts": 700.5}, {"n_prompt": 0, "n_gen": 128, "avg_ts": 180.25}]"#;
        assert_eq!(parse_results(out, &test).unwrap(), (700.5, 180.25));
        assert!(parse_results("[]", &test).unwrap_err().contains("prompt-processing"));
        assert!(parse_results("not json", &test).unwrap_err().contains("JSON"));
        let only_pp = r#"[{"n_prompt": 512, "n_gen": 0, "avg_ts": 1.0}]"#;
        assert!(parse_results(only_pp, &test).unwrap_err().contains("generation"));
    }

    #[test]
    fn a_crashing_or_missing_binary_is_reported_not_fatal() {
        let test = Test { model: Path::new("m.gguf"), threads: 1, prompt_tokens: 8, gen_tokens: 8, gpu_layers: 0 };
        let mut missing = External::new(Path::new("/nonexistent/llama-bench"));
        missing.run_once(&test);
        assert!(missing.failure.as_deref().unwrap().starts_with("cannot run it"), "{:?}", missing.failure);
        #[cfg(unix)]
        {
            let dir = std::env::temp_dir().join(format!("lamina-fake-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let script = dir.join("llama-bench");
            std::fs::write(&script, "#!/bin/sh\nkill -ILL $$\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let mut crashing = External::new(&script);
            crashing.run_once(&test);
            assert!(crashing.failure.as_deref().unwrap().contains("signal 4 (SIGILL"), "{:?}", crashing.failure);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
