//! Hyper-parameter search: a grid has the product of its lists, a random search is the same
//! for the same seed; on a tiny model, a good trial finishes, an absurd learning rate fails or
//! stops, a learning rate too small to learn is stopped early against the good trial, the best
//! trial is the one of lowest final validation loss, and sweep.json holds every trial; bad
//! inputs are clear errors before anything runs.

use std::path::PathBuf;

use lamina::native::{NativeParams, Precision};
use lamina::pretrain::run::{Budget, ModelSource, PretrainOptions};
use lamina::pretrain::sweep::{
    describe, sweep, trial_params, trial_seed, EarlyStop, NamedSpec, SweepMode, SweepOptions, SweepReport, SweepSpace, TrialStatus,
    SWEEP_FILE,
};
use lamina::ErrorKind;

use crate::common::pretrain::{corpus_and_tokenizer, tiny_spec};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-pretrain-sweep-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn base() -> PretrainOptions {
    let (corpus, tokenizer) = corpus_and_tokenizer();
    PretrainOptions {
        corpus: corpus.clone(),
        model: ModelSource::New { spec: tiny_spec(), tokenizer: tokenizer.clone(), std: 0.02 },
        seq_len: 64,
        batch_size: 8,
        learning_rate: 3e-3,
        warmup_steps: 5,
        budget: Budget { steps: Some(40), ..Budget::default() },
        eval_every: 10,
        eval_sequences: 16,
        seed: 7,
        engine: NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() },
        ..PretrainOptions::default()
    }
}

fn print_table(r: &SweepReport) {
    println!("{:>5}  {:<14} {:>10} {:>10} {:>6}  hyper-parameters", "trial", "status", "val loss", "val ppl", "steps");
    for t in r.ranked() {
        let best = if Some(t.index) == r.best { " (best)" } else { "" };
        println!(
            "{:>5}  {:<14} {:>10} {:>10} {:>6}  {}{best}",
            t.index,
            format!("{:?}", t.status),
            t.final_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
            t.final_val_perplexity.map_or("-".into(), |p| format!("{p:.2}")),
            t.steps,
            describe(&t.params)
        );
    }
}

#[test]
fn grid_is_the_product_and_random_is_seeded() {
    let space = SweepSpace {
        learning_rate: vec![1e-3, 3e-3, 1e-2],
        batch_size: vec![4, 8],
        dropout: vec![0.0, 0.1],
        model: vec![NamedSpec { name: "a".into(), spec: tiny_spec() }, NamedSpec { name: "b".into(), spec: tiny_spec() }],
        ..SweepSpace::default()
    };
    assert_eq!(space.grid_size(), 24);
    let grid = trial_params(&base(), &space, SweepMode::Grid).unwrap();
    assert_eq!(grid.len(), 24);
    for (i, a) in grid.iter().enumerate() {
        assert!(grid[i + 1..].iter().all(|b| b != a), "every grid point once");
        assert_eq!((a.warmup_steps, a.weight_decay), (5, base().weight_decay), "unsearched values are the base's");
    }
    let random = |seed| trial_params(&base(), &space, SweepMode::Random { trials: 10, seed }).unwrap();
    assert_eq!(random(1), random(1));
    assert_ne!(random(1), random(2));
    assert_eq!(random(1).len(), 10);
    assert!(random(1).iter().all(|t| grid.contains(t)));
    assert_eq!(trial_seed(3, 1), trial_seed(3, 1));
    assert_ne!(trial_seed(3, 1), trial_seed(3, 2));
    assert_ne!(trial_seed(3, 1), trial_seed(4, 1));
}

