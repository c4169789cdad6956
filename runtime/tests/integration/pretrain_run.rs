//! Pretraining from scratch: a small model trained on the GPL-3 text learns (its validation
//! loss falls well below the initial one), its GGUF loads and generates in llama.cpp, its
//! Hugging Face export, log and loss plot are written; a run stopped at a checkpoint resumes at
//! the right step and trains exactly as an uninterrupted one; bad inputs are clear errors;
//! residual and attention dropout have the gradients of central finite differences of an
//! independent f64 model with the same masks; weight decay leaves norms and embeddings alone
//! unless asked.

use std::path::{Path, PathBuf};

use lamina::native::lora::SplitMix64;
use lamina::native::pass::BlockDropout;
use lamina::native::train::{Regularization, TrainConfig, Trainer};
use lamina::native::trainable::Trainable;
use lamina::native::{Example, FullWeights, LoraTarget, NativeModel, NativeParams, PassOptions, Precision};
use lamina::pretrain::init::ModelSpec;
use lamina::pretrain::run::{
    pretrain, Budget, ModelSource, PretrainEnd, PretrainOptions, PretrainProgress, PretrainReport, CALIBRATION_STEPS, TRAIN_COLOR,
    VALIDATION_COLOR,
};
use lamina::weights::gguf::{GgufWriter, MetaValue};
use lamina::weights::GgmlType;
use lamina::{ErrorKind, Model, ModelParams, Sampling, Session, SessionParams};

use crate::common::pretrain::{corpus_and_tokenizer, tiny_spec, write_jsonl};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-pretrain-run-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(out: &Path) -> PretrainOptions {
    let (corpus, tokenizer) = corpus_and_tokenizer();
    PretrainOptions {
        corpus: corpus.clone(),
        model: ModelSource::New { spec: tiny_spec(), tokenizer: tokenizer.clone(), std: 0.02 },
        output: out.to_path_buf(),
        seq_len: 64,
        batch_size: 8,
        learning_rate: 3e-3,
        warmup_steps: 20,
        engine: NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() },
        ..PretrainOptions::default()
    }
}

fn log_of(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("log.json")).unwrap()).unwrap()
}

