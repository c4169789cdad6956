//! `lamina finetune`: train a LoRA adapter on the native engine with a progress bar, then save
//! it as a GGUF LoRA file (for `--lora`, llama.cpp and anything built on it) and/or a PEFT
//! directory (to continue with PyTorch/PEFT).
//!
//! The validation loss is computed before the first step and after the last (with
//! `--val-fraction`), so the run says whether it helped on held-out records. Ctrl-C stops
//! after the step in progress; the adapter trained so far is still saved, and with
//! `--checkpoint-dir` a checkpoint is written that `--resume` continues exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::native::train::{RunEnd, Schedule, TrainConfig};
use lamina::native::train_data::DataOptions;
use lamina::native::training_run::{AdapterFormat, RunOptions, Start, TrainingRun};
use lamina::native::NativeParams;
use lamina::Error;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Training data: JSONL (or a JSON array) of {"messages": [...]}, {"prompt", "completion"},
    /// {"text"} or {"instruction", "input"?, "output"} records.
    #[arg(long)]
    data: PathBuf,
    /// Base model: a GGUF file or a safetensors checkpoint directory [default: the cached
    /// SmolLM2-135M-Instruct Q4_1, or $LAMINA_MODEL]
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// CPU threads (0 = all cores).
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
    /// Precision of the native engine's weight products: auto (bf16 where the CPU has AMX tiles,
    /// or AVX512-BF16 with a dot product measured faster than f32 FMAs; else f32), f32 or bf16.
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "bf16"])]
    precision: String,
    /// Write the adapter as a GGUF LoRA file (use it with `--lora`).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write the adapter as a PEFT directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long, value_name = "DIR")]
    peft: Option<PathBuf>,

    /// LoRA rank.
    #[arg(long, default_value_t = TrainConfig::default().rank)]
    rank: usize,
    /// LoRA alpha: the update is scaled by alpha / rank.
    #[arg(long, default_value_t = TrainConfig::default().alpha)]
    alpha: f32,
    /// Dropout on the adapter's input, in [0, 1).
    #[arg(long, default_value_t = TrainConfig::default().dropout)]
    dropout: f32,
    /// rsLoRA: scale by alpha / sqrt(rank).
    #[arg(long)]
    rslora: bool,
    /// Adapted projections, comma-separated: q, k, v, o, gate, up, down.
    #[arg(long, default_value_t = TrainConfig::default().targets.join(","))]
    targets: String,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    lr: f32,
    /// Steps of linear warmup.
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    warmup: usize,
    /// Learning-rate decay after warmup.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "linear", "constant"])]
    schedule: String,
    /// Optimizer steps of the whole run [default: 100; with --resume: the checkpoint's].
    #[arg(long)]
    steps: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = TrainConfig::default().grad_accum)]
    grad_accum: usize,
    /// Clip the gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = TrainConfig::default().max_grad_norm)]
    max_grad_norm: f32,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    weight_decay: f32,
    /// Train every weight of the model (in f32) instead of a LoRA adapter, and write the
    /// trained model to --output as a GGUF file. The LoRA options do not apply. A run whose
    /// weights, gradients and optimizer state would not fit in memory is refused up front.
    #[arg(long)]
    full: bool,
    /// Gradient checkpointing: less memory, about a third more time.
    #[arg(long)]
    checkpointing: bool,
    /// MiB of saved activations per micro-batch (0 = no limit); the layers beyond it are
    /// recomputed in the backward pass.
    #[arg(long, value_name = "MIB", default_value_t = TrainConfig::default().activation_memory_mib)]
    activation_memory: usize,
    /// Seed of the adapter's initialisation, the example order, dropout and the split.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Fraction of the records held out for the validation loss, in [0, 1).
    #[arg(long, default_value_t = DataOptions::default().val_fraction)]
    val_fraction: f32,
    /// Also compute the validation loss every N steps (0 = before and after only).
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    eval_every: usize,
    /// Longest record in tokens; a longer one is an error unless --truncate.
    #[arg(long, default_value_t = DataOptions::default().max_len)]
    max_len: usize,
    /// Cut records longer than --max-len instead of failing.
    #[arg(long)]
    truncate: bool,
    /// Pack consecutive training records into sequences of up to --max-len tokens.
    #[arg(long)]
    pack: bool,
    /// Write a checkpoint here when the run ends or is interrupted (Ctrl-C), and every
    /// --checkpoint-every steps. Each is written beside its final name and renamed; the two
    /// newest are kept.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Also write a checkpoint every N steps, so that a run killed at any moment (power cut,
    /// SIGKILL) resumes from the last one [default: only at the end; with --resume: the
    /// checkpoint's].
    #[arg(long, value_name = "N", requires = "checkpoint_dir")]
    checkpoint_every: Option<usize>,
    /// Continue the run checkpointed in --checkpoint-dir. Give the same --data, --model and
    /// data options (--val-fraction, --max-len, --pack, --truncate, --seed); the training
    /// options come from the checkpoint, except --steps, which may raise the total.
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { name, reason: reason.into() }
}

