//! Crash-safe training: a `lamina finetune --checkpoint-every 1` run is killed with SIGKILL at
//! seeded random moments (while loading, training or writing a checkpoint), restarted with
//! `--resume` each time a checkpoint exists, and left to finish at last. Its adapter must be
//! byte-identical to the one of a run that was never interrupted (default model, rank 4, on
//! tests/data/made_up_facts.jsonl). Then its newest checkpoint is truncated: a resume names
//! it, takes the one before, and again ends with the same adapter. Unix only: it needs SIGKILL.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: &str = "16";

fn base_args(data: &str, out: &Path) -> Vec<String> {
    let args = [
        "finetune",
        "--data",
        data,
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
        "--seed",
        "3",
        "--max-len",
        "128",
        "--steps",
        STEPS,
        "--output",
        out.to_str().unwrap(),
    ];
    args.iter().map(|s| s.to_string()).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-kill-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn has_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-")))
        .unwrap_or(false)
}

/// xorshift: the kill moments are random but the same on every run of the test.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_run_killed_again_and_again_ends_with_the_uninterrupted_adapter() {
    let dir = temp_dir("run");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/made_up_facts.jsonl");
    let data = data.to_str().unwrap();

    // The reference: one uninterrupted run, timed to place the kills within a run's span.
    let reference = dir.join("reference.gguf");
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_lamina")).args(base_args(data, &reference)).output().unwrap();
    let span = start.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!("uninterrupted run: {:.2} s", span.as_secs_f64());

    let (ckpt, out) = (dir.join("checkpoints"), dir.join("killed.gguf"));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut kills, mut resumes) = (0, 0);
    let span_ms = span.as_millis().max(200) as u64;
    for attempt in 0.. {
        assert!(attempt < 40, "the run did not finish after {attempt} attempts");
        let mut args = base_args(data, &out);
        args.extend(["--checkpoint-dir".into(), ckpt.to_str().unwrap().into(), "--checkpoint-every".into(), "1".into()]);
        if has_checkpoint(&ckpt) {
            args.push("--resume".into());
            resumes += 1;
        }
        let mut child =
            Command::new(env!("CARGO_BIN_EXE_lamina")).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        // Six kills, each after between 2% and 20% of an uninterrupted run's span (a step is
        // about 6%), so while loading, in a step or in a checkpoint write; then the run may
        // finish.
        if kills < 6 {
            std::thread::sleep(Duration::from_millis(span_ms / 50 + rng.below(span_ms * 9 / 50)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "attempt {attempt}: {err}");
        break;
    }
    println!("{kills} kills, {resumes} resumed starts");
    assert!(kills >= 3, "only {kills} runs were killed before they finished");
    assert!(resumes >= 2, "only {resumes} runs resumed from a checkpoint");
    let (a, b) = (std::fs::read(&reference).unwrap(), std::fs::read(&out).unwrap());
    assert!(a == b, "the adapter of the killed and resumed run differs from the uninterrupted one ({} vs {} bytes)", a.len(), b.len());

    // A damaged newest checkpoint is refused, named, and the one before it is used.
    let newest = ckpt.join(format!("checkpoint-{:08}.safetensors", STEPS.parse::<usize>().unwrap()));
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() - 100]).unwrap();
    let mut args = base_args(data, &out);
    args.extend(["--checkpoint-dir".into(), ckpt.to_str().unwrap().into(), "--resume".into()]);
    let o = Command::new(env!("CARGO_BIN_EXE_lamina")).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let previous = format!("checkpoint-{:08}.safetensors", STEPS.parse::<usize>().unwrap() - 1);
    assert!(err.contains(&format!("warning: checkpoint {} not used", newest.display())) && err.contains("truncated"), "{err}");
    assert!(err.contains(&previous) && err.contains("trained 1 step(s)"), "{err}");
    assert!(std::fs::read(&out).unwrap() == a, "the run resumed from the previous checkpoint ends elsewhere");
    std::fs::remove_dir_all(&dir).unwrap();
}
