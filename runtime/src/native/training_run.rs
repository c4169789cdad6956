//! A training run built from files: the native model, its tokenizer and chat template, the
//! tokenized data set, and a trainer of the kind asked for (a LoRA adapter, or every weight),
//! all owned by one value. It is what the C ABI's trainer handle and `lamina finetune` both
//! drive, so the sequence model -> tokenizer -> template -> dataset, the checks of the options
//! and the saving of adapters by format are written once, here.
//!
//! The run owns its model through an `Arc` that the trainer shares ([`ModelRef::Shared`]), so
//! a `TrainingRun` is `'static` and can live in a handle with no borrow to extend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::full::{export_full_gguf, FullWeights};
use super::lora::LoraWeights;
use super::lora_io::{export_gguf, export_peft};
use super::model::{NativeModel, NativeParams};
use super::train::{ModelRef, Progress, ResumedFrom, RunEnd, TrainCancel, TrainConfig, Trainer};
use super::train_data::{chat_template_from_gguf, load_dataset, DataOptions, DatasetStats};
use super::trainable::Trainable;
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;

/// What a run trains on and how: the trainer's configuration (ignored when resuming, where it
/// comes from the checkpoint), the data options (which must match the checkpoint's when
/// resuming), the engine's parameters, and whether every weight is trained.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: TrainConfig,
    pub data: DataOptions,
    pub engine: NativeParams,
    /// Train every weight of the model instead of a LoRA adapter.
    pub full: bool,
}

/// The file formats a trained adapter can be saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterFormat {
    /// One llama.cpp GGUF LoRA file.
    Gguf,
    /// A PEFT directory (adapter_config.json + adapter_model.safetensors).
    Peft,
}

/// How a run starts: fresh, or from the newest sound checkpoint in a directory, optionally
/// with a new planned total of steps (0 keeps the checkpoint's).
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    Fresh,
    Resume { dir: &'a Path, steps: usize },
}

