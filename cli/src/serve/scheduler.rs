//! The generation thread: it owns the [`Session`] and decodes requests that arrive together as
//! one [`Session::generate_batch`], each sequence streaming to its own client.
//!
//! This is batch-at-a-time, not continuous batching: the thread takes up to `parallel` queued
//! requests that run on the same weights (the same adapter, or none), runs them to their ends,
//! and only then looks at the queue again; a request that arrives while a batch runs waits for
//! the next one. When the thread is idle, the first request waits a few milliseconds
//! (`window`) for others to join it, so that clients that send at the same moment share a
//! batch.
//!
//! Contract with the request handlers: a [`Job`] is answered through its channel with
//! [`Event::Piece`]s and then exactly one [`Event::Done`] or [`Event::Failed`]; a `Failed` that
//! comes before any piece means nothing was generated (the handler can still answer with an
//! error status). A job whose receiver is dropped (its client went away) is skipped if it has
//! not started, and its sequence alone stops at its next piece if it has: the other sequences
//! of the batch go on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lamina::{BatchRequest, CancelHandle, Error, Generation, Model, Session, StopReason};
use tokio::sync::mpsc::UnboundedSender;

use super::error::ApiError;
use super::models::{AdapterChoice, Models};
use super::request::Input;

/// What a handler hears about its job.
#[derive(Debug)]
pub enum Event {
    /// The next piece of the text (whole UTF-8 characters).
    Piece(String),
    /// The generation ended; `text` is the whole text, equal to the pieces joined.
    Done(Generation),
    /// The job failed; no event follows.
    Failed(ApiError),
}

/// One request for the generation thread.
#[derive(Debug)]
pub struct Job {
    pub input: Input,
    pub sampling: lamina::Sampling,
    pub adapter: AdapterChoice,
    pub events: UnboundedSender<Event>,
}

impl Job {
    fn fail(&self, error: ApiError) {
        let _ = self.events.send(Event::Failed(error));
    }

    /// Whether the client still listens.
    fn wanted(&self) -> bool {
        !self.events.is_closed()
    }
}

/// The handle the server keeps on the generation thread.
pub struct Scheduler {
    jobs: Option<mpsc::Sender<Job>>,
    cancel: CancelHandle,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Start the generation thread on `session` (created with `n_sequences` >= `parallel`).
    pub fn start(session: Session, models: Models, parallel: usize, window: Duration) -> std::io::Result<Scheduler> {
        let (jobs, queue) = mpsc::channel();
        let cancel = session.cancel_handle();
        let closing = Arc::new(AtomicBool::new(false));
        let worker =
            Worker { model: session.model().clone(), session, models, parallel: parallel.max(1), window, closing: closing.clone() };
        let thread = std::thread::Builder::new().name("lamina-generate".into()).spawn(move || worker.run(queue))?;
        Ok(Scheduler { jobs: Some(jobs), cancel, closing, thread: Some(thread) })
    }

    /// Queue a job. Fails when the server is shutting down.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        let jobs = self.jobs.as_ref().ok_or_else(|| ApiError::unavailable("the server is shutting down"))?;
        jobs.send(job).map_err(|_| ApiError::unavailable("the generation thread has stopped"))
    }

    /// Stop generating: the running batch ends at its next step, queued jobs fail with 503.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

