//! Pretraining: a model initialised by [`super::init`] (or an existing GGUF model) trained
//! from its first weight on a corpus directory as `lamina corpus` writes it, by the native
//! engine's full-parameter trainer, then written as GGUF and, optionally, as a Hugging Face
//! directory.
//!
//! # Data
//!
//! `train.jsonl` is the training set; `validation.jsonl`, when present and not empty, gives
//! the validation loss; `test.jsonl` the final test perplexity and next-token accuracy. Each
//! set's documents are tokenized without special-token parsing, each followed by the
//! tokenizer's EOS token, concatenated in file order into one stream, and cut into sequences
//! of [`PretrainOptions::seq_len`] tokens ([`pack_documents`]). Every token but a sequence's
//! first is a target, across document boundaries too: after EOS the model learns how a
//! document begins. A training set's incomplete last sequence is dropped (every step then
//! sees the same number of tokens); the evaluation sets keep theirs. The trainer shuffles
//! the training sequences per epoch.
//!
//! # The run
//!
//! Next-token cross-entropy with AdamW, linear warmup then the schedule (cosine by default)
//! down to the planned last step, gradient clipping and accumulation, residual and attention
//! dropout (off by default), and weight decay on the projections only unless
//! [`PretrainOptions::decay_norms_and_embeddings`]. A run has at least one budget
//! ([`Budget`]): steps, tokens or seconds. The schedule is planned over the steps the step
//! and token budgets allow (the smaller); with a time budget, it is planned from the speed of
//! the run so far, twice: after [`CALIBRATION_STEPS`] steps, and again once a tenth of the
//! budget is spent. The seconds per step (plus the validations to come, estimated at a third of
//! a training step per validation token) give the steps that fit in the time left, and the
//! schedule is set to end there. Until the first plan the rate follows the warmup, or the
//! peak; the second moves the end of the decay a little (during the warmup, not at all). The time budget counts training and validation, not
//! the setup before the first step nor the export and test after the last; a run stops at
//! its budget even where the plan was optimistic.
//!
//! Validation loss and perplexity are computed before the first step (a fresh run), every
//! [`PretrainOptions::eval_every`] steps and at the end, on at most
//! [`PretrainOptions::eval_sequences`] validation sequences.
//!
//! Divergence: a step whose loss or gradient norm is not finite, whose gradient vanished (a
//! norm of exactly 0: the network no longer depends on its weights, as when overflowing
//! activations zero a norm), or whose loss exceeds twice the larger of ln(vocabulary) (a
//! uniform guess) and the run's first loss, stops the run with an error. The weights that gave that loss are the previous step's, so that step's
//! checkpoint is removed; the newest checkpoint left (a fresh run with a checkpoint
//! directory writes one of its initial weights) is named in the error. The log is written.
//!
//! Checkpoints and resumption are the trainer's ([`Trainer::save_checkpoint`],
//! [`Trainer::resume`]): `checkpoint_every` steps, on cancellation and at the end. A resumed
//! run takes its training options from the checkpoint (step and token budgets may set a new
//! total; a time budget limits the resumed run's own time), its model from the output
//! directory's `init.gguf` (or [`ModelSource::Gguf`]), and must be given the same corpus and
//! sequence length. It continues the log of the output directory.
//!
//! # Outputs
//!
//! In the output directory: `init/` and `init.gguf`, the initial model (a fresh run of
//! [`ModelSource::New`]); `model.gguf`, the trained model, unless [`PretrainOptions::gguf`]
//! puts it elsewhere; `log.json`, the [`PretrainReport`] (the options, every step's loss,
//! learning rate, gradient norm, tokens seen and speed, every validation, the test result,
//! the parameter count, the tokens seen, the wall time); `loss.svg`, the training and
//! validation loss curves. With [`PretrainOptions::hf`], the trained model is converted to a
//! Hugging Face directory as well (safetensors, config.json, tokenizer.json,
//! tokenizer_config.json). With [`PretrainOptions::dump_batches`], the token ids of every
//! step's micro-batches go to a JSON-lines file (to train another implementation on the same
//! data order).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::init::{init_model, InitOptions, ModelSpec};
use super::tokenizer_train::TOKENIZER_FILE;
use crate::corpus::{TEST_FILE, TRAIN_FILE, VALIDATION_FILE};
use crate::error::{Error, Result};
use crate::native::checkpoint;
use crate::native::convert::{gguf_to_safetensors, Dtype};
use crate::native::full::{export_full_gguf, FullWeights};
use crate::native::model::{NativeModel, NativeParams};
use crate::native::pass::Example;
use crate::native::tokenizer::Tokenizer;
use crate::native::train::{ModelRef, Regularization, Schedule, TrainConfig, Trainer};
use crate::weights::gguf::Gguf;
use crate::weights::llama_config::LlamaConfig;

/// Steps timed before a time budget's schedule is planned.
pub const CALIBRATION_STEPS: usize = 4;

/// The total a time-budgeted run is planned over until its speed is known: far enough that
/// the schedule stays at its peak.
const UNPLANNED_STEPS: usize = 1 << 40;

/// The initial model's files in the output directory.
pub const INIT_DIR: &str = "init";
pub const INIT_GGUF: &str = "init.gguf";
/// The trained model's default file, the log and the plot in the output directory.
pub const MODEL_GGUF: &str = "model.gguf";
pub const LOG_FILE: &str = "log.json";
pub const PLOT_FILE: &str = "loss.svg";

