//! Fine-tuning on the native engine (a LoRA adapter, or every weight with params.full): a
//! trainer handle around the runtime's [`TrainingRun`], which owns its model and data, runs
//! with a progress callback, is cancellable from any thread, evaluates, checkpoints, resumes,
//! and saves the adapter as GGUF (for llama.cpp, and `lamina_model_load_adapter`) or PEFT, or
//! the fully trained model as GGUF. This file converts C params and maps results; the run
//! itself, and every check of its options, is the runtime's.

use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Mutex;

use lamina::native::train::{Progress, Schedule, TrainCancel, TrainConfig};
use lamina::native::train_data::DataOptions;
use lamina::native::training_run::{AdapterFormat, RunOptions, Start, TrainingRun};
use lamina::native::NativeParams;

use crate::args::{opt_str_arg, read_params, str_arg, write_optional, Versioned};
use crate::boundary::{call, call_out, guard};
use crate::handles::Registry;
use crate::status::{lamina_status, Failure};

/// The learning-rate schedule after warmup (the `schedule` field of lamina_train_params).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lamina_train_schedule {
    /// Half a cosine from the base rate down to 0 at the last step.
    Cosine = 0,
    /// A straight line from the base rate down to 0 at the last step.
    Linear = 1,
    /// The base rate throughout.
    Constant = 2,
}

/// The file format of a saved adapter (the `format` argument of lamina_trainer_save_adapter).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lamina_adapter_format {
    /// One llama.cpp GGUF LoRA file: load it with lamina_model_load_adapter, llama.cpp or
    /// anything built on it.
    Gguf = 0,
    /// A PEFT directory (adapter_config.json + adapter_model.safetensors), to continue with
    /// PyTorch/PEFT; lamina_model_load_adapter reads it too.
    Peft = 1,
}

/// Options of a training run: the adapter, the optimizer, the schedule and the data.
/// Initialise with `lamina_train_params_init(&p, sizeof p)`, then change fields. Numbers are
/// checked when the trainer is created (LAMINA_STATUS_ERROR_INVALID_ARGUMENT naming the field).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_train_params {
    /// sizeof(lamina_train_params), set by lamina_train_params_init().
    pub struct_size: usize,
    /// LoRA rank, at least 1 (default 8).
    pub rank: u32,
    /// LoRA alpha; the update is scaled by alpha / rank (default 16).
    pub alpha: f32,
    /// Dropout on the adapter's input, in [0, 1) (default 0).
    pub dropout: f32,
    /// rsLoRA: scale by alpha / sqrt(rank) instead (default false).
    pub rslora: bool,
    /// The adapted projections, comma-separated, from q, k, v, o, gate, up, down (HF names
    /// such as "q_proj" work too); NULL = all seven (default). Read during the call only.
    pub targets: *const c_char,
    /// Peak learning rate of AdamW, > 0 (default 1e-3).
    pub learning_rate: f32,
    /// AdamW's first-moment decay, in [0, 1) (default 0.9).
    pub beta1: f32,
    /// AdamW's second-moment decay, in [0, 1) (default 0.999).
    pub beta2: f32,
    /// AdamW's epsilon, > 0 (default 1e-8).
    pub eps: f32,
    /// Decoupled weight decay, >= 0 (default 0).
    pub weight_decay: f32,
    /// Steps of linear warmup from 0 to the peak rate (default 0).
    pub warmup_steps: u32,
    /// A lamina_train_schedule value (default LAMINA_TRAIN_SCHEDULE_COSINE). An int rather
    /// than the enum so that any value a caller writes is safe to read; others are rejected.
    pub schedule: i32,
    /// Clip the global gradient norm to this, >= 0; 0 = no clipping (default 1).
    pub max_grad_norm: f32,
    /// Sequences per micro-batch, at least 1 (default 4).
    pub batch_size: u32,
    /// Micro-batches per optimizer step, at least 1 (default 1).
    pub grad_accum: u32,
    /// Optimizer steps of the whole run, at least 1 (default 100).
    pub steps: u32,
    /// Gradient checkpointing: recompute each layer in the backward pass instead of keeping
    /// its activations; less memory, about a third more time (default false).
    pub checkpointing: bool,
    /// Seed of the adapter's initialisation, the example order and dropout (default 0).
    pub seed: u64,
    /// Compute the validation loss every this many steps, and at the last step; 0 = only at
    /// the last step and when asked (default 0). Needs val_fraction > 0.
    pub eval_every: u32,
    /// Longest example in tokens, at least 2 (default 2048). A longer record is an error
    /// naming its line unless `truncate`.
    pub max_len: u32,
    /// Concatenate consecutive training examples into sequences of up to max_len tokens
    /// (default false).
    pub pack: bool,
    /// Fraction of the records held out for validation, in [0, 1) (default 0).
    pub val_fraction: f32,
    /// Seed of the shuffle that splits train and validation records (default 0).
    pub data_seed: u64,
    /// Cut records longer than max_len instead of failing (default false).
    pub truncate: bool,
    /// Threads of the native engine; 0 = one per core (default 0).
    pub n_threads: u32,
    /// Train every weight of the model in f32 instead of a LoRA adapter (the LoRA fields are
    /// then ignored); save the result with lamina_trainer_save_model. A run whose weights,
    /// gradients and optimizer state would not fit in the available memory is refused with
    /// the estimate (default false).
    pub full: bool,
    /// MiB of saved activations per micro-batch; the layers past it are recomputed in the
    /// backward pass. 0 = no limit (default 768).
    pub activation_memory_mib: u32,
    /// When lamina_trainer_run has a checkpoint directory: also write a checkpoint after every
    /// this many steps, not only when the run ends, so that a process killed mid-run resumes
    /// from the last one (default 0: only at the end). Kept by lamina_trainer_resume.
    pub checkpoint_every: u32,
}

