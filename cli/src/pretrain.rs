//! `lamina pretrain`: train a LLaMA model from scratch (initialised from a preset or explicit
//! sizes, or an existing GGUF model with --init) on a corpus directory as `lamina corpus`
//! writes it, with a progress bar, then write it as GGUF and optionally a Hugging Face
//! directory, with log.json and loss.svg in the output directory.
//!
//! Ctrl-C stops after the step in progress; with `--checkpoint-dir` a checkpoint is written
//! that the same command with `--resume` continues exactly.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::native::train::Schedule;
use lamina::native::{NativeParams, Tokenizer};
use lamina::pretrain::run::{pretrain, Budget, ModelSource, PretrainEnd, PretrainOptions, PretrainReport};
use lamina::Error;

use crate::model_size::ModelSpecArgs;

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { name, reason: reason.into() }
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Corpus directory: train.jsonl, and validation.jsonl and test.jsonl when present (as
    /// `lamina corpus` writes them).
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Directory with the tokenizer (tokenizer.json, tokenizer_config.json), as `lamina
    /// tokenizer train` writes it. Not with --init, whose model has its tokenizer.
    #[arg(long, value_name = "DIR", required_unless_present = "init")]
    tokenizer: Option<PathBuf>,
    #[command(flatten)]
    spec: ModelSpecArgs,
    /// Start from the weights of this GGUF model instead of a random initialisation
    /// (continued pretraining); its tokenizer and sizes are used.
    #[arg(long, value_name = "GGUF", conflicts_with = "tokenizer")]
    init: Option<PathBuf>,
    /// Standard deviation of the initial embeddings and projections.
    #[arg(long, value_name = "F", default_value_t = 0.02)]
    std: f32,
    /// Output directory: init/ and init.gguf (the initial model), model.gguf, log.json, loss.svg.
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Write the trained model here instead of OUTPUT/model.gguf.
    #[arg(long, value_name = "PATH")]
    gguf: Option<PathBuf>,
    /// Also write the trained model as a Hugging Face directory (safetensors, config.json,
    /// tokenizer files).
    #[arg(long, value_name = "DIR")]
    hf: Option<PathBuf>,

    /// Train for this many seconds (training and validation; the schedule is planned from the
    /// speed of the first steps).
    #[arg(long, value_name = "SECONDS")]
    time_budget: Option<f64>,
    /// Train for this many optimizer steps.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Train on this many tokens.
    #[arg(long, value_name = "N")]
    tokens: Option<u64>,

    /// Tokens per training sequence (documents are joined with EOS and cut to this length).
    #[arg(long, value_name = "N", default_value_t = PretrainOptions::default().seq_len)]
    seq_len: usize,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = PretrainOptions::default().batch_size)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = PretrainOptions::default().grad_accum)]
    grad_accum: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = PretrainOptions::default().learning_rate)]
    lr: f32,
    #[arg(long, default_value_t = PretrainOptions::default().beta1)]
    beta1: f32,
    #[arg(long, default_value_t = PretrainOptions::default().beta2)]
    beta2: f32,
    #[arg(long, default_value_t = PretrainOptions::default().eps)]
    eps: f32,
    /// Decoupled weight decay of the projection matrices.
    #[arg(long, default_value_t = PretrainOptions::default().weight_decay)]
    weight_decay: f32,
    /// Decay the norm weights and the token embedding too.
    #[arg(long)]
    decay_norms_and_embeddings: bool,
    /// Steps of linear warmup.
    #[arg(long, default_value_t = PretrainOptions::default().warmup_steps)]
    warmup: usize,
    /// Learning-rate decay after warmup, down to the last planned step.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "linear", "constant"])]
    schedule: String,
    /// Clip the gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = PretrainOptions::default().max_grad_norm)]
    max_grad_norm: f32,
    /// Residual dropout: each block's attention and MLP outputs, in [0, 1).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    dropout: f32,
    /// Dropout on the attention probabilities, in [0, 1).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    attention_dropout: f32,
    /// Validation loss and perplexity every N steps (0 = before and after only).
    #[arg(long, value_name = "N", default_value_t = PretrainOptions::default().eval_every)]
    eval_every: usize,
    /// Validation sequences used (the first ones; 0 = all).
    #[arg(long, value_name = "N", default_value_t = PretrainOptions::default().eval_sequences)]
    eval_sequences: usize,
    /// Gradient checkpointing: less memory, about a third more time.
    #[arg(long)]
    checkpointing: bool,
    /// MiB of saved activations per micro-batch (0 = no limit).
    #[arg(long, value_name = "MIB", default_value_t = PretrainOptions::default().activation_memory_mib)]
    activation_memory: usize,
    /// Seed of the initialisation, the data order and dropout.
    #[arg(long, default_value_t = PretrainOptions::default().seed)]
    seed: u64,
    /// CPU threads (0 = all cores).
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
    /// Precision of the native engine's weight products: auto, f32 or bf16.
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "bf16"])]
    precision: String,
    /// Write a checkpoint here when the run ends or is interrupted (Ctrl-C), and every
    /// --checkpoint-every steps; the two newest are kept.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Also write a checkpoint every N steps.
    #[arg(long, value_name = "N", requires = "checkpoint_dir")]
    checkpoint_every: Option<usize>,
    /// Continue the run checkpointed in --checkpoint-dir: give the same command again. The
    /// training options come from the checkpoint; --steps or --tokens may set a new total.
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
    /// Write the token ids of every step's micro-batches here (JSON lines, one per step).
    #[arg(long, value_name = "PATH")]
    dump_batches: Option<PathBuf>,
}