/// A LoRA run or a full-parameter one.
enum AnyTrainer {
    Lora(Trainer<'static, LoraWeights>),
    Full(Trainer<'static, FullWeights>),
}

/// `$body` with `$t` bound to whichever trainer `$any` holds.
macro_rules! on_trainer {
    ($any:expr, $t:ident => $body:expr) => {
        match $any {
            AnyTrainer::Lora($t) => $body,
            AnyTrainer::Full($t) => $body,
        }
    };
}

/// A training run that owns its model and data. See the module comment.
pub struct TrainingRun {
    trainer: AnyTrainer,
    model: Arc<NativeModel>,
    model_path: PathBuf,
    stats: DatasetStats,
}

impl TrainingRun {
    /// Check `options`, then load the model at `model_path` (GGUF, or a safetensors checkpoint
    /// directory) and the records at `data_path`, and start the run. A GGUF model's chat
    /// template renders `messages` records; a safetensors model has none here, so its data
    /// must use the other record formats.
    pub fn new(model_path: &Path, data_path: &Path, options: &RunOptions, start: Start<'_>) -> Result<TrainingRun> {
        // Everything that needs no file fails first (a resumed run's config is the checkpoint's).
        if matches!(start, Start::Fresh) {
            options.config.validate()?;
        }
        options.data.validate()?;
        // Weights packed per pass: a full-parameter run multiplies its own f32 copies, and a
        // LoRA step would gain little (its backward products pack W the other way round) for
        // 2 bytes per weight on top of its activations.
        let engine = NativeParams { pack_weights: false, ..options.engine.clone() };
        let model = Arc::new(NativeModel::load(model_path, &engine)?);
        let tokenizer = model.load_tokenizer()?;
        let template = Gguf::open(model_path).ok().and_then(|g| chat_template_from_gguf(&g, &tokenizer));
        let data = load_dataset(data_path, &tokenizer, template.as_ref(), &options.data)?;
        fn make<P: Trainable>(
            model: &Arc<NativeModel>,
            options: &RunOptions,
            start: Start<'_>,
            data: super::train_data::Dataset,
        ) -> Result<Trainer<'static, P>> {
            let model = ModelRef::Shared(Arc::clone(model));
            match start {
                Start::Fresh => Trainer::new(model, options.config.clone(), data.train, data.val),
                Start::Resume { dir, steps } => Trainer::resume(model, dir, data.train, data.val, steps),
            }
        }
        let stats = data.stats;
        let trainer = if options.full {
            AnyTrainer::Full(make(&model, options, start, data)?)
        } else {
            AnyTrainer::Lora(make(&model, options, start, data)?)
        };
        Ok(TrainingRun { trainer, model, model_path: model_path.to_path_buf(), stats })
    }

    /// The model being trained (a full run trains copies of its weights).
    pub fn model(&self) -> &NativeModel {
        &self.model
    }

    /// The path the model was loaded from.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// What the data set held: records, the split, tokens, targets.
    pub fn data_stats(&self) -> &DatasetStats {
        &self.stats
    }

    /// Whether every weight is trained (else a LoRA adapter).
    pub fn is_full(&self) -> bool {
        matches!(self.trainer, AnyTrainer::Full(_))
    }

    /// The number of trained parameters.
    pub fn n_trained_params(&self) -> usize {
        match &self.trainer {
            AnyTrainer::Lora(t) => t.lora().n_params(),
            AnyTrainer::Full(t) => t.params().n_params(),
        }
    }

    /// The run's configuration (a resumed run's is the checkpoint's).
    pub fn config(&self) -> &TrainConfig {
        on_trainer!(&self.trainer, t => t.config())
    }

    /// Optimizer steps done.
    pub fn step(&self) -> usize {
        on_trainer!(&self.trainer, t => t.step())
    }

    /// The training loss of every step done.
    pub fn losses(&self) -> &[f64] {
        on_trainer!(&self.trainer, t => t.losses())
    }

    /// (step, validation loss) of every validation done.
    pub fn val_losses(&self) -> &[(usize, f64)] {
        on_trainer!(&self.trainer, t => t.val_losses())
    }

    /// Stops a [`run`](Self::run) after its current step, from any thread.
    pub fn cancel_handle(&self) -> TrainCancel {
        on_trainer!(&self.trainer, t => t.cancel_handle())
    }

    /// The checkpoint a resumed run started from, and the newer ones it skipped.
    pub fn resumed_from(&self) -> Option<&ResumedFrom> {
        on_trainer!(&self.trainer, t => t.resumed_from())
    }

    /// Write a checkpoint every `every` steps of a run (0: only when it ends).
    pub fn set_checkpoint_every(&mut self, every: usize) {
        on_trainer!(&mut self.trainer, t => t.set_checkpoint_every(every))
    }

    /// The mean validation loss per target token, or None without a validation set.
    pub fn evaluate(&self) -> Result<Option<f64>> {
        on_trainer!(&self.trainer, t => t.evaluate())
    }

    /// One optimizer step outside a run: its mean loss per target token.
    pub fn train_step(&mut self) -> Result<f64> {
        on_trainer!(&mut self.trainer, t => t.train_step().map(|(loss, _, _)| loss))
    }

    /// Train to the planned number of steps or until cancelled; see [`Trainer::run`].
    pub fn run(&mut self, checkpoint_dir: Option<&Path>, progress: impl FnMut(&Progress) -> bool) -> Result<RunEnd> {
        on_trainer!(&mut self.trainer, t => t.run(checkpoint_dir, progress))
    }

    /// Write a checkpoint to `dir` for [`Start::Resume`]; returns its path.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        on_trainer!(&self.trainer, t => t.save_checkpoint(dir))
    }

    /// Save the adapter trained so far in `format` at `path` (a file for GGUF, a directory for
    /// PEFT). A full-parameter run has no adapter: [`save_model`](Self::save_model) saves it.
    pub fn save_adapter(&self, path: &Path, format: AdapterFormat) -> Result<()> {
        let AnyTrainer::Lora(t) = &self.trainer else {
            return Err(Error::invalid("format", "this run fine-tunes the whole model and has no adapter: save the model instead"));
        };
        match format {
            AdapterFormat::Gguf => export_gguf(t.lora(), &self.model, path),
            AdapterFormat::Peft => export_peft(t.lora(), &self.model, path),
        }
    }

    /// Save the model of a full-parameter run as one GGUF file (the base model's metadata and
    /// every trained weight in F32). A LoRA run saves its adapter with
    /// [`save_adapter`](Self::save_adapter).
    pub fn save_model(&self, path: &Path) -> Result<()> {
        let AnyTrainer::Full(t) = &self.trainer else {
            return Err(Error::invalid("full", "this run trains a LoRA adapter: save the adapter (a full run trains the whole model)"));
        };
        export_full_gguf(t.params(), &self.model, path)
    }
}
