//! Training from scratch: corpus preparation ([`lamina::corpus::build`]), tokenizer training
//! ([`train_files`]), a model's architecture and random initialisation ([`init_model`]), and
//! the pretraining itself ([`pretrain`]) as a handle with progress, cancel and a report. This
//! file converts C params and maps results; every check of the options is the runtime's.
//!
//! A cancelled call (its progress callback returned false) is a success, as a cancelled
//! training run or evaluation is: its report is `{"cancelled": true}`. A finished call's report
//! is the runtime's, with `"cancelled": false` added.

use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use lamina::corpus::{self, CorpusOptions, CorpusProgress, Normalization};
use lamina::native::{NativeParams, Precision};
use lamina::pretrain::init::{init_model, InitOptions, ModelSpec, PRESETS, PRESET_VOCAB_SIZE};
use lamina::pretrain::run::{pretrain, Budget, ModelSource, PretrainEnd, PretrainOptions, PretrainProgress, PretrainReport, LOG_FILE};
use lamina::pretrain::tokenizer_train::{train_files, TokenizerTrainOptions};
use serde::Serialize;

use crate::args::{json_c_string, opt_str_arg, owned_c_string, read_params, str_arg, Versioned};
use crate::boundary::{call, call_out, guard};
use crate::eval::{lamina_progress_callback, str_array};
use crate::handles::Registry;
use crate::status::{lamina_status, Failure};
use crate::train::{schedule_code, schedule_from_code};

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(lamina_status::ErrorInvalidArgument, message)
}

/// A finished call's report, with `"cancelled": false` after the runtime's fields (in their
/// order).
#[derive(Serialize)]
struct Finished<T: Serialize> {
    #[serde(flatten)]
    report: T,
    cancelled: bool,
}