#[test]
fn a_sweep_finds_the_best_trial_and_stops_hopeless_ones() {
    let out = tmp("sweep");
    // Trial 0 learns; trial 1's absurd rate diverges; trial 2's cannot learn in 40 steps and is
    // stopped at a quarter of the budget against trial 0; trial 3 learns too.
    let options = SweepOptions {
        base: base(),
        space: SweepSpace { learning_rate: vec![3e-3, 1e3, 1e-7, 5e-3], ..SweepSpace::default() },
        mode: SweepMode::Grid,
        early_stop: Some(EarlyStop { at: vec![0.25, 0.5], margin: 0.02 }),
        output: out.clone(),
        keep_models: false,
    };
    let started = std::time::Instant::now();
    let mut calls = 0usize;
    let report = sweep(&options, |p| {
        assert!(p.trial < p.trials && p.trials == 4);
        calls += 1;
        true
    })
    .unwrap();
    print_table(&report);
    println!("{} progress calls, {:.1} s", calls, started.elapsed().as_secs_f64());
    let t = &report.trials;
    assert_eq!(t.len(), 4);
    assert!(!report.cancelled);
    assert_eq!(t[0].status, TrialStatus::Finished);
    assert_eq!(t[3].status, TrialStatus::Finished);
    assert!(matches!(t[1].status, TrialStatus::Failed | TrialStatus::StoppedEarly), "{:?}", t[1]);
    assert!(t[1].message.is_some());
    assert_eq!(t[2].status, TrialStatus::StoppedEarly, "{:?}", t[2]);
    assert_eq!(t[2].steps, 10, "stopped at the validation of a quarter of the budget");
    assert!(t[2].message.as_deref().unwrap().contains("25%"));
    assert_eq!(t[0].steps, 40);
    assert_eq!(t[0].evals.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 10, 20, 30, 40]);
    assert_eq!(t[0].tokens_seen, 40 * 8 * 64);
    let best = (0..4)
        .filter(|&i| t[i].status == TrialStatus::Finished)
        .min_by(|&a, &b| t[a].final_val_loss.unwrap().total_cmp(&t[b].final_val_loss.unwrap()));
    assert_eq!(report.best, best);
    let best = best.unwrap();
    assert!(t[best].final_val_loss.unwrap() < 512f64.ln() - 0.5);
    assert_eq!(report.best_model.as_deref(), Some(out.join(format!("trial-{best:03}/model.gguf")).as_path()));
    assert!(report.best_model.as_ref().unwrap().is_file());
    // keep_models off: the other finished trial's model is deleted.
    let other = if best == 0 { 3 } else { 0 };
    assert!(!out.join(format!("trial-{other:03}/model.gguf")).exists());
    assert_eq!(report.ranked()[0].index, best);
    let seeds: Vec<u64> = t.iter().map(|t| t.seed).collect();
    assert_eq!(seeds, (0..4).map(|i| trial_seed(7, i)).collect::<Vec<_>>());

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join(SWEEP_FILE)).unwrap()).unwrap();
    let trials = json["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    assert_eq!(trials[2]["status"], "stopped_early");
    assert_eq!(trials[0]["params"]["learning_rate"].as_f64().unwrap() as f32, 3e-3);
    assert!(trials[0]["final_val_loss"].is_number() && trials[0]["evals"].as_array().unwrap().len() == 5);
    assert_eq!(json["best"].as_u64(), Some(best as u64));

    // Cancelling keeps the trials so far.
    let out = tmp("cancel");
    let report = sweep(
        &SweepOptions {
            output: out.clone(),
            early_stop: None,
            space: SweepSpace { learning_rate: vec![3e-3, 1e-2, 1e-3], ..SweepSpace::default() },
            ..options
        },
        |p| p.trial == 0 || p.progress.step < 3,
    )
    .unwrap();
    assert!(report.cancelled);
    assert_eq!(report.trials.len(), 2);
    assert_eq!(report.trials[0].status, TrialStatus::Finished);
    assert_eq!(report.trials[1].status, TrialStatus::Cancelled);
    assert!(out.join(SWEEP_FILE).is_file());
}

#[test]
fn bad_sweeps_are_errors_before_anything_runs() {
    let out = tmp("bad");
    let options = |space: SweepSpace, base: PretrainOptions| SweepOptions {
        base,
        space,
        mode: SweepMode::Grid,
        early_stop: Some(EarlyStop::default()),
        output: out.join("sweep"),
        keep_models: true,
    };
    let lrs = || SweepSpace { learning_rate: vec![1e-3], ..SweepSpace::default() };
    let fails = |o: SweepOptions, name: &str| {
        let e = sweep(&o, |_| true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(name), "{name}: {e}");
        assert!(!out.join("sweep").exists(), "nothing written: {e}");
    };
    fails(options(SweepSpace::default(), base()), "nothing to search");
    fails(options(SweepSpace { dropout: vec![0.0, 1.5], ..SweepSpace::default() }, base()), "trial 1");
    fails(options(SweepSpace { learning_rate: vec![1e-3, -1.0], ..SweepSpace::default() }, base()), "learning_rate");
    fails(options(SweepSpace { batch_size: vec![0], ..SweepSpace::default() }, base()), "trial 0");
    fails(options(lrs(), PretrainOptions { budget: Budget { steps: Some(0), ..Budget::default() }, ..base() }), "0 steps");
    fails(options(lrs(), PretrainOptions { budget: Budget::default(), ..base() }), "budget");
    fails(SweepOptions { mode: SweepMode::Random { trials: 0, seed: 1 }, ..options(lrs(), base()) }, "0 trials");
    fails(SweepOptions { early_stop: Some(EarlyStop { at: vec![1.5], margin: 0.1 }), ..options(lrs(), base()) }, "1.5");
    let mut small = tiny_spec();
    small.context_length = 32;
    fails(options(SweepSpace { model: vec![NamedSpec { name: "short".into(), spec: small }], ..SweepSpace::default() }, base()), "context");
    let empty = tmp("no-validation");
    std::fs::copy(corpus_and_tokenizer().0.join("train.jsonl"), empty.join("train.jsonl")).unwrap();
    fails(options(lrs(), PretrainOptions { corpus: empty, ..base() }), "validation");
}