// SAFETY: repr(C), starts with usize; the fields are numbers, C bools (0/1) and a pointer, so
// every value a C caller writes is valid (the schedule is an int, checked on use).
unsafe impl Versioned for lamina_train_params {
    const NAME: &'static str = "lamina_train_params";
    fn defaults() -> Self {
        let t = TrainConfig::default();
        let d = DataOptions::default();
        let narrow = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            struct_size: std::mem::size_of::<Self>(),
            rank: narrow(t.rank),
            alpha: t.alpha,
            dropout: t.dropout,
            rslora: t.rslora,
            targets: std::ptr::null(),
            learning_rate: t.learning_rate,
            beta1: t.beta1,
            beta2: t.beta2,
            eps: t.eps,
            weight_decay: t.weight_decay,
            warmup_steps: narrow(t.warmup_steps),
            schedule: schedule_code(t.schedule) as i32,
            max_grad_norm: t.max_grad_norm,
            batch_size: narrow(t.batch_size),
            grad_accum: narrow(t.grad_accum),
            steps: narrow(t.steps),
            checkpointing: t.checkpointing,
            seed: t.seed,
            eval_every: narrow(t.eval_every),
            max_len: narrow(d.max_len),
            pack: d.pack,
            val_fraction: d.val_fraction,
            data_seed: d.seed,
            truncate: d.truncate,
            n_threads: 0,
            full: false,
            activation_memory_mib: narrow(t.activation_memory_mib),
            checkpoint_every: narrow(t.checkpoint_every),
        }
    }
}

pub(crate) fn schedule_code(s: Schedule) -> lamina_train_schedule {
    match s {
        Schedule::Cosine => lamina_train_schedule::Cosine,
        Schedule::Linear => lamina_train_schedule::Linear,
        Schedule::Constant => lamina_train_schedule::Constant,
    }
}

