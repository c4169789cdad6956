//! `lamina serve`: a local HTTP server that speaks OpenAI's API (/v1/models,
//! /v1/chat/completions, /v1/completions, /v1/embeddings), so that OpenAI's client libraries
//! and the tools built on them run against a lamina model.
//!
//! Layout: [`request`] reads request bodies into lamina's types, [`scheduler`] owns the session
//! and batches generations, [`routes`] is the HTTP side (auth, limits, streaming),
//! [`response`] and [`error`] are OpenAI's shapes, [`models`] the names requests use, and
//! [`embeddings`] the embedding endpoint.
//!
//! It binds 127.0.0.1 unless told otherwise: a model server is a local service first, and one
//! opened to a network should have `--api-key` (or `LAMINA_API_KEY`).

mod embeddings;
mod error;
mod models;
mod request;
mod response;
mod routes;
mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lamina::engine::MAX_SEQUENCES;
use lamina::{Error, Session, SessionParams};

use crate::options::ModelOptions;
use embeddings::Embeddings;
use models::Models;
use request::Limits;
use routes::AppState;
use scheduler::Scheduler;

/// How long connections may stay open after Ctrl-C / SIGTERM before the server closes them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
#[command(mut_arg("lora", |a| a
    .value_name("NAME=PATH[:SCALE]")
    .help("Serve a LoRA adapter (GGUF file or PEFT directory) to requests whose `model` is NAME (or <model-id>:NAME); without NAME= it is named after the file. Repeatable")))]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelOptions,
    /// Address to listen on. The default serves this machine only; with 0.0.0.0 every network
    /// the machine is on can reach it (give it an --api-key then).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port; the start line says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together in one batch. Each has --ctx tokens of KV cache, so the cache
    /// is this many times larger.
    #[arg(long, default_value_t = 4)]
    pub parallel: u32,
    /// Require `Authorization: Bearer KEY` on every request. $LAMINA_API_KEY sets it too, and
    /// keeps it out of the process list.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// The most tokens one request may generate (max_tokens above it is a 400; a chat request
    /// without max_tokens gets this many at most).
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_limit: u32,
    /// How long an idle server waits for more requests to decode with the first one, in
    /// milliseconds.
    #[arg(long, default_value_t = 10)]
    pub batch_window_ms: u64,
}

/// The API key from --api-key, else $LAMINA_API_KEY (an empty variable counts as unset).
fn api_key(args: &ServeArgs) -> Result<Option<String>, Error> {
    match &args.api_key {
        Some(key) if key.trim().is_empty() => Err(Error::InvalidArgument { name: "api-key", reason: "the key is empty".into() }),
        Some(key) => Ok(Some(key.trim().to_string())),
        None => Ok(std::env::var("LAMINA_API_KEY").ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty())),
    }
}

pub fn run(args: &ServeArgs) -> Result<(), Error> {
    if args.parallel == 0 || args.parallel > MAX_SEQUENCES {
        return Err(Error::InvalidArgument { name: "parallel", reason: format!("must be in 1..={MAX_SEQUENCES}, got {}", args.parallel) });
    }
    if args.max_tokens_limit == 0 {
        return Err(Error::InvalidArgument { name: "max-tokens-limit", reason: "must be at least 1".into() });
    }
    let api_key = api_key(args)?;
    let model = args.model.load()?;
    let models = Models::load(&model, &args.model.lora)?;
    let params = SessionParams { n_sequences: args.parallel, ..args.model.session_params() };
    let session = Session::new(&model, &params)?;
    let threads_failed = |e: std::io::Error| Error::ContextCreation(format!("cannot start the server's threads: {e}"));
    let scheduler = Scheduler::start(session, models.clone(), args.parallel as usize, Duration::from_millis(args.batch_window_ms))
        .map_err(threads_failed)?;
    let state = Arc::new(AppState {
        models,
        scheduler,
        embeddings: Embeddings::new(model, args.model.threads),
        limits: Limits { max_tokens: args.max_tokens_limit },
        api_key,
        started: response::unix_time(),
    });
    // The async threads only parse and route; the model runs on the scheduler's thread and
    // the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lamina-http")
        .enable_all()
        .build()
        .map_err(threads_failed)?;
    let result = runtime.block_on(serve(state.clone(), &args.host, args.port));
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    // Dropping the last handle stops the generation thread and waits for it.
    drop(state);
    result
}

/// Listen, print the start line, and serve until Ctrl-C or SIGTERM.
async fn serve(state: Arc<AppState>, host: &str, port: u16) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::InvalidArgument { name: "host", reason: format!("cannot listen on {host}:{port}: {e}") })?;
    let address = listener.local_addr().map_err(|e| Error::InvalidArgument { name: "host", reason: format!("{host}:{port}: {e}") })?;
    let adapters: Vec<String> = state.models.adapters.iter().map(|a| a.name.clone()).collect();
    let adapters = if adapters.is_empty() { String::new() } else { format!(", adapters {}", adapters.join(", ")) };
    eprintln!("lamina serve: listening on http://{address} (model {}{adapters})", state.models.id);

    let stopping = Arc::new(tokio::sync::Notify::new());
    let on_signal = {
        let state = state.clone();
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            eprintln!("lamina serve: shutting down");
            // Running generations stop at their next token; their streams then end.
            state.scheduler.close();
            stopping.notify_one();
        }
    };
    let server = axum::serve(listener, routes::router(state)).with_graceful_shutdown(on_signal);
    tokio::select! {
        result = server => result.map_err(|e| Error::InvalidArgument { name: "host", reason: format!("serving on {address} failed: {e}") }),
        _ = async { stopping.notified().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            eprintln!("lamina serve: connections still open after {} s; closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}

/// Ctrl-C, or SIGTERM where there are signals.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
