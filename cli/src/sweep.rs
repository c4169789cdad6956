//! `lamina sweep`: a hyper-parameter search of `lamina pretrain` runs (a grid, or seeded random
//! trials), each trial in OUTPUT/trial-NNN/, hopeless ones stopped early; prints the results
//! sorted by validation loss and writes OUTPUT/sweep.json.
//!
//! Ctrl-C stops the trial in progress and the sweep; the finished trials' results are kept.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::native::train::Schedule;
use lamina::native::{NativeParams, Tokenizer};
use lamina::pretrain::init::{ModelSpec, PRESETS};
use lamina::pretrain::run::{Budget, ModelSource, PretrainOptions};
use lamina::pretrain::sweep::{describe, sweep, EarlyStop, NamedSpec, SweepMode, SweepOptions, SweepReport, SweepSpace, SWEEP_FILE};
use lamina::Error;

use crate::model_size::SizeArgs;

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Corpus directory (train.jsonl and validation.jsonl, as `lamina corpus` writes them).
    #[arg(long, value_name = "DIR")]
    corpus: PathBuf,
    /// Directory with the tokenizer (tokenizer.json, tokenizer_config.json).
    #[arg(long, value_name = "DIR")]
    tokenizer: PathBuf,
    /// Output directory: sweep.json and trial-NNN/ (each a `lamina pretrain` output).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,

    /// Model sizes searched: presets (1m, 5m, 20m), repeated or comma-separated; the size
    /// flags below override each. Without a preset, --layers, --width, --heads and --ffn.
    #[arg(long, value_parser = PRESETS, value_delimiter = ',')]
    preset: Vec<String>,
    #[command(flatten)]
    sizes: SizeArgs,
    /// Standard deviation of the initial weights.
    #[arg(long, value_name = "F", default_value_t = 0.02)]
    std: f32,

    /// Peak learning rates searched (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LR,...")]
    lr: Vec<f32>,
    /// Sequences per micro-batch searched.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    batch_size: Vec<usize>,
    /// Warmup steps searched.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    warmup: Vec<usize>,
    /// Weight decays searched.
    #[arg(long, value_delimiter = ',', value_name = "F,...")]
    weight_decay: Vec<f32>,
    /// Residual dropouts searched.
    #[arg(long, value_delimiter = ',', value_name = "P,...")]
    dropout: Vec<f32>,

    /// Every combination (the default).
    #[arg(long, conflicts_with = "random")]
    grid: bool,
    /// N combinations drawn at random (from --seed).
    #[arg(long, value_name = "N")]
    random: Option<usize>,
    /// Seed of the random draw and of every trial's seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Per trial: optimizer steps.
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// Per trial: training tokens.
    #[arg(long, value_name = "N")]
    tokens: Option<u64>,
    /// Per trial: seconds of training and validation.
    #[arg(long, value_name = "SECONDS")]
    time_budget: Option<f64>,

    /// Compare trials at these fractions of the budget and stop those whose validation loss
    /// is above the best finished trial's × (1 + --stop-margin).
    #[arg(long, value_delimiter = ',', value_name = "F,...", default_value = "0.25,0.5")]
    stop_at: Vec<f64>,
    #[arg(long, value_name = "F", default_value_t = EarlyStop::default().margin)]
    stop_margin: f64,
    /// Run every trial to its budget.
    #[arg(long)]
    no_early_stop: bool,
    /// Delete the model.gguf of every trial but the best.
    #[arg(long)]
    best_model_only: bool,

    /// Tokens per training sequence.
    #[arg(long, value_name = "N", default_value_t = PretrainOptions::default().seq_len)]
    seq_len: usize,
    /// Validation every N steps (the early-stopping comparisons use the latest).
    #[arg(long, value_name = "N", default_value_t = PretrainOptions::default().eval_every)]
    eval_every: usize,
    /// Validation sequences used (the first ones; 0 = all).
    #[arg(long, value_name = "N", default_value_t = PretrainOptions::default().eval_sequences)]
    eval_sequences: usize,
    /// Learning-rate decay after warmup.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "linear", "constant"])]
    schedule: String,
    /// CPU threads (0 = all cores).
    #[arg(long, short = 't', default_value_t = 0)]
    threads: usize,
}