/// Where the trained model starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// A new model of `spec` with the tokenizer in the directory `tokenizer` (tokenizer.json,
    /// tokenizer_config.json), drawn from the run's seed with standard deviation `std` by
    /// [`init_model`].
    New { spec: ModelSpec, tokenizer: PathBuf, std: f32 },
    /// The weights and tokenizer of an existing GGUF model (continued pretraining).
    Gguf(PathBuf),
}

/// How long a run trains; at least one is set, and none is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Optimizer steps.
    pub steps: Option<usize>,
    /// Training tokens (positions of the sequences trained on, targets or not).
    pub tokens: Option<u64>,
    /// Seconds of training and validation.
    pub seconds: Option<f64>,
}

/// Everything that defines a pretraining run. [`Default`] has no corpus, model or budget:
/// set those.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainOptions {
    /// The corpus directory: train.jsonl, optionally validation.jsonl and test.jsonl.
    pub corpus: PathBuf,
    pub model: ModelSource,
    /// The output directory (created).
    pub output: PathBuf,
    /// Where the trained GGUF goes (default: `model.gguf` in the output directory).
    pub gguf: Option<PathBuf>,
    /// Also convert the trained model to a Hugging Face directory here.
    pub hf: Option<PathBuf>,
    /// Tokens per training sequence; at most the model's context length.
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate (AdamW).
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay of the projections (and the untied LM head).
    pub weight_decay: f32,
    /// Decay the norm weights and the embedding too.
    pub decay_norms_and_embeddings: bool,
    pub warmup_steps: usize,
    /// The decay after warmup.
    pub schedule: Schedule,
    /// Clip the gradient norm to this (0 = no clipping).
    pub max_grad_norm: f32,
    /// Residual dropout: each block's attention and MLP outputs, in [0, 1).
    pub dropout: f32,
    /// Dropout on the attention probabilities, in [0, 1).
    pub attention_dropout: f32,
    pub budget: Budget,
    /// Validate every this many steps (0: before and after only).
    pub eval_every: usize,
    /// Validation sequences used (the first ones; 0 = all).
    pub eval_sequences: usize,
    /// Write checkpoints here: every `checkpoint_every` steps, on cancellation, at the end.
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_every: usize,
    /// Continue the run checkpointed in `checkpoint_dir`.
    pub resume: bool,
    /// Seed of the initialisation, the data order and the dropout masks.
    pub seed: u64,
    /// MiB of saved activations a micro-batch may keep (0 = no limit); see [`TrainConfig`].
    pub activation_memory_mib: usize,
    /// Recompute every block in the backward pass.
    pub checkpointing: bool,
    /// Threads and precision of the native engine.
    #[serde(skip)]
    pub engine: NativeParams,
    /// Write the token ids each optimizer step trains on here: JSON lines of
    /// `{"step": N, "batches": [[[ids of a sequence], ...], ...]}`, one per step, the
    /// micro-batches in order (for comparisons with other trainers).
    #[serde(default)]
    pub dump_batches: Option<PathBuf>,
}

impl Default for PretrainOptions {
    fn default() -> Self {
        let train = TrainConfig::default();
        PretrainOptions {
            corpus: PathBuf::new(),
            model: ModelSource::Gguf(PathBuf::new()),
            output: PathBuf::new(),
            gguf: None,
            hf: None,
            seq_len: 256,
            batch_size: 8,
            grad_accum: 1,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_norms_and_embeddings: false,
            warmup_steps: 100,
            schedule: Schedule::Cosine,
            max_grad_norm: 1.0,
            dropout: 0.0,
            attention_dropout: 0.0,
            budget: Budget::default(),
            eval_every: 100,
            eval_sequences: 128,
            checkpoint_dir: None,
            checkpoint_every: 0,
            resume: false,
            seed: 0,
            activation_memory_mib: train.activation_memory_mib,
            checkpointing: false,
            engine: NativeParams::default(),
            dump_batches: None,
        }
    }
}

