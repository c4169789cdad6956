//! Hyper-parameter search over [`pretrain`] runs: a [`SweepSpace`] of values for the learning
//! rate, batch size, warmup, weight decay, dropout and model size, searched as a full grid or
//! by seeded random sampling ([`SweepMode`]).
//!
//! Every trial trains with the same budget and its own seed (drawn from the sweep's seed and
//! the trial's index, [`trial_seed`]), one after another with the engine's threads, into
//! `DIR/trial-NNN/`, and is scored on its final validation loss. Every trial's options are
//! built and checked before the first runs, so a value pretraining rejects fails the sweep at
//! once.
//!
//! Early stopping ([`EarlyStop`]): at fixed fractions of the budget (of the planned steps, or
//! of the seconds of a time budget), a trial whose latest validation loss exceeds the best loss
//! of the finished trials at the same point by more than a margin is stopped ("stopped early").
//! The loss at a point is the latest validation at or before it, so with the same budget and
//! `eval_every` every trial is compared at the same validation step. A trial that fails (a
//! diverging loss, say) is recorded with its error and the sweep goes on.
//!
//! `DIR/sweep.json` ([`SweepReport`]) holds every trial: its hyper-parameters, seed, status,
//! validation losses, final validation loss and perplexity, tokens and seconds; and the best
//! trial (the lowest final validation loss of the finished ones) with the path of its model.
//! The other trials' `model.gguf` files are kept unless [`SweepOptions::keep_models`] is off.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::init::ModelSpec;
use super::run::{pretrain, Budget, EvalRecord, ModelSource, PretrainOptions, PretrainProgress, PretrainReport, LOG_FILE};
use crate::corpus::VALIDATION_FILE;
use crate::error::{Error, Result};
use crate::native::lora::SplitMix64;

/// The sweep's results in its output directory.
pub const SWEEP_FILE: &str = "sweep.json";

/// A model size of the search, under the name the results show (a preset's, or `LxW`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedSpec {
    pub name: String,
    pub spec: ModelSpec,
}

/// The values searched. An empty list keeps the base options' value (and, for `model`, the
/// base's model).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepSpace {
    pub learning_rate: Vec<f32>,
    pub batch_size: Vec<usize>,
    pub warmup_steps: Vec<usize>,
    pub weight_decay: Vec<f32>,
    pub dropout: Vec<f32>,
    pub model: Vec<NamedSpec>,
}

impl SweepSpace {
    /// Whether no list holds a value.
    pub fn is_empty(&self) -> bool {
        self.learning_rate.is_empty()
            && self.batch_size.is_empty()
            && self.warmup_steps.is_empty()
            && self.weight_decay.is_empty()
            && self.dropout.is_empty()
            && self.model.is_empty()
    }

    /// The number of grid points: the product of the lists' lengths (an empty list counts 1).
    pub fn grid_size(&self) -> usize {
        [
            self.learning_rate.len(),
            self.batch_size.len(),
            self.warmup_steps.len(),
            self.weight_decay.len(),
            self.dropout.len(),
            self.model.len(),
        ]
        .iter()
        .map(|&n| n.max(1))
        .product()
    }
}

/// How the space is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    /// Every combination, the model varying slowest and the learning rate fastest.
    Grid,
    /// `trials` combinations, each value drawn uniformly from its list by a generator seeded
    /// with `seed` (the same seed, the same trials).
    Random { trials: usize, seed: u64 },
}

/// Stopping trials that fall clearly behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStop {
    /// Fractions of the budget, in (0, 1), at which trials are compared.
    pub at: Vec<f64>,
    /// A trial stops when its loss exceeds the best finished trial's at the same point
    /// × (1 + margin).
    pub margin: f64,
}

impl Default for EarlyStop {
    fn default() -> Self {
        EarlyStop { at: vec![0.25, 0.5], margin: 0.05 }
    }
}

/// A sweep: the base options every trial starts from, and what varies.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Corpus, model (a spec and tokenizer, or a GGUF model when `space.model` is empty),
    /// budget per trial, sequence length, validation and engine of every trial; its seed is
    /// the sweep's, from which each trial's is drawn. Its output, GGUF, Hugging Face,
    /// checkpoint and resume settings are not used: each trial writes into its directory.
    pub base: PretrainOptions,
    pub space: SweepSpace,
    pub mode: SweepMode,
    /// None: every trial runs to its budget.
    pub early_stop: Option<EarlyStop>,
    /// The sweep's directory: sweep.json and trial-NNN/.
    pub output: PathBuf,
    /// Keep every finished trial's model.gguf (otherwise only the best one's).
    pub keep_models: bool,
}

