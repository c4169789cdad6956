//! A training run built from files (`TrainingRun`), as the C ABI and `lamina finetune` use it:
//! bad options fail before any file is read, one step trains, the adapter saves in both
//! formats and loads back (into the native engine and into llama.cpp), a checkpoint resumes at
//! its step, and each kind of run refuses the other kind's save.

use crate::common;

use std::path::{Path, PathBuf};

use lamina::native::lora_io::import_adapter;
use lamina::native::train::TrainConfig;
use lamina::native::train_data::DataOptions;
use lamina::native::training_run::{AdapterFormat, RunOptions, Start, TrainingRun};
use lamina::native::NativeParams;
use lamina::ErrorKind;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/made_up_facts.jsonl")
}

fn options() -> RunOptions {
    RunOptions {
        config: TrainConfig { rank: 2, batch_size: 2, steps: 3, ..TrainConfig::default() },
        data: DataOptions { max_len: 128, ..DataOptions::default() },
        engine: NativeParams { n_threads: 2, ..NativeParams::default() },
        full: false,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-training-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_options_fail_before_any_file_is_read() {
    // The model path does not exist: an options error must win, because it is checked first.
    let missing = Path::new("/nonexistent/lamina/model.gguf");
    let mut bad_rank = options();
    bad_rank.config.rank = 0;
    let mut bad_split = options();
    bad_split.data.val_fraction = 1.0;
    let mut bad_len = options();
    bad_len.data.max_len = 1;
    for (what, o) in [("rank", bad_rank), ("val_fraction", bad_split), ("max_len", bad_len)] {
        let err = TrainingRun::new(missing, &data(), &o, Start::Fresh).err().expect("bad options are refused");
        println!("{what}: {err}");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
    // With good options, the missing model is what fails.
    let err = TrainingRun::new(missing, &data(), &options(), Start::Fresh).err().expect("no model");
    assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");
}

#[test]
fn a_run_trains_saves_resumes_and_refuses_the_wrong_save() {
    let model_path = lamina::paths::default_model_path();
    let dir = scratch("run");
    let mut run = TrainingRun::new(&model_path, &data(), &options(), Start::Fresh).expect("the run starts");
    assert!(!run.is_full());
    assert_eq!(run.data_stats().records, 30);
    assert!(run.n_trained_params() > 0);
    let loss = run.train_step().expect("one step");
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    assert_eq!(run.step(), 1);

    // Both adapter formats, loaded back into the native engine and into llama.cpp.
    let gguf = dir.join("adapter.gguf");
    let peft = dir.join("peft");
    run.save_adapter(&gguf, AdapterFormat::Gguf).unwrap();
    run.save_adapter(&peft, AdapterFormat::Peft).unwrap();
    for path in [&gguf, &peft] {
        let back = import_adapter(path, run.model()).unwrap();
        assert_eq!(back.n_params(), run.n_trained_params(), "{}", path.display());
    }
    common::model().load_adapter(&gguf).expect("llama.cpp loads the GGUF adapter");

    // A LoRA run has no model to save.
    let err = run.save_model(&dir.join("model.gguf")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // A checkpoint resumes at its step, with the checkpoint's configuration.
    let checkpoints = dir.join("checkpoints");
    run.save_checkpoint(&checkpoints).unwrap();
    let mut other = options();
    other.config.rank = 0; // ignored when resuming: the checkpoint's config is used
    let resumed = TrainingRun::new(&model_path, &data(), &other, Start::Resume { dir: &checkpoints, steps: 0 }).unwrap();
    assert_eq!(resumed.step(), 1);
    assert_eq!(resumed.config().rank, 2);
    assert!(resumed.resumed_from().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