/// The schedule of a params struct's `schedule` int (shared with lamina_pretrain_params).
pub(crate) fn schedule_from_code(code: i32) -> Result<Schedule, Failure> {
    match code {
        0 => Ok(Schedule::Cosine),
        1 => Ok(Schedule::Linear),
        2 => Ok(Schedule::Constant),
        other => Err(invalid(format!("params.schedule is {other}: use a lamina_train_schedule value (0 cosine, 1 linear, 2 constant)"))),
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(lamina_status::ErrorInvalidArgument, message)
}

/// Fill `*params` with the defaults (those of the Rust `TrainConfig` and `DataOptions`). Pass
/// `sizeof(*params)` as `struct_size`: a program built against an older, shorter version of
/// the struct keeps working with a newer library (only the fields it knows are written).
/// Call this before changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_train_params_init(params: *mut lamina_train_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Convert `p` to the runtime's options, which [`TrainingRun::new`] checks before it reads any
/// file. Only what C alone can get wrong (a targets string with no name, an unknown schedule
/// number) is checked here.
///
/// # Safety
/// `p.targets` is NULL or a NUL-terminated string valid during the call.
unsafe fn run_options(p: &lamina_train_params) -> Result<RunOptions, Failure> {
    // SAFETY: forwarded contract.
    let targets = match unsafe { opt_str_arg(p.targets, "params.targets") }? {
        None => TrainConfig::default().targets,
        Some(list) => {
            let names: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
            if names.is_empty() {
                return Err(invalid(format!(
                    "params.targets is {list:?}: name at least one of q, k, v, o, gate, up, down (comma-separated)"
                )));
            }
            names
        }
    };
    let schedule = schedule_from_code(p.schedule)?;
    let config = TrainConfig {
        rank: p.rank as usize,
        alpha: p.alpha,
        dropout: p.dropout,
        rslora: p.rslora,
        targets,
        learning_rate: p.learning_rate,
        beta1: p.beta1,
        beta2: p.beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
        warmup_steps: p.warmup_steps as usize,
        schedule,
        max_grad_norm: p.max_grad_norm,
        batch_size: p.batch_size as usize,
        grad_accum: p.grad_accum as usize,
        steps: p.steps as usize,
        checkpointing: p.checkpointing,
        seed: p.seed,
        eval_every: p.eval_every as usize,
        activation_memory_mib: p.activation_memory_mib as usize,
        checkpoint_every: p.checkpoint_every as usize,
    };
    Ok(RunOptions { config, ..resume_options(p) })
}

/// The fields of `p` that a resumed run uses (its training fields come from the checkpoint):
/// the data options, the thread count and the kind of run.
fn resume_options(p: &lamina_train_params) -> RunOptions {
    RunOptions {
        config: TrainConfig::default(),
        data: DataOptions {
            max_len: p.max_len as usize,
            pack: p.pack,
            val_fraction: p.val_fraction,
            seed: p.data_seed,
            truncate: p.truncate,
        },
        engine: NativeParams { n_threads: p.n_threads as usize, ..NativeParams::default() },
        full: p.full,
    }
}

/// A training run (of a LoRA adapter, or of every weight with params.full). Opaque; create with `lamina_trainer_create` or
/// `lamina_trainer_resume`, free with `lamina_trainer_free`.
///
/// Threads: one thread at a time uses a trainer (run, step, evaluate, save); a call made while
/// another is in progress fails with LAMINA_STATUS_ERROR_BUSY. `lamina_trainer_cancel` is the
/// exception: any thread may call it at any time, including from the progress callback.
pub struct lamina_trainer {
    run: Mutex<TrainingRun>,
    cancel: TrainCancel,
}

static TRAINERS: Registry<lamina_trainer> = Registry::new("lamina_trainer");

fn with_trainer<R>(trainer: *const lamina_trainer, f: impl FnOnce(&mut TrainingRun) -> Result<R, Failure>) -> Result<R, Failure> {
    let handle = TRAINERS.get(trainer, "trainer")?;
    let mut guard = match handle.run.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::WouldBlock) => return Err(lamina::Error::Busy.into()),
        // A panic inside an earlier call poisoned the lock; the trainer's state is consistent
        // at the Rust level (a step either finished or left the weights of the previous one).
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
    };
    f(&mut guard)
}

/// A new trainer handle for `run`.
fn register(run: TrainingRun) -> *mut lamina_trainer {
    let cancel = run.cancel_handle();
    TRAINERS.insert(lamina_trainer { run: Mutex::new(run), cancel })
}

/// Create a trainer: load the model at `model_path` (GGUF, or a safetensors checkpoint
/// directory) on the native engine, read and tokenize the data at `data_path` (JSONL or a JSON
/// array of `{"messages": [...]}`, `{"prompt", "completion"}`, `{"text"}` or alpaca
/// `{"instruction", "input"?, "output"}` records; a GGUF model's chat template renders
/// messages), split it, and initialise a fresh adapter (or, with params.full, every weight).
/// Ownership: on success `*out_trainer` receives a handle owned by the caller, freed with
/// lamina_trainer_free; on failure it is left unmodified. The trainer owns its model and data.
/// NULL: `model_path`, `data_path` and `out_trainer` are required; `params` may be NULL for
/// the defaults.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (a params field out of range or
/// unknown, bad struct_size; the message names the field), _MODEL_NOT_FOUND, _NOT_GGUF,
/// _MODEL_LOAD, _DATA (a missing or malformed data file, a bad record, a record longer than
/// max_len: the message reads "path:line: reason"), _IO.
/// Threads: any thread; trainers are independent of each other and of sessions.
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_create(
    model_path: *const c_char,
    data_path: *const c_char,
    params: *const lamina_train_params,
    out_trainer: *mut *mut lamina_trainer,
) -> lamina_status {
    // SAFETY: the caller's out-pointer, C-string and params contracts.
    unsafe {
        call_out(out_trainer, "out_trainer", || {
            let model_path = Path::new(str_arg(model_path, "model_path")?);
            let data_path = Path::new(str_arg(data_path, "data_path")?);
            let options = run_options(&read_params(params)?)?;
            Ok(register(TrainingRun::new(model_path, data_path, &options, Start::Fresh)?))
        })
    }
}