impl Drop for Scheduler {
    /// Closing the queue ends the thread once it has answered what is queued.
    fn drop(&mut self) {
        self.close();
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    session: Session,
    model: Model,
    models: Models,
    parallel: usize,
    window: Duration,
    closing: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        let mut pending: VecDeque<Job> = VecDeque::new();
        loop {
            if pending.is_empty() {
                let Ok(job) = queue.recv() else { return };
                pending.push_back(job);
                // Idle until now: give requests sent at the same moment a chance to join.
                let deadline = Instant::now() + self.window;
                while pending.len() < self.parallel {
                    match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(job) => pending.push_back(job),
                        Err(_) => break,
                    }
                }
            }
            pending.extend(queue.try_iter());
            let batch = self.take_batch(&mut pending);
            if batch.is_empty() {
                continue;
            }
            if self.closing.load(Ordering::SeqCst) {
                batch.iter().for_each(|job| job.fail(ApiError::unavailable("the server is shutting down")));
                continue;
            }
            self.run_batch(batch);
        }
    }

    /// Up to `parallel` jobs in arrival order that run on the oldest job's weights; jobs whose
    /// clients have gone are dropped.
    fn take_batch(&self, pending: &mut VecDeque<Job>) -> Vec<Job> {
        pending.retain(Job::wanted);
        let Some(adapter) = pending.front().map(|job| job.adapter) else { return Vec::new() };
        let mut batch = Vec::new();
        let mut rest = VecDeque::with_capacity(pending.len());
        for job in pending.drain(..) {
            if batch.len() < self.parallel && job.adapter == adapter {
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        *pending = rest;
        batch
    }

    /// The prompt text of a job, checked the way `generate_batch` checks it, so that one bad
    /// request is refused alone instead of failing the batch it would have joined.
    fn prompt(&self, input: &Input) -> Result<String, Error> {
        let prompt = match input {
            Input::Prompt(text) => text.clone(),
            // The text Session::complete_chat would continue for these messages.
            Input::Chat(messages) => self.session.render_chat(messages)?.0,
        };
        let tokens = prompt_tokens(&self.model, &prompt);
        if tokens == 0 {
            return Err(Error::EmptyPrompt { what: "prompt" });
        }
        if tokens >= self.session.n_ctx() {
            return Err(Error::PromptTooLong { tokens, n_ctx: self.session.n_ctx() });
        }
        Ok(prompt)
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut requests = Vec::with_capacity(batch.len());
        for job in batch {
            match self.prompt(&job.input) {
                Ok(prompt) => {
                    requests.push(BatchRequest::new(prompt, job.sampling.clone()));
                    jobs.push(job);
                }
                Err(e) => job.fail(ApiError::from_lamina(&e)),
            }
        }
        let Some(adapter) = jobs.first().map(|job| job.adapter) else { return };
        if let Err(e) = self.session.set_adapters(&self.models.adapter_set(adapter)) {
            let error = ApiError::internal(format!("cannot apply the adapter: {e}"));
            jobs.iter().for_each(|job| job.fail(error.clone()));
            return;
        }
        let mut streamed = vec![false; jobs.len()];
        let result = self.generate(&jobs, &requests, &mut streamed);
        match result {
            Ok(generations) => jobs.iter().zip(generations).for_each(|(job, g)| self.finish(job, g)),
            Err(e) if jobs.len() > 1 => {
                // One request can fail a whole batch (a grammar llama.cpp rejects): run each
                // that has produced nothing yet alone, so that only the one at fault fails.
                for (i, job) in jobs.iter().enumerate() {
                    if streamed[i] {
                        job.fail(ApiError::from_lamina(&e));
                        continue;
                    }
                    let mut alone = [false];
                    match self.generate(std::slice::from_ref(job), std::slice::from_ref(&requests[i]), &mut alone) {
                        Ok(mut g) => self.finish(job, g.remove(0)),
                        Err(e) => job.fail(ApiError::from_lamina(&e)),
                    }
                }
            }
            Err(e) => jobs[0].fail(ApiError::from_lamina(&e)),
        }
    }

    /// Decode `requests` together, sending each piece to its job; a closed channel or a
    /// shutdown stops that sequence.
    fn generate(&mut self, jobs: &[Job], requests: &[BatchRequest], streamed: &mut [bool]) -> Result<Vec<Generation>, Error> {
        let closing = &self.closing;
        self.session.generate_batch(requests, |i, piece| {
            if closing.load(Ordering::SeqCst) {
                return false;
            }
            streamed[i] = true;
            jobs[i].events.send(Event::Piece(piece.to_string())).is_ok()
        })
    }

    fn finish(&self, job: &Job, generation: Generation) {
        if generation.stop_reason == StopReason::Cancelled || self.closing.load(Ordering::SeqCst) {
            job.fail(ApiError::unavailable("the server is shutting down; the generation was stopped"));
        } else {
            let _ = job.events.send(Event::Done(generation));
        }
    }
}

/// The number of tokens `prompt` has as a session prompt: special-token text parsed, and the
/// model's BOS added unless the text already starts with it (a chat template that writes it).
/// This mirrors the session's own tokenization; were it ever to differ, `generate_batch` would
/// still refuse a prompt too long and the batch would be retried one request at a time.
fn prompt_tokens(model: &Model, prompt: &str) -> usize {
    let bos = model.bos_token();
    let bos_text = if bos >= 0 { model.token_bytes(bos, true) } else { Vec::new() };
    let add_special = bos_text.is_empty() || !prompt.as_bytes().starts_with(&bos_text);
    model.tokenize(prompt, add_special, true).len()
}
