//! Evaluation: the metrics (BLEU, chrF, SQuAD EM/F1) and the evaluation harness.

use std::ffi::{c_char, c_void, CStr};
use std::path::Path;

use lamina::eval::run::{evaluate, EvalOptions, Task};
use lamina::eval::{bleu, chrf, squad};

use crate::args::{opt_str_arg, owned_c_string, read_params, str_arg, Versioned};
use crate::boundary::{call, call_out};
use crate::session::{lamina_session, with_session};
use crate::status::{lamina_status, Failure};

/// Borrow an array of `n` NUL-terminated UTF-8 strings. `ptr` may be NULL only when `n` is 0;
/// `count_name` names the argument that holds `n`, for the error message.
///
/// # Safety
/// `ptr` is NULL or points to `n` readable pointers, each NULL or a NUL-terminated string
/// valid for the returned lifetime.
pub(crate) unsafe fn str_array<'a>(ptr: *const *const c_char, n: usize, name: &str, count_name: &str) -> Result<Vec<&'a str>, Failure> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Failure::new(lamina_status::ErrorNullArgument, format!("`{name}` must not be NULL when {count_name} is {n}")));
    }
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for i in 0..n {
        // SAFETY: the caller provides `n` readable entries.
        let s = unsafe { *ptr.add(i) };
        if s.is_null() {
            return Err(Failure::new(lamina_status::ErrorNullArgument, format!("`{name}[{i}]` must not be NULL")));
        }
        // SAFETY: non-NULL and NUL-terminated per the caller's contract.
        let bytes = unsafe { CStr::from_ptr(s) }.to_bytes();
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Failure::new(
                lamina_status::ErrorInvalidUtf8,
                format!("`{name}[{i}]` is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            )
        })?;
        out.push(text);
    }
    Ok(out)
}

/// Hypotheses and reference streams of a corpus metric, as the runtime wants them.
///
/// # Safety
/// As [`str_array`], for both arrays.
unsafe fn corpus_args<'a>(
    hypotheses: *const *const c_char,
    n_hypotheses: usize,
    references: *const *const c_char,
    n_reference_streams: usize,
) -> Result<(Vec<&'a str>, Vec<Vec<&'a str>>), Failure> {
    // SAFETY: forwarded contract.
    let hyps = unsafe { str_array(hypotheses, n_hypotheses, "hypotheses", "n_hypotheses") }?;
    let n_refs = n_hypotheses.checked_mul(n_reference_streams).ok_or_else(|| {
        Failure::new(
            lamina_status::ErrorInvalidArgument,
            format!("n_hypotheses ({n_hypotheses}) * n_reference_streams ({n_reference_streams}) overflows"),
        )
    })?;
    // SAFETY: forwarded contract: `references` holds n_reference_streams * n_hypotheses strings.
    let refs = unsafe { str_array(references, n_refs, "references", "n_reference_streams * n_hypotheses") }?;
    let streams = (0..n_reference_streams).map(|k| refs[k * n_hypotheses..(k + 1) * n_hypotheses].to_vec()).collect();
    Ok((hyps, streams))
}

/// A corpus BLEU score with its statistics, as sacreBLEU's `BLEUScore` reports them. Output
/// only: the caller sets struct_size = sizeof(lamina_bleu_score) before the call, and lamina
/// writes only the fields that fit in it (so a program built against an older, shorter struct
/// keeps working with a newer library).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_bleu_score {
    /// Set by the caller to sizeof(lamina_bleu_score).
    pub struct_size: usize,
    /// BLEU, 0 to 100.
    pub score: f64,
    /// The (smoothed) n-gram precisions of orders 1 to 4, 0 to 100.
    pub precisions: [f64; 4],
    /// exp(1 - ref_len / sys_len) when the hypotheses are shorter than the references, else 1.
    pub brevity_penalty: f64,
    /// Hypothesis tokens (after 13a tokenization).
    pub sys_len: u64,
    /// Effective reference length: the sum over segments of the closest reference length.
    pub ref_len: u64,
    /// Clipped n-gram matches of orders 1 to 4.
    pub counts: [u64; 4],
    /// Hypothesis n-grams of orders 1 to 4.
    pub totals: [u64; 4],
}