/// Continue a run from the checkpoint in `checkpoint_dir` (written by lamina_trainer_run with
/// a checkpoint directory, or lamina_trainer_save_checkpoint). The run goes on exactly where it
/// stopped (adapter, optimizer state, data position), on the same model and data:
/// `params`' data fields (max_len, pack, val_fraction, data_seed, truncate) must be those of
/// the original run, which the checkpoint checks by its number of training examples.
/// `params->steps` replaces the planned total when non-zero (pass the original params to keep
/// it, or NULL, which keeps it too); the other training fields come from the checkpoint and
/// are ignored.
/// The newest sound checkpoint is used: a newer one that is truncated or damaged (its SHA-256
/// digest does not match) is skipped, with a LAMINA_LOG_WARN message naming it (see
/// lamina_set_log_callback).
/// Ownership: on success `*out_trainer` receives a handle owned by the caller, freed with
/// lamina_trainer_free; on failure it is left unmodified.
/// NULL: `model_path`, `data_path`, `checkpoint_dir` and `out_trainer` are required; `params`
/// may be NULL (keep the checkpoint's settings and default data options).
/// Errors: as lamina_trainer_create, plus _IO (no checkpoint in the directory) and _DATA
/// (every checkpoint damaged, each named in the message, or data of a different size).
/// Threads: any thread; trainers are independent of each other and of sessions.
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_resume(
    model_path: *const c_char,
    data_path: *const c_char,
    params: *const lamina_train_params,
    checkpoint_dir: *const c_char,
    out_trainer: *mut *mut lamina_trainer,
) -> lamina_status {
    // SAFETY: the caller's out-pointer, C-string and params contracts.
    unsafe {
        call_out(out_trainer, "out_trainer", || {
            let model_path = Path::new(str_arg(model_path, "model_path")?);
            let data_path = Path::new(str_arg(data_path, "data_path")?);
            let dir = Path::new(str_arg(checkpoint_dir, "checkpoint_dir")?);
            let p = read_params(params)?;
            // The training fields come from the checkpoint; NULL params keep its total, as
            // steps = 0 does.
            let steps = if params.is_null() { 0 } else { p.steps as usize };
            let options = resume_options(&p);
            Ok(register(TrainingRun::new(model_path, data_path, &options, Start::Resume { dir, steps })?))
        })
    }
}

/// What the progress callback of lamina_trainer_run receives after every optimizer step.
/// `struct_size` is sizeof the library's struct: fields added by newer versions come last, so
/// check it before reading a field your header does not have.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_train_progress {
    /// sizeof(lamina_train_progress) of the library.
    pub struct_size: usize,
    /// Steps done (1 after the first step; counts from the checkpoint's step when resumed).
    pub step: u64,
    /// The planned total of steps.
    pub total_steps: u64,
    /// Mean loss per target token of this step (nats).
    pub loss: f64,
    /// The learning rate this step used.
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens (all positions, not only targets) processed per second so far in this run.
    pub tokens_per_second: f64,
    /// Estimated seconds to the last step.
    pub eta_seconds: f64,
    /// Passes over the training data completed.
    pub epoch: u64,
    /// Validation loss computed at this step, or NaN when none was (see eval_every).
    pub val_loss: f64,
}

impl From<&Progress> for lamina_train_progress {
    fn from(p: &Progress) -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            step: p.step as u64,
            total_steps: p.total_steps as u64,
            loss: p.loss,
            learning_rate: f64::from(p.learning_rate),
            grad_norm: p.grad_norm,
            tokens_per_second: p.tokens_per_second,
            eta_seconds: p.eta.as_secs_f64(),
            epoch: p.epoch as u64,
            val_loss: p.val_loss.unwrap_or(f64::NAN),
        }
    }
}