impl PretrainOptions {
    /// Check everything that needs no file; the error names the field
    /// ([`Error::InvalidArgument`]): no corpus or output directory, no budget or a zero one, a
    /// sequence shorter than 2 tokens, a dropout outside [0, 1), a resume without a
    /// checkpoint directory, an invalid model spec or optimizer setting.
    pub fn validate(&self) -> Result<()> {
        if self.corpus.as_os_str().is_empty() {
            return Err(Error::invalid("corpus", "no corpus directory given"));
        }
        if self.output.as_os_str().is_empty() {
            return Err(Error::invalid("output", "no output directory given"));
        }
        let Budget { steps, tokens, seconds } = self.budget;
        if steps.is_none() && tokens.is_none() && seconds.is_none() {
            return Err(Error::invalid("budget", "no budget: give a number of steps, of tokens or of seconds"));
        }
        if steps == Some(0) {
            return Err(Error::invalid("steps", "a budget of 0 steps trains nothing"));
        }
        if tokens == Some(0) {
            return Err(Error::invalid("tokens", "a budget of 0 tokens trains nothing"));
        }
        if let Some(s) = seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::invalid("time_budget", format!("a budget of {s} seconds trains nothing: give a positive number")));
            }
        }
        if self.seq_len < 2 {
            return Err(Error::invalid("seq_len", format!("must be at least 2 tokens, got {}", self.seq_len)));
        }
        if self.resume && self.checkpoint_dir.is_none() {
            return Err(Error::invalid("resume", "resuming needs the checkpoint directory of the run"));
        }
        self.regularization().block_dropout().validate()?;
        match &self.model {
            ModelSource::New { spec, tokenizer, std } => {
                spec.validate()?;
                if tokenizer.as_os_str().is_empty() {
                    return Err(Error::invalid("tokenizer", "a new model needs the directory of its tokenizer"));
                }
                if !(std.is_finite() && *std > 0.0) {
                    return Err(Error::invalid("std", format!("{std} is not a positive number")));
                }
            }
            ModelSource::Gguf(path) if path.as_os_str().is_empty() => {
                return Err(Error::invalid("model", "give a model spec or a GGUF model to start from"));
            }
            ModelSource::Gguf(_) => {}
        }
        self.train_config(1).validate()
    }

    /// The trainer's configuration for a run planned over `steps` steps.
    pub fn train_config(&self, steps: usize) -> TrainConfig {
        TrainConfig {
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            schedule: self.schedule,
            max_grad_norm: self.max_grad_norm,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            steps,
            checkpointing: self.checkpointing,
            activation_memory_mib: self.activation_memory_mib,
            seed: self.seed,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every,
            ..TrainConfig::default()
        }
    }

    /// The dropout and weight-decay scope of the run.
    pub fn regularization(&self) -> Regularization {
        Regularization {
            residual_dropout: self.dropout,
            attention_dropout: self.attention_dropout,
            decay_norms_and_embeddings: self.decay_norms_and_embeddings,
        }
    }

    /// The trained model's GGUF file.
    pub fn gguf_path(&self) -> PathBuf {
        self.gguf.clone().unwrap_or_else(|| self.output.join(MODEL_GGUF))
    }

    /// [`validate`](Self::validate), then what the files allow checking before any work, so
    /// that a host (the C ABI's trainer handle) can refuse bad options when it is given them
    /// rather than minutes into a run: the corpus directory holds train.jsonl
    /// ([`Error::Data`]); the tokenizer loads ([`Error::Io`], [`Error::Data`]; a GGUF model to
    /// continue from must exist and be GGUF: [`Error::ModelNotFound`], [`Error::NotGguf`]) and
    /// has an EOS token; a new model's vocabulary covers the tokenizer's, the sequence fits its
    /// context and its training fits in memory ([`Error::InvalidArgument`]). Reads the
    /// tokenizer, not the corpus; writes nothing. [`pretrain`] makes the same checks.
    pub fn preflight(&self) -> Result<()> {
        self.validate()?;
        corpus_train_file(&self.corpus)?;
        let tokenizer = self.load_tokenizer()?;
        eos_of(&tokenizer)?;
        if let ModelSource::New { spec, .. } = &self.model {
            if tokenizer.vocab_size() > spec.vocab_size {
                return Err(Error::invalid(
                    "vocab_size",
                    format!("the tokenizer has {} tokens, more than the spec's vocab_size {}", tokenizer.vocab_size(), spec.vocab_size),
                ));
            }
            self.check_context(spec.context_length)?;
            if !self.resume {
                spec.check_training_fits(self.batch_size, self.seq_len)?;
            }
        }
        Ok(())
    }

    /// The tokenizer of the run: a new model's directory, or the GGUF model's (a missing one
    /// is [`Error::ModelNotFound`], as wherever lamina loads a model).
    fn load_tokenizer(&self) -> Result<Tokenizer> {
        match &self.model {
            ModelSource::New { tokenizer, .. } => Tokenizer::from_file(tokenizer.join(TOKENIZER_FILE)),
            ModelSource::Gguf(path) if !path.exists() => Err(Error::ModelNotFound { path: path.clone() }),
            ModelSource::Gguf(path) => Tokenizer::from_gguf(&Gguf::open(path)?),
        }
    }

    /// The sequence length fits a model of `context_length` positions.
    fn check_context(&self, context_length: usize) -> Result<()> {
        if self.seq_len > context_length {
            return Err(Error::invalid(
                "seq_len",
                format!("{} tokens is longer than the model's context length ({context_length})", self.seq_len),
            ));
        }
        Ok(())
    }
}

/// What the progress callback receives after every optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainProgress {
    /// Steps done.
    pub step: usize,
    /// The step the schedule ends at; 0 until a time budget's plan is made (after
    /// [`CALIBRATION_STEPS`] steps).
    pub planned_steps: usize,
    /// Mean target-token loss of this step (nats).
    pub loss: f64,
    pub learning_rate: f32,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    pub tokens_seen: u64,
    /// Tokens per second over this run so far (validations included).
    pub tokens_per_second: f64,
    /// Time since this run's first step.
    pub elapsed: Duration,
    /// Estimated time to the end: the planned steps at the speed so far, or the time budget's
    /// rest where that is shorter.
    pub time_left: Duration,
    /// The latest validation loss, and whether it was computed at this step.
    pub val_loss: Option<f64>,
    pub evaluated: bool,
}

impl PretrainProgress {
    /// exp(validation loss).
    pub fn val_perplexity(&self) -> Option<f64> {
        self.val_loss.map(f64::exp)
    }
}

/// One optimizer step in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub loss: f64,
    pub learning_rate: f32,
    pub grad_norm: f64,
    pub tokens_seen: u64,
    pub tokens_per_second: f64,
    /// Seconds since the run (this invocation) started training.
    pub seconds: f64,
}

/// One validation in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub loss: f64,
    pub perplexity: f64,
}

/// The trained model on the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Mean next-token loss (nats) and its exponential.
    pub loss: f64,
    pub perplexity: f64,
    /// Fraction of the targets that are the model's most likely next token.
    pub accuracy: f64,
    pub sequences: usize,
    pub targets: usize,
}