impl PretrainArgs {
    fn options(&self) -> Result<PretrainOptions, Error> {
        let model = match (&self.init, &self.tokenizer) {
            (Some(_), _) if self.spec.given() => {
                return Err(invalid("init", "--init starts from a GGUF model with its own sizes: give no --preset or size flags with it"))
            }
            (Some(path), _) => ModelSource::Gguf(path.clone()),
            (None, Some(dir)) => {
                let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
                ModelSource::New { spec: self.spec.spec(tokenizer.vocab_size())?, tokenizer: dir.clone(), std: self.std }
            }
            (None, None) => return Err(invalid("tokenizer", "give --tokenizer DIR (and a --preset or sizes), or --init MODEL.gguf")),
        };
        let options = PretrainOptions {
            corpus: self.corpus.clone(),
            model,
            output: self.output.clone(),
            gguf: self.gguf.clone(),
            hf: self.hf.clone(),
            seq_len: self.seq_len,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            learning_rate: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decay_norms_and_embeddings: self.decay_norms_and_embeddings,
            warmup_steps: self.warmup,
            schedule: Schedule::parse(&self.schedule)?,
            max_grad_norm: self.max_grad_norm,
            dropout: self.dropout,
            attention_dropout: self.attention_dropout,
            budget: Budget { steps: self.steps, tokens: self.tokens, seconds: self.time_budget },
            eval_every: self.eval_every,
            eval_sequences: self.eval_sequences,
            checkpoint_dir: self.checkpoint_dir.clone(),
            checkpoint_every: self.checkpoint_every.unwrap_or(0),
            resume: self.resume,
            seed: self.seed,
            activation_memory_mib: self.activation_memory,
            checkpointing: self.checkpointing,
            engine: NativeParams {
                n_threads: self.threads,
                precision: lamina::native::Precision::parse(&self.precision)?,
                ..Default::default()
            },
            dump_batches: self.dump_batches.clone(),
        };
        options.validate()?;
        Ok(options)
    }
}

/// This command line with `--resume` (once): what continues an interrupted run.
fn resume_command() -> String {
    let quote = |a: String| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    let mut args: Vec<String> = std::env::args().map(quote).collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    args.join(" ")
}