/// The hyper-parameters of one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialParams {
    pub learning_rate: f32,
    pub batch_size: usize,
    pub warmup_steps: usize,
    pub weight_decay: f32,
    pub dropout: f32,
    /// The model size's name ("gguf" for a base GGUF model) and its spec.
    pub model: String,
    pub spec: Option<ModelSpec>,
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    Finished,
    StoppedEarly,
    Failed,
    /// The sweep was cancelled during this trial.
    Cancelled,
}

/// One trial in sweep.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub index: usize,
    pub dir: PathBuf,
    pub seed: u64,
    pub params: TrialParams,
    pub status: TrialStatus,
    /// The error of a failed trial; why a trial stopped early.
    pub message: Option<String>,
    /// Every validation of the run.
    pub evals: Vec<EvalRecord>,
    /// The validation loss at each early-stopping point reached.
    pub checkpoint_losses: Vec<Option<f64>>,
    pub steps: usize,
    pub final_val_loss: Option<f64>,
    pub final_val_perplexity: Option<f64>,
    pub tokens_seen: u64,
    pub seconds: f64,
    /// The trained model (a finished trial's, while kept).
    pub model: Option<PathBuf>,
}

/// What a sweep did: the contents of sweep.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub mode: SweepMode,
    pub budget: Budget,
    pub early_stop: Option<EarlyStop>,
    pub trials: Vec<TrialRecord>,
    /// The index of the finished trial with the lowest final validation loss.
    pub best: Option<usize>,
    pub best_model: Option<PathBuf>,
    /// The sweep was cancelled: the trials after the one in progress did not run.
    pub cancelled: bool,
    pub seconds: f64,
}

impl SweepReport {
    /// The trials, best first: finished ones by final validation loss, then the rest.
    pub fn ranked(&self) -> Vec<&TrialRecord> {
        let mut trials: Vec<&TrialRecord> = self.trials.iter().collect();
        let key = |t: &TrialRecord| match (t.status, t.final_val_loss) {
            (TrialStatus::Finished, Some(l)) if l.is_finite() => (0, l),
            (_, Some(l)) if l.is_finite() => (1, l),
            _ => (2, 0.0),
        };
        trials.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.index.cmp(&b.index))
        });
        trials
    }
}

/// What the sweep's progress callback receives after every step of a trial.
#[derive(Debug, Clone, Copy)]
pub struct SweepProgress<'a> {
    /// The trial's index (from 0) and the number of trials.
    pub trial: usize,
    pub trials: usize,
    pub params: &'a TrialParams,
    pub progress: &'a PretrainProgress,
}