#[test]
fn a_model_trained_from_scratch_learns_and_loads_in_llama_cpp() {
    let dir = tmp("learns");
    let out = dir.join("out");
    let hf = dir.join("hf");
    let opts = PretrainOptions {
        hf: Some(hf.clone()),
        budget: Budget { steps: Some(300), ..Budget::default() },
        eval_every: 50,
        dropout: 0.1,
        attention_dropout: 0.1,
        ..options(&out)
    };
    let started = std::time::Instant::now();
    let mut seen: Vec<PretrainProgress> = Vec::new();
    let report = pretrain(&opts, |p| {
        seen.push(p.clone());
        true
    })
    .unwrap()
    .expect("not cancelled");
    let seconds = started.elapsed().as_secs_f64();
    let (before, after) = report.val_loss_change().unwrap();
    let test = report.test.clone().expect("the corpus has a test set");
    println!(
        "{} parameters, {} steps, {} tokens ({} train tokens in {} sequences) in {seconds:.1} s ({:.0} tok/s): validation loss {before:.4} (ppl {:.1}) -> {after:.4} (ppl {:.1}); train loss {:.4} -> {:.4}; test ppl {:.2}, accuracy {:.1}%",
        report.parameters,
        report.steps.len(),
        report.tokens_seen,
        report.data.train_tokens,
        report.data.train_sequences,
        report.steps.last().unwrap().tokens_per_second,
        before.exp(),
        after.exp(),
        report.steps[0].loss,
        report.steps.last().unwrap().loss,
        test.perplexity,
        test.accuracy * 100.0
    );
    assert_eq!(report.end, PretrainEnd::Finished);
    assert_eq!(report.parameters, tiny_spec().n_params());
    assert!((before - (512f64).ln()).abs() < 0.5, "a fresh model guesses about uniformly: {before}");
    assert!(after < before - 1.5, "the validation loss did not fall clearly: {before} -> {after}");
    assert_eq!(report.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 50, 100, 150, 200, 250, 300]);
    assert!(test.perplexity < before.exp() / 3.0 && test.accuracy > 0.15, "{test:?}");
    assert_eq!(report.tokens_seen, 300 * 8 * 64);
    // Progress after every step, with the schedule's rates and the validations.
    assert_eq!(seen.len(), 300);
    assert!(seen.iter().enumerate().all(|(i, p)| p.step == i + 1 && p.planned_steps == 300));
    assert!(seen[9].learning_rate < seen[19].learning_rate && seen[299].learning_rate < 1e-4, "warmup, then cosine to 0");
    assert!(seen[49].evaluated && !seen[50].evaluated && seen[50].val_loss == seen[49].val_loss);

    // log.json: the options, every step, every validation, the test, the totals.
    let log = log_of(&out);
    assert_eq!(log["steps"].as_array().unwrap().len(), 300);
    for key in ["loss", "learning_rate", "grad_norm", "tokens_seen", "tokens_per_second"] {
        assert!(log["steps"][299][key].is_number(), "{key} of a step");
    }
    assert!(log["evals"][6]["perplexity"].is_number() && log["test"]["accuracy"].is_number() && log["test"]["perplexity"].is_number());
    assert_eq!(log["options"]["dropout"].as_f64().map(|p| p as f32), Some(0.1));
    assert_eq!(log["parameters"], report.parameters);
    assert!(log["wall_seconds"].as_f64().unwrap() > 0.0 && log["tokens_seen"] == report.tokens_seen);
    let back: PretrainReport = serde_json::from_value(log).unwrap();
    assert_eq!(back.steps, report.steps);
    // loss.svg: an SVG picture with one line per curve.
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    let color = |(r, g, b): (u8, u8, u8)| format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"");
    let lines = |c: &str| svg.lines().filter(|l| l.starts_with("<polyline") && l.contains(c)).count();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "not an SVG document");
    assert!(lines(&color(TRAIN_COLOR)) >= 1 && lines(&color(VALIDATION_COLOR)) >= 1, "a curve is missing from loss.svg");

    // The Hugging Face export.
    for file in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(hf.join(file).is_file(), "{file} missing from the Hugging Face export");
    }
    // llama.cpp loads the GGUF and generates from it; the native engine gives it the test loss.
    let gguf = out.join("model.gguf");
    assert_eq!(report.files.gguf.as_deref(), Some(gguf.as_path()));
    let llama = Model::load(&gguf, &ModelParams::default()).unwrap();
    let mut session = Session::new(&llama, &SessionParams { n_ctx: 128, n_threads: 2, ..SessionParams::default() }).unwrap();
    let prompt = "The GNU General Public License is a free, copyleft license for";
    let generated = session.generate(prompt, &Sampling::greedy(16), |_| true).unwrap();
    println!("llama.cpp, greedy after {prompt:?}: {:?} ({} tokens)", generated.text, generated.generated_tokens);
    assert!(generated.generated_tokens >= 2 && !generated.text.trim().is_empty(), "{generated:?}");
    // Its first token is the native engine's most likely one.
    let from_gguf = NativeModel::load(&gguf, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let tokenizer = from_gguf.load_tokenizer().unwrap();
    let ids = tokenizer.encode(prompt, false).unwrap();
    let logits = from_gguf.logits(&ids, ids.len() - 1).unwrap();
    let row = logits.row(0);
    let best = (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b });
    let piece = tokenizer.decode(&[best as u32]).unwrap();
    assert!(generated.text.starts_with(&piece), "native {piece:?}, llama.cpp {:?}", generated.text);
    let from_hf = NativeModel::load(&hf, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let (a, b) = (from_gguf.logits(&ids, 0).unwrap(), from_hf.logits(&ids, 0).unwrap());
    let diff = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-3, "the Hugging Face export computes another function: max |logit diff| {diff}");
    the_trained_model_works_with_the_other_commands(&llama, &gguf, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `generate`, `perplexity --engine both`, `finetune` and `finetune --full` do, on the
/// model trained from scratch: llama.cpp and the native engine give it the same perplexity,
/// a LoRA adapter trained on it loads into llama.cpp and generates, and a full fine-tune of it
/// writes a GGUF that llama.cpp loads and generates from.
fn the_trained_model_works_with_the_other_commands(llama: &Model, gguf: &Path, dir: &Path) {
    use lamina::eval::perplexity::perplexity;
    use lamina::native::train_data::DataOptions;
    use lamina::native::training_run::{AdapterFormat, RunOptions, Start, TrainingRun};

    let text = std::fs::read_to_string(corpus_and_tokenizer().0.join("test.jsonl")).unwrap();
    let docs: Vec<String> =
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect();
    let mut native = NativeModel::load(gguf, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let tokens: Vec<i32> = native.load_tokenizer().unwrap().encode(&docs.join("\n\n"), false).unwrap().iter().map(|&t| t as i32).collect();
    let mut session = Session::new(llama, &SessionParams { n_ctx: 128, n_threads: 2, ..SessionParams::default() }).unwrap();
    let ppl_llama = perplexity(&mut session, &tokens, 64, None, |_, _| true).unwrap().unwrap().ppl;
    let ppl_native = perplexity(&mut native, &tokens, 64, None, |_, _| true).unwrap().unwrap().ppl;
    let rel = (ppl_native - ppl_llama).abs() / ppl_llama;
    println!(
        "test-set perplexity (chunks of 64): llama.cpp {ppl_llama:.4}, native {ppl_native:.4}, relative difference {:.4}%",
        rel * 100.0
    );
    assert!(rel < 0.005, "llama.cpp {ppl_llama} vs native {ppl_native}");

    let data = corpus_and_tokenizer().0.join("train.jsonl");
    let prompt = "This License";
    for full in [false, true] {
        let options = RunOptions {
            config: TrainConfig { rank: 4, batch_size: 2, steps: 3, ..TrainConfig::default() },
            data: DataOptions { max_len: 64, truncate: true, ..DataOptions::default() },
            engine: NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() },
            full,
        };
        let mut run = TrainingRun::new(gguf, &data, &options, Start::Fresh).unwrap();
        for _ in 0..3 {
            assert!(run.train_step().unwrap().is_finite());
        }
        let generated = if full {
            let path = dir.join("full.gguf");
            run.save_model(&path).unwrap();
            let tuned = Model::load(&path, &ModelParams::default()).unwrap();
            let mut s = Session::new(&tuned, &SessionParams { n_ctx: 64, n_threads: 2, ..SessionParams::default() }).unwrap();
            s.generate(prompt, &Sampling::greedy(4), |_| true).unwrap()
        } else {
            let path = dir.join("lora.gguf");
            run.save_adapter(&path, AdapterFormat::Gguf).unwrap();
            let adapter = llama.load_adapter(&path).unwrap();
            let mut s = Session::new(llama, &SessionParams { n_ctx: 64, n_threads: 2, ..SessionParams::default() }).unwrap();
            s.set_adapters(&[(adapter, 1.0)]).unwrap();
            s.generate(prompt, &Sampling::greedy(4), |_| true).unwrap()
        };
        println!("after 3 steps of {}: {:?}", if full { "full fine-tuning" } else { "LoRA" }, generated.text);
        assert!(generated.generated_tokens >= 1, "{generated:?}");
    }
}

/// A run cancelled after step 5 writes a checkpoint; resumed, it continues at step 6 and its
/// steps have exactly the losses of an uninterrupted run (dropout masks included). A run from
/// the trained GGUF (continued pretraining) starts below a fresh one.
#[test]
fn a_stopped_run_resumes_at_its_step_and_trains_as_an_uninterrupted_one() {
    let dir = tmp("resume");
    let run = |name: &str, resume: bool, stop_after: Option<usize>| {
        let out = dir.join(name);
        let opts = PretrainOptions {
            seq_len: 32,
            batch_size: 4,
            budget: Budget { steps: Some(8), ..Budget::default() },
            eval_every: 0,
            dropout: 0.1,
            attention_dropout: 0.1,
            warmup_steps: 2,
            checkpoint_dir: Some(out.join("checkpoints")),
            checkpoint_every: 3,
            resume,
            ..options(&out)
        };
        let mut steps = Vec::new();
        let report = pretrain(&opts, |p| {
            steps.push(p.step);
            stop_after != Some(p.step)
        })
        .unwrap();
        (report, steps, out)
    };
    let (whole, steps, whole_out) = run("whole", false, None);
    let whole = whole.unwrap();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());

    let (stopped, steps, out) = run("stopped", false, Some(5));
    assert!(stopped.is_none(), "a cancelled run returns no report");
    assert_eq!(steps, (1..=5).collect::<Vec<_>>());
    assert!(out.join("checkpoints/checkpoint-00000005.safetensors").is_file(), "no checkpoint at the step it stopped");
    assert_eq!(log_of(&out)["end"], "cancelled");
    assert!(!out.join("model.gguf").exists(), "a cancelled run writes no model");

    let (resumed, steps, _) = run("stopped", true, None);
    let resumed = resumed.unwrap();
    println!("resumed at step {}: steps {steps:?}, from {:?}", steps[0], resumed.resumed_from);
    assert_eq!(steps, [6, 7, 8], "the resumed run did not continue at step 6");
    assert!(resumed.resumed_from.as_ref().unwrap().ends_with("checkpoint-00000005.safetensors"));
    assert_eq!(resumed.steps.iter().map(|s| s.step).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>(), "the log continues");
    let losses = |r: &PretrainReport| r.steps.iter().map(|s| s.loss).collect::<Vec<_>>();
    assert_eq!(losses(&resumed), losses(&whole), "the resumed run trained differently");
    assert_eq!(std::fs::read(out.join("model.gguf")).unwrap(), std::fs::read(whole_out.join("model.gguf")).unwrap());

    // Continued pretraining from the trained model.
    let out = dir.join("continued");
    let opts = PretrainOptions {
        model: ModelSource::Gguf(whole_out.join("model.gguf")),
        seq_len: 32,
        batch_size: 4,
        budget: Budget { tokens: Some(2 * 4 * 32), ..Budget::default() },
        eval_every: 0,
        warmup_steps: 0,
        ..options(&out)
    };
    let continued = pretrain(&opts, |_| true).unwrap().unwrap();
    assert_eq!(continued.steps.len(), 2, "a budget of two steps' tokens");
    assert!(continued.files.init.is_none() && !out.join("init.gguf").exists());
    assert!(continued.evals[0].loss < whole.evals[0].loss, "the trained model starts where the first run began");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A time budget alone: the schedule is planned from the speed of the first steps (and again
/// at a tenth of the budget), so the rate has decayed by the last step, and the run ends near
/// its budget.
#[test]
fn a_time_budget_plans_the_schedule_from_the_first_steps() {
    let dir = tmp("time");
    let out = dir.join("out");
    let budget = 1.5;
    let opts = PretrainOptions {
        seq_len: 32,
        batch_size: 4,
        warmup_steps: 2,
        eval_every: 0,
        budget: Budget { seconds: Some(budget), ..Budget::default() },
        ..options(&out)
    };
    let mut planned = Vec::new();
    let report = pretrain(&opts, |p| {
        planned.push(p.planned_steps);
        true
    })
    .unwrap()
    .unwrap();
    let last = report.steps.last().unwrap();
    println!(
        "{budget} s budget: {} steps in {:.2} s, planned {} (first planned after {CALIBRATION_STEPS} steps), last rate {:.2e} ({:?})",
        last.step, last.seconds, report.planned_steps, last.learning_rate, report.end
    );
    assert!(planned[0] == 0 && planned[CALIBRATION_STEPS - 1] > 0, "the plan was not made after the first steps: {:?}", &planned[..5]);
    assert!(report.planned_steps >= CALIBRATION_STEPS && last.step <= report.planned_steps);
    assert!(last.seconds <= budget * 1.5 + 0.5, "the run overran its budget: {} s", last.seconds);
    if report.end == PretrainEnd::Finished {
        assert!(last.learning_rate < 0.1 * opts.learning_rate, "the schedule did not decay to the last step");
    } else {
        assert_eq!(report.end, PretrainEnd::Budget);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tmp("errors");
    let (_, tokenizer) = corpus_and_tokenizer();
    let out = dir.join("out");
    let steps = Budget { steps: Some(3), ..Budget::default() };
    let fails = |opts: PretrainOptions, kind: ErrorKind, words: &[&str]| {
        let err = pretrain(&opts, |_| true).expect_err("an error");
        println!("{err}");
        assert_eq!(err.kind(), kind, "{err}");
        for w in words {
            assert!(err.to_string().contains(w), "`{w}` not in: {err}");
        }
    };

    // Budgets: none, or zero.
    fails(options(&out), ErrorKind::InvalidArgument, &["`budget`"]);
    fails(PretrainOptions { budget: Budget { steps: Some(0), ..steps }, ..options(&out) }, ErrorKind::InvalidArgument, &["`steps`", "0"]);
    fails(PretrainOptions { budget: Budget { tokens: Some(0), ..steps }, ..options(&out) }, ErrorKind::InvalidArgument, &["`tokens`"]);
    fails(
        PretrainOptions { budget: Budget { seconds: Some(0.0), ..steps }, ..options(&out) },
        ErrorKind::InvalidArgument,
        &["`time_budget`"],
    );
    assert!(!out.exists(), "nothing is written for invalid options");

    // Corpora: none, empty, too small for one sequence.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(PretrainOptions { corpus: empty.clone(), budget: steps, ..options(&out) }, ErrorKind::Data, &["train.jsonl", "not found"]);
    std::fs::write(empty.join("train.jsonl"), "\n").unwrap();
    fails(PretrainOptions { corpus: empty.clone(), budget: steps, ..options(&out) }, ErrorKind::Data, &["train.jsonl", "empty"]);
    write_jsonl(&empty.join("train.jsonl"), &["A short text.", "And another."]);
    fails(PretrainOptions { corpus: empty.clone(), budget: steps, ..options(&out) }, ErrorKind::Data, &["too small", "64 tokens"]);
    assert!(!out.exists(), "nothing is written for a bad corpus");

    // A sequence beyond the context; a model that does not fit in memory (estimated first).
    fails(PretrainOptions { seq_len: 256, budget: steps, ..options(&out) }, ErrorKind::InvalidArgument, &["`seq_len`", "context"]);
    let huge = ModelSpec { n_layers: 512, width: 8192, n_heads: 64, n_kv_heads: 8, ffn_width: 22016, context_length: 128, ..tiny_spec() };
    let model = ModelSource::New { spec: huge, tokenizer: tokenizer.clone(), std: 0.02 };
    fails(PretrainOptions { model, budget: steps, ..options(&out) }, ErrorKind::InvalidArgument, &["GiB", "available"]);
    assert!(!out.exists(), "nothing is written for a model that does not fit");

    // Divergence: stopped, the step before it (whose weights gave the loss) dropped, the
    // checkpoint of the initial weights kept.
    let ckpt = dir.join("checkpoints");
    let opts = PretrainOptions {
        learning_rate: 1e6,
        warmup_steps: 0,
        seq_len: 32,
        batch_size: 4,
        budget: Budget { steps: Some(20), ..Budget::default() },
        checkpoint_dir: Some(ckpt.clone()),
        checkpoint_every: 1,
        ..options(&out)
    };
    let err = pretrain(&opts, |_| true).expect_err("a learning rate of 1e6 diverges");
    println!("{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let message = err.to_string();
    assert!(message.contains("`learning_rate`") && message.contains("diverged at step"), "{message}");
    let log = log_of(&out);
    assert_eq!(log["end"], "diverged");
    let at = log["steps"].as_array().unwrap().last().unwrap()["step"].as_u64().unwrap() as usize;
    assert!(at <= 3, "the divergence was caught late, at step {at}");
    let kept = ckpt.join(format!("checkpoint-{:08}.safetensors", at - 2));
    assert!(kept.is_file() && message.contains(&kept.display().to_string()), "{message}");
    assert!(!ckpt.join(format!("checkpoint-{:08}.safetensors", at - 1)).exists(), "the checkpoint that diverged is kept");
    assert!(!out.join("model.gguf").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Dropout's gradients against an independent f64 model with the same masks (the approach of
// runtime/tests/integration/lora_grad.rs): a tiny F32 model, every norm and embedding weight and every
// seventh projection weight probed by central differences.
// ---------------------------------------------------------------------------------------------

const D: usize = 32;
const FF: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = 8;
const LAYERS: usize = 2;
const VOCAB: usize = 40;
const EPS: f32 = 1e-5;
const THETA: f32 = 10_000.0;

/// A tiny llama GGUF, all F32, norms around 1, the LM head tied to the embedding.
fn tiny_model(path: &Path) -> PathBuf {
    let mut rng = SplitMix64(7);
    let mut w = GgufWriter::new();
    let meta: Vec<(&str, MetaValue)> = vec![
        ("general.architecture", "llama".into()),
        ("llama.block_count", (LAYERS as u32).into()),
        ("llama.embedding_length", (D as u32).into()),
        ("llama.feed_forward_length", (FF as u32).into()),
        ("llama.attention.head_count", (HEADS as u32).into()),
        ("llama.attention.head_count_kv", (KV_HEADS as u32).into()),
        ("llama.attention.layer_norm_rms_epsilon", EPS.into()),
        ("llama.rope.freq_base", THETA.into()),
        ("llama.context_length", 64u32.into()),
        ("llama.vocab_size", (VOCAB as u32).into()),
    ];
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    let mut add = |w: &mut GgufWriter, name: String, rows: usize, cols: usize, amp: f32| {
        let data: Vec<u8> = (0..rows * cols).flat_map(|_| ((rng.next_f32() * 2.0 - 1.0) * amp).to_le_bytes()).collect();
        w.add_tensor(name, GgmlType::F32, &[cols as u64, rows as u64], data).unwrap();
    };
    add(&mut w, "token_embd.weight".into(), VOCAB, D, 1.0);
    for l in 0..LAYERS {
        add(&mut w, format!("blk.{l}.attn_q.weight"), HEADS * HD, D, 0.5);
        add(&mut w, format!("blk.{l}.attn_k.weight"), KV_HEADS * HD, D, 0.5);
        add(&mut w, format!("blk.{l}.attn_v.weight"), KV_HEADS * HD, D, 0.5);
        add(&mut w, format!("blk.{l}.attn_output.weight"), D, HEADS * HD, 0.3);
        add(&mut w, format!("blk.{l}.ffn_gate.weight"), FF, D, 0.5);
        add(&mut w, format!("blk.{l}.ffn_up.weight"), FF, D, 0.5);
        add(&mut w, format!("blk.{l}.ffn_down.weight"), D, FF, 0.3);
    }
    let mut norm = |w: &mut GgufWriter, name: String| {
        let v: Vec<u8> = (0..D).flat_map(|_| (0.8 + 0.4 * rng.next_f32()).to_le_bytes()).collect();
        w.add_tensor(name, GgmlType::F32, &[D as u64], v).unwrap();
    };
    for l in 0..LAYERS {
        norm(&mut w, format!("blk.{l}.attn_norm.weight"));
        norm(&mut w, format!("blk.{l}.ffn_norm.weight"));
    }
    norm(&mut w, "output_norm.weight".into());
    w.write(path).unwrap();
    path.to_path_buf()
}

fn examples() -> Vec<Example> {
    let a: Vec<u32> = vec![3, 17, 5, 22, 9, 31, 2, 14, 8];
    let b: Vec<u32> = vec![11, 4, 39, 0, 25, 6];
    vec![
        Example { targets: (0..a.len()).map(|t| t > 2).collect(), tokens: a },
        Example { targets: vec![false, true, true, false, true, true], tokens: b },
    ]
}

/// The f64 weights, in the native engine's orientation (GGUF layout: q/k interleaved).
struct RefModel {
    embed: Vec<f64>,
    layers: Vec<RefLayer>,
    final_norm: Vec<f64>,
}

struct RefLayer {
    attn_norm: Vec<f64>,
    ffn_norm: Vec<f64>,
    w: [Vec<f64>; 7], // q k v o gate up down, row-major out × in
}

fn to_ref(w: &FullWeights) -> RefModel {
    let wide = |t: &[f32]| t.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    RefModel {
        embed: wide(&w.embed),
        layers: w
            .blocks
            .iter()
            .map(|b| RefLayer { attn_norm: wide(&b.attn_norm), ffn_norm: wide(&b.ffn_norm), w: std::array::from_fn(|i| wide(&b.proj[i])) })
            .collect(),
        final_norm: wide(&w.final_norm),
    }
}

fn rms(x: &[f64], w: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + f64::from(EPS)).sqrt();
    x.iter().zip(w).map(|(a, b)| a * r * b).collect()
}

fn lin(w: &[f64], x: &[f64]) -> Vec<f64> {
    let n_in = x.len();
    (0..w.len() / n_in).map(|o| (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum()).collect()
}

fn rope(x: &mut [f64], n_heads: usize, pos: usize) {
    for h in 0..n_heads {
        for i in 0..HD / 2 {
            let freq = f64::from(THETA).powf(-2.0 * i as f64 / HD as f64);
            let (c, s) = ((pos as f64 * freq).cos(), (pos as f64 * freq).sin());
            let (a, b) = (h * HD + 2 * i, h * HD + 2 * i + 1);
            let (x0, x1) = (x[a], x[b]);
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/// Summed NLL of the example's targets, the example laid at row `start` of the batch, with the
/// masks the native pass seeded `seed` draws (see `BlockDropout`).
fn ref_loss(m: &RefModel, ex: &Example, start: usize, dropout: &BlockDropout, seed: u64) -> f64 {
    use lamina::native::layers::attention::head_dropout;
    let n = ex.tokens.len();
    let mut x: Vec<Vec<f64>> = ex.tokens.iter().map(|&t| m.embed[t as usize * D..(t as usize + 1) * D].to_vec()).collect();
    for (l, layer) in m.layers.iter().enumerate() {
        let residual = |site: usize, row: usize, c: usize| {
            dropout.residual_mask(seed, l, site).map_or(1.0, |d| f64::from(d.scale(((start + row) * D + c) as u64)))
        };
        let h: Vec<Vec<f64>> = x.iter().map(|r| rms(r, &layer.attn_norm)).collect();
        let mut q: Vec<Vec<f64>> = h.iter().map(|r| lin(&layer.w[0], r)).collect();
        let mut k: Vec<Vec<f64>> = h.iter().map(|r| lin(&layer.w[1], r)).collect();
        let v: Vec<Vec<f64>> = h.iter().map(|r| lin(&layer.w[2], r)).collect();
        for p in 0..n {
            rope(&mut q[p], HEADS, p);
            rope(&mut k[p], KV_HEADS, p);
        }
        let mut att = vec![vec![0.0; HEADS * HD]; n];
        for hh in 0..HEADS {
            let kv = hh / (HEADS / KV_HEADS);
            let mask = dropout.attention_mask(seed, l).map(|d| head_dropout(&d, start, hh));
            for i in 0..n {
                let sc: Vec<f64> =
                    (0..=i).map(|j| (0..HD).map(|c| q[i][hh * HD + c] * k[j][kv * HD + c]).sum::<f64>() / (HD as f64).sqrt()).collect();
                let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|v| (v - mx).exp()).sum();
                let keep = |j: usize| mask.map_or(1.0, |d| f64::from(d.scale((i * n + j) as u64)));
                for c in 0..HD {
                    att[i][hh * HD + c] = (0..=i).map(|j| (sc[j] - mx).exp() / z * keep(j) * v[j][kv * HD + c]).sum();
                }
            }
        }
        for p in 0..n {
            let o = lin(&layer.w[3], &att[p]);
            x[p].iter_mut().zip(o).enumerate().for_each(|(c, (a, b))| *a += b * residual(0, p, c));
            let h2 = rms(&x[p], &layer.ffn_norm);
            let g = lin(&layer.w[4], &h2);
            let u = lin(&layer.w[5], &h2);
            let act: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let dn = lin(&layer.w[6], &act);
            x[p].iter_mut().zip(dn).enumerate().for_each(|(c, (a, b))| *a += b * residual(1, p, c));
        }
    }
    let mut nll = 0.0;
    for t in 1..n {
        if !ex.targets[t] {
            continue;
        }
        let h = rms(&x[t - 1], &m.final_norm);
        let logits: Vec<f64> = (0..VOCAB).map(|v| (0..D).map(|c| m.embed[v * D + c] * h[c]).sum()).collect();
        let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logits.iter().map(|v| (v - mx).exp()).sum();
        nll += z.ln() + mx - logits[ex.tokens[t] as usize];
    }
    nll
}

#[test]
fn residual_and_attention_dropout_have_the_gradients_of_finite_differences() {
    let dir = tmp("dropout-grad");
    let model = NativeModel::load(
        tiny_model(&dir.join("tiny.gguf")),
        &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() },
    )
    .unwrap();
    let weights = model.full_weights();
    let batch = examples();
    let starts = [0, batch[0].tokens.len()];
    let dropout = BlockDropout { residual: 0.3, attention: 0.25 };
    let seed = 17;
    let train = PassOptions { dropout_seed: Some(seed), ..PassOptions::default() };
    let mut grads = weights.zeros_like();
    let loss = model.loss_and_full_grads_with(&weights, &batch, train, dropout, &mut grads).unwrap();
    let ref_total = |m: &RefModel| batch.iter().zip(starts).map(|(e, s)| ref_loss(m, e, s, &dropout, seed)).sum::<f64>();
    let mut probe = to_ref(&weights);
    let ref_value = ref_total(&probe);
    let rel = (loss.nll_sum - ref_value).abs() / ref_value;
    let plain = model.loss_full(&weights, &batch).unwrap().nll_sum;
    println!("with dropout: loss native {:.8} vs f64 reference {ref_value:.8} (relative {rel:.2e}); without: {plain:.8}", loss.nll_sum);
    assert!(rel < 1e-5, "the forward loss with dropout differs: {rel}");
    assert!((loss.nll_sum - plain).abs() > 1e-3, "dropout changed nothing");

    // The masks are drawn again, identically, when blocks are recomputed; a pass without a
    // dropout seed (evaluation) drops nothing.
    let mut again = weights.zeros_like();
    let recomputed =
        model.loss_and_full_grads_with(&weights, &batch, PassOptions { checkpointing: true, ..train }, dropout, &mut again).unwrap();
    assert!(recomputed == loss && again == grads, "recomputing the blocks drew other masks");
    let mut unused = weights.zeros_like();
    let eval = model.loss_and_full_grads_with(&weights, &batch, PassOptions::default(), dropout, &mut unused).unwrap();
    assert_eq!(eval.nll_sum, plain);
    let bad = BlockDropout { residual: 1.0, attention: 0.0 };
    assert!(model.loss_and_full_grads_with(&weights, &batch, train, bad, &mut unused).unwrap_err().to_string().contains("`dropout`"));

    let mut cases: Vec<crate::common::GradCase<RefModel>> = vec![
        ("token_embd (tied head)".into(), grads.embed.clone(), Box::new(|m: &mut RefModel, i| &mut m.embed[i]), 1),
        ("output_norm".into(), grads.final_norm.clone(), Box::new(|m: &mut RefModel, i| &mut m.final_norm[i]), 1),
    ];
    for l in 0..LAYERS {
        let b = &grads.blocks[l];
        cases.push((
            format!("blk.{l}.attn_norm"),
            b.attn_norm.clone(),
            Box::new(move |m: &mut RefModel, i| &mut m.layers[l].attn_norm[i]),
            1,
        ));
        cases.push((format!("blk.{l}.ffn_norm"), b.ffn_norm.clone(), Box::new(move |m: &mut RefModel, i| &mut m.layers[l].ffn_norm[i]), 1));
        for t in LoraTarget::ALL {
            let slot: Box<dyn Fn(&mut RefModel, usize) -> &mut f64> = Box::new(move |m: &mut RefModel, i| &mut m.layers[l].w[t.index()][i]);
            cases.push((format!("blk.{l}.{}", t.gguf_name()), b.proj[t.index()].clone(), slot, 7));
        }
    }
    let (worst, checked) = crate::common::check_central_differences(&mut probe, &cases, ref_total);
    println!("dropout gradients: {checked} of {} parameters checked, max relative error {worst:.2e}", weights.n_params());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Weight decay is off for the norms and the (tied) embedding unless asked: one step with
/// decay leaves them as one step without decay does, and moves the projections.
#[test]
fn weight_decay_leaves_norms_and_embeddings_alone_unless_asked() {
    let dir = tmp("decay");
    let model = NativeModel::load(
        tiny_model(&dir.join("tiny.gguf")),
        &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() },
    )
    .unwrap();
    let flags = model.full_weights().norms_and_embeddings();
    let names: Vec<String> = model.full_weights().named_tensors().into_iter().map(|(n, _)| n).collect();
    let flagged: Vec<&str> = names.iter().zip(&flags).filter(|(_, &f)| f).map(|(n, _)| n.as_str()).collect();
    assert_eq!(flagged, ["token_embd", "blk.0.attn_norm", "blk.0.ffn_norm", "blk.1.attn_norm", "blk.1.ffn_norm", "output_norm"]);

    let step = |weight_decay: f32, decay_norms_and_embeddings: bool| {
        let config = TrainConfig { weight_decay, learning_rate: 1e-2, batch_size: 2, steps: 1, warmup_steps: 0, ..TrainConfig::default() };
        let mut t: Trainer<'_, FullWeights> = Trainer::new(&model, config, examples(), Vec::new()).unwrap();
        t.set_regularization(Regularization { decay_norms_and_embeddings, ..Regularization::default() }).unwrap();
        t.train_step().unwrap();
        t.params().clone()
    };
    let plain = step(0.0, false);
    let masked = step(0.5, false);
    let all = step(0.5, true);
    let tensors = |w: &FullWeights| w.named_tensors().into_iter().map(|(_, t)| t.to_vec()).collect::<Vec<_>>();
    let (plain, masked, all) = (tensors(&plain), tensors(&masked), tensors(&all));
    for (i, name) in names.iter().enumerate() {
        if flags[i] {
            assert!(masked[i] == plain[i], "{name} was decayed");
            assert!(all[i] != plain[i], "{name} was not decayed when asked");
        } else {
            assert!(masked[i] != plain[i], "{name} was not decayed");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `dump_batches` writes one line per optimizer step: its number and the token ids of its
/// `grad_accum` micro-batches of `batch_size` sequences of `seq_len` tokens.
#[test]
fn the_batch_dump_has_every_step_s_sequences() {
    let dir = tmp("dump");
    let out = dir.join("out");
    let dump = dir.join("batches.jsonl");
    let (steps, batch_size, grad_accum, seq_len) = (3, 4, 2, 32);
    let opts = PretrainOptions {
        seq_len,
        batch_size,
        grad_accum,
        warmup_steps: 1,
        eval_every: 0,
        budget: Budget { steps: Some(steps), ..Budget::default() },
        dump_batches: Some(dump.clone()),
        ..options(&out)
    };
    pretrain(&opts, |_| true).unwrap().unwrap();
    let text = std::fs::read_to_string(&dump).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), steps, "one line per step");
    let mut seen = std::collections::HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["step"], i + 1);
        let batches = line["batches"].as_array().unwrap();
        assert_eq!(batches.len(), grad_accum);
        for batch in batches {
            let sequences = batch.as_array().unwrap();
            assert_eq!(sequences.len(), batch_size);
            for s in sequences {
                let ids = s.as_array().unwrap();
                assert_eq!(ids.len(), seq_len);
                assert!(ids.iter().all(|t| t.as_u64().is_some_and(|t| t < 512)));
                assert!(seen.insert(s.to_string()), "a sequence was trained on twice within the first epoch");
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
