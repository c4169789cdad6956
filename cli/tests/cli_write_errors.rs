//! Saving to a full disk or an unwritable path: the error says that writing failed and names
//! the destination, and nothing is left under that name (the old file, if any, survives). A
//! full disk is stood in for by a file-size limit (`ulimit -f`), under which writes fail with
//! EFBIG as they fail with ENOSPC on a full disk; an unwritable path is one below a regular
//! file (permissions would not stop a root user). Unix only.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lamina_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lamina")
}

fn lamina(args: &[&str]) -> Output {
    Command::new(lamina_bin()).args(args).output().expect("lamina runs")
}

/// `lamina args...` with a file-size limit of `kib` KiB.
fn lamina_limited(kib: u32, args: &[&str]) -> Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    Command::new("sh").arg("-c").arg(format!("ulimit -f {kib} && exec '{}' {}", lamina_bin(), quoted.join(" "))).output().expect("sh runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-write-errors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).map(|e| e.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn data() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/made_up_facts.jsonl").to_str().unwrap().to_string()
}

#[test]
fn a_conversion_onto_a_full_disk_fails_as_a_write_and_leaves_no_weights() {
    let dir = temp_dir("convert");
    let out = dir.join("hf");
    let o = lamina_limited(4096, &["convert", &lamina_default_model(), out.to_str().unwrap()]);
    let err = stderr(&o);
    println!("{err}");
    assert!(!o.status.success(), "the conversion succeeded under a 4 MiB file limit");
    assert!(err.contains("cannot write") && err.contains("model.safetensors") && err.contains("too large"), "{err}");
    assert!(names(&out).is_empty(), "files left behind: {:?}", names(&out));

    // Below a regular file: no directory can be made there.
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let o = lamina(&["convert", &lamina_default_model(), blocker.join("hf").to_str().unwrap()]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("cannot write") && err.contains("file/hf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_finetune_whose_outputs_cannot_be_written_says_so_and_keeps_the_old_adapter() {
    let dir = temp_dir("finetune");
    let data = data();
    let adapter = dir.join("facts.gguf");
    std::fs::write(&adapter, b"the previous adapter").unwrap();
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
        "--steps",
        "1",
        "--max-len",
        "128",
    ];

    // The adapter (about 90 KiB) does not fit under a 64 KiB limit: the old file survives.
    let mut args = base.to_vec();
    args.extend_from_slice(&["--output", adapter.to_str().unwrap()]);
    let o = lamina_limited(64, &args);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("cannot write") && err.contains("facts.gguf") && err.contains("too large"), "{err}");
    assert_eq!(std::fs::read(&adapter).unwrap(), b"the previous adapter");
    assert_eq!(names(&dir), ["facts.gguf"], "a temporary file was left");

    // A checkpoint directory, or an adapter, below a regular file: refused before training.
    let (ckpt, new) = (adapter.join("ckpt"), dir.join("new.gguf"));
    let below = adapter.join("new.gguf");
    for (extra, named) in [
        (["--output", new.to_str().unwrap(), "--checkpoint-dir", ckpt.to_str().unwrap()], "facts.gguf/ckpt"),
        (["--output", below.to_str().unwrap(), "--seed", "1"], "facts.gguf/new.gguf"),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(&extra);
        let o = lamina(&args);
        let err = stderr(&o);
        assert!(!o.status.success() && err.contains("cannot write") && err.contains(named), "{err}");
        assert!(!err.contains("trained "), "it trained before failing: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default model's path, as `scripts/fetch-model.sh` leaves it in the cache.
fn lamina_default_model() -> String {
    if let Ok(m) = std::env::var("LAMINA_MODEL") {
        return m;
    }
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-model.sh")).output().expect("fetch-model.sh runs");
    assert!(o.status.success(), "scripts/fetch-model.sh failed: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