impl SweepArgs {
    /// The model sizes searched, for a tokenizer of `vocab_size` tokens.
    fn models(&self, vocab_size: usize) -> Result<Vec<NamedSpec>, Error> {
        if self.preset.is_empty() {
            let spec = self.sizes.without_preset(vocab_size)?;
            spec.validate()?;
            return Ok(vec![NamedSpec { name: format!("{}x{}", spec.n_layers, spec.width), spec }]);
        }
        self.preset
            .iter()
            .map(|preset| {
                let mut spec = ModelSpec::preset(preset, vocab_size)?;
                self.sizes.apply(&mut spec);
                spec.validate()?;
                let name = if self.sizes.any() { format!("{preset}:{}x{}", spec.n_layers, spec.width) } else { preset.clone() };
                Ok(NamedSpec { name, spec })
            })
            .collect()
    }

    fn options(&self) -> Result<SweepOptions, Error> {
        let tokenizer = Tokenizer::from_file(self.tokenizer.join("tokenizer.json"))?;
        let models = self.models(tokenizer.vocab_size())?;
        let base = PretrainOptions {
            corpus: self.corpus.clone(),
            model: ModelSource::New { spec: models[0].spec.clone(), tokenizer: self.tokenizer.clone(), std: self.std },
            // Each trial writes into its own directory below the sweep's.
            output: self.output.clone(),
            seq_len: self.seq_len,
            schedule: Schedule::parse(&self.schedule)?,
            budget: Budget { steps: self.steps, tokens: self.tokens, seconds: self.time_budget },
            eval_every: self.eval_every,
            eval_sequences: self.eval_sequences,
            seed: self.seed,
            engine: NativeParams { n_threads: self.threads, ..NativeParams::default() },
            ..PretrainOptions::default()
        };
        let space = SweepSpace {
            learning_rate: self.lr.clone(),
            batch_size: self.batch_size.clone(),
            warmup_steps: self.warmup.clone(),
            weight_decay: self.weight_decay.clone(),
            dropout: self.dropout.clone(),
            model: models,
        };
        let mode = match self.random {
            Some(trials) => SweepMode::Random { trials, seed: self.seed },
            None => SweepMode::Grid,
        };
        let early_stop = (!self.no_early_stop).then(|| EarlyStop { at: self.stop_at.clone(), margin: self.stop_margin });
        Ok(SweepOptions { base, space, mode, early_stop, output: self.output.clone(), keep_models: !self.best_model_only })
    }
}

pub fn run(args: &SweepArgs) -> Result<(), Error> {
    let options = args.options()?;
    // Ctrl-C stops the trial in progress and the sweep (a process has one handler; this is it).
    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("sweep {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut current = usize::MAX;
    let report = sweep(&options, |s| {
        if s.trial != current {
            current = s.trial;
            bar.println(format!("trial {}/{}: {}", s.trial + 1, s.trials, describe(s.params)));
        }
        let p = s.progress;
        bar.set_prefix(format!("{}/{}", s.trial + 1, s.trials));
        if p.planned_steps > 0 {
            bar.set_length(p.planned_steps as u64);
        }
        bar.set_position(p.step as u64);
        let val = p.val_perplexity().map(|v| format!(" val ppl {v:.2}")).unwrap_or_default();
        bar.set_message(format!("loss {:.4}{val} {:.0} tok/s", p.loss, p.tokens_per_second));
        !cancelled.load(Ordering::SeqCst)
    });
    bar.finish_and_clear();
    let report = report?;
    print_table(&report);
    if report.cancelled {
        eprintln!("interrupted: the trials after the one in progress did not run");
    }
    eprintln!("{:.1} s in all", report.seconds);
    println!("{}", options.output.join(SWEEP_FILE).display());
    if let Some(path) = &report.best_model {
        eprintln!("best model: {}", path.display());
    }
    Ok(())
}

/// The trials, best first.
fn print_table(r: &SweepReport) {
    println!("{:>5}  {:<13} {:>9} {:>9} {:>6} {:>7}  hyper-parameters", "trial", "status", "val loss", "val ppl", "steps", "seconds");
    for t in r.ranked() {
        let status = serde_json::to_value(t.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let best = if Some(t.index) == r.best { "  (best)" } else { "" };
        println!(
            "{:>5}  {:<13} {:>9} {:>9} {:>6} {:>7.1}  {}{best}",
            t.index,
            status,
            t.final_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
            t.final_val_perplexity.map_or("-".into(), |p| format!("{p:.2}")),
            t.steps,
            t.seconds,
            describe(&t.params)
        );
        if let Some(m) = &t.message {
            println!("       {m}");
        }
    }
}