/// The report of a call that may be cancelled, as a caller-owned JSON string.
fn report_json(report: Option<impl Serialize>) -> Result<*mut c_char, Failure> {
    match report {
        None => Ok(owned_c_string(r#"{"cancelled":true}"#)),
        Some(report) => json_c_string(&Finished { report, cancelled: false }),
    }
}

/// Borrow `n` paths (UTF-8 C strings).
///
/// # Safety
/// As [`str_array`].
unsafe fn paths<'a>(ptr: *const *const c_char, n: usize, name: &str, count_name: &str) -> Result<Vec<&'a Path>, Failure> {
    // SAFETY: forwarded contract.
    Ok(unsafe { str_array(ptr, n, name, count_name) }?.into_iter().map(Path::new).collect())
}

// ---------------------------------------------------------------------------------------------
// Corpus preparation

/// Options of lamina_corpus_build: the cleaning, deduplication and filtering steps in the order
/// they run, then the split. Initialise with `lamina_corpus_params_init(&p, sizeof p)`, then
/// change fields. Values are checked by the call (LAMINA_STATUS_ERROR_INVALID_ARGUMENT naming
/// the field).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_corpus_params {
    /// sizeof(lamina_corpus_params), set by lamina_corpus_params_init().
    pub struct_size: usize,
    /// Remove HTML/XML tags and decode character references (for text taken from web pages;
    /// plain text may hold `<`) (default false).
    pub strip_markup: bool,
    /// Unicode normalisation: "nfc", "nfkc" (which also folds ligatures, full-width forms and
    /// the like) or "none", any case; NULL = "nfc" (default). Read during the call only.
    pub normalization: *const c_char,
    /// Lowercase every document (default false).
    pub lowercase: bool,
    /// Remove control characters other than newline and tab (default true).
    pub strip_control: bool,
    /// Collapse runs of whitespace within a line, trim lines, collapse runs of blank lines
    /// (default true).
    pub normalize_whitespace: bool,
    /// Remove documents equal to an earlier one (default true).
    pub dedup_documents: bool,
    /// Remove documents nearly equal to an earlier kept one (MinHash of character 5-shingles)
    /// (default true).
    pub near_dedup: bool,
    /// The estimated Jaccard similarity from which a document is a near duplicate, in (0, 1]
    /// (default 0.8).
    pub near_dedup_threshold: f64,
    /// Remove lines seen before anywhere in the corpus, beyond their first occurrence (default
    /// true).
    pub dedup_lines: bool,
    /// Lines shorter than this many characters (trimmed) are never removed as repeated
    /// (default 40).
    pub min_line_chars: usize,
    /// Remove documents of fewer characters; 0 = no limit (default).
    pub min_chars: usize,
    /// Remove documents of more characters; 0 = no limit (default).
    pub max_chars: usize,
    /// Remove documents of fewer whitespace-separated words; 0 = no limit (default).
    pub min_words: usize,
    /// Fraction of the documents in the train set; the three fractions are each at least 0
    /// and sum to 1 (default 0.9).
    pub train_fraction: f64,
    /// Fraction in the validation set (default 0.05).
    pub validation_fraction: f64,
    /// Fraction in the test set (default 0.05).
    pub test_fraction: f64,
    /// Seed of the shuffle that splits the documents (default 0).
    pub seed: u64,
}

// SAFETY: repr(C), starts with usize; numbers, C bools (0/1) and a pointer accept every value
// a C caller writes.
unsafe impl Versioned for lamina_corpus_params {
    const NAME: &'static str = "lamina_corpus_params";
    fn defaults() -> Self {
        let d = CorpusOptions::default();
        Self {
            struct_size: std::mem::size_of::<Self>(),
            strip_markup: d.strip_markup,
            normalization: std::ptr::null(),
            lowercase: d.lowercase,
            strip_control: d.strip_control,
            normalize_whitespace: d.normalize_whitespace,
            dedup_documents: d.dedup_documents,
            near_dedup: d.near_dedup,
            near_dedup_threshold: d.near_dedup_threshold,
            dedup_lines: d.dedup_lines,
            min_line_chars: d.min_line_chars,
            min_chars: d.min_chars,
            max_chars: d.max_chars,
            min_words: d.min_words,
            train_fraction: d.train_fraction,
            validation_fraction: d.validation_fraction,
            test_fraction: d.test_fraction,
            seed: d.seed,
        }
    }
}

/// The runtime's options for C corpus params.
///
/// # Safety
/// `p.normalization` is NULL or a NUL-terminated string valid during the call.
unsafe fn corpus_options(p: &lamina_corpus_params) -> Result<CorpusOptions, Failure> {
    // SAFETY: forwarded contract.
    let normalization = match unsafe { opt_str_arg(p.normalization, "params.normalization") }? {
        None => CorpusOptions::default().normalization,
        Some(name) => Normalization::parse(name)?,
    };
    Ok(CorpusOptions {
        strip_markup: p.strip_markup,
        normalization,
        lowercase: p.lowercase,
        strip_control: p.strip_control,
        normalize_whitespace: p.normalize_whitespace,
        dedup_documents: p.dedup_documents,
        near_dedup: p.near_dedup,
        near_dedup_threshold: p.near_dedup_threshold,
        dedup_lines: p.dedup_lines,
        min_line_chars: p.min_line_chars,
        min_chars: p.min_chars,
        max_chars: p.max_chars,
        min_words: p.min_words,
        train_fraction: p.train_fraction,
        validation_fraction: p.validation_fraction,
        test_fraction: p.test_fraction,
        seed: p.seed,
    })
}

/// Fill `*params` with the defaults (those of the Rust `CorpusOptions`: NFC, control
/// characters and extra whitespace removed, exact, near and line duplicates removed, no length
/// filter, a 0.9 / 0.05 / 0.05 split with seed 0). Pass `sizeof(*params)` as `struct_size`: a
/// program built against an older, shorter version of the struct keeps working with a newer
/// library (only the fields it knows are written). Call this before changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_corpus_params_init(params: *mut lamina_corpus_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Reports corpus preparation's progress: `done` of `total` files (stage "read") or documents
/// (every other stage) are finished. `stage` names the stage: "read", then the steps that are
/// on, of "markup", "normalization", "lowercase", "control_characters", "whitespace",
/// "exact_duplicates", "near_duplicates", "line_duplicates", "length", then "split" and
/// "write"; it is valid only during the call. Return true to go on, false to cancel (the call
/// then returns LAMINA_STATUS_OK with the report `{"cancelled": true}` and writes nothing).
/// Called on the thread that called lamina_corpus_build.
pub type lamina_corpus_progress_callback =
    Option<unsafe extern "C" fn(stage: *const c_char, done: usize, total: usize, user_data: *mut c_void) -> bool>;

/// The runtime's progress closure for a C callback.
fn corpus_progress(progress: lamina_corpus_progress_callback, user_data: *mut c_void) -> impl FnMut(&CorpusProgress) -> bool {
    move |p: &CorpusProgress| match progress {
        None => true,
        Some(callback) => {
            // Stage names are ASCII identifiers, without NUL.
            let stage = CString::new(p.stage.name()).unwrap_or_default();
            // SAFETY: the host supplied this callback and user data for this call; `stage`
            // outlives the call.
            unsafe { callback(stage.as_ptr(), p.done, p.total, user_data) }
        }
    }
}

/// Prepare a text corpus for training from scratch: read the `n_inputs` files or directories of
/// `inputs` (a `.jsonl` file: one document per `{"text": ...}` record; a `.md` file: one
/// document; any other file, such as `.txt`: documents separated by blank lines; a directory:
/// its .txt, .md and .jsonl files, recursively, in path order), clean, deduplicate and filter
/// the documents as `params` says, split them into train, validation and test sets, and write
/// `out_dir`/train.jsonl, validation.jsonl and test.jsonl (one `{"text": ...}` record a line:
/// what lamina_tokenizer_train and the trainers read) and report.json. `out_dir` is created if
/// needed; the four files are renamed into place only when all are complete, so a failure or a
/// cancel leaves the files that were there before.
///
/// On success `*out_report_json` receives a JSON object: `{"inputs", "files" (files read),
/// "input": {"documents", "bytes", "words"}, "steps": [{"step", "enabled", "documents_in",
/// "documents_changed", "documents_removed", "bytes_in", "bytes_out"}, ...], "output" (as
/// "input"), "splits": [{"name", "documents", "bytes", "words"}, ...] (train, validation,
/// test), "options", "cancelled": false}`; a run cancelled by the progress callback gives
/// `{"cancelled": true}`.
/// Ownership: the report string belongs to the caller, freed with lamina_string_free; the files
/// written belong to the caller.
/// NULL: `inputs` (unless n_inputs is 0, which is an error anyway), each input, `out_dir` and
/// `out_report_json` are required; `params` may be NULL for the defaults; `progress` and
/// `user_data` may be NULL.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (no inputs, a params field out of
/// range, bad struct_size: the message names the field; a step that removed the last document;
/// too few documents for the sets asked for), _DATA (a missing input, text that is not UTF-8, a
/// bad JSONL record, no documents: the message names the file and, for one bad line,
/// "path:line"), _IO.
/// Threads: any thread; calls are independent of each other.
/// The progress callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_corpus_build(
    inputs: *const *const c_char,
    n_inputs: usize,
    out_dir: *const c_char,
    params: *const lamina_corpus_params,
    progress: lamina_corpus_progress_callback,
    user_data: *mut c_void,
    out_report_json: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: the caller's out-pointer, array, C-string and params contracts.
    unsafe {
        call_out(out_report_json, "out_report_json", || {
            let inputs = paths(inputs, n_inputs, "inputs", "n_inputs")?;
            let out_dir = Path::new(str_arg(out_dir, "out_dir")?);
            let options = corpus_options(&read_params(params)?)?;
            report_json(corpus::build(&inputs, out_dir, &options, corpus_progress(progress, user_data))?)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer training

/// Options of lamina_tokenizer_train: a byte-level BPE vocabulary (the 256 byte tokens, the
/// special tokens, one token per merge) with the pre-tokenizer llama.cpp knows as `smollm`.
/// Initialise with `lamina_tokenizer_train_params_init(&p, sizeof p)`, then change fields.
/// Strings are NUL-terminated UTF-8, read during the call only; the defaults are strings of the
/// library (static storage).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_tokenizer_train_params {
    /// sizeof(lamina_tokenizer_train_params), set by lamina_tokenizer_train_params_init().
    pub struct_size: usize,
    /// Tokens in the vocabulary, the special and the 256 byte tokens included: at least 256 +
    /// the number of special tokens, and no more than the corpus has distinct pairs to merge
    /// (the error says how many it supports) (default 8192).
    pub vocab_size: u32,
    /// A pair seen fewer times than this in the corpus is never merged; 0 and 1 merge
    /// everything seen (default 2).
    pub min_frequency: u64,
    /// The beginning-of-sequence token (default "<s>"; NULL is the default too).
    pub bos_token: *const c_char,
    /// The end-of-sequence token, which ends generation; may equal bos_token (default "</s>";
    /// NULL is the default too).
    pub eos_token: *const c_char,
    /// The padding token; may equal bos_token or eos_token. NULL = no padding token (default
    /// "<pad>").
    pub pad_token: *const c_char,
    /// More special tokens after BOS, EOS and PAD, such as the chat markers "<|im_start|>" and
    /// "<|im_end|>": an array of `n_special_tokens` strings, each new (default none). May be
    /// NULL when n_special_tokens is 0.
    pub special_tokens: *const *const c_char,
    /// Number of entries in `special_tokens` (default 0).
    pub n_special_tokens: usize,
    /// A Jinja chat template written to tokenizer_config.json (and so to a GGUF made from the
    /// tokenizer); it must render a short conversation. NULL = none (default).
    pub chat_template: *const c_char,
    /// Put BOS before every text (`add_bos_token`) (default false, as GPT-2 and SmolLM2).
    pub add_bos_token: bool,
}

// SAFETY: repr(C), starts with usize; numbers, a C bool (0/1) and pointers accept every value a
// C caller writes.
unsafe impl Versioned for lamina_tokenizer_train_params {
    const NAME: &'static str = "lamina_tokenizer_train_params";
    fn defaults() -> Self {
        let d = TokenizerTrainOptions::default();
        Self {
            struct_size: std::mem::size_of::<Self>(),
            vocab_size: u32::try_from(d.vocab_size).unwrap_or(u32::MAX),
            min_frequency: d.min_frequency,
            bos_token: c"<s>".as_ptr(),
            eos_token: c"</s>".as_ptr(),
            pad_token: c"<pad>".as_ptr(),
            special_tokens: std::ptr::null(),
            n_special_tokens: 0,
            chat_template: std::ptr::null(),
            add_bos_token: d.add_bos_token,
        }
    }
}

/// The runtime's options for C tokenizer params (checked by the runtime).
///
/// # Safety
/// The string fields are NULL or NUL-terminated strings valid during the call;
/// `special_tokens` holds `n_special_tokens` of them.
unsafe fn tokenizer_options(p: &lamina_tokenizer_train_params) -> Result<TokenizerTrainOptions, Failure> {
    let d = TokenizerTrainOptions::default();
    let owned = |s: Option<&str>| s.map(str::to_string);
    // SAFETY (all): forwarded contract.
    let (bos, eos, pad, template) = unsafe {
        (
            opt_str_arg(p.bos_token, "params.bos_token")?,
            opt_str_arg(p.eos_token, "params.eos_token")?,
            opt_str_arg(p.pad_token, "params.pad_token")?,
            opt_str_arg(p.chat_template, "params.chat_template")?,
        )
    };
    // SAFETY: forwarded contract.
    let special = unsafe { str_array(p.special_tokens, p.n_special_tokens, "params.special_tokens", "params.n_special_tokens") }?;
    Ok(TokenizerTrainOptions {
        vocab_size: p.vocab_size as usize,
        min_frequency: p.min_frequency,
        bos_token: owned(bos).unwrap_or(d.bos_token),
        eos_token: owned(eos).unwrap_or(d.eos_token),
        pad_token: owned(pad),
        special_tokens: special.into_iter().map(str::to_string).collect(),
        chat_template: owned(template),
        add_bos_token: p.add_bos_token,
    })
}

/// Fill `*params` with the defaults (those of the Rust `TokenizerTrainOptions`: 8192 tokens,
/// minimum frequency 2, "<s>", "</s>" and "<pad>", no extra special token, no chat template, no
/// BOS added). Pass `sizeof(*params)` as `struct_size` (see lamina_corpus_params_init). Call
/// this before changing any field.
/// Ownership: writes into the caller's struct (its default strings are static storage); nothing
/// to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_tokenizer_train_params_init(
    params: *mut lamina_tokenizer_train_params,
    struct_size: usize,
) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Train a byte-level BPE tokenizer on the `n_inputs` files or directories of `inputs` (read as
/// lamina_corpus_build reads them, so its train.jsonl is a good input; each document is one
/// training sequence) and write `out_dir`/tokenizer.json and tokenizer_config.json (the
/// directory is created if needed), which the `tokenizers` library, lamina and, through
/// lamina_init_model's GGUF, llama.cpp read with the same ids. The whole corpus is held in
/// memory; the call cannot be cancelled.
///
/// On success `*out_report_json` receives a JSON object: `{"inputs", "documents", "bytes",
/// "vocab_size", "n_merges", "special_tokens" (in id order), "seconds", "files", "cancelled":
/// false}`.
/// Ownership: the report string belongs to the caller, freed with lamina_string_free; the files
/// written belong to the caller.
/// NULL: `inputs` (unless n_inputs is 0, which is an error anyway), each input, `out_dir` and
/// `out_report_json` are required; `params` may be NULL for the defaults.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (no inputs, an empty corpus, a
/// vocab_size too small for the byte and special tokens or too large for the corpus, a bad
/// special token or chat template, bad struct_size: the message names the field), _DATA (a
/// missing input, text that is not UTF-8, a bad JSONL record: "path:line"), _IO.
/// Threads: any thread; calls are independent of each other.
#[no_mangle]
pub unsafe extern "C" fn lamina_tokenizer_train(
    inputs: *const *const c_char,
    n_inputs: usize,
    out_dir: *const c_char,
    params: *const lamina_tokenizer_train_params,
    out_report_json: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: the caller's out-pointer, array, C-string and params contracts.
    unsafe {
        call_out(out_report_json, "out_report_json", || {
            let inputs = paths(inputs, n_inputs, "inputs", "n_inputs")?;
            let out_dir = Path::new(str_arg(out_dir, "out_dir")?);
            let options = tokenizer_options(&read_params(params)?)?;
            report_json(Some(train_files(&inputs, out_dir, &options)?))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The architecture and the initialisation

/// The shape of a LLaMA decoder trained from scratch (SwiGLU MLP, RMSNorm, RoPE, grouped-query
/// attention). Both an input (lamina_init_model) and an output (lamina_model_spec_preset): as
/// for the other output structs, the caller sets struct_size = sizeof(lamina_model_spec) before
/// lamina_model_spec_preset fills it, then may change fields. Checked by lamina_init_model
/// (LAMINA_STATUS_ERROR_INVALID_ARGUMENT naming the field).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_model_spec {
    /// Set by the caller to sizeof(lamina_model_spec).
    pub struct_size: usize,
    /// Transformer blocks, at least 1.
    pub n_layers: u32,
    /// The residual stream's width (`hidden_size`).
    pub width: u32,
    /// Attention heads; they divide the width into heads of an even number of dimensions.
    pub n_heads: u32,
    /// Key/value heads (grouped-query attention); they divide n_heads.
    pub n_kv_heads: u32,
    /// The MLP's inner width (`intermediate_size`).
    pub ffn_width: u32,
    /// Positions the model is trained for (`max_position_embeddings`).
    pub context_length: u32,
    /// RoPE's base frequency (`rope_theta`), > 0.
    pub rope_base: f32,
    /// RMSNorm's epsilon, > 0.
    pub rms_norm_eps: f32,
    /// The LM head is the token embedding matrix.
    pub tied_embeddings: bool,
    /// Rows of the embedding: the tokenizer's vocabulary size or more (the extra rows become
    /// unused placeholder tokens in the GGUF).
    pub vocab_size: u32,
}

impl From<&ModelSpec> for lamina_model_spec {
    fn from(s: &ModelSpec) -> Self {
        let narrow = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            struct_size: std::mem::size_of::<Self>(),
            n_layers: narrow(s.n_layers),
            width: narrow(s.width),
            n_heads: narrow(s.n_heads),
            n_kv_heads: narrow(s.n_kv_heads),
            ffn_width: narrow(s.ffn_width),
            context_length: narrow(s.context_length),
            rope_base: s.rope_base,
            rms_norm_eps: s.rms_norm_eps,
            tied_embeddings: s.tied_embeddings,
            vocab_size: narrow(s.vocab_size),
        }
    }
}

impl From<&lamina_model_spec> for ModelSpec {
    fn from(s: &lamina_model_spec) -> Self {
        ModelSpec {
            n_layers: s.n_layers as usize,
            width: s.width as usize,
            n_heads: s.n_heads as usize,
            n_kv_heads: s.n_kv_heads as usize,
            ffn_width: s.ffn_width as usize,
            context_length: s.context_length as usize,
            rope_base: s.rope_base,
            rms_norm_eps: s.rms_norm_eps,
            tied_embeddings: s.tied_embeddings,
            vocab_size: s.vocab_size as usize,
        }
    }
}

// SAFETY: repr(C), starts with usize; numbers and a C bool (0/1) accept every value a C caller
// writes. The defaults (the fields an older, shorter struct lacks) are the smallest preset's.
unsafe impl Versioned for lamina_model_spec {
    const NAME: &'static str = "lamina_model_spec";
    fn defaults() -> Self {
        // The preset exists; were it missing, a zero spec would fail validation.
        ModelSpec::preset(PRESETS[0], PRESET_VOCAB_SIZE).map(|spec| Self::from(&spec)).unwrap_or_else(|_| Self::zeroed())
    }
}

impl lamina_model_spec {
    fn zeroed() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            n_layers: 0,
            width: 0,
            n_heads: 0,
            n_kv_heads: 0,
            ffn_width: 0,
            context_length: 0,
            rope_base: 0.0,
            rms_norm_eps: 0.0,
            tied_embeddings: false,
            vocab_size: 0,
        }
    }
}

/// The struct_size the caller declared for a spec, checked before any work.
///
/// # Safety
/// `spec` is NULL or points to at least `size_t` readable bytes.
unsafe fn declared_spec_size(spec: *const lamina_model_spec, name: &'static str) -> Result<usize, Failure> {
    if spec.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL; struct_size is the struct's first field.
    let declared = unsafe { std::ptr::read_unaligned(spec.cast::<usize>()) };
    if declared < std::mem::size_of::<usize>() {
        return Err(invalid(format!("{name}->struct_size is {declared}: set it to sizeof(lamina_model_spec)")));
    }
    Ok(declared)
}

/// The runtime's spec for a caller's C spec (fields past an older caller's struct_size are the
/// smallest preset's).
///
/// # Safety
/// `spec` is NULL or points to its declared struct_size of readable bytes.
unsafe fn read_spec(spec: *const lamina_model_spec) -> Result<ModelSpec, Failure> {
    // SAFETY: forwarded contract; the size check makes read_params' own one pass.
    unsafe {
        declared_spec_size(spec, "spec")?;
        Ok(ModelSpec::from(&read_params(spec)?))
    }
}

/// The preset `name` with `vocab_size` tokens, checked, written into the first struct_size
/// bytes of the caller's `out`.
///
/// # Safety
/// `name` as for [`str_arg`]; `out` is NULL or valid for reading a `size_t` and writing its
/// declared struct_size of bytes.
unsafe fn write_preset(name: *const c_char, vocab_size: u32, out: *mut lamina_model_spec) -> Result<(), Failure> {
    // SAFETY: forwarded contracts.
    let (declared, name) = unsafe { (declared_spec_size(out, "out_spec")?, str_arg(name, "name")?) };
    let spec = ModelSpec::preset(name, vocab_size as usize)?;
    spec.validate()?;
    let value = lamina_model_spec { struct_size: declared, ..lamina_model_spec::from(&spec) };
    let n = declared.min(std::mem::size_of::<lamina_model_spec>());
    // SAFETY: at most the caller's declared size is copied into its struct.
    unsafe { std::ptr::copy_nonoverlapping((&value as *const lamina_model_spec).cast::<u8>(), out.cast::<u8>(), n) };
    Ok(())
}

/// Fill `*out_spec` with the preset `name` at a vocabulary of `vocab_size` tokens. The presets,
/// at 4096 tokens (each 1024 more tokens add 1024 x width parameters):
/// "1m": 3 layers, width 128, 4 heads, 2 KV heads, FFN 384, context 256 (1,115,008 parameters);
/// "5m": 6 layers, width 256, 4 heads, 2 KV heads, FFN 640, context 512 (5,180,672);
/// "20m": 12 layers, width 384, 6 heads, 2 KV heads, FFN 1024, context 1024 (20,456,832);
/// all with RoPE base 10000, RMSNorm eps 1e-5 and a tied LM head. Set
/// `out_spec->struct_size = sizeof(lamina_model_spec)` first: only the fields that fit in it
/// are written.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `name` and `out_spec` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (an unknown preset, a vocab_size
/// of 0, a struct_size smaller than sizeof(size_t)); `*out_spec` is unmodified then.
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_model_spec_preset(name: *const c_char, vocab_size: u32, out_spec: *mut lamina_model_spec) -> lamina_status {
    // SAFETY: the caller's C-string and output-struct contracts.
    call(|| unsafe { write_preset(name, vocab_size, out_spec) })
}

/// How lamina_init_model draws the weights. Initialise with `lamina_init_params_init(&p,
/// sizeof p)`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_init_params {
    /// sizeof(lamina_init_params), set by lamina_init_params_init().
    pub struct_size: usize,
    /// Seed of the weights: each tensor draws from its own generator, seeded by this and the
    /// tensor's name, so the same seed gives the same model (default 0).
    pub seed: u64,
    /// Standard deviation of the embeddings and projections, > 0; the projections into the
    /// residual stream are scaled by 1/sqrt(2 x layers) (default 0.02).
    pub std: f32,
    /// Take the token embeddings from this GGUF model instead of drawing them: its vocabulary
    /// must list the same tokens in the same order and its width must be the spec's. NULL =
    /// draw them (default). Read during the call only.
    pub embeddings_from: *const c_char,
}

// SAFETY: repr(C), starts with usize; numbers and a pointer accept any bit pattern.
unsafe impl Versioned for lamina_init_params {
    const NAME: &'static str = "lamina_init_params";
    fn defaults() -> Self {
        let d = InitOptions::default();
        Self { struct_size: std::mem::size_of::<Self>(), seed: d.seed, std: d.std, embeddings_from: std::ptr::null() }
    }
}

/// The runtime's options for C init params.
///
/// # Safety
/// `params` as for [`read_params`]; its `embeddings_from` NULL or a NUL-terminated string.
unsafe fn init_options(params: *const lamina_init_params) -> Result<InitOptions, Failure> {
    // SAFETY: forwarded contracts.
    let p = unsafe { read_params(params) }?;
    // SAFETY: forwarded contract.
    let embeddings_from = unsafe { opt_str_arg(p.embeddings_from, "params.embeddings_from") }?;
    Ok(InitOptions { seed: p.seed, std: p.std, embeddings_from: embeddings_from.map(Into::into) })
}

/// The runtime's progress closure for a C callback.
fn init_progress(progress: lamina_progress_callback, user_data: *mut c_void) -> impl FnMut(u64, u64) -> bool {
    let narrow = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    move |done, total| match progress {
        None => true,
        // SAFETY: the host supplied this callback and user data for this call.
        Some(callback) => unsafe { callback(narrow(done), narrow(total), user_data) },
    }
}

/// Fill `*params` with the defaults (seed 0, std 0.02, embeddings drawn). Pass
/// `sizeof(*params)` as `struct_size` (see lamina_corpus_params_init). Call this before
/// changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_init_params_init(params: *mut lamina_init_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Initialise a model of shape `spec` with the tokenizer in `tokenizer_dir` (tokenizer.json and,
/// optionally, tokenizer_config.json, as lamina_tokenizer_train writes them) and write it as a
/// Hugging Face directory `hf_dir` (created: model.safetensors in f32, config.json and the
/// tokenizer files) and, when `gguf_path` is not NULL, as a GGUF file there, which
/// lamina_model_load, llama.cpp and the trainers load. The weights are streamed, one tensor in
/// memory at a time.
///
/// `progress(done, total, user_data)` is called after each tensor written (each twice with a
/// GGUF: once per file). Returning false cancels: the call returns LAMINA_STATUS_OK with the
/// report `{"cancelled": true}`; cancelled during the safetensors file, nothing of it is left;
/// during the GGUF, the Hugging Face directory, complete by then, stays.
///
/// On success `*out_report_json` receives a JSON object: `{"spec": {"n_layers", "width",
/// "n_heads", "n_kv_heads", "ffn_width", "context_length", "rope_base", "rms_norm_eps",
/// "tied_embeddings", "vocab_size"}, "n_params", "hf_files", "gguf" (null without one),
/// "embeddings_from", "cancelled": false}`.
/// Ownership: the report string belongs to the caller, freed with lamina_string_free; the files
/// written belong to the caller.
/// NULL: `spec`, `tokenizer_dir`, `hf_dir` and `out_report_json` are required; `gguf_path`
/// may be NULL (no GGUF), `params` may be NULL for the defaults, `progress` and `user_data`
/// may be NULL.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (a spec field out of range or
/// inconsistent, a vocab_size smaller than the tokenizer's, std not > 0, embeddings from a
/// model of another vocabulary or width, bad struct_size: the message names the field), _IO (a
/// missing tokenizer, a file that could not be written), _DATA (a tokenizer file that does not
/// parse or convert to GGUF), _NOT_GGUF and _MODEL_NOT_FOUND (params.embeddings_from).
/// Threads: any thread; calls are independent of each other.
/// The progress callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_init_model(
    spec: *const lamina_model_spec,
    tokenizer_dir: *const c_char,
    hf_dir: *const c_char,
    gguf_path: *const c_char,
    params: *const lamina_init_params,
    progress: lamina_progress_callback,
    user_data: *mut c_void,
    out_report_json: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: the caller's out-pointer, C-string, spec and params contracts.
    unsafe {
        call_out(out_report_json, "out_report_json", || {
            let spec = read_spec(spec)?;
            let tokenizer_dir = Path::new(str_arg(tokenizer_dir, "tokenizer_dir")?);
            let hf_dir = Path::new(str_arg(hf_dir, "hf_dir")?);
            let gguf = opt_str_arg(gguf_path, "gguf_path")?.map(Path::new);
            let options = init_options(params)?;
            report_json(init_model(&spec, tokenizer_dir, hf_dir, gguf, &options, init_progress(progress, user_data))?)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Pretraining

/// Options of a pretraining run (lamina_pretrainer_create): a new model of `spec` with the
/// tokenizer in `tokenizer_dir`, or an existing GGUF model (`init_gguf`, continued
/// pretraining), trained on the corpus directory `corpus_dir` for at least one budget (steps,
/// tokens or seconds) and written to `output_dir`. Initialise with
/// `lamina_pretrain_params_init(&p, sizeof p)`, then set the corpus, the output, the model and
/// a budget. Strings are NUL-terminated UTF-8 and `spec` a caller's struct, all read during
/// lamina_pretrainer_create only (the trainer keeps copies). Values are checked by
/// lamina_pretrainer_create (LAMINA_STATUS_ERROR_INVALID_ARGUMENT naming the field).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_pretrain_params {
    /// sizeof(lamina_pretrain_params), set by lamina_pretrain_params_init().
    pub struct_size: usize,
    /// The corpus directory as lamina_corpus_build writes it: train.jsonl (required),
    /// validation.jsonl (the validation loss) and test.jsonl (the final test perplexity and
    /// next-token accuracy) when present. Required (default NULL).
    pub corpus_dir: *const c_char,
    /// The output directory, created: init/ and init.gguf (a new model's initial weights),
    /// model.gguf (the trained model, unless gguf_path), log.json (the report) and loss.svg (the
    /// loss curves). Required (default NULL).
    pub output_dir: *const c_char,
    /// The shape of a new model (lamina_model_spec_preset, then change fields), with its
    /// struct_size set; its vocab_size is at least the tokenizer's. NULL = continue init_gguf
    /// instead (default NULL). Exactly one of spec and init_gguf is given.
    pub spec: *const lamina_model_spec,
    /// A new model's tokenizer directory (tokenizer.json, tokenizer_config.json, as
    /// lamina_tokenizer_train writes them); required with spec, not allowed with init_gguf
    /// (default NULL).
    pub tokenizer_dir: *const c_char,
    /// Standard deviation of a new model's initial embeddings and projections, > 0 (default
    /// 0.02; see lamina_init_params).
    pub init_std: f32,
    /// Continue pretraining this GGUF model: its weights, tokenizer and shape (default NULL).
    pub init_gguf: *const c_char,
    /// Write the trained model here; NULL = output_dir/model.gguf (default).
    pub gguf_path: *const c_char,
    /// Also convert the trained model to a Hugging Face directory here (safetensors,
    /// config.json, tokenizer files); NULL = no (default).
    pub hf_dir: *const c_char,
    /// Tokens per training sequence, at least 2 and at most the model's context length: the
    /// documents, each followed by EOS, are joined and cut to this length (default 256).
    pub seq_len: u32,
    /// Sequences per micro-batch, at least 1 (default 8).
    pub batch_size: u32,
    /// Micro-batches per optimizer step, at least 1 (default 1).
    pub grad_accum: u32,
    /// Peak learning rate of AdamW, > 0 (default 1e-3).
    pub learning_rate: f32,
    /// AdamW's first-moment decay, in [0, 1) (default 0.9).
    pub beta1: f32,
    /// AdamW's second-moment decay, in [0, 1) (default 0.95).
    pub beta2: f32,
    /// AdamW's epsilon, > 0 (default 1e-8).
    pub eps: f32,
    /// Decoupled weight decay of the projections and an untied LM head, >= 0 (default 0.1).
    pub weight_decay: f32,
    /// Decay the norm weights and the token embedding too (default false).
    pub decay_norms_and_embeddings: bool,
    /// Steps of linear warmup from 0 to the peak rate (default 100).
    pub warmup_steps: u32,
    /// A lamina_train_schedule value: the decay after warmup, down to the planned last step
    /// (default LAMINA_TRAIN_SCHEDULE_COSINE). An int so that any value is safe to read.
    pub schedule: i32,
    /// Clip the gradient norm to this, >= 0; 0 = no clipping (default 1).
    pub max_grad_norm: f32,
    /// Residual dropout on each block's attention and MLP outputs, in [0, 1) (default 0).
    pub dropout: f32,
    /// Dropout on the attention probabilities, in [0, 1) (default 0).
    pub attention_dropout: f32,
    /// Budget in optimizer steps; 0 = no step budget (default 0). At least one of the three
    /// budgets is set; with several, the run stops at the first reached.
    pub budget_steps: u64,
    /// Budget in training tokens (positions of the sequences trained on); 0 = none (default 0).
    pub budget_tokens: u64,
    /// Budget in seconds of training and validation (the schedule is planned from the speed of
    /// the first steps); 0 = none (default 0); otherwise > 0 and finite.
    pub budget_seconds: f64,
    /// Validate every this many steps; 0 = before the first step and after the last only
    /// (default 100).
    pub eval_every: u32,
    /// Validation sequences used, the first ones; 0 = all (default 128).
    pub eval_sequences: u32,
    /// Write checkpoints here: at the start, every checkpoint_every steps, on cancellation and
    /// at the end; NULL = none (default).
    pub checkpoint_dir: *const c_char,
    /// Also checkpoint every this many steps; 0 = only at the start and the end (default 0).
    pub checkpoint_every: u32,
    /// Continue the run checkpointed in checkpoint_dir (its training options come from the
    /// checkpoint; the step and token budgets may set a new total): give the same corpus,
    /// output directory and seq_len (default false).
    pub resume: bool,
    /// Seed of the initialisation, the data order and the dropout masks (default 0).
    pub seed: u64,
    /// MiB of saved activations per micro-batch; the blocks past it are recomputed in the
    /// backward pass. 0 = no limit (default 768).
    pub activation_memory_mib: u32,
    /// Recompute every block in the backward pass: less memory, about a third more time
    /// (default false).
    pub checkpointing: bool,
    /// Threads of the native engine; 0 = one per core (default 0).
    pub n_threads: u32,
    /// Precision of the weight products: "auto" (bf16 where it is the faster path: AMX tiles, or
    /// an AVX512-BF16 dot product measured faster than f32 FMAs), "f32" or "bf16"; NULL =
    /// "auto" (default).
    pub precision: *const c_char,
}

// SAFETY: repr(C), starts with usize; numbers, C bools (0/1) and pointers accept every value a
// C caller writes (the schedule is an int, checked on use).
unsafe impl Versioned for lamina_pretrain_params {
    const NAME: &'static str = "lamina_pretrain_params";
    fn defaults() -> Self {
        let d = PretrainOptions::default();
        let narrow = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            struct_size: std::mem::size_of::<Self>(),
            corpus_dir: std::ptr::null(),
            output_dir: std::ptr::null(),
            spec: std::ptr::null(),
            tokenizer_dir: std::ptr::null(),
            init_std: InitOptions::default().std,
            init_gguf: std::ptr::null(),
            gguf_path: std::ptr::null(),
            hf_dir: std::ptr::null(),
            seq_len: narrow(d.seq_len),
            batch_size: narrow(d.batch_size),
            grad_accum: narrow(d.grad_accum),
            learning_rate: d.learning_rate,
            beta1: d.beta1,
            beta2: d.beta2,
            eps: d.eps,
            weight_decay: d.weight_decay,
            decay_norms_and_embeddings: d.decay_norms_and_embeddings,
            warmup_steps: narrow(d.warmup_steps),
            schedule: schedule_code(d.schedule) as i32,
            max_grad_norm: d.max_grad_norm,
            dropout: d.dropout,
            attention_dropout: d.attention_dropout,
            budget_steps: 0,
            budget_tokens: 0,
            budget_seconds: 0.0,
            eval_every: narrow(d.eval_every),
            eval_sequences: narrow(d.eval_sequences),
            checkpoint_dir: std::ptr::null(),
            checkpoint_every: narrow(d.checkpoint_every),
            resume: d.resume,
            seed: d.seed,
            activation_memory_mib: narrow(d.activation_memory_mib),
            checkpointing: d.checkpointing,
            n_threads: 0,
            precision: std::ptr::null(),
        }
    }
}

/// Fill `*params` with the defaults (those of the Rust `PretrainOptions`: no corpus, output,
/// model or budget, which the caller sets; sequences of 256 tokens, 8 per step, AdamW at 1e-3
/// with 100 warmup steps and a cosine decay, weight decay 0.1, clipping at 1, no dropout,
/// validation every 100 steps on 128 sequences, seed 0). Pass `sizeof(*params)` as
/// `struct_size` (see lamina_corpus_params_init). Call this before changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_pretrain_params_init(params: *mut lamina_pretrain_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Where the run's model comes from: a new model of `p.spec`, or the GGUF model `p.init_gguf`.
///
/// # Safety
/// `p.spec` is NULL or a caller's spec of its declared struct_size; the strings NULL or
/// NUL-terminated.
unsafe fn model_source(p: &lamina_pretrain_params) -> Result<ModelSource, Failure> {
    // SAFETY: forwarded contract.
    let (gguf, tokenizer) =
        unsafe { (opt_str_arg(p.init_gguf, "params.init_gguf")?, opt_str_arg(p.tokenizer_dir, "params.tokenizer_dir")?) };
    match (p.spec.is_null(), gguf, tokenizer) {
        (false, Some(_), _) => Err(invalid(
            "params.spec and params.init_gguf are both set: a run trains a new model of the spec or continues the GGUF model, not both",
        )),
        (true, Some(_), Some(_)) => {
            Err(invalid("params.tokenizer_dir is for a new model: the GGUF model of params.init_gguf has its own tokenizer"))
        }
        (true, Some(path), None) => Ok(ModelSource::Gguf(path.into())),
        (true, None, _) => Err(Failure::new(
            lamina_status::ErrorNullArgument,
            "params.spec and params.init_gguf are both NULL: give the spec of a new model (lamina_model_spec_preset) or a GGUF model to continue",
        )),
        (false, None, None) => Err(Failure::null("params.tokenizer_dir")),
        // SAFETY: forwarded contract.
        (false, None, Some(dir)) => Ok(ModelSource::New { spec: unsafe { read_spec(p.spec) }?, tokenizer: dir.into(), std: p.init_std }),
    }
}

/// The runtime's options for C pretraining params: a 0 budget field is no budget of that kind;
/// everything else is checked by [`PretrainOptions::preflight`].
///
/// # Safety
/// As [`model_source`].
unsafe fn pretrain_options(p: &lamina_pretrain_params) -> Result<PretrainOptions, Failure> {
    // SAFETY: forwarded contract, for each string of `p`.
    let path = |ptr: *const c_char, name: &'static str| unsafe { opt_str_arg(ptr, name) }.map(|s| s.map(PathBuf::from));
    let required = |ptr: *const c_char, name: &'static str| path(ptr, name)?.ok_or_else(|| Failure::null(name));
    let precision = match path(p.precision, "params.precision")? {
        None => Precision::Auto,
        Some(name) => Precision::parse(&name.to_string_lossy())?,
    };
    let wide = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(PretrainOptions {
        corpus: required(p.corpus_dir, "params.corpus_dir")?,
        output: required(p.output_dir, "params.output_dir")?,
        // SAFETY: forwarded contract.
        model: unsafe { model_source(p) }?,
        gguf: path(p.gguf_path, "params.gguf_path")?,
        hf: path(p.hf_dir, "params.hf_dir")?,
        seq_len: p.seq_len as usize,
        batch_size: p.batch_size as usize,
        grad_accum: p.grad_accum as usize,
        learning_rate: p.learning_rate,
        beta1: p.beta1,
        beta2: p.beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
        decay_norms_and_embeddings: p.decay_norms_and_embeddings,
        warmup_steps: p.warmup_steps as usize,
        schedule: schedule_from_code(p.schedule)?,
        max_grad_norm: p.max_grad_norm,
        dropout: p.dropout,
        attention_dropout: p.attention_dropout,
        budget: Budget {
            steps: (p.budget_steps != 0).then(|| wide(p.budget_steps)),
            tokens: (p.budget_tokens != 0).then_some(p.budget_tokens),
            seconds: (p.budget_seconds != 0.0).then_some(p.budget_seconds),
        },
        eval_every: p.eval_every as usize,
        eval_sequences: p.eval_sequences as usize,
        checkpoint_dir: path(p.checkpoint_dir, "params.checkpoint_dir")?,
        checkpoint_every: p.checkpoint_every as usize,
        resume: p.resume,
        seed: p.seed,
        activation_memory_mib: p.activation_memory_mib as usize,
        checkpointing: p.checkpointing,
        engine: NativeParams { n_threads: p.n_threads as usize, precision, ..Default::default() },
        dump_batches: None,
    })
}

/// What the progress callback of lamina_pretrainer_run receives after every optimizer step.
/// `struct_size` is sizeof the library's struct: fields added by newer versions come last, so
/// check it before reading a field your header does not have.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_pretrain_progress {
    /// sizeof(lamina_pretrain_progress) of the library.
    pub struct_size: usize,
    /// Steps done (1 after the first; a resumed run counts on from its checkpoint).
    pub step: u64,
    /// The step the schedule ends at; 0 while a time budget's plan is not made yet (it is made
    /// after the first few steps, from their speed).
    pub total_steps: u64,
    /// Training tokens seen so far (every position of the sequences trained on).
    pub tokens_seen: u64,
    /// Mean next-token loss of this step (nats).
    pub loss: f64,
    /// The learning rate this step used.
    pub learning_rate: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens per second over the run so far, validations included.
    pub tokens_per_second: f64,
    /// Seconds since the run's first step.
    pub elapsed_seconds: f64,
    /// Estimated seconds to the end (the planned steps at the speed so far, or what is left of
    /// a time budget where that is shorter).
    pub eta_seconds: f64,
    /// Validation loss computed at this step (see eval_every), or NaN when none was.
    pub val_loss: f64,
    /// exp(val_loss), or NaN when no validation was computed at this step.
    pub val_perplexity: f64,
}

impl From<&PretrainProgress> for lamina_pretrain_progress {
    fn from(p: &PretrainProgress) -> Self {
        let val_loss = p.val_loss.filter(|_| p.evaluated).unwrap_or(f64::NAN);
        Self {
            struct_size: std::mem::size_of::<Self>(),
            step: p.step as u64,
            total_steps: p.planned_steps as u64,
            tokens_seen: p.tokens_seen,
            loss: p.loss,
            learning_rate: f64::from(p.learning_rate),
            grad_norm: p.grad_norm,
            tokens_per_second: p.tokens_per_second,
            elapsed_seconds: p.elapsed.as_secs_f64(),
            eta_seconds: p.time_left.as_secs_f64(),
            val_loss,
            val_perplexity: val_loss.exp(),
        }
    }
}

/// Reports a pretraining run's progress after each optimizer step; `progress` is valid only
/// during the call. Return true to go on, false to stop after this step. Called on the thread
/// that called lamina_pretrainer_run; it may call lamina_pretrainer_cancel, but any other call
/// on the same pretrainer fails with LAMINA_STATUS_ERROR_BUSY.
pub type lamina_pretrain_progress_callback =
    Option<unsafe extern "C" fn(progress: *const lamina_pretrain_progress, user_data: *mut c_void) -> bool>;

/// Where a pretrainer's run stands.
enum Outcome {
    NotRun,
    /// The run failed with this message (the error lamina_pretrainer_run returned).
    Failed(String),
    /// The run finished or was cancelled: its report (a cancelled run's, from its log.json).
    Done(Box<PretrainReport>),
}

/// The state behind a pretrainer handle.
struct Pretraining {
    options: PretrainOptions,
    outcome: Outcome,
}

/// A pretraining run (training a model from scratch, or continuing a GGUF model's
/// pretraining). Opaque; create with `lamina_pretrainer_create`, run once with
/// `lamina_pretrainer_run`, read what it did with `lamina_pretrainer_report_json`, free with
/// `lamina_pretrainer_free`.
///
/// Threads: one thread at a time uses a pretrainer (run, report); a call made while another is
/// in progress fails with LAMINA_STATUS_ERROR_BUSY. `lamina_pretrainer_cancel` is the
/// exception: any thread may call it at any time, including from the progress callback.
pub struct lamina_pretrainer {
    state: Mutex<Pretraining>,
    /// Set by lamina_pretrainer_cancel; read by the run's progress closure after every step.
    cancel: AtomicBool,
}

static PRETRAINERS: Registry<lamina_pretrainer> = Registry::new("lamina_pretrainer");

/// Run `f` on the pretrainer's state, or fail with _BUSY while another call holds it.
fn with_pretrainer<R>(
    trainer: *const lamina_pretrainer,
    f: impl FnOnce(&lamina_pretrainer, &mut Pretraining) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let handle = PRETRAINERS.get(trainer, "trainer")?;
    let mut guard = match handle.state.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::WouldBlock) => return Err(lamina::Error::Busy.into()),
        // A panic inside an earlier call poisoned the lock; the state is a finished outcome or
        // none, both consistent.
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
    };
    f(&handle, &mut guard)
}