/// Documents, tokens and sequences of each set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStats {
    pub train_documents: usize,
    pub train_tokens: usize,
    pub train_sequences: usize,
    pub validation_documents: usize,
    pub validation_tokens: usize,
    pub validation_sequences: usize,
    pub test_documents: usize,
    pub test_tokens: usize,
    pub test_sequences: usize,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PretrainEnd {
    /// It reached its planned last step.
    Finished,
    /// Its time or token budget ran out first.
    Budget,
    /// The progress callback asked it to stop.
    Cancelled,
    /// The loss diverged (see the module docs).
    Diverged,
}

/// The files a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PretrainFiles {
    /// The initial model's GGUF (and its Hugging Face directory beside it, `init/`).
    pub init: Option<PathBuf>,
    pub gguf: Option<PathBuf>,
    pub hf: Option<PathBuf>,
    pub log: PathBuf,
    pub plot: PathBuf,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
}

/// What a run did: the contents of `log.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    pub options: PretrainOptions,
    /// The model's shape.
    pub model: ModelSpec,
    pub parameters: u64,
    pub data: DataStats,
    /// The step the schedule ended at.
    pub planned_steps: usize,
    /// The checkpoint a resumed run continued from.
    pub resumed_from: Option<PathBuf>,
    pub steps: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
    pub test: Option<TestResult>,
    pub tokens_seen: u64,
    /// Seconds from the start of the run to its end, over every invocation of a resumed run.
    pub wall_seconds: f64,
    pub end: PretrainEnd,
    pub files: PretrainFiles,
}

impl PretrainReport {
    /// The validation loss before the first step and after the last, when both were computed.
    pub fn val_loss_change(&self) -> Option<(f64, f64)> {
        Some((self.evals.first()?.loss, self.evals.last()?.loss))
    }

    /// The report a run wrote as `log.json` ([`LOG_FILE`]) into its output directory: the way
    /// to the report of a cancelled run, for which [`pretrain`] returns `Ok(None)` after
    /// writing the log. Errors: [`Error::Io`]; [`Error::Data`] when it does not parse.
    pub fn read(path: &Path) -> Result<PretrainReport> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            line: Some(e.line()),
            reason: format!("not a pretraining log: {e}"),
        })
    }
}

/// The three sets of a corpus directory as packed sequences.
struct PackedCorpus {
    train: Vec<Example>,
    validation: Vec<Example>,
    test: Vec<Example>,
    stats: DataStats,
}

/// Cut the documents `docs`, each followed by `eos`, into sequences of `seq_len` tokens (see
/// the module docs): every token but each sequence's first is a target. With `keep_tail`, a
/// last sequence shorter than `seq_len` (but of at least 2 tokens) is kept. Returns the
/// sequences and the number of tokens of the stream.
pub fn pack_documents(docs: &[Vec<u32>], eos: u32, seq_len: usize, keep_tail: bool) -> (Vec<Example>, usize) {
    let stream: Vec<u32> = docs.iter().flat_map(|d| d.iter().copied().chain(std::iter::once(eos))).collect();
    let sequences = stream
        .chunks(seq_len.max(2))
        .filter(|c| if keep_tail { c.len() >= 2 } else { c.len() == seq_len })
        .map(|c| {
            let mut targets = vec![true; c.len()];
            targets[0] = false;
            Example { tokens: c.to_vec(), targets }
        })
        .collect();
    (sequences, stream.len())
}

/// The documents of one JSONL file of `{"text": ...}` records; a missing or blank file has
/// none.
fn read_documents(path: &Path) -> Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let docs = crate::data_file::parse_jsonl(path, &text, |object, _| match object.get("text") {
        Some(serde_json::Value::String(t)) => Ok(t.clone()),
        Some(other) => Err(format!("`text` is {}, not a string", crate::data_file::type_name(other))),
        None => Err("a record needs a `text` string".into()),
    })?;
    Ok(docs.into_iter().filter(|d| !d.trim().is_empty()).collect())
}

/// Read, tokenize and pack the corpus directory `dir`. Errors ([`Error::Data`] naming
/// train.jsonl): no training document, or fewer training tokens than one sequence.
fn pack_corpus(dir: &Path, tokenizer: &Tokenizer, seq_len: usize) -> Result<PackedCorpus> {
    let train_path = corpus_train_file(dir)?;
    let eos = eos_of(tokenizer)?;
    let encode = |docs: &[String]| -> Result<Vec<Vec<u32>>> { docs.par_iter().map(|d| tokenizer.encode(d, false)).collect() };
    let mut stats = DataStats::default();
    let train_docs = read_documents(&train_path)?;
    if train_docs.is_empty() {
        return Err(Error::Data { path: train_path, line: None, reason: "the training corpus is empty: it holds no document".into() });
    }
    let (train, train_tokens) = pack_documents(&encode(&train_docs)?, eos, seq_len, false);
    if train.is_empty() {
        return Err(Error::Data {
            path: train_path,
            line: None,
            reason: format!(
                "the training corpus is too small: {train_tokens} tokens in {} documents, fewer than one sequence of {seq_len} tokens (add text or lower the sequence length)",
                train_docs.len()
            ),
        });
    }
    (stats.train_documents, stats.train_tokens, stats.train_sequences) = (train_docs.len(), train_tokens, train.len());
    let eval_set = |name: &str| -> Result<(Vec<Example>, usize, usize)> {
        let docs = read_documents(&dir.join(name))?;
        let (sequences, tokens) = pack_documents(&encode(&docs)?, eos, seq_len, true);
        Ok((sequences, docs.len(), tokens))
    };
    let (validation, docs, tokens) = eval_set(VALIDATION_FILE)?;
    (stats.validation_documents, stats.validation_tokens, stats.validation_sequences) = (docs, tokens, validation.len());
    let (test, docs, tokens) = eval_set(TEST_FILE)?;
    (stats.test_documents, stats.test_tokens, stats.test_sequences) = (docs, tokens, test.len());
    Ok(PackedCorpus { train, validation, test, stats })
}