impl FinetuneArgs {
    fn config(&self) -> Result<TrainConfig, Error> {
        let targets: Vec<String> = self.targets.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        if targets.is_empty() {
            return Err(invalid("targets", format!("`{}`: name at least one of q, k, v, o, gate, up, down", self.targets)));
        }
        let config = TrainConfig {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            rslora: self.rslora,
            targets,
            learning_rate: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup,
            schedule: Schedule::parse(&self.schedule)?,
            max_grad_norm: self.max_grad_norm,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            steps: self.steps.unwrap_or(TrainConfig::default().steps),
            checkpointing: self.checkpointing,
            activation_memory_mib: self.activation_memory,
            seed: self.seed,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every.unwrap_or(0),
            ..TrainConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    fn data_options(&self) -> DataOptions {
        DataOptions { max_len: self.max_len, pack: self.pack, val_fraction: self.val_fraction, seed: self.seed, truncate: self.truncate }
    }

    /// The command that continues this run from its checkpoint.
    fn resume_command(&self, dir: &Path) -> String {
        let mut cmd = format!("lamina finetune --data {}", self.data.display());
        if let Some(m) = &self.model {
            cmd += &format!(" --model {}", m.display());
        }
        if let Some(o) = &self.output {
            cmd += &format!(" --output {}", o.display());
        }
        if let Some(p) = &self.peft {
            cmd += &format!(" --peft {}", p.display());
        }
        let d = DataOptions::default();
        if self.val_fraction != d.val_fraction {
            cmd += &format!(" --val-fraction {}", self.val_fraction);
        }
        if self.max_len != d.max_len {
            cmd += &format!(" --max-len {}", self.max_len);
        }
        if self.seed != d.seed {
            cmd += &format!(" --seed {}", self.seed);
        }
        if self.pack {
            cmd += " --pack";
        }
        if self.truncate {
            cmd += " --truncate";
        }
        if self.full {
            cmd += " --full";
        }
        cmd + &format!(" --checkpoint-dir {} --resume", dir.display())
    }
}

pub fn run(args: &FinetuneArgs) -> Result<(), Error> {
    // Everything that can be checked without reading a file fails first.
    if args.output.is_none() && args.peft.is_none() {
        return Err(invalid("output", "nothing would be saved: give --output FILE.gguf and/or --peft DIR"));
    }
    if args.full && args.peft.is_some() {
        return Err(invalid("peft", "a full fine-tune is saved as a whole model (--output FILE.gguf); PEFT directories hold adapters"));
    }
    if args.full && args.output.is_none() {
        return Err(invalid("output", "a full fine-tune needs --output FILE.gguf for the trained model"));
    }
    // A resumed run takes its training options from the checkpoint.
    let config = if args.resume { TrainConfig::default() } else { args.config()? };
    let start = match (&args.checkpoint_dir, args.resume) {
        (_, false) => Start::Fresh,
        (Some(dir), true) => Start::Resume { dir, steps: args.steps.unwrap_or(0) },
        (None, true) => return Err(invalid("resume", "--resume needs --checkpoint-dir")),
    };
    let options = RunOptions {
        config,
        data: args.data_options(),
        engine: NativeParams {
            n_threads: args.threads,
            precision: lamina::native::Precision::parse(&args.precision)?,
            ..Default::default()
        },
        full: args.full,
    };
    options.data.validate()?;
    check_writable(args)?;

    let model_path = args.model.clone().unwrap_or_else(lamina::paths::default_model_path);
    let mut run = TrainingRun::new(&model_path, &args.data, &options, start)?;
    eprintln!("native engine: {}", run.model().describe_kernels());
    if let Some(note) = run.model().precision_note() {
        eprintln!("note: {note}");
    }
    let s = run.data_stats();
    eprintln!(
        "data: {} records -> {} train ({} sequences), {} validation; {} tokens, {} targets, longest {}{}",
        s.records,
        s.train_records,
        s.train_sequences,
        s.val_records,
        s.tokens,
        s.target_tokens,
        s.longest,
        if s.truncated > 0 { format!(", {} truncated", s.truncated) } else { String::new() }
    );
    if args.resume {
        if let Some(every) = args.checkpoint_every {
            run.set_checkpoint_every(every);
        }
        if let Some(from) = run.resumed_from() {
            for (path, reason) in &from.skipped {
                eprintln!("warning: checkpoint {} not used: {reason}", path.display());
            }
            eprintln!("resuming from {}", from.path.display());
        }
    }

    let what = if run.is_full() {
        format!("full fine-tune of {:.1} M parameters", run.n_trained_params() as f64 / 1e6)
    } else {
        let cfg = run.config();
        format!("rank {} alpha {} on {}", cfg.rank, cfg.alpha, cfg.targets.join(","))
    };
    let end = drive(&mut run, args, what)?;
    let partial = partial_note(&run, end);
    if run.is_full() {
        if let Some(path) = &args.output {
            run.save_model(path)?;
            eprintln!("model{partial}: {} (GGUF, F32; try `lamina ask -m {} -p \"...\"`)", path.display(), path.display());
        }
    } else {
        if let Some(path) = &args.output {
            run.save_adapter(path, AdapterFormat::Gguf)?;
            eprintln!("adapter{partial}: {} (GGUF LoRA; try `lamina ask --lora {} -p \"...\"`)", path.display(), path.display());
        }
        if let Some(dir) = &args.peft {
            run.save_adapter(dir, AdapterFormat::Peft)?;
            eprintln!("adapter{partial}: {}/ (PEFT)", dir.display());
        }
    }
    print_checkpoint_note(args, end);
    Ok(())
}

/// Fail before any training when an output cannot be written where it was asked for: the
/// checkpoint directory is created now, and the adapter's or model's directory must exist.
fn check_writable(args: &FinetuneArgs) -> Result<(), Error> {
    if let Some(dir) = &args.checkpoint_dir {
        lamina::atomic_file::create_dir_all(dir)?;
    }
    for path in [&args.output, &args.peft].into_iter().flatten() {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} is not a directory", parent.display()));
            return Err(Error::Write { path: path.clone(), source });
        }
    }
    Ok(())
}