/// Corpus BLEU with sacreBLEU 2.x's defaults (13a tokenization, case-sensitive, exp smoothing):
/// the same numbers as `sacrebleu.corpus_bleu(hypotheses, references)`.
///
/// `hypotheses` holds `n_hypotheses` segments (at least one). `references` holds
/// `n_reference_streams * n_hypotheses` strings in sacreBLEU's stream-major layout: reference
/// stream k (k < n_reference_streams, at least one stream) gives segment i its reference at
/// `references[k * n_hypotheses + i]`. With one reference per segment, `references` is simply
/// parallel to `hypotheses`. Every string may be empty.
///
/// Ownership: on success the score is written into the caller's `*out_score`, whose
/// struct_size the caller sets; nothing to free.
/// NULL: every array, every entry and `out_score` are required.
/// Errors: _NULL_ARGUMENT (an array or entry is NULL), _INVALID_UTF8, _INVALID_ARGUMENT (no
/// hypotheses, no reference streams, bad struct_size).
/// Threads: any thread; no shared state.
#[no_mangle]
pub unsafe extern "C" fn lamina_bleu(
    hypotheses: *const *const c_char,
    n_hypotheses: usize,
    references: *const *const c_char,
    n_reference_streams: usize,
    out_score: *mut lamina_bleu_score,
) -> lamina_status {
    call(|| {
        // SAFETY: the caller's output-struct and array contracts.
        unsafe {
            let declared = declared_size(out_score)?;
            let (hyps, refs) = corpus_args(hypotheses, n_hypotheses, references, n_reference_streams)?;
            write_bleu_score(&bleu::corpus_bleu(&hyps, &refs)?, declared, out_score);
        }
        Ok(())
    })
}

/// The struct_size the caller declared for `out_score`, checked before any work.
///
/// # Safety
/// `out_score` is NULL or points to at least `size_t` readable bytes.
unsafe fn declared_size(out_score: *const lamina_bleu_score) -> Result<usize, Failure> {
    if out_score.is_null() {
        return Err(Failure::null("out_score"));
    }
    // SAFETY: non-NULL; struct_size is the struct's first field.
    let declared = unsafe { std::ptr::read_unaligned(out_score.cast::<usize>()) };
    if declared < std::mem::size_of::<usize>() {
        return Err(Failure::new(lamina_status::ErrorInvalidArgument, "out_score->struct_size must be set to sizeof(lamina_bleu_score)"));
    }
    Ok(declared)
}

/// Write `b` into the first `declared` bytes of the caller's struct.
///
/// # Safety
/// `out_score` is valid for writing `declared` bytes.
unsafe fn write_bleu_score(b: &bleu::Bleu, declared: usize, out_score: *mut lamina_bleu_score) {
    let score = lamina_bleu_score {
        struct_size: declared,
        score: b.score,
        precisions: b.precisions,
        brevity_penalty: b.brevity_penalty,
        sys_len: b.sys_len,
        ref_len: b.ref_len,
        counts: b.counts,
        totals: b.totals,
    };
    let n = declared.min(std::mem::size_of::<lamina_bleu_score>());
    // SAFETY: copy at most the caller's declared size into its struct.
    unsafe { std::ptr::copy_nonoverlapping((&score as *const lamina_bleu_score).cast::<u8>(), out_score.cast::<u8>(), n) };
}

/// Corpus chrF (chrF2: character 6-grams, beta 2, whitespace ignored) with sacreBLEU 2.x's
/// defaults: the same number as `sacrebleu.corpus_chrf(hypotheses, references).score`, 0 to
/// 100. Arguments as for lamina_bleu.
/// Ownership: on success the score is written to `*out_score`; nothing to free.
/// NULL: every array, every entry and `out_score` are required.
/// Errors: _NULL_ARGUMENT (an array or entry is NULL), _INVALID_UTF8, _INVALID_ARGUMENT (no
/// hypotheses, no reference streams).
/// Threads: any thread; no shared state.
#[no_mangle]
pub unsafe extern "C" fn lamina_chrf(
    hypotheses: *const *const c_char,
    n_hypotheses: usize,
    references: *const *const c_char,
    n_reference_streams: usize,
    out_score: *mut f64,
) -> lamina_status {
    // SAFETY: the caller's out-pointer and array contracts.
    unsafe {
        call_out(out_score, "out_score", || {
            let (hyps, refs) = corpus_args(hypotheses, n_hypotheses, references, n_reference_streams)?;
            Ok(chrf::corpus_chrf(&hyps, &refs)?.score)
        })
    }
}

/// The shared body of the two SQuAD metrics.
///
/// # Safety
/// The caller's string and array contracts.
unsafe fn squad_metric(
    prediction: *const c_char,
    golds: *const *const c_char,
    n_golds: usize,
    out: *mut f64,
    metric: fn(&str, &[&str]) -> lamina::Result<f64>,
) -> lamina_status {
    // SAFETY: forwarded contracts.
    unsafe {
        call_out(out, "out_score", || {
            let prediction = str_arg(prediction, "prediction")?;
            let golds = str_array(golds, n_golds, "golds", "n_golds")?;
            Ok(metric(prediction, &golds)?)
        })
    }
}