/// The train.jsonl of the corpus directory `dir`. Errors ([`Error::Data`]): `dir` is not a
/// directory, or holds no train.jsonl.
fn corpus_train_file(dir: &Path) -> Result<PathBuf> {
    let train_path = dir.join(TRAIN_FILE);
    if !dir.is_dir() {
        return Err(Error::Data { path: dir.to_path_buf(), line: None, reason: "not a corpus directory (see `lamina corpus`)".into() });
    }
    if !train_path.is_file() {
        return Err(Error::Data {
            path: train_path,
            line: None,
            reason: "file not found: a corpus directory holds train.jsonl (as `lamina corpus` writes it)".into(),
        });
    }
    Ok(train_path)
}

/// The EOS token that separates the documents of a stream.
fn eos_of(tokenizer: &Tokenizer) -> Result<u32> {
    tokenizer
        .eos_token()
        .ok_or_else(|| Error::invalid("tokenizer", "the tokenizer has no EOS token, which separates the documents of the training stream"))
}

/// The spec of a loaded model's configuration.
fn spec_of(c: &LlamaConfig) -> ModelSpec {
    ModelSpec {
        n_layers: c.n_layers,
        width: c.hidden_size,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        ffn_width: c.intermediate_size,
        context_length: c.max_position_embeddings,
        rope_base: c.rope_theta,
        rms_norm_eps: c.rms_norm_eps,
        tied_embeddings: c.tie_word_embeddings,
        vocab_size: c.vocab_size,
    }
}

