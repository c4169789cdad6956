//! The evaluation harness: run a session over a data set and score it.
//!
//! One entry point, [`evaluate`], for the four tasks. Progress is reported after each example
//! (or perplexity chunk) through a callback that can cancel; a cancelled run returns the scores
//! of what was done so far, marked `cancelled`. Every prediction is kept for the report.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{bleu, choice, chrf, data, perplexity, squad};
use crate::engine::Session;
use crate::error::{Error, Result};
use crate::tasks::{self, AnswerOptions, TranslateOptions};

/// What to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Plain text; llama-perplexity's method.
    Perplexity,
    /// QA JSONL; exact match and token F1 of `answer()` against the gold answers.
    Qa,
    /// Translation JSONL; corpus BLEU and chrF of `translate()` against the references.
    Translate,
    /// Multiple-choice JSONL; accuracy by log-likelihood (summed and per-token).
    Choice,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Perplexity => "perplexity",
            Task::Qa => "qa",
            Task::Translate => "translate",
            Task::Choice => "choice",
        }
    }

    pub fn parse(name: &str) -> Result<Task> {
        match name {
            "perplexity" => Ok(Task::Perplexity),
            "qa" => Ok(Task::Qa),
            "translate" => Ok(Task::Translate),
            "choice" => Ok(Task::Choice),
            other => Err(Error::invalid("task", format!("unknown task `{other}`: use perplexity, qa, translate or choice"))),
        }
    }
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EvalOptions {
    /// Evaluate only the first N examples (0 = all).
    pub limit: usize,
    /// Perplexity chunk size in tokens (0 = 512, llama-perplexity's default); must fit the
    /// session's context.
    pub perplexity_ctx: usize,
    /// Source/target language for translation records that do not name theirs.
    pub source_lang: Option<String>,
    pub target_lang: Option<String>,
}

/// Scores and predictions of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    pub task: Task,
    /// Named scores, in display order (percentages for EM/F1/accuracy/BLEU/chrF).
    pub metrics: Vec<(String, f64)>,
    /// Examples (or perplexity chunks) evaluated.
    pub evaluated: usize,
    /// Examples in the data (after `limit`).
    pub total: usize,
    /// One JSON object per example: inputs, prediction, per-example scores.
    pub predictions: Vec<Value>,
    pub elapsed: Duration,
    pub cancelled: bool,
}

impl EvalReport {
    /// The value of a metric by name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The report as JSON (scores and every prediction).
    pub fn to_json(&self) -> Value {
        json!({
            "task": self.task.name(),
            "metrics": self.metrics.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "evaluated": self.evaluated,
            "total": self.total,
            "cancelled": self.cancelled,
            "seconds": self.elapsed.as_secs_f64(),
            "predictions": self.predictions,
        })
    }
}

fn limited<T>(mut records: Vec<T>, limit: usize) -> Vec<T> {
    if limit > 0 {
        records.truncate(limit);
    }
    records
}

/// Evaluate `session`'s model on the data at `path`. `progress(done, total)` is called before
/// the first and after every example; returning false stops the run (the report then covers
/// the examples done and has `cancelled` set).
pub fn evaluate(
    session: &mut Session,
    task: Task,
    path: &Path,
    options: &EvalOptions,
    mut progress: impl FnMut(usize, usize) -> bool,
) -> Result<EvalReport> {
    let start = Instant::now();
    // A cancel (CancelHandle::cancel, lamina_session_cancel) stops the whole run, not only the
    // generation under way.
    let _running = session.begin_operation();
    let cancel = session.cancel_handle();
    let mut progress = |done, total| !cancel.is_cancelled() && progress(done, total);
    let mut report = match task {
        Task::Perplexity => eval_perplexity(session, path, options, &mut progress)?,
        Task::Qa => eval_qa(session, path, options, &mut progress)?,
        Task::Translate => eval_translate(session, path, options, &mut progress)?,
        Task::Choice => eval_choice(session, path, options, &mut progress)?,
    };
    report.elapsed = start.elapsed();
    Ok(report)
}