/// Create a pretrainer: check `params` (every option, then what the files allow before any
/// work: the corpus directory holds train.jsonl, the tokenizer loads and has an EOS token, a
/// new model's vocab_size covers the tokenizer's, seq_len fits its context, and its training
/// fits in memory, the estimate in the message) and keep a copy of them. Nothing is read
/// beyond that and nothing is written until lamina_pretrainer_run.
/// Ownership: on success `*out_trainer` receives a handle owned by the caller, freed with
/// lamina_pretrainer_free; on failure it is left unmodified.
/// NULL: `params`, `params->corpus_dir`, `params->output_dir`, `out_trainer` and one of
/// `params->spec` and `params->init_gguf` are required; `params->tokenizer_dir` with
/// `params->spec`.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (no budget or a zero one, a params
/// field out of range, a spec whose heads do not divide its width, both spec and init_gguf,
/// seq_len longer than the context, a model too large to train in the available memory, bad
/// struct_size: the message names the field), _DATA (no corpus directory or train.jsonl, a
/// tokenizer file that does not parse), _IO (a missing tokenizer), _MODEL_NOT_FOUND and
/// _NOT_GGUF (params.init_gguf).
/// Threads: any thread; pretrainers are independent of each other and of other handles.
#[no_mangle]
pub unsafe extern "C" fn lamina_pretrainer_create(
    params: *const lamina_pretrain_params,
    out_trainer: *mut *mut lamina_pretrainer,
) -> lamina_status {
    // SAFETY: the caller's out-pointer and params contracts.
    unsafe {
        call_out(out_trainer, "out_trainer", || {
            if params.is_null() {
                return Err(Failure::null("params"));
            }
            let options = pretrain_options(&read_params(params)?)?;
            options.preflight()?;
            let state = Mutex::new(Pretraining { options, outcome: Outcome::NotRun });
            Ok(PRETRAINERS.insert(lamina_pretrainer { state, cancel: AtomicBool::new(false) }))
        })
    }
}