/// The steps the step and token budgets allow (None: only a time budget).
fn budget_steps(budget: &Budget, tokens_per_step: u64) -> Option<usize> {
    let by_tokens = budget.tokens.map(|t| t.div_ceil(tokens_per_step.max(1)) as usize);
    match (budget.steps, by_tokens) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Train a model as `options` say (see the module docs); `progress` runs after every step,
/// and returning false stops the run after it: a checkpoint is written (with a checkpoint
/// directory) and the log, and the result is `Ok(None)`.
///
/// Errors, before anything is written: invalid options ([`PretrainOptions::validate`]); a
/// corpus directory without train.jsonl, an empty training set or one with fewer tokens than
/// one sequence ([`Error::Data`]); a tokenizer without EOS, a sequence longer than the
/// model's context, a model whose training would not fit in memory (the estimate of
/// [`ModelSpec::check_training_fits`] is in the message) ([`Error::InvalidArgument`]). During
/// the run: a diverging loss ([`Error::InvalidArgument`] `learning_rate`, naming the step and
/// the last good checkpoint); a checkpoint or output that cannot be written.
pub fn pretrain(options: &PretrainOptions, mut progress: impl FnMut(&PretrainProgress) -> bool) -> Result<Option<PretrainReport>> {
    let wall = Instant::now();
    options.validate()?;
    let tokenizer = options.load_tokenizer()?;
    let corpus = pack_corpus(&options.corpus, &tokenizer, options.seq_len)?;
    if let ModelSource::New { spec, .. } = &options.model {
        options.check_context(spec.context_length)?;
        if !options.resume {
            spec.check_training_fits(options.batch_size, options.seq_len)?;
        }
    }

    crate::atomic_file::create_dir_all(&options.output)?;
    if let Some(dir) = &options.checkpoint_dir {
        crate::atomic_file::create_dir_all(dir)?;
    }
    let mut files = PretrainFiles { log: options.output.join(LOG_FILE), plot: options.output.join(PLOT_FILE), ..PretrainFiles::default() };
    let base = match &options.model {
        ModelSource::New { spec, tokenizer, std } => {
            let gguf = options.output.join(INIT_GGUF);
            if !options.resume {
                let init = InitOptions { seed: options.seed, std: *std, embeddings_from: None };
                let written = init_model(spec, tokenizer, &options.output.join(INIT_DIR), Some(&gguf), &init, |_, _| true)?;
                written.ok_or_else(|| Error::Internal("the initialisation stopped without being cancelled".into()))?;
            } else if !gguf.is_file() {
                return Err(Error::Data {
                    path: gguf,
                    line: None,
                    reason: "not found: a resumed run trains the initial model its first run wrote into the output directory".into(),
                });
            }
            files.init = Some(gguf.clone());
            gguf
        }
        ModelSource::Gguf(path) => path.clone(),
    };
    // Training multiplies its own f32 copies of the weights, never the mapped ones' panels.
    let model = Arc::new(NativeModel::load(&base, &NativeParams { pack_weights: false, ..options.engine.clone() })?);
    let config = model.config().clone();
    if options.seq_len > config.max_position_embeddings {
        return Err(Error::invalid(
            "seq_len",
            format!("{} tokens is longer than the model's context length ({})", options.seq_len, config.max_position_embeddings),
        ));
    }
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::invalid(
            "model",
            format!("the tokenizer has {} tokens, the model's embedding {}", tokenizer.vocab_size(), config.vocab_size),
        ));
    }

    let PackedCorpus { train, mut validation, test, stats } = corpus;
    if options.eval_sequences > 0 {
        validation.truncate(options.eval_sequences);
    }
    let val_tokens: usize = validation.iter().map(|e| e.tokens.len()).sum();
    let tokens_per_step = (options.batch_size.min(train.len()) * options.grad_accum * options.seq_len) as u64;
    let by_budget = budget_steps(&options.budget, tokens_per_step);
    let shared = || ModelRef::Shared(Arc::clone(&model));
    let mut trainer: Trainer<'static, FullWeights> = match (&options.checkpoint_dir, options.resume) {
        (Some(dir), true) => Trainer::resume(shared(), dir, train, validation, by_budget.unwrap_or(0))?,
        _ => {
            let mut t = Trainer::new(shared(), options.train_config(by_budget.unwrap_or(UNPLANNED_STEPS)), train, validation)?;
            t.set_regularization(options.regularization())?;
            t
        }
    };
    let first_step = trainer.step();
    let mut log = Log::start(options, &trainer, first_step);
    let resumed_from = trainer.resumed_from().map(|r| r.path.clone());
    let n_params = trainer.params().n_params() as u64;
    let report =
        |log: &Log, trainer: &Trainer<'_, FullWeights>, end: PretrainEnd, test: Option<TestResult>, files: &PretrainFiles| PretrainReport {
            options: options.clone(),
            model: spec_of(&config),
            parameters: n_params,
            data: stats,
            planned_steps: trainer.config().steps,
            resumed_from: resumed_from.clone(),
            steps: log.steps.clone(),
            evals: log.evals.clone(),
            test,
            tokens_seen: trainer.step() as u64 * tokens_per_step,
            wall_seconds: log.earlier_seconds + wall.elapsed().as_secs_f64(),
            end,
            files: files.clone(),
        };
    // A time budget's plan is made from the first steps; a resumed run keeps the plan it was
    // given, unless it stopped before making one.
    let calibrate = options.budget.seconds.is_some()
        && (trainer.config().steps == UNPLANNED_STEPS || (!options.resume && by_budget.is_some_and(|s| s > CALIBRATION_STEPS)));
    // Plans still to make: after the first steps, and once a tenth of the budget is spent (the
    // first steps run slower than the rest, while the buffers are first allocated).
    let mut plans_left = if calibrate { 2 } else { 0 };
    if trainer.step() == 0 && log.evals.is_empty() {
        if let Some(loss) = trainer.evaluate()? {
            log.evals.push(EvalRecord { step: 0, loss, perplexity: loss.exp() });
        }
    }
    if let (Some(dir), false) = (&options.checkpoint_dir, options.resume) {
        log.saved.push(trainer.step());
        files.checkpoint = Some(trainer.save_checkpoint(dir)?);
    }

    let mut dump = match &options.dump_batches {
        Some(path) => {
            Some(std::io::BufWriter::new(std::fs::File::create(path).map_err(|source| Error::Io { path: path.clone(), source })?))
        }
        None => None,
    };
    let start = Instant::now();
    let mut first_timed: Option<(usize, Instant)> = None;
    let uniform = (config.vocab_size as f64).ln();
    let mut end = PretrainEnd::Finished;
    loop {
        let step = trainer.step();
        if step >= trainer.config().steps {
            break;
        }
        let spent = start.elapsed().as_secs_f64();
        let over_time = options.budget.seconds.is_some_and(|s| spent >= s);
        let over_tokens = options.budget.tokens.is_some_and(|t| step as u64 * tokens_per_step >= t);
        if over_time || over_tokens {
            end = PretrainEnd::Budget;
            break;
        }
        if let (Some(out), Some(path)) = (&mut dump, &options.dump_batches) {
            use std::io::Write;
            let batches: Vec<Vec<&[u32]>> =
                trainer.next_step_batches().iter().map(|b| b.iter().map(|e| e.tokens.as_slice()).collect()).collect();
            let line = serde_json::json!({ "step": step + 1, "batches": batches });
            writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|source| Error::Io { path: path.clone(), source })?;
        }
        let (loss, grad_norm, _) = trainer.train_step()?;
        let step = trainer.step();
        let learning_rate = trainer.config().lr_at(step - 1);
        let elapsed = start.elapsed();
        let tokens_seen = step as u64 * tokens_per_step;
        let tokens_per_second = ((step - first_step) as u64 * tokens_per_step) as f64 / elapsed.as_secs_f64().max(1e-9);
        log.steps.push(StepRecord { step, loss, learning_rate, grad_norm, tokens_seen, tokens_per_second, seconds: elapsed.as_secs_f64() });

        let limit = 2.0 * uniform.max(log.steps.first().map_or(uniform, |s| s.loss));
        if !(loss.is_finite() && grad_norm.is_finite() && grad_norm > 0.0 && loss <= limit) {
            return Err(diverged(options, &mut log, &trainer, step, loss, grad_norm, limit, |log, t, files| {
                report(log, t, PretrainEnd::Diverged, None, files)
            }));
        }

        if plans_left > 0 {
            let seconds = options.budget.seconds.unwrap_or(0.0);
            match first_timed {
                None => first_timed = Some((step, Instant::now())),
                Some((from, at))
                    if (plans_left == 2 && step - from >= CALIBRATION_STEPS - 1)
                        || (plans_left == 1 && elapsed.as_secs_f64() >= 0.1 * seconds) =>
                {
                    let per_step = at.elapsed().as_secs_f64() / (step - from) as f64;
                    // A validation token costs about a third of a training token (forward only).
                    let per_eval = per_step * val_tokens as f64 / (3.0 * tokens_per_step as f64);
                    let evals_per_step = if options.eval_every > 0 { 1.0 / options.eval_every as f64 } else { 0.0 };
                    let left = seconds - elapsed.as_secs_f64() - per_eval;
                    let more = (left / (per_step + per_eval * evals_per_step)).max(0.0) as usize;
                    let planned = step + more;
                    trainer.set_total_steps(by_budget.map_or(planned, |b| b.min(planned).max(step)))?;
                    plans_left -= 1;
                }
                Some(_) => {}
            }
        }

        let planned = trainer.config().steps;
        let evaluated = (options.eval_every > 0 && step.is_multiple_of(options.eval_every)) || step == planned;
        if evaluated {
            if let Some(loss) = trainer.evaluate()? {
                log.evals.push(EvalRecord { step, loss, perplexity: loss.exp() });
            }
        }
        if let Some(dir) = &options.checkpoint_dir {
            if options.checkpoint_every > 0 && step.is_multiple_of(options.checkpoint_every) && step < planned {
                log.saved.push(step);
                files.checkpoint = Some(trainer.save_checkpoint(dir)?);
            }
        }
        let per_step = elapsed.as_secs_f64() / (step - first_step) as f64;
        let mut left = per_step * planned.saturating_sub(step) as f64;
        if let Some(s) = options.budget.seconds {
            left = left.min((s - start.elapsed().as_secs_f64()).max(0.0));
        }
        let report_progress = PretrainProgress {
            step,
            planned_steps: if planned == UNPLANNED_STEPS { 0 } else { planned },
            loss,
            learning_rate,
            grad_norm,
            tokens_seen,
            tokens_per_second,
            elapsed,
            time_left: Duration::from_secs_f64(left.min(1e9)),
            val_loss: log.evals.last().map(|e| e.loss),
            evaluated: evaluated && log.evals.last().is_some_and(|e| e.step == step),
        };
        if !progress(&report_progress) {
            if let Some(dir) = &options.checkpoint_dir {
                files.checkpoint = Some(trainer.save_checkpoint(dir)?);
            }
            log.write(&report(&log, &trainer, PretrainEnd::Cancelled, None, &files))?;
            return Ok(None);
        }
    }
    let step = trainer.step();
    if log.evals.last().is_none_or(|e| e.step != step) {
        if let Some(loss) = trainer.evaluate()? {
            log.evals.push(EvalRecord { step, loss, perplexity: loss.exp() });
        }
    }
    if let Some(dir) = &options.checkpoint_dir {
        files.checkpoint = Some(trainer.save_checkpoint(dir)?);
    }

    let gguf = options.gguf_path();
    export_full_gguf(trainer.params(), &model, &gguf)?;
    files.gguf = Some(gguf.clone());
    if let Some(dir) = &options.hf {
        gguf_to_safetensors(&gguf, dir, Dtype::F32, |_, _| true)?;
        files.hf = Some(dir.clone());
    }
    let test = if test.is_empty() {
        None
    } else {
        let trained = NativeModel::load(&gguf, &options.engine)?;
        Some(test_metrics(&trained, &test)?)
    };
    let report = report(&log, &trainer, end, test, &files);
    log.write(&report)?;
    Ok(Some(report))
}

