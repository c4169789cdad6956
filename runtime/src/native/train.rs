//! The trainer: AdamW (see `optim`) over what it trains (see `trainable`: a LoRA adapter's A
//! and B matrices, or every weight of the model) with a warmup-then-decay learning rate,
//! gradient clipping and accumulation, for full-parameter runs residual and attention dropout
//! and weight decay that may leave norms and embeddings out ([`Regularization`]), an
//! activation budget or full gradient checkpointing, validation loss every N steps,
//! checkpoints that resume exactly, progress through a callback and cancellation from any
//! thread.
//!
//! Determinism: the example order of each epoch is a seeded shuffle, dropout masks derive from
//! (seed, step, micro-batch), every sum of the pass and of the update runs in an order that
//! does not depend on the thread count, and the optimizer state is saved in full, so a run
//! that is stopped and resumed from its checkpoint reaches bit-identical weights to one that
//! was not, on any number of threads.
//!
//! Loss normalisation: each optimizer step sums token NLL gradients over its micro-batches and
//! divides by the step's total number of target tokens, so accumulating k micro-batches of
//! size b is the same step as one batch of size k·b.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::checkpoint;
pub use super::checkpoint::ResumedFrom;
use super::lora::{LoraConfig, LoraTarget, LoraWeights, SplitMix64};
use super::model::NativeModel;
pub use super::optim::Schedule;
use super::optim::{AdamW, LrSchedule, Optimizer};
use super::pass::{BlockDropout, Example, PassOptions};
pub use super::trainable::Trainable;
use crate::error::{Error, Result};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub rank: usize,
    pub alpha: f32,
    pub dropout: f32,
    pub rslora: bool,
    /// Adapted projections (q, k, v, o, gate, up, down).
    pub targets: Vec<String>,
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub warmup_steps: usize,
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value (0 = no clipping).
    pub max_grad_norm: f32,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Optimizer steps in the whole run.
    pub steps: usize,
    /// Recompute each layer in the backward pass instead of keeping its activations.
    pub checkpointing: bool,
    /// MiB of saved activations a micro-batch may keep (0 = no limit): the layers past it are
    /// recomputed in the backward pass, as with `checkpointing`, and only those.
    #[serde(default = "default_activation_memory_mib")]
    pub activation_memory_mib: usize,
    pub seed: u64,
    /// Compute the validation loss every this many steps (0 = only when asked).
    pub eval_every: usize,
    /// When [`Trainer::run`] has a checkpoint directory: also write a checkpoint after every
    /// this many steps, not only when the run ends (0 = only then).
    #[serde(default)]
    pub checkpoint_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            rslora: false,
            targets: LoraTarget::ALL.iter().map(|t| t.hf_name().trim_end_matches("_proj").to_string()).collect(),
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            schedule: Schedule::Cosine,
            max_grad_norm: 1.0,
            batch_size: 4,
            grad_accum: 1,
            steps: 100,
            checkpointing: false,
            activation_memory_mib: default_activation_memory_mib(),
            seed: 0,
            eval_every: 0,
            checkpoint_every: 0,
        }
    }
}

/// The default activation budget: enough for a 4 × 256 LoRA batch of the default model to keep
/// every layer's tape (30 × 22.7 MiB), so that no layer is recomputed, while training stays
/// within the model file plus 1 GiB of memory; larger batches or models recompute their first
/// layers instead of growing.
fn default_activation_memory_mib() -> usize {
    768
}