fn empty_report(task: Task, total: usize) -> EvalReport {
    EvalReport { task, metrics: Vec::new(), evaluated: 0, total, predictions: Vec::new(), elapsed: Duration::ZERO, cancelled: false }
}

fn eval_perplexity(
    session: &mut Session,
    path: &Path,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<EvalReport> {
    let text = data::read_text(path)?;
    let n_ctx = if options.perplexity_ctx == 0 { 512 } else { options.perplexity_ctx };
    if n_ctx > session.n_ctx() {
        return Err(Error::invalid("perplexity_ctx", format!("{n_ctx} does not fit the session's context of {}", session.n_ctx())));
    }
    let model = session.model().clone();
    let tokens = model.tokenize(&text, true, false);
    if tokens.len() < 2 * n_ctx {
        return Err(Error::Data {
            path: path.to_path_buf(),
            line: None,
            reason: format!("the text has {} tokens; perplexity with chunks of {n_ctx} needs at least {}", tokens.len(), 2 * n_ctx),
        });
    }
    let bos = model.adds_bos().then(|| model.bos_token());
    let mut chunks_needed = tokens.len() / n_ctx;
    if options.limit > 0 {
        chunks_needed = chunks_needed.min(options.limit.max(2));
    }
    let tokens = &tokens[..(chunks_needed * n_ctx).min(tokens.len())];
    let mut report = empty_report(Task::Perplexity, chunks_needed);
    let mut done = 0;
    let result = perplexity::perplexity(session, tokens, n_ctx, bos, |d, total| {
        done = d;
        progress(d, total)
    })?;
    match result {
        Some(p) => {
            report.metrics = vec![("ppl".into(), p.ppl), ("ppl_stderr".into(), p.ppl_stderr), ("mean_nll".into(), p.mean_nll)];
            report.evaluated = p.chunks;
            report.predictions = p.running_ppl.iter().enumerate().map(|(i, r)| json!({"chunk": i + 1, "running_ppl": r})).collect();
            report.predictions.push(json!({"tokens": tokens.len(), "scored_tokens": p.scored_tokens, "n_ctx": n_ctx}));
        }
        None => {
            report.cancelled = true;
            report.evaluated = done;
        }
    }
    Ok(report)
}

fn eval_qa(
    session: &mut Session,
    path: &Path,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<EvalReport> {
    let records = limited(data::read_qa(path)?, options.limit);
    let mut report = empty_report(Task::Qa, records.len());
    let (mut predictions, mut golds) = (Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        if !progress(i, records.len()) {
            report.cancelled = true;
            break;
        }
        let answer = tasks::answer(session, &r.question, r.context.as_deref(), &AnswerOptions::default())?;
        if session.is_cancelled() {
            report.cancelled = true; // the answer was cut short: not scored
            break;
        }
        let em = squad::exact_match(&answer, &r.answers)?;
        let f1 = squad::f1(&answer, &r.answers)?;
        report
            .predictions
            .push(json!({"id": r.id, "question": r.question, "answers": r.answers, "prediction": answer, "exact_match": em, "f1": f1}));
        predictions.push(answer);
        golds.push(r.answers.clone());
    }
    if !report.cancelled {
        progress(records.len(), records.len());
    }
    report.evaluated = predictions.len();
    if !predictions.is_empty() {
        let scores = squad::squad_scores(&predictions, &golds)?;
        report.metrics = vec![("exact_match".into(), scores.exact_match), ("f1".into(), scores.f1)];
    }
    Ok(report)
}

fn eval_translate(
    session: &mut Session,
    path: &Path,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<EvalReport> {
    let records = limited(data::read_translations(path)?, options.limit);
    // Check every language before the first (slow) translation.
    let langs: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let from = r.source_lang.clone().or_else(|| options.source_lang.clone());
            let to = r.target_lang.clone().or_else(|| options.target_lang.clone());
            match (from, to) {
                (Some(f), Some(t)) => {
                    for lang in [&f, &t] {
                        if tasks::language_name(lang).is_none() {
                            return Err(Error::Data {
                                path: path.to_path_buf(),
                                line: None,
                                reason: format!("record {}: unknown language `{lang}`", r.id),
                            });
                        }
                    }
                    Ok((f, t))
                }
                _ => Err(Error::Data {
                    path: path.to_path_buf(),
                    line: None,
                    reason: format!("record {} names no source_lang/target_lang, and none was given (--from/--to)", r.id),
                }),
            }
        })
        .collect::<Result<_>>()?;
    let mut report = empty_report(Task::Translate, records.len());
    let mut hypotheses = Vec::new();
    for (i, (r, (from, to))) in records.iter().zip(&langs).enumerate() {
        if !progress(i, records.len()) {
            report.cancelled = true;
            break;
        }
        let hypothesis = tasks::translate(session, &r.source, from, to, &TranslateOptions::default())?;
        if session.is_cancelled() {
            report.cancelled = true; // the translation was cut short: not scored
            break;
        }
        report.predictions.push(json!({"id": r.id, "source": r.source, "references": r.references, "prediction": hypothesis}));
        hypotheses.push(hypothesis);
    }
    if !report.cancelled {
        progress(records.len(), records.len());
    }
    report.evaluated = hypotheses.len();
    if !hypotheses.is_empty() {
        // sacreBLEU's layout: reference streams. Segments with fewer references repeat their
        // first one, which changes neither n-gram clipping nor the closest reference length.
        let done = &records[..hypotheses.len()];
        let streams = done.iter().map(|r| r.references.len()).max().unwrap_or(1);
        let references: Vec<Vec<String>> =
            (0..streams).map(|k| done.iter().map(|r| r.references.get(k).unwrap_or(&r.references[0]).clone()).collect()).collect();
        let b = bleu::corpus_bleu(&hypotheses, &references)?;
        let c = chrf::corpus_chrf(&hypotheses, &references)?;
        report.metrics = vec![
            ("bleu".into(), b.score),
            ("chrf".into(), c.score),
            ("bleu_p1".into(), b.precisions[0]),
            ("bleu_p2".into(), b.precisions[1]),
            ("bleu_p3".into(), b.precisions[2]),
            ("bleu_p4".into(), b.precisions[3]),
            ("brevity_penalty".into(), b.brevity_penalty),
            ("hyp_len".into(), b.sys_len as f64),
            ("ref_len".into(), b.ref_len as f64),
        ];
    }
    Ok(report)
}

fn eval_choice(
    session: &mut Session,
    path: &Path,
    options: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<EvalReport> {
    let records = limited(data::read_choices(path)?, options.limit);
    let mut report = empty_report(Task::Choice, records.len());
    let (mut right_sum, mut right_mean) = (0usize, 0usize);
    for (i, r) in records.iter().enumerate() {
        if !progress(i, records.len()) {
            report.cancelled = true;
            break;
        }
        let Some(result) = choice::score_options(session, &r.question, &r.choices)? else {
            report.cancelled = true;
            break;
        };
        right_sum += usize::from(result.best_by_sum == r.label);
        right_mean += usize::from(result.best_by_mean == r.label);
        report.predictions.push(json!({
            "id": r.id,
            "label": r.label,
            "prediction_sum": result.best_by_sum,
            "prediction_mean": result.best_by_mean,
            "logprob_sums": result.scores.iter().map(|s| s.logprob_sum).collect::<Vec<_>>(),
            "tokens": result.scores.iter().map(|s| s.tokens).collect::<Vec<_>>(),
        }));
    }
    if !report.cancelled {
        progress(records.len(), records.len());
    }
    report.evaluated = report.predictions.len();
    if report.evaluated > 0 {
        let n = report.evaluated as f64;
        report.metrics = vec![("accuracy".into(), 100.0 * right_sum as f64 / n), ("accuracy_norm".into(), 100.0 * right_mean as f64 / n)];
    }
    Ok(report)
}