/// Reports a training run's progress after each optimizer step; `progress` is valid only
/// during the call. Return true to go on, false to stop after this step. Called on the thread
/// that called lamina_trainer_run; it may call lamina_trainer_cancel, but any other call on the
/// same trainer fails with LAMINA_STATUS_ERROR_BUSY.
pub type lamina_train_progress_callback =
    Option<unsafe extern "C" fn(progress: *const lamina_train_progress, user_data: *mut c_void) -> bool>;

/// Train until the planned number of steps, or until cancelled: by the callback returning
/// false, or by lamina_trainer_cancel from any thread (the step in progress finishes first).
/// A cancelled run is a success (LAMINA_STATUS_OK): lamina_trainer_steps tells how far it got,
/// and calling lamina_trainer_run again continues it. A cancel that arrives before the run
/// starts is forgotten when it starts. `progress` may be NULL. When `checkpoint_dir` is not
/// NULL, a checkpoint is written there every params.checkpoint_every steps (when not 0) and
/// when the run ends, cancelled or not, for lamina_trainer_resume; each is written beside its
/// final name and renamed, and the two newest are kept, so a process killed at any moment
/// resumes from the last complete one. On a trainer that already did all its steps, returns
/// at once.
/// Ownership: nothing is taken or returned; the checkpoints written belong to the caller.
/// NULL: `trainer` is required; `progress`, `user_data` and `checkpoint_dir` may be NULL.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY, _INVALID_UTF8, _IO (the checkpoint could
/// not be written), _INVALID_ARGUMENT (a step had no target token, or its loss or gradient
/// was not finite: the run stops before that step's update, the message names the step and
/// the last good checkpoint, and the trainer keeps the previous step's weights).
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
/// The progress callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_run(
    trainer: *mut lamina_trainer,
    progress: lamina_train_progress_callback,
    user_data: *mut c_void,
    checkpoint_dir: *const c_char,
) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let checkpoint_dir = unsafe { opt_str_arg(checkpoint_dir, "checkpoint_dir") }?;
        let on_progress = |p: &Progress| match progress {
            None => true,
            // SAFETY: the host supplied this callback and user data for this call; the struct
            // outlives the call.
            Some(callback) => unsafe { callback(&lamina_train_progress::from(p), user_data) },
        };
        with_trainer(trainer, |t| Ok(t.run(checkpoint_dir.map(Path::new), on_progress).map(|_| ())?))
    })
}

/// Stop a run in progress after its current step. Does not wait for the run to return.
/// Ownership: nothing is taken or returned.
/// NULL: `trainer` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any call on the trainer, and from the progress
/// callback: this is the one trainer call meant for another thread.
#[no_mangle]
pub extern "C" fn lamina_trainer_cancel(trainer: *const lamina_trainer) -> lamina_status {
    call(|| {
        TRAINERS.get(trainer, "trainer")?.cancel.cancel();
        Ok(())
    })
}

/// One optimizer step (grad_accum micro-batches, clipping, AdamW), outside of a run. On
/// success `*out_loss` receives the step's mean loss per target token. Steps past the planned
/// total are allowed and use the schedule's final learning rate (0 for cosine and linear).
/// Ownership: writes `*out_loss`; nothing to free.
/// NULL: `trainer` and `out_loss` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY, _INVALID_ARGUMENT (no target token).
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_step(trainer: *mut lamina_trainer, out_loss: *mut f64) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_loss, "out_loss", || with_trainer(trainer, |t| Ok(t.train_step()?))) }
}

/// The mean loss per target token of the validation set with the current adapter. On success
/// `*out_val_loss` receives it, or NaN when there is no validation set (val_fraction 0).
/// Ownership: writes `*out_val_loss`; nothing to free.
/// NULL: `trainer` and `out_val_loss` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY.
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_evaluate(trainer: *mut lamina_trainer, out_val_loss: *mut f64) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_val_loss, "out_val_loss", || with_trainer(trainer, |t| Ok(t.evaluate()?.unwrap_or(f64::NAN)))) }
}

/// How far the run is: steps done and the planned total. During a run, the progress
/// callback reports both.
/// Ownership: writes the out-parameters; nothing to free.
/// NULL: `trainer` is required; either out pointer may be NULL (that value is not written).
/// Errors: _NULL_ARGUMENT (trainer), _INVALID_HANDLE, _BUSY.
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_steps(
    trainer: *mut lamina_trainer,
    out_step: *mut u64,
    out_total_steps: *mut u64,
) -> lamina_status {
    call(|| {
        let (step, total) = with_trainer(trainer, |t| Ok((t.step() as u64, t.config().steps as u64)))?;
        // SAFETY: the caller's contract: each out-pointer is NULL or writable.
        unsafe {
            write_optional(out_step, step);
            write_optional(out_total_steps, total);
        }
        Ok(())
    })
}