/// SQuAD v1.1 exact match of one prediction, as the official evaluation script computes it:
/// 1.0 when the normalised `prediction` (lowercased, without punctuation, articles and extra
/// whitespace) equals some normalised gold answer, else 0.0. `golds` holds `n_golds` gold
/// answers (at least one).
/// Ownership: on success the score is written to `*out_score`; nothing to free.
/// NULL: `prediction`, `golds`, every gold and `out_score` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (no gold answer).
/// Threads: any thread; no shared state.
#[no_mangle]
pub unsafe extern "C" fn lamina_squad_exact_match(
    prediction: *const c_char,
    golds: *const *const c_char,
    n_golds: usize,
    out_score: *mut f64,
) -> lamina_status {
    // SAFETY: forwarded contracts.
    unsafe { squad_metric(prediction, golds, n_golds, out_score, |p, g| squad::exact_match(p, g)) }
}

/// SQuAD v1.1 token F1 of one prediction, 0.0 to 1.0: the best over the gold answers of the F1
/// of the bags of normalised tokens (0 when nothing is shared, including when both sides
/// normalise to nothing). Arguments as for lamina_squad_exact_match.
/// Ownership: on success the score is written to `*out_score`; nothing to free.
/// NULL: `prediction`, `golds`, every gold and `out_score` are required.
/// Errors: _NULL_ARGUMENT, _INVALID_UTF8, _INVALID_ARGUMENT (no gold answer).
/// Threads: any thread; no shared state.
#[no_mangle]
pub unsafe extern "C" fn lamina_squad_f1(
    prediction: *const c_char,
    golds: *const *const c_char,
    n_golds: usize,
    out_score: *mut f64,
) -> lamina_status {
    // SAFETY: forwarded contracts.
    unsafe { squad_metric(prediction, golds, n_golds, out_score, |p, g| squad::f1(p, g)) }
}

/// Options of lamina_evaluate. Initialise with `lamina_eval_params_init(&p, sizeof p)`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lamina_eval_params {
    /// sizeof(lamina_eval_params), set by lamina_eval_params_init().
    pub struct_size: usize,
    /// Evaluate only the first `limit` examples (perplexity: chunks, at least 2); 0 = all
    /// (default).
    pub limit: u32,
    /// Perplexity chunk size in tokens; 0 = 512 (default, llama-perplexity's). Must fit the
    /// session's context, and the text needs at least 2 chunks.
    pub perplexity_ctx: u32,
    /// Source language of translation records that do not name theirs ("en", "German", ...);
    /// NULL = none (default). Read during the call only.
    pub source_lang: *const c_char,
    /// Target language of translation records that do not name theirs; NULL = none (default).
    pub target_lang: *const c_char,
}

// SAFETY: repr(C), starts with usize; integers and pointers accept any bit pattern.
unsafe impl Versioned for lamina_eval_params {
    const NAME: &'static str = "lamina_eval_params";
    fn defaults() -> Self {
        Self {
            struct_size: std::mem::size_of::<Self>(),
            limit: 0,
            perplexity_ctx: 0,
            source_lang: std::ptr::null(),
            target_lang: std::ptr::null(),
        }
    }
}

/// Fill `*params` with the defaults (all examples, perplexity chunks of 512 tokens, no default
/// languages). Pass `sizeof(*params)` as `struct_size`: a program built against an older,
/// shorter version of the struct keeps working with a newer library (only the fields it knows
/// are written). Call this before changing any field.
/// Ownership: writes into the caller's struct; nothing to free.
/// NULL: `params` is required.
/// Errors: _NULL_ARGUMENT, _INVALID_ARGUMENT (struct_size smaller than sizeof(size_t)).
/// Threads: any thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_eval_params_init(params: *mut lamina_eval_params, struct_size: usize) -> lamina_status {
    // SAFETY: the caller provides `struct_size` writable bytes at `params`.
    call(|| unsafe { crate::args::init_params(params, struct_size) })
}

/// Reports an evaluation's progress: `done` of `total` examples (perplexity: chunks) are
/// finished. Called before the first example, after each one, and with done == total at the
/// end of a run that was not cancelled. Return true to go on, false to stop the evaluation
/// (lamina_evaluate then returns LAMINA_STATUS_OK with a report of the examples done so far
/// marked "cancelled": true). Called on the thread that called lamina_evaluate.
pub type lamina_progress_callback = Option<unsafe extern "C" fn(done: usize, total: usize, user_data: *mut c_void) -> bool>;

