//! Training from scratch, the steps before pretraining: corpus preparation
//! ([`lamina::corpus::build`]), tokenizer training ([`train_files`]) and a model's architecture
//! and random initialisation ([`init_model`]). This file converts C params and maps results;
//! every check of the options is the runtime's.
//!
//! A cancelled call (its progress callback returned false) is a success, as a cancelled
//! training run or evaluation is: its report is `{"cancelled": true}`. A finished call's report
//! is the runtime's, with `"cancelled": false` added.

use std::ffi::{c_char, c_void, CString};
use std::path::Path;

use lamina::corpus::{self, CorpusOptions, CorpusProgress, Normalization};
use lamina::pretrain::init::{init_model, InitOptions, ModelSpec, PRESETS, PRESET_VOCAB_SIZE};
use lamina::pretrain::tokenizer_train::{train_files, TokenizerTrainOptions};
use serde::Serialize;

use crate::args::{json_c_string, opt_str_arg, owned_c_string, read_params, str_arg, Versioned};
use crate::boundary::{call, call_out};
use crate::eval::{lamina_progress_callback, str_array};
use crate::status::{lamina_status, Failure};

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