/// The error of a diverged step `step`: its checkpoint of the step before (whose weights gave
/// this loss) removed, the log written, the newest checkpoint left named.
#[allow(clippy::too_many_arguments)]
fn diverged(
    options: &PretrainOptions,
    log: &mut Log,
    trainer: &Trainer<'_, FullWeights>,
    step: usize,
    loss: f64,
    grad_norm: f64,
    limit: f64,
    report: impl Fn(&Log, &Trainer<'_, FullWeights>, &PretrainFiles) -> PretrainReport,
) -> Error {
    let mut kept = None;
    if let Some(dir) = &options.checkpoint_dir {
        let bad = checkpoint::path_for(dir, step - 1);
        if bad.is_file() {
            let _ = std::fs::remove_file(&bad);
        }
        log.saved.retain(|&s| s + 1 < step);
        kept = log.saved.iter().rev().map(|&s| checkpoint::path_for(dir, s)).find(|p| p.is_file());
    }
    let files = PretrainFiles {
        log: options.output.join(LOG_FILE),
        plot: options.output.join(PLOT_FILE),
        checkpoint: kept.clone(),
        ..PretrainFiles::default()
    };
    let written = log.write(&report(log, trainer, &files));
    let what = if !(loss.is_finite() && grad_norm.is_finite()) {
        format!("the loss was {loss} and the gradient norm {grad_norm}")
    } else if grad_norm == 0.0 {
        format!("the gradient vanished at a loss of {loss:.4}")
    } else {
        format!("the loss rose to {loss:.4}, above {limit:.4}")
    };
    let checkpoint = match (&options.checkpoint_dir, kept) {
        (_, Some(path)) => format!("the last good checkpoint is {}", path.display()),
        (Some(dir), None) => format!("no good checkpoint is left in {}", dir.display()),
        (None, None) => "no checkpoint was written (give a checkpoint directory to keep one)".to_string(),
    };
    let mut reason = format!(
        "training diverged at step {step} ({what}) with a peak learning rate of {:e}: stopped; {checkpoint}; lower the learning rate or lengthen the warmup",
        options.learning_rate
    );
    if let Err(e) = written {
        reason += &format!(" (the log could not be written: {e})");
    }
    Error::invalid("learning_rate", reason)
}

/// Test loss and next-token accuracy of `model` on `sequences`, a few sequences per pass
/// (at most about 16 M logits at once).
fn test_metrics(model: &NativeModel, sequences: &[Example]) -> Result<TestResult> {
    let vocab = model.config().vocab_size.max(1);
    let longest = sequences.iter().map(|e| e.tokens.len()).max().unwrap_or(1);
    let per_pass = ((1usize << 24) / (vocab * longest)).max(1);
    let (mut nll, mut correct, mut targets) = (0.0f64, 0usize, 0usize);
    for group in sequences.chunks(per_pass) {
        let seqs: Vec<&[u32]> = group.iter().map(|e| e.tokens.as_slice()).collect();
        let wanted: Vec<std::ops::Range<usize>> = group.iter().map(|e| 0..e.tokens.len() - 1).collect();
        let logits = model.forward(&seqs, &wanted)?;
        let mut row = 0;
        for e in group {
            for t in 1..e.tokens.len() {
                let l = logits.row(row);
                row += 1;
                if !e.targets[t] {
                    continue;
                }
                let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let z: f64 = l.iter().map(|&v| f64::from(v - max).exp()).sum();
                let label = e.tokens[t] as usize;
                nll += z.ln() - f64::from(l[label] - max);
                let best = l.iter().enumerate().fold(0, |b, (i, &v)| if v > l[b] { i } else { b });
                correct += usize::from(best == label);
                targets += 1;
            }
        }
    }
    let loss = nll / targets.max(1) as f64;
    Ok(TestResult { loss, perplexity: loss.exp(), accuracy: correct as f64 / targets.max(1) as f64, sequences: sequences.len(), targets })
}

/// The log of a run: what earlier invocations of a resumed run logged, then this one's.
struct Log {
    steps: Vec<StepRecord>,
    evals: Vec<EvalRecord>,
    earlier_seconds: f64,
    /// Steps of the checkpoints this invocation wrote, oldest first.
    saved: Vec<usize>,
    path: PathBuf,
    plot: PathBuf,
}

impl Log {
    /// A fresh log, or a resumed run's earlier one up to the step it resumes at.
    fn start(options: &PretrainOptions, trainer: &Trainer<'_, FullWeights>, step: usize) -> Log {
        let path = options.output.join(LOG_FILE);
        let mut log = Log {
            steps: Vec::new(),
            evals: Vec::new(),
            earlier_seconds: 0.0,
            saved: Vec::new(),
            path,
            plot: options.output.join(PLOT_FILE),
        };
        if options.resume {
            if let Some(dir) = &options.checkpoint_dir {
                if trainer.resumed_from().is_some_and(|r| r.path == checkpoint::path_for(dir, step)) {
                    log.saved.push(step);
                }
            }
            let earlier = std::fs::read_to_string(&log.path).ok().and_then(|t| serde_json::from_str::<PretrainReport>(&t).ok());
            if let Some(earlier) = earlier {
                log.steps = earlier.steps.into_iter().filter(|s| s.step <= step).collect();
                log.evals = earlier.evals.into_iter().filter(|e| e.step <= step).collect();
                log.earlier_seconds = earlier.wall_seconds;
            }
        }
        log
    }

    /// Write `report` as log.json and its curves as loss.svg.
    fn write(&self, report: &PretrainReport) -> Result<()> {
        let text = serde_json::to_string_pretty(report).map_err(|e| Error::Internal(format!("the pretraining log: {e}")))? + "\n";
        crate::atomic_file::write_bytes(&self.path, text.as_bytes())?;
        let svg = loss_svg(&self.steps, &self.evals)?;
        crate::atomic_file::write_bytes(&self.plot, svg.as_bytes())
    }
}

/// The colours of the two curves of [`loss_svg`] (matplotlib's first two).
pub const TRAIN_COLOR: (u8, u8, u8) = (0x1F, 0x77, 0xB4);
pub const VALIDATION_COLOR: (u8, u8, u8) = (0xFF, 0x7F, 0x0E);

/// An SVG picture of the training loss per step and the validation loss per evaluation
/// (each a polyline in its colour, with a legend). Points that are not finite are left out;
/// a long run's training curve is drawn through every k-th step (at most about 2,000 points,
/// the last step always).
pub fn loss_svg(steps: &[StepRecord], evals: &[EvalRecord]) -> Result<String> {
    use plotters::prelude::*;
    let every = steps.len().div_ceil(2000).max(1);
    let train: Vec<(f64, f64)> = steps
        .iter()
        .enumerate()
        .filter(|(i, s)| (i % every == 0 || i + 1 == steps.len()) && s.loss.is_finite())
        .map(|(_, s)| (s.step as f64, s.loss))
        .collect();
    let val: Vec<(f64, f64)> = evals.iter().filter(|e| e.loss.is_finite()).map(|e| (e.step as f64, e.loss)).collect();
    let all = || train.iter().chain(&val);
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(0.05);
    let draw_err = |e: String| Error::Internal(format!("drawing the loss curves: {e}"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("lamina pretrain: loss", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..x_max, (lo - pad).max(0.0)..hi + pad)
            .map_err(|e| draw_err(e.to_string()))?;
        chart.configure_mesh().x_desc("step").y_desc("loss (nats per token)").draw().map_err(|e| draw_err(e.to_string()))?;
        for (points, (r, g, b), label) in [(&train, TRAIN_COLOR, "train"), (&val, VALIDATION_COLOR, "validation")] {
            if points.is_empty() {
                continue;
            }
            let color = RGBColor(r, g, b);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| draw_err(e.to_string()))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| draw_err(e.to_string()))?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    Ok(svg)
}