impl TrainConfig {
    /// The adapter part of the configuration.
    pub fn lora_config(&self) -> Result<LoraConfig> {
        let targets = self.targets.iter().map(|t| LoraTarget::parse(t)).collect::<Result<Vec<_>>>()?;
        let c = LoraConfig { rank: self.rank, alpha: self.alpha, dropout: self.dropout, rslora: self.rslora, targets };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        self.lora_config()?;
        let positive = |name: &'static str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(name, format!("must be a positive number, got {v}")))
            }
        };
        positive("learning_rate", self.learning_rate)?;
        positive("eps", self.eps)?;
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(name, format!("must be in [0, 1), got {b}")));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid("weight_decay", format!("must be >= 0, got {}", self.weight_decay)));
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return Err(Error::invalid("max_grad_norm", format!("must be >= 0, got {}", self.max_grad_norm)));
        }
        for (name, v) in [("batch_size", self.batch_size), ("grad_accum", self.grad_accum), ("steps", self.steps)] {
            if v == 0 {
                return Err(Error::invalid(name, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f32 {
        LrSchedule { base: self.learning_rate, warmup_steps: self.warmup_steps, total_steps: self.steps, kind: self.schedule }.at(step)
    }

    /// The optimizer these settings describe.
    pub fn optimizer(&self) -> AdamW {
        AdamW { beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay }
    }
}

/// Regularisation of a run beyond its [`TrainConfig`], set with
/// [`Trainer::set_regularization`] and saved in its checkpoints (a resumed run has the
/// checkpoint's). The default changes nothing: no residual or attention dropout, weight decay
/// on every tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Regularization {
    /// Residual dropout (each block's attention and MLP outputs), in [0, 1); full-parameter
    /// runs only.
    pub residual_dropout: f32,
    /// Dropout on the attention probabilities, in [0, 1); full-parameter runs only.
    pub attention_dropout: f32,
    /// Whether weight decay applies to norm weights and embeddings too (see
    /// [`Trainable::norms_and_embeddings`]); false decays only the other tensors.
    pub decay_norms_and_embeddings: bool,
}

impl Default for Regularization {
    fn default() -> Self {
        Regularization { residual_dropout: 0.0, attention_dropout: 0.0, decay_norms_and_embeddings: true }
    }
}

impl Regularization {
    /// The blocks' dropout of a training pass.
    pub fn block_dropout(&self) -> BlockDropout {
        BlockDropout { residual: self.residual_dropout, attention: self.attention_dropout }
    }
}

/// What the progress callback receives after every optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps done (1-based after the first step).
    pub step: usize,
    pub total_steps: usize,
    /// Mean target-token loss of this step (nats).
    pub loss: f64,
    pub learning_rate: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (all positions, not only targets) processed per second over the run so far.
    pub tokens_per_second: f64,
    /// Estimated time to the last step.
    pub eta: Duration,
    pub epoch: usize,
    /// Validation loss, when it was computed at this step.
    pub val_loss: Option<f64>,
}

/// Why [`Trainer::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Finished,
    Cancelled,
}

/// Cancels a running trainer from another thread; it stops after the step in progress.
#[derive(Debug, Clone)]
pub struct TrainCancel(Arc<AtomicBool>);

impl TrainCancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Resumable state besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrainerState {
    /// What is trained: `lora` or `full` (absent in checkpoints from before full training:
    /// those are LoRA runs).
    #[serde(default)]
    kind: String,
    format: u32,
    config: TrainConfig,
    step: usize,
    epoch: usize,
    /// Index of the next example in this epoch's order.
    position: usize,
    n_train: usize,
    tokens_seen: u64,
    losses: Vec<f64>,
    val_losses: Vec<(usize, f64)>,
    /// Absent in checkpoints from before it: the default.
    #[serde(default)]
    regularization: Regularization,
}

const STATE_FORMAT: u32 = 1;

/// The model a trainer runs on: borrowed for the trainer's lifetime, or shared through an
/// `Arc`, so that a trainer can own its model (`Trainer<'static, _>`: a C handle, a
/// [`TrainingRun`](super::training_run::TrainingRun) built from files) without unsafe code.
#[derive(Clone)]
pub enum ModelRef<'m> {
    Borrowed(&'m NativeModel),
    Shared(Arc<NativeModel>),
}