pub fn run(args: &PretrainArgs) -> Result<(), Error> {
    let options = args.options()?;
    match &options.model {
        ModelSource::New { spec, .. } => {
            eprintln!(
                "model: {} layers, width {}, {} heads ({} KV), FFN {}, context {}, vocabulary {}, {} parameters; seed {}",
                spec.n_layers,
                spec.width,
                spec.n_heads,
                spec.n_kv_heads,
                spec.ffn_width,
                spec.context_length,
                spec.vocab_size,
                spec.n_params(),
                options.seed
            );
            let m = spec.training_memory(options.batch_size, options.seq_len);
            eprintln!(
                "training memory at {} × {} tokens: about {:.1} MiB",
                options.batch_size,
                options.seq_len,
                m.total() as f64 / 1048576.0
            );
        }
        ModelSource::Gguf(path) => eprintln!("model: {} (continued pretraining)", path.display()),
    }

    // Ctrl-C stops after the step in progress (a process has one handler; this is it).
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("pretrain [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let last_step = Cell::new(0usize);
    let result = pretrain(&options, |p| {
        let val = p.val_perplexity().map(|v| format!(" val ppl {v:.2}")).unwrap_or_default();
        if p.planned_steps > 0 {
            bar.set_length(p.planned_steps as u64);
        }
        bar.set_position(p.step as u64);
        bar.set_message(format!(
            "loss {:.4}{val} lr {:.2e} {:.0} tok/s left {}",
            p.loss,
            p.learning_rate,
            p.tokens_per_second,
            indicatif::HumanDuration(p.time_left)
        ));
        last_step.set(p.step);
        !cancelled.load(Ordering::SeqCst)
    });
    bar.finish_and_clear();
    let Some(report) = result? else {
        eprintln!("interrupted after step {}", last_step.get());
        match &options.checkpoint_dir {
            Some(dir) => eprintln!("checkpoint: {}; continue with:\n  {}", dir.display(), resume_command()),
            None => eprintln!("no checkpoint was written (pass --checkpoint-dir DIR to be able to resume)"),
        }
        eprintln!("log: {}", options.output.join(lamina::pretrain::run::LOG_FILE).display());
        return Ok(());
    };
    print_summary(&report);
    Ok(())
}

fn print_summary(r: &PretrainReport) {
    let d = &r.data;
    eprintln!(
        "data: {} train documents -> {} tokens, {} sequences; validation {} documents, {} sequences; test {} documents, {} sequences",
        d.train_documents,
        d.train_tokens,
        d.train_sequences,
        d.validation_documents,
        d.validation_sequences,
        d.test_documents,
        d.test_sequences
    );
    let steps = r.steps.last().map_or(0, |s| s.step);
    let speed = r.steps.last().map_or(0.0, |s| s.tokens_per_second);
    let why = match r.end {
        PretrainEnd::Finished => "the planned steps",
        PretrainEnd::Budget => "the budget ran out",
        PretrainEnd::Cancelled => "interrupted",
        PretrainEnd::Diverged => "diverged",
    };
    eprintln!(
        "trained {} parameters for {steps} steps ({why}), {} tokens, {:.0} tok/s, {:.1} s in all",
        r.parameters, r.tokens_seen, speed, r.wall_seconds
    );
    if let (Some(first), Some(last)) = (r.steps.first(), r.steps.last()) {
        eprintln!("train loss: {:.4} at step {}, {:.4} at step {}", first.loss, first.step, last.loss, last.step);
    }
    match r.val_loss_change() {
        Some((before, after)) => eprintln!(
            "validation loss: {before:.4} (ppl {:.2}) at step {}, {after:.4} (ppl {:.2}) at step {}",
            before.exp(),
            r.evals[0].step,
            after.exp(),
            r.evals[r.evals.len() - 1].step
        ),
        None => eprintln!("validation: none (the corpus has no validation.jsonl documents)"),
    }
    match &r.test {
        Some(t) => eprintln!(
            "test: loss {:.4}, perplexity {:.2}, next-token accuracy {:.2}% over {} tokens",
            t.loss,
            t.perplexity,
            t.accuracy * 100.0,
            t.targets
        ),
        None => eprintln!("test: none (the corpus has no test.jsonl documents)"),
    }
    for path in [&r.files.gguf, &r.files.hf, &r.files.checkpoint].into_iter().flatten().chain([&r.files.log, &r.files.plot]) {
        println!("{}", path.display());
    }
    if let Some(gguf) = &r.files.gguf {
        eprintln!("try: lamina generate -m {} -p \"...\"", gguf.display());
    }
}