/// Evaluate the session's model on a data set and score it.
///
/// `task` is one of:
/// - "perplexity": `data_path` is UTF-8 text; llama-perplexity's method (chunks of
///   params->perplexity_ctx tokens, the second half of each scored); metrics "ppl",
///   "ppl_stderr", "mean_nll".
/// - "qa": JSONL, one `{"question": str, "answers": [str, ...], "context"?: str, "id"?: any}`
///   per line (`"answer": str` for a single gold answer); each question is answered greedily
///   as by lamina_session_answer; metrics "exact_match" and "f1" (SQuAD v1.1, percentages).
/// - "translate": JSONL, `{"source": str, "reference": str | "references": [str, ...],
///   "source_lang"?: str, "target_lang"?: str, "id"?: any}`; each source is translated as by
///   lamina_session_translate (records without languages use params->source_lang/target_lang);
///   metrics "bleu", "chrf" (sacreBLEU's), "bleu_p1".."bleu_p4", "brevity_penalty",
///   "hyp_len", "ref_len".
/// - "choice": JSONL, `{"question": str, "choices": [str, ...], "label": int, "id"?: any}`;
///   the choice the model gives the highest log-likelihood is its answer; metrics "accuracy"
///   (summed log-likelihood) and "accuracy_norm" (per token), percentages.
///
/// Blank lines are ignored; any malformed line fails the call before the first example.
///
/// Two ways stop a run early: the progress callback returning false, or lamina_session_cancel()
/// from another thread (it stops within one decode step; an answer or translation cut short is
/// not scored). The session's chat history is not changed.
///
/// On success `*out_report_json` receives a JSON object:
/// `{"task", "metrics": {name: number, ...}, "evaluated", "total", "cancelled", "seconds",
/// "predictions": [one object per example (perplexity: per chunk), ...]}`. A cancelled run is a
/// success with "cancelled": true; for qa, translate and choice its metrics cover the examples
/// done (none when no example was done), a cancelled perplexity run has none.
/// Errors: _INVALID_ARGUMENT (unknown task, perplexity_ctx larger than the session's context),
/// _DATA (a missing or malformed data file, a text too short for two perplexity chunks,
/// a translation record with an unknown language or none: the message names the file and, for
/// one bad line, "path:line"), _INVALID_UTF8, _NULL_ARGUMENT, _BUSY, _INVALID_HANDLE, _DECODE,
/// _IO.
/// Ownership: the report string belongs to the caller, freed with lamina_string_free.
/// NULL: `session`, `task`, `data_path` and `out_report_json` are required; `params` may be
/// NULL for the defaults, `progress` and `user_data` may be NULL.
/// Threads: one call at a time per session; a call while another thread is inside one gets
/// _BUSY (lamina_session_cancel is the exception).
/// The progress callback runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn lamina_evaluate(
    session: *mut lamina_session,
    task: *const c_char,
    data_path: *const c_char,
    params: *const lamina_eval_params,
    progress: lamina_progress_callback,
    user_data: *mut c_void,
    out_report_json: *mut *mut c_char,
) -> lamina_status {
    // SAFETY: the caller's out-pointer, C-string and params contracts.
    unsafe {
        call_out(out_report_json, "out_report_json", || {
            let task = Task::parse(str_arg(task, "task")?)?;
            let data_path = Path::new(str_arg(data_path, "data_path")?);
            let options = eval_options_from_c(&read_params(params)?)?;
            let on_progress = |done: usize, total: usize| match progress {
                None => true,
                // SAFETY: the host supplied this callback and user data for this call.
                Some(callback) => callback(done, total, user_data),
            };
            let report = with_session(session, |s| Ok(evaluate(s, task, data_path, &options, on_progress)?))?;
            Ok(owned_c_string(&report.to_json().to_string()))
        })
    }
}

/// The runtime's options for C eval params.
///
/// # Safety
/// The language fields are NULL or NUL-terminated strings valid during the call.
unsafe fn eval_options_from_c(p: &lamina_eval_params) -> Result<EvalOptions, Failure> {
    // SAFETY: forwarded contract.
    let (source_lang, target_lang) =
        unsafe { (opt_str_arg(p.source_lang, "params.source_lang")?, opt_str_arg(p.target_lang, "params.target_lang")?) };
    Ok(EvalOptions {
        limit: p.limit as usize,
        perplexity_ctx: p.perplexity_ctx as usize,
        source_lang: source_lang.map(str::to_string),
        target_lang: target_lang.map(str::to_string),
    })
}