/// Save the adapter as trained so far. `format` is a lamina_adapter_format value (an int, so
/// that any value is safe to pass): LAMINA_ADAPTER_FORMAT_GGUF writes the file `path`,
/// LAMINA_ADAPTER_FORMAT_PEFT writes the directory `path` (created if needed). Either loads
/// with lamina_model_load_adapter on the same base model.
/// Ownership: the files written belong to the caller; nothing is returned.
/// NULL: `trainer` and `path` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_HANDLE, _BUSY, _INVALID_ARGUMENT (unknown
/// format; a full-parameter trainer, which saves with lamina_trainer_save_model), _IO.
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_save_adapter(trainer: *mut lamina_trainer, path: *const c_char, format: i32) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let path = Path::new(unsafe { str_arg(path, "path") }?);
        let format = match format {
            0 => AdapterFormat::Gguf,
            1 => AdapterFormat::Peft,
            other => {
                return Err(invalid(format!("format is {other}: use LAMINA_ADAPTER_FORMAT_GGUF (0) or LAMINA_ADAPTER_FORMAT_PEFT (1)")))
            }
        };
        with_trainer(trainer, |t| match t.is_full() {
            true => Err(invalid("this trainer fine-tunes the whole model and has no adapter: save it with lamina_trainer_save_model")),
            false => Ok(t.save_adapter(path, format)?),
        })
    })
}

/// Write the model of a full-parameter trainer (params.full) to `path` as a GGUF file: the
/// base model's metadata and every trained weight in F32, loadable with lamina_model_load. The
/// base model must be a GGUF file.
/// Ownership: the file written belongs to the caller; nothing is returned.
/// NULL: `trainer` and `path` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_HANDLE, _BUSY, _INVALID_ARGUMENT (a LoRA
/// trainer, which saves adapters with lamina_trainer_save_adapter; a safetensors base), _IO.
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_save_model(trainer: *mut lamina_trainer, path: *const c_char) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let path = Path::new(unsafe { str_arg(path, "path") }?);
        with_trainer(trainer, |t| match t.is_full() {
            true => Ok(t.save_model(path)?),
            false => Err(invalid(
                "this trainer trains a LoRA adapter: save it with lamina_trainer_save_adapter (params.full trains the whole model)",
            )),
        })
    })
}

/// Write a checkpoint (adapter, optimizer state, data position) to the directory `dir`,
/// created if needed, for lamina_trainer_resume: `checkpoint-<step>.safetensors`, with a
/// SHA-256 digest of its contents. It is written beside its final name and renamed, so an
/// interrupted save leaves the previous checkpoints intact; the two newest are kept.
/// Ownership: the files written belong to the caller; nothing is returned.
/// NULL: `trainer` and `dir` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_HANDLE, _BUSY, _IO, _INTERNAL (the
/// checkpoint's own state could not be serialised).
/// Threads: one call at a time per trainer; a call while another thread is inside one (a run,
/// say) gets _BUSY (lamina_trainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_trainer_save_checkpoint(trainer: *mut lamina_trainer, dir: *const c_char) -> lamina_status {
    call(|| {
        // SAFETY: caller's C-string contract.
        let dir = Path::new(unsafe { str_arg(dir, "dir") }?);
        with_trainer(trainer, |t| t.save_checkpoint(dir).map(|_| ()).map_err(Failure::from))
    })
}

/// Free a trainer and its model.
/// Ownership: releases the caller's handle.
/// NULL: `trainer` may be NULL (nothing happens).
/// Errors: none returned; freeing twice is reported through lamina_last_error_message() and
/// otherwise ignored.
/// Threads: any thread. Freeing a trainer while another thread runs it is safe: the memory
/// goes when that call returns (cancel it first to make that soon).
#[no_mangle]
pub extern "C" fn lamina_trainer_free(trainer: *mut lamina_trainer) {
    guard(|| {
        if !trainer.is_null() && !TRAINERS.remove(trainer) {
            crate::status::set_last_error("lamina_trainer_free: not a live lamina_trainer handle (freed twice?)");
        }
    })
}