/// " (after N of M steps)" for a cancelled run.
fn partial_note(trainer: &TrainingRun, end: RunEnd) -> String {
    if end == RunEnd::Cancelled {
        format!(" (after {} of {} steps)", trainer.step(), trainer.config().steps)
    } else {
        String::new()
    }
}

fn print_checkpoint_note(args: &FinetuneArgs, end: RunEnd) {
    if end == RunEnd::Cancelled {
        match &args.checkpoint_dir {
            Some(dir) => eprintln!("checkpoint: {}; continue with:\n  {}", dir.display(), args.resume_command(dir)),
            None => eprintln!("no checkpoint was written (pass --checkpoint-dir DIR to be able to resume)"),
        }
    } else if let Some(dir) = &args.checkpoint_dir {
        eprintln!("checkpoint: {} (`--resume --steps N` trains on to N steps)", dir.display());
    }
}

/// Run the training with a progress bar and Ctrl-C handling, and report the losses. `what`
/// says what is trained.
fn drive(trainer: &mut TrainingRun, args: &FinetuneArgs, what: String) -> Result<RunEnd, Error> {
    let cfg = trainer.config().clone();
    eprintln!(
        "model: {} ({} threads); {what}; lr {:e} {}, {} steps of {}x{} sequences{}",
        trainer.model_path().display(),
        trainer.model().n_threads(),
        cfg.learning_rate,
        match cfg.schedule {
            Schedule::Cosine => "cosine",
            Schedule::Linear => "linear",
            Schedule::Constant => "constant",
        },
        cfg.steps,
        cfg.batch_size,
        cfg.grad_accum,
        if args.resume { format!("; resuming at step {}", trainer.step()) } else { String::new() }
    );
    // Ctrl-C cancels after the step in progress (a process has one handler; this is it).
    let cancel = trainer.cancel_handle();
    let _ = ctrlc::set_handler(move || cancel.cancel());

    let val_before = trainer.evaluate()?;
    if let Some(v) = val_before {
        eprintln!("validation loss before: {v:.4}");
    }

    let first_step = trainer.step();
    let bar = ProgressBar::new(cfg.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("finetune [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(first_step as u64);
    let start = Instant::now();
    let end = trainer.run(args.checkpoint_dir.as_deref(), |p| {
        let val = p.val_loss.map(|v| format!(" val {v:.4}")).unwrap_or_default();
        bar.set_message(format!(
            "loss {:.4}{val} lr {:.2e} {:.0} tok/s ETA {}",
            p.loss,
            p.learning_rate,
            p.tokens_per_second,
            indicatif::HumanDuration(p.eta)
        ));
        bar.set_position(p.step as u64);
        true
    });
    bar.finish_and_clear();
    let end = end?;
    let seconds = start.elapsed().as_secs_f64();

    let done = trainer.step();
    match end {
        RunEnd::Finished => eprintln!("trained {} step(s) in {seconds:.1} s", done - first_step),
        RunEnd::Cancelled => eprintln!("interrupted after step {done} of {} ({seconds:.1} s)", cfg.steps),
    }
    print_loss_curve(&trainer.losses()[first_step.min(trainer.losses().len())..], first_step);
    let val_after = trainer.val_losses().last().filter(|(step, _)| *step == done).map(|&(_, v)| v);
    let val_after = match val_after {
        Some(v) => Some(v),
        None => trainer.evaluate()?,
    };
    match (val_before, val_after) {
        (Some(b), Some(a)) => eprintln!("validation loss: {b:.4} before, {a:.4} after ({:+.4})", a - b),
        _ => eprintln!("validation loss: none (no records held out; --val-fraction sets some aside)"),
    }

    Ok(end)
}

/// The training loss at up to 10 evenly spaced steps, and the mean of the first and last
/// tenth of the run: one line each, enough to see whether it went down.
fn print_loss_curve(losses: &[f64], first_step: usize) {
    if losses.is_empty() {
        return;
    }
    let n = losses.len();
    let points = n.min(10);
    let picks: Vec<String> = (0..points)
        .map(|i| if points == 1 { n - 1 } else { i * (n - 1) / (points - 1) })
        .map(|i| format!("{}:{:.3}", first_step + i + 1, losses[i]))
        .collect();
    let tenth = n.div_ceil(10);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    eprintln!("loss curve (step:loss): {}", picks.join(" "));
    eprintln!("mean loss: first {tenth} step(s) {:.4}, last {tenth} step(s) {:.4}", mean(&losses[..tenth]), mean(&losses[n - tenth..]));
}