impl Pretraining {
    /// A pretrainer runs once: its output directory then holds that run.
    fn check_not_run(&self) -> Result<(), Failure> {
        match self.outcome {
            Outcome::NotRun => Ok(()),
            _ => Err(invalid(
                "this pretrainer already ran: create a new one (to continue a cancelled run, with params.resume and the same checkpoint_dir)",
            )),
        }
    }

    /// Keep what [`pretrain`] returned and give its status: a cancelled run (`Ok(None)`) is a
    /// success whose report is the log.json it wrote just before returning.
    fn finish(&mut self, result: lamina::Result<Option<PretrainReport>>) -> Result<(), Failure> {
        let report = result.and_then(|r| match r {
            Some(report) => Ok(report),
            None => PretrainReport::read(&self.options.output.join(LOG_FILE)),
        });
        match report {
            Ok(report) => {
                self.outcome = Outcome::Done(Box::new(report));
                Ok(())
            }
            Err(e) => {
                let failure = Failure::from(e);
                self.outcome = Outcome::Failed(failure.message.clone());
                Err(failure)
            }
        }
    }
}

/// The runtime's progress closure for a C callback and the handle's cancel flag: the callback
/// sees every step, then the run goes on unless it returned false or a cancel arrived.
fn pretrain_progress<'a>(
    progress: lamina_pretrain_progress_callback,
    user_data: *mut c_void,
    cancel: &'a AtomicBool,
) -> impl FnMut(&PretrainProgress) -> bool + 'a {
    move |p: &PretrainProgress| {
        let go = match progress {
            None => true,
            // SAFETY: the host supplied this callback and user data for this call; the struct
            // outlives the call.
            Some(callback) => unsafe { callback(&lamina_pretrain_progress::from(p), user_data) },
        };
        go && !cancel.load(Ordering::SeqCst)
    }
}