/// The seed of trial `index` of a sweep seeded with `seed`.
pub fn trial_seed(seed: u64, index: usize) -> u64 {
    SplitMix64(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// The trials' hyper-parameters, in order (see [`SweepMode`]). Errors: an empty space, a
/// random search of 0 trials ([`Error::InvalidArgument`]).
pub fn trial_params(base: &PretrainOptions, space: &SweepSpace, mode: SweepMode) -> Result<Vec<TrialParams>> {
    if space.is_empty() {
        return Err(Error::invalid("space", "nothing to search: give at least one value to vary"));
    }
    let base_model = match &base.model {
        ModelSource::New { spec, .. } => ("base".to_string(), Some(spec.clone())),
        ModelSource::Gguf(_) if space.model.is_empty() => ("gguf".to_string(), None),
        ModelSource::Gguf(_) => {
            return Err(Error::invalid("model", "model sizes are searched for new models: give a tokenizer, not a GGUF model"))
        }
    };
    let or = |list: &[f32], v: f32| if list.is_empty() { vec![v] } else { list.to_vec() };
    let or_n = |list: &[usize], v: usize| if list.is_empty() { vec![v] } else { list.to_vec() };
    let lrs = or(&space.learning_rate, base.learning_rate);
    let batches = or_n(&space.batch_size, base.batch_size);
    let warmups = or_n(&space.warmup_steps, base.warmup_steps);
    let decays = or(&space.weight_decay, base.weight_decay);
    let dropouts = or(&space.dropout, base.dropout);
    let models = if space.model.is_empty() {
        vec![base_model]
    } else {
        space.model.iter().map(|m| (m.name.clone(), Some(m.spec.clone()))).collect()
    };
    let make = |m: usize, d: usize, w: usize, wu: usize, b: usize, l: usize| TrialParams {
        learning_rate: lrs[l],
        batch_size: batches[b],
        warmup_steps: warmups[wu],
        weight_decay: decays[w],
        dropout: dropouts[d],
        model: models[m].0.clone(),
        spec: models[m].1.clone(),
    };
    let dims = [models.len(), dropouts.len(), decays.len(), warmups.len(), batches.len(), lrs.len()];
    match mode {
        SweepMode::Grid => {
            let total: usize = dims.iter().product();
            Ok((0..total)
                .map(|mut i| {
                    let mut at = [0usize; 6];
                    for k in (0..6).rev() {
                        at[k] = i % dims[k];
                        i /= dims[k];
                    }
                    make(at[0], at[1], at[2], at[3], at[4], at[5])
                })
                .collect())
        }
        SweepMode::Random { trials: 0, .. } => Err(Error::invalid("trials", "a random search of 0 trials runs nothing")),
        SweepMode::Random { trials, seed } => {
            let mut rng = SplitMix64(seed);
            Ok((0..trials)
                .map(|_| {
                    let mut at = [0usize; 6];
                    for (k, &n) in dims.iter().enumerate() {
                        at[k] = (rng.next_u64() % n as u64) as usize;
                    }
                    make(at[0], at[1], at[2], at[3], at[4], at[5])
                })
                .collect())
        }
    }
}

/// The directory of trial `index`.
pub fn trial_dir(output: &Path, index: usize) -> PathBuf {
    output.join(format!("trial-{index:03}"))
}

/// The pretraining options of every trial, each checked as [`pretrain`] would before writing
/// anything (options, sequence length against the context, training memory).
fn trial_options(options: &SweepOptions, params: &[TrialParams]) -> Result<Vec<PretrainOptions>> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut o = options.base.clone();
            o.output = trial_dir(&options.output, i);
            (o.gguf, o.hf, o.checkpoint_dir, o.checkpoint_every, o.resume) = (None, None, None, 0, false);
            o.seed = trial_seed(options.base.seed, i);
            o.learning_rate = p.learning_rate;
            o.batch_size = p.batch_size;
            o.warmup_steps = p.warmup_steps;
            o.weight_decay = p.weight_decay;
            o.dropout = p.dropout;
            if let (ModelSource::New { spec, .. }, Some(s)) = (&mut o.model, &p.spec) {
                *spec = s.clone();
            }
            let trial = |e: Error| match e {
                Error::InvalidArgument { name, reason } => {
                    Error::InvalidArgument { name, reason: format!("trial {i} ({}): {reason}", describe(p)) }
                }
                e => e,
            };
            o.validate().map_err(trial)?;
            if let ModelSource::New { spec, .. } = &o.model {
                if o.seq_len > spec.context_length {
                    return Err(trial(Error::invalid(
                        "seq_len",
                        format!("{} tokens is longer than the model's context length ({})", o.seq_len, spec.context_length),
                    )));
                }
                spec.check_training_fits(o.batch_size, o.seq_len).map_err(trial)?;
            }
            Ok(o)
        })
        .collect()
}

/// A trial's hyper-parameters in one line.
pub fn describe(p: &TrialParams) -> String {
    format!(
        "model {}, lr {:e}, batch {}, warmup {}, weight decay {}, dropout {}",
        p.model, p.learning_rate, p.batch_size, p.warmup_steps, p.weight_decay, p.dropout
    )
}

/// The fraction of its budget a run has spent at `p`.
fn spent(p: &PretrainProgress, budget: &Budget) -> f64 {
    let by_steps = if p.planned_steps > 0 { p.step as f64 / p.planned_steps as f64 } else { 0.0 };
    let by_time = budget.seconds.map_or(0.0, |s| p.elapsed.as_secs_f64() / s);
    by_steps.max(by_time)
}