impl std::ops::Deref for ModelRef<'_> {
    type Target = NativeModel;
    fn deref(&self) -> &NativeModel {
        match self {
            ModelRef::Borrowed(model) => model,
            ModelRef::Shared(model) => model,
        }
    }
}

impl<'m> From<&'m NativeModel> for ModelRef<'m> {
    fn from(model: &'m NativeModel) -> Self {
        ModelRef::Borrowed(model)
    }
}

impl From<Arc<NativeModel>> for ModelRef<'_> {
    fn from(model: Arc<NativeModel>) -> Self {
        ModelRef::Shared(model)
    }
}

/// A training run on a native model: of a LoRA adapter (`Trainer<'m>`, the default) or of
/// every weight (`Trainer<'m, FullWeights>`).
pub struct Trainer<'m, P: Trainable = LoraWeights> {
    model: ModelRef<'m>,
    train: Vec<Example>,
    val: Vec<Example>,
    params: P,
    adam_m: P,
    adam_v: P,
    order: Vec<usize>,
    state: TrainerState,
    cancel: Arc<AtomicBool>,
    resumed_from: Option<ResumedFrom>,
}

/// A run's activation buffers, kept by the model from step to step, are not kept past it.
impl<P: Trainable> Drop for Trainer<'_, P> {
    fn drop(&mut self) {
        self.model.release_buffers();
    }
}

impl<'m> Trainer<'m, LoraWeights> {
    /// The adapter being trained.
    pub fn lora(&self) -> &LoraWeights {
        &self.params
    }
}

impl<'m, P: Trainable> Trainer<'m, P> {
    /// A fresh run: new parameters (an adapter initialised from `config.seed`, or the model's
    /// own weights for a full fine-tune).
    pub fn new(model: impl Into<ModelRef<'m>>, config: TrainConfig, train: Vec<Example>, val: Vec<Example>) -> Result<Trainer<'m, P>> {
        let model = model.into();
        config.validate()?;
        if train.is_empty() {
            return Err(Error::invalid("train", "the training set is empty"));
        }
        let params = P::init(&model, &config)?;
        let (adam_m, adam_v) = (params.zeros_like(), params.zeros_like());
        let state = TrainerState {
            kind: P::KIND.to_string(),
            format: STATE_FORMAT,
            n_train: train.len(),
            config,
            step: 0,
            epoch: 0,
            position: 0,
            tokens_seen: 0,
            losses: Vec::new(),
            val_losses: Vec::new(),
            regularization: Regularization::default(),
        };
        let mut t = Trainer {
            model,
            train,
            val,
            params,
            adam_m,
            adam_v,
            order: Vec::new(),
            state,
            cancel: Arc::new(AtomicBool::new(false)),
            resumed_from: None,
        };
        t.shuffle_epoch();
        Ok(t)
    }

    /// Continue the run saved in `dir` by [`save_checkpoint`](Self::save_checkpoint) (or by
    /// [`run`](Self::run)), on the same data, from its newest sound checkpoint: a newer one
    /// that is truncated or damaged is skipped, and [`resumed_from`](Self::resumed_from)
    /// names it and the reason. `steps` may be raised to train longer than first planned (0
    /// keeps it).
    pub fn resume(
        model: impl Into<ModelRef<'m>>,
        dir: &Path,
        train: Vec<Example>,
        val: Vec<Example>,
        steps: usize,
    ) -> Result<Trainer<'m, P>> {
        let mut data = Some((model.into(), train, val));
        let (mut t, from) = checkpoint::load_latest(dir, |text, st| {
            let (model, train, val) = data.take().expect("load_latest reads one checkpoint");
            Self::from_checkpoint(model, dir, text, st, train, val, steps)
        })?;
        for (path, reason) in &from.skipped {
            let line = format!("trainer checkpoint {} was not used ({reason}); resumed from {}", path.display(), from.path.display());
            crate::log::log(crate::log::LogLevel::Warn, &line);
        }
        t.resumed_from = Some(from);
        Ok(t)
    }