/// Run the pretraining: tokenize the corpus, initialise a new model (init/ and init.gguf in the
/// output directory), validate, train until the budget is spent (or the planned last step), validate
/// again, write the trained model (GGUF, and the Hugging Face directory with params.hf_dir),
/// evaluate it on the test set, and write log.json and loss.svg. `progress` is called after
/// every optimizer step.
///
/// The run stops after the current step when the callback returns false or
/// lamina_pretrainer_cancel is called (from any thread, also before the run: it then stops
/// after its first step). A cancelled run is a success (LAMINA_STATUS_OK): it writes its log
/// and, with params.checkpoint_dir, a checkpoint that a new pretrainer with params.resume
/// continues; no trained model is written, and the report's "end" is "cancelled". A pretrainer
/// runs once: a second call fails with _INVALID_ARGUMENT.
/// Ownership: nothing is taken or returned; the files written belong to the caller.
/// NULL: `trainer` is required; `progress` and `user_data` may be NULL.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY, _INVALID_ARGUMENT (the pretrainer already
/// ran; training diverged: the message names the step and the last good checkpoint; an option
/// only the data can refute, such as a sequence longer than a GGUF model's context), _DATA (an
/// empty training set, or fewer tokens than one sequence; a malformed corpus record:
/// "path:line"), _IO (a file that could not be read or written), _MODEL_LOAD, _INTERNAL.
/// Threads: one call at a time per pretrainer; a call while another thread is inside one gets
/// _BUSY (lamina_pretrainer_cancel is the exception).
/// The progress callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_pretrainer_run(
    trainer: *mut lamina_pretrainer,
    progress: lamina_pretrain_progress_callback,
    user_data: *mut c_void,
) -> lamina_status {
    call(|| {
        with_pretrainer(trainer, |handle, state| {
            state.check_not_run()?;
            let result = pretrain(&state.options, pretrain_progress(progress, user_data, &handle.cancel));
            state.finish(result)
        })
    })
}