/// Run the sweep `options` describes (see the module docs). `progress` runs after every step
/// of every trial; returning false stops the trial in progress and the sweep (recorded as
/// cancelled; the result and sweep.json hold the trials so far).
///
/// Errors, before any trial runs: an empty space or a random search of 0 trials, early-stopping
/// fractions outside (0, 1) or a negative margin, a corpus without validation documents (the
/// trials are scored on them), any trial's options that pretraining rejects (the message
/// names the trial) ([`Error::InvalidArgument`]). A trial's own failure is recorded, not
/// returned; sweep.json that cannot be written is an error.
pub fn sweep(options: &SweepOptions, mut progress: impl FnMut(&SweepProgress<'_>) -> bool) -> Result<SweepReport> {
    let wall = Instant::now();
    if options.output.as_os_str().is_empty() {
        return Err(Error::invalid("output", "no output directory given"));
    }
    if let Some(stop) = &options.early_stop {
        if let Some(f) = stop.at.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
            return Err(Error::invalid("early_stop", format!("{f} is not a fraction of the budget in (0, 1)")));
        }
        if !(stop.margin.is_finite() && stop.margin >= 0.0) {
            return Err(Error::invalid("early_stop", format!("a margin of {} is not a non-negative number", stop.margin)));
        }
    }
    let params = trial_params(&options.base, &options.space, options.mode)?;
    let trials = trial_options(options, &params)?;
    let validation = options.base.corpus.join(VALIDATION_FILE);
    let has_validation = std::fs::read_to_string(&validation).is_ok_and(|t| !t.trim().is_empty());
    if !has_validation {
        return Err(Error::invalid(
            "corpus",
            format!("trials are scored on their validation loss, and {} is missing or empty", validation.display()),
        ));
    }
    crate::atomic_file::create_dir_all(&options.output)?;

    let at: Vec<f64> = options.early_stop.as_ref().map(|s| s.at.clone()).unwrap_or_default();
    let margin = options.early_stop.as_ref().map_or(0.0, |s| s.margin);
    let mut report = SweepReport {
        mode: options.mode,
        budget: options.base.budget,
        early_stop: options.early_stop.clone(),
        trials: Vec::new(),
        best: None,
        best_model: None,
        cancelled: false,
        seconds: 0.0,
    };
    let n = trials.len();
    for (i, (o, p)) in trials.iter().zip(&params).enumerate() {
        let started = Instant::now();
        // The best finished trial's loss at each point.
        let best_at: Vec<Option<f64>> = (0..at.len())
            .map(|k| {
                report
                    .trials
                    .iter()
                    .filter(|t| t.status == TrialStatus::Finished)
                    .filter_map(|t| t.checkpoint_losses.get(k).copied().flatten())
                    .filter(|l| l.is_finite())
                    .min_by(f64::total_cmp)
            })
            .collect();
        let mut losses: Vec<Option<f64>> = Vec::new();
        let mut stopped: Option<String> = None;
        let mut cancelled = false;
        let mut last_step = 0;
        // A log left by an earlier sweep into the same directory is not this trial's.
        let _ = std::fs::remove_file(o.output.join(LOG_FILE));
        let result = pretrain(o, |pp| {
            last_step = pp.step;
            if !progress(&SweepProgress { trial: i, trials: n, params: p, progress: pp }) {
                cancelled = true;
                return false;
            }
            let fraction = spent(pp, &o.budget);
            while losses.len() < at.len() && fraction >= at[losses.len()] {
                let k = losses.len();
                losses.push(pp.val_loss);
                if let (Some(loss), Some(best)) = (pp.val_loss, best_at[k]) {
                    if loss.is_nan() || loss > best * (1.0 + margin) {
                        stopped = Some(format!(
                            "at {:.0}% of the budget (step {}) the validation loss {loss:.4} was above the best trial's {best:.4} × {:.2}",
                            at[k] * 100.0,
                            pp.step,
                            1.0 + margin
                        ));
                        return false;
                    }
                }
            }
            true
        });
        let (status, message, log) = match result {
            Ok(Some(r)) => (TrialStatus::Finished, None, Some(r)),
            Ok(None) => {
                let status = if cancelled { TrialStatus::Cancelled } else { TrialStatus::StoppedEarly };
                (status, stopped.take(), read_log(&o.output))
            }
            Err(e) => (TrialStatus::Failed, Some(e.to_string()), read_log(&o.output)),
        };
        let evals = log.as_ref().map(|l| l.evals.clone()).unwrap_or_default();
        let last = evals.last();
        let model = log.as_ref().filter(|_| status == TrialStatus::Finished).and_then(|l| l.files.gguf.clone());
        report.trials.push(TrialRecord {
            index: i,
            dir: o.output.clone(),
            seed: o.seed,
            params: p.clone(),
            status,
            message,
            checkpoint_losses: losses,
            steps: log.as_ref().and_then(|l| l.steps.last()).map_or(last_step, |s| s.step),
            final_val_loss: last.map(|e| e.loss),
            final_val_perplexity: last.map(|e| e.perplexity),
            tokens_seen: log.as_ref().map_or(0, |l| l.tokens_seen),
            seconds: started.elapsed().as_secs_f64(),
            model,
            evals,
        });
        if cancelled {
            report.cancelled = true;
            break;
        }
    }

    report.best = report
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Finished && t.final_val_loss.is_some_and(f64::is_finite))
        .min_by(|a, b| a.final_val_loss.unwrap_or(f64::INFINITY).total_cmp(&b.final_val_loss.unwrap_or(f64::INFINITY)))
        .map(|t| t.index);
    report.best_model = report.best.and_then(|b| report.trials[b].model.clone());
    if !options.keep_models {
        for t in report.trials.iter_mut().filter(|t| Some(t.index) != report.best) {
            if let Some(path) = t.model.take() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    report.seconds = wall.elapsed().as_secs_f64();
    let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(format!("the sweep's results: {e}")))? + "\n";
    crate::atomic_file::write_bytes(&options.output.join(SWEEP_FILE), text.as_bytes())?;
    Ok(report)
}

/// The log a stopped or failed trial left, if any.
fn read_log(dir: &Path) -> Option<PretrainReport> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(LOG_FILE)).ok()?).ok()
}