    /// The trainer a checkpoint's state and tensors describe.
    fn from_checkpoint(
        model: ModelRef<'m>,
        dir: &Path,
        text: &str,
        st: &safetensors::SafeTensors<'_>,
        train: Vec<Example>,
        val: Vec<Example>,
        steps: usize,
    ) -> Result<Trainer<'m, P>> {
        let mut state: TrainerState = serde_json::from_str(text).map_err(|e| data_err(dir, format!("not a trainer state: {e}")))?;
        if state.format != STATE_FORMAT {
            return Err(data_err(dir, format!("trainer state format {} is not supported (expected {STATE_FORMAT})", state.format)));
        }
        let kind = if state.kind.is_empty() { "lora" } else { state.kind.as_str() };
        if kind != P::KIND {
            return Err(data_err(dir, format!("the checkpoint is of a `{kind}` run, not of a `{}` run", P::KIND)));
        }
        if state.n_train != train.len() {
            return Err(data_err(dir, format!("the checkpoint was trained on {} examples, this data has {}", state.n_train, train.len())));
        }
        if steps > 0 {
            state.config.steps = steps;
        }
        let mut t: Trainer<'m, P> = Trainer::new(model, state.config.clone(), train, val)?;
        for (prefix, w) in [(P::KIND, &mut t.params), ("adam_m", &mut t.adam_m), ("adam_v", &mut t.adam_v)] {
            let names: Vec<String> = w.named_tensors().into_iter().map(|(n, _)| format!("{prefix}.{n}")).collect();
            for (name, values) in names.into_iter().zip(w.tensors_mut()) {
                match st.tensor(&name) {
                    Ok(view) if view.dtype() == safetensors::Dtype::F32 && view.data().len() == values.len() * 4 => {
                        for (v, b) in values.iter_mut().zip(view.data().chunks_exact(4)) {
                            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        }
                    }
                    _ => {
                        return Err(data_err(
                            dir,
                            format!("tensor `{name}` is missing or has the wrong size: the checkpoint is of another configuration"),
                        ))
                    }
                }
            }
        }
        let epoch = state.epoch;
        t.state = state;
        t.state.epoch = epoch;
        t.shuffle_epoch();
        Ok(t)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.state.config
    }
    /// The parameters being trained.
    pub fn params(&self) -> &P {
        &self.params
    }
    pub fn step(&self) -> usize {
        self.state.step
    }
    /// Mean loss of every step so far.
    pub fn losses(&self) -> &[f64] {
        &self.state.losses
    }
    /// (step, validation loss) of every evaluation so far.
    pub fn val_losses(&self) -> &[(usize, f64)] {
        &self.state.val_losses
    }
    pub fn cancel_handle(&self) -> TrainCancel {
        TrainCancel(self.cancel.clone())
    }

    pub fn regularization(&self) -> Regularization {
        self.state.regularization
    }

    /// Set the run's dropout and weight-decay scope (saved in its checkpoints). Errors
    /// ([`Error::InvalidArgument`]): a dropout probability outside [0, 1).
    pub fn set_regularization(&mut self, regularization: Regularization) -> Result<()> {
        regularization.block_dropout().validate()?;
        self.state.regularization = regularization;
        Ok(())
    }

    /// Plan the run over `steps` optimizer steps from now on (the learning-rate schedule decays
    /// to the new total; the steps done keep the rates they had): a run whose length is known
    /// only once its speed is. Errors: fewer steps than already done, or none.
    pub fn set_total_steps(&mut self, steps: usize) -> Result<()> {
        if steps == 0 || steps < self.state.step {
            return Err(Error::invalid("steps", format!("{steps} steps: the run has done {} already", self.state.step)));
        }
        self.state.config.steps = steps;
        Ok(())
    }

    /// This epoch's example order: a shuffle seeded by (seed, epoch).
    fn shuffle_epoch(&mut self) {
        self.order = self.epoch_order(self.state.epoch);
    }

    /// The example order of epoch `epoch`.
    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        let mut rng = SplitMix64(self.state.config.seed ^ 0x5EED_0000 ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }

    /// The sequences the next [`train_step`](Self::train_step) trains on, micro-batch by
    /// micro-batch in order, without advancing the data position.
    pub fn next_step_batches(&self) -> Vec<Vec<&Example>> {
        let b = self.state.config.batch_size.min(self.train.len());
        let (mut epoch, mut position) = (self.state.epoch, self.state.position);
        let mut order = std::borrow::Cow::Borrowed(&self.order);
        (0..self.state.config.grad_accum)
            .map(|_| {
                (0..b)
                    .map(|_| {
                        if position >= order.len() {
                            epoch += 1;
                            position = 0;
                            order = std::borrow::Cow::Owned(self.epoch_order(epoch));
                        }
                        position += 1;
                        &self.train[order[position - 1]]
                    })
                    .collect()
            })
            .collect()
    }

    /// The next micro-batch, advancing the data position (and the epoch at its end).
    fn next_batch(&mut self) -> Vec<Example> {
        let b = self.state.config.batch_size.min(self.train.len());
        let mut batch = Vec::with_capacity(b);
        while batch.len() < b {
            if self.state.position >= self.order.len() {
                self.state.epoch += 1;
                self.state.position = 0;
                self.shuffle_epoch();
            }
            batch.push(self.train[self.order[self.state.position]].clone());
            self.state.position += 1;
        }
        batch
    }

    /// Mean validation loss per target token (None without validation data).
    pub fn evaluate(&self) -> Result<Option<f64>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let (mut nll, mut n) = (0.0, 0usize);
        for chunk in self.val.chunks(self.state.config.batch_size.max(1)) {
            let l = self.params.loss(&self.model, chunk)?;
            nll += l.nll_sum;
            n += l.n_targets;
        }
        Ok((n > 0).then(|| nll / n as f64))
    }

    /// One optimizer step: `grad_accum` micro-batches, clipping, AdamW. Returns the step's
    /// mean loss per target token and the gradient norm before clipping.
    pub fn train_step(&mut self) -> Result<(f64, f64, u64)> {
        let cfg = self.state.config.clone();
        let mut grads = self.params.zeros_like();
        let (mut nll, mut n_targets, mut tokens) = (0.0, 0usize, 0u64);
        for micro in 0..cfg.grad_accum {
            let batch = self.next_batch();
            tokens += batch.iter().map(|e| e.tokens.len() as u64).sum::<u64>();
            let seed = cfg.seed ^ ((self.state.step as u64) << 20) ^ micro as u64;
            let budget = (cfg.activation_memory_mib > 0).then_some(cfg.activation_memory_mib << 20);
            let options = PassOptions { dropout_seed: Some(seed), checkpointing: cfg.checkpointing, activation_budget: budget };
            let l = self.params.loss_and_grads(&self.model, &batch, options, self.state.regularization.block_dropout(), &mut grads)?;
            nll += l.nll_sum;
            n_targets += l.n_targets;
        }
        if n_targets == 0 {
            return Err(Error::invalid("train", "a training step had no target tokens (every example's loss mask is empty)"));
        }
        let inv = 1.0 / n_targets as f32;
        // Elementwise work over every parameter (135 M of them in a full fine-tune) runs on the
        // model's threads in fixed chunks; the squared norm adds the chunks' sums in chunk
        // order, so it does not depend on the thread count.
        const CHUNK: usize = 1 << 16;
        let pool = &self.model.pool;
        let sq: f64 = pool.install(|| {
            grads
                .tensors_mut()
                .into_iter()
                .flat_map(|g| {
                    g.par_chunks_mut(CHUNK)
                        .map(|c| {
                            c.iter_mut().fold(0.0f64, |acc, v| {
                                *v *= inv;
                                acc + f64::from(*v) * f64::from(*v)
                            })
                        })
                        .collect::<Vec<f64>>()
                })
                .sum()
        });
        let norm = sq.sqrt();
        if !(nll.is_finite() && norm.is_finite()) {
            // A non-finite loss or gradient would turn every parameter and both Adam moments
            // into NaN for good. The step is counted with its loss, but its update is withheld:
            // the parameters stay those of the last good step, and the caller, which sees the
            // non-finite loss or norm, stops the run ([`run`](Self::run), pretraining).
            self.state.step += 1;
            self.state.tokens_seen += tokens;
            let loss = nll / n_targets as f64;
            self.state.losses.push(loss);
            return Ok((loss, norm, tokens));
        }
        let clip =
            if cfg.max_grad_norm > 0.0 && norm > f64::from(cfg.max_grad_norm) { (f64::from(cfg.max_grad_norm) / norm) as f32 } else { 1.0 };
        let lr = cfg.lr_at(self.state.step);
        let t = (self.state.step + 1) as u64;
        let exempt = match self.state.regularization.decay_norms_and_embeddings {
            true => Vec::new(),
            false => self.params.norms_and_embeddings(),
        };
        let grads_t = grads.tensors_mut();
        let mut m_t = self.adam_m.tensors_mut();
        let mut v_t = self.adam_v.tensors_mut();
        pool.install(|| {
            let tensors = self.params.tensors_mut().into_iter().zip(grads_t.iter()).zip(m_t.iter_mut()).zip(v_t.iter_mut());
            for (i, (((p, g), m), v)) in tensors.enumerate() {
                let mut optimizer = cfg.optimizer();
                if exempt.get(i) == Some(&true) {
                    optimizer.weight_decay = 0.0;
                }
                p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK))).for_each(
                    |((p, g), (m, v))| {
                        optimizer.update(t, lr, clip, p, g, &mut [m, v]);
                    },
                );
            }
        });
        self.state.step += 1;
        self.state.tokens_seen += tokens;
        let loss = nll / n_targets as f64;
        self.state.losses.push(loss);
        Ok((loss, norm, tokens))
    }

    /// Train until `config.steps` or cancellation. `progress` runs after every step; returning
    /// false cancels. With `checkpoint_dir`, a checkpoint is written there every
    /// `config.checkpoint_every` steps (when not 0), on cancellation (callback or
    /// [`TrainCancel`]) and at the end, so the run can be resumed from the last one even after
    /// the process was killed.
    pub fn run(&mut self, checkpoint_dir: Option<&Path>, mut progress: impl FnMut(&Progress) -> bool) -> Result<RunEnd> {
        self.cancel.store(false, Ordering::SeqCst);
        let start = Instant::now();
        let first_step = self.state.step;
        let mut tokens_run = 0u64;
        let mut end = RunEnd::Finished;
        // The newest checkpoint of this run (or the one it resumed from), for a divergence's
        // message.
        let mut last_checkpoint = self.resumed_from.as_ref().map(|r| r.path.clone());
        while self.state.step < self.state.config.steps {
            if self.cancel.load(Ordering::SeqCst) {
                end = RunEnd::Cancelled;
                break;
            }
            let (loss, grad_norm, tokens) = self.train_step()?;
            if !(loss.is_finite() && grad_norm.is_finite()) {
                return Err(self.diverged(loss, grad_norm, last_checkpoint.as_deref(), checkpoint_dir));
            }
            tokens_run += tokens;
            let step = self.state.step;
            let cfg = &self.state.config;
            let val_loss = if (cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every)) || step == cfg.steps {
                let v = self.evaluate()?;
                if let Some(v) = v {
                    self.state.val_losses.push((step, v));
                }
                v
            } else {
                None
            };
            if let Some(dir) = checkpoint_dir {
                let every = self.state.config.checkpoint_every;
                if every > 0 && step.is_multiple_of(every) && step < self.state.config.steps {
                    last_checkpoint = Some(self.save_checkpoint(dir)?);
                }
            }
            let elapsed = start.elapsed().as_secs_f64();
            let per_step = elapsed / (step - first_step) as f64;
            let report = Progress {
                step,
                total_steps: self.state.config.steps,
                loss,
                learning_rate: self.state.config.lr_at(step - 1),
                grad_norm,
                tokens_per_second: tokens_run as f64 / elapsed.max(1e-9),
                eta: Duration::from_secs_f64(per_step * (self.state.config.steps - step) as f64),
                epoch: self.state.epoch,
                val_loss,
            };
            if !progress(&report) {
                self.cancel.store(true, Ordering::SeqCst);
            }
        }
        if self.cancel.load(Ordering::SeqCst) {
            end = RunEnd::Cancelled;
        }
        if let Some(dir) = checkpoint_dir {
            self.save_checkpoint(dir)?;
        }
        Ok(end)
    }

    /// The error that stops a run whose step `self.state.step` had a non-finite loss or
    /// gradient norm (its update was withheld, see [`train_step`](Self::train_step)): it says
    /// which step, what was not finite, and which checkpoint holds the last good state. No
    /// checkpoint is written for it: the parameters are the previous step's but the data
    /// position is past this step's batches, so resuming from the named one repeats the run.
    fn diverged(&self, loss: f64, grad_norm: f64, last_checkpoint: Option<&Path>, checkpoint_dir: Option<&Path>) -> Error {
        let checkpoint = match (last_checkpoint, checkpoint_dir) {
            (Some(path), _) => format!("the last good checkpoint is {}", path.display()),
            (None, Some(dir)) => format!("no checkpoint of this run was written to {} before it", dir.display()),
            (None, None) => "no checkpoint was written (a checkpoint directory keeps them)".to_string(),
        };
        Error::invalid(
            "learning_rate",
            format!(
                "training diverged at step {} (the loss was {loss} and the gradient norm {grad_norm}): stopped before that \
                 step's update, so nothing was written with non-finite weights; {checkpoint}; lower the learning rate \
                 (peak {:e}) or lengthen the warmup",
                self.state.step, self.state.config.learning_rate
            ),
        )
    }

    /// Write a checkpoint of the parameters, the optimizer moments and the run's position
    /// into `dir`, as `checkpoint-<step>.safetensors` (see `checkpoint`: atomic, the two
    /// newest kept). Returns the file.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        let mut tensors: Vec<(String, &[f32])> = Vec::new();
        for (prefix, w) in [(P::KIND, &self.params), ("adam_m", &self.adam_m), ("adam_v", &self.adam_v)] {
            tensors.extend(w.named_tensors().into_iter().map(|(name, values)| (format!("{prefix}.{name}"), values)));
        }
        let state = serde_json::to_string_pretty(&self.state)
            .map_err(|e| Error::Internal(format!("the training state does not serialise: {e}")))?;
        checkpoint::save(dir, self.state.step, &state, &tensors)
    }

    /// Write a checkpoint every `every` steps of [`run`](Self::run) (0 = only at its end). Does
    /// not change what is trained, so a resumed run may change it.
    pub fn set_checkpoint_every(&mut self, every: usize) {
        self.state.config.checkpoint_every = every;
    }

    /// Where [`resume`](Self::resume) found this run, and the newer checkpoints it refused.
    pub fn resumed_from(&self) -> Option<&ResumedFrom> {
        self.resumed_from.as_ref()
    }
}

fn data_err(path: &Path, reason: String) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason }
}

/// Where checkpoints go by default: `<cache>/train/<name>`.
pub fn default_checkpoint_dir(name: &str) -> PathBuf {
    crate::paths::cache_dir().join("train").join(name)
}