/// Stop a run in progress after its current step (a cancel before the run makes it stop after
/// its first step). Does not wait for the run to return.
/// Ownership: nothing is taken or returned.
/// NULL: `trainer` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE.
/// Threads: any thread, concurrently with any call on the pretrainer, and from the progress
/// callback: this is the one pretrainer call meant for another thread.
#[no_mangle]
pub extern "C" fn lamina_pretrainer_cancel(trainer: *const lamina_pretrainer) -> lamina_status {
    call(|| {
        PRETRAINERS.get(trainer, "trainer")?.cancel.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// The figures a C host most often wants, ahead of the full report.
#[derive(Serialize)]
struct Summary<'a> {
    /// "finished", "budget" (a time or token budget ran out first) or "cancelled".
    end: PretrainEnd,
    cancelled: bool,
    steps: usize,
    planned_steps: usize,
    tokens_seen: u64,
    final_loss: Option<f64>,
    val_perplexity_before: Option<f64>,
    val_perplexity_after: Option<f64>,
    test_perplexity: Option<f64>,
    test_accuracy: Option<f64>,
    seconds: f64,
    gguf: Option<&'a Path>,
    hf: Option<&'a Path>,
}

/// The report as lamina_pretrainer_report_json gives it: the summary, then the runtime's
/// report (the contents of log.json) field by field.
#[derive(Serialize)]
struct ReportJson<'a> {
    summary: Summary<'a>,
    #[serde(flatten)]
    report: &'a PretrainReport,
}

impl Pretraining {
    fn report_json(&self) -> Result<*mut c_char, Failure> {
        let r = match &self.outcome {
            Outcome::Done(report) => report,
            Outcome::NotRun => return Err(invalid("this pretrainer has not run yet: call lamina_pretrainer_run first")),
            Outcome::Failed(why) => return Err(invalid(format!("this pretrainer's run failed, so it has no report: {why}"))),
        };
        let summary = Summary {
            end: r.end,
            cancelled: r.end == PretrainEnd::Cancelled,
            steps: r.steps.last().map_or(0, |s| s.step),
            planned_steps: r.planned_steps,
            tokens_seen: r.tokens_seen,
            final_loss: r.steps.last().map(|s| s.loss),
            val_perplexity_before: r.evals.first().map(|e| e.perplexity),
            val_perplexity_after: r.evals.last().map(|e| e.perplexity),
            test_perplexity: r.test.as_ref().map(|t| t.perplexity),
            test_accuracy: r.test.as_ref().map(|t| t.accuracy),
            seconds: r.wall_seconds,
            gguf: r.files.gguf.as_deref(),
            hf: r.files.hf.as_deref(),
        };
        json_c_string(&ReportJson { summary, report: r })
    }
}

/// What the run did, as a JSON object: `{"summary": {"end" ("finished", "budget" or
/// "cancelled"), "cancelled", "steps", "planned_steps", "tokens_seen", "final_loss" (the last
/// step's), "val_perplexity_before", "val_perplexity_after" (null without a validation set),
/// "test_perplexity", "test_accuracy" (null without a test set, and for a cancelled run),
/// "seconds", "gguf", "hf" (the trained model's paths, null when not written)}, then log.json's
/// fields: "options", "model" (the shape), "parameters", "data" (documents, tokens and sequences
/// of each set), "planned_steps", "resumed_from", "steps" (every step's "step", "loss",
/// "learning_rate", "grad_norm", "tokens_seen", "tokens_per_second", "seconds"), "evals"
/// (every validation's "step", "loss", "perplexity"), "test", "tokens_seen", "wall_seconds",
/// "end", "files" ("init", "gguf", "hf", "log", "plot", "checkpoint")}`.
/// Ownership: the string belongs to the caller, freed with lamina_string_free.
/// NULL: `trainer` and `out_report_json` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_HANDLE, _BUSY, _INVALID_ARGUMENT (the pretrainer has not
/// run, or its run failed: the message repeats why).
/// Threads: one call at a time per pretrainer; a call while another thread is inside one (a
/// run) gets _BUSY (lamina_pretrainer_cancel is the exception).
#[no_mangle]
pub unsafe extern "C" fn lamina_pretrainer_report_json(
    trainer: *mut lamina_pretrainer,
    out_report_json: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: the caller's out-pointer contract.
    unsafe { call_out(out_report_json, "out_report_json", || with_pretrainer(trainer, |_, state| state.report_json())) }
}

/// Free a pretrainer.
/// Ownership: releases the caller's handle; the files its run wrote stay.
/// NULL: `trainer` may be NULL (nothing happens).
/// Errors: none returned; freeing twice is reported through lamina_last_error_message() and
/// otherwise ignored.
/// Threads: any thread. Freeing a pretrainer while another thread runs it is safe: the memory
/// goes when that call returns (cancel it first to make that soon).
#[no_mangle]
pub extern "C" fn lamina_pretrainer_free(trainer: *mut lamina_pretrainer) {
    guard(|| {
        if !trainer.is_null() && !PRETRAINERS.remove(trainer) {
            crate::status::set_last_error("lamina_pretrainer_free: not a live lamina_pretrainer handle (freed twice?)");
        }
    })
}
