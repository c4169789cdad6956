//! The HTTP routes of the OpenAI API, the API-key check and the body limit.
//!
//! Handlers only parse and answer: generation runs on the scheduler's thread (see
//! [`super::scheduler`]) and embeddings on tokio's blocking pool, so the async threads never
//! wait on the model.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::embeddings::Embeddings;
use super::error::ApiError;
use super::models::Models;
use super::request::{parse_generate, Endpoint, Limits};
use super::response::Envelope;
use super::scheduler::{Event, Job, Scheduler};

/// The largest request body accepted (413 above it).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler shares.
pub struct AppState {
    pub models: Models,
    pub scheduler: Scheduler,
    pub embeddings: Embeddings,
    pub limits: Limits,
    /// `Authorization: Bearer <key>` is required on every route when set.
    pub api_key: Option<String>,
    /// When the server started (the `created` of /v1/models).
    pub started: u64,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), require_api_key))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Compare without stopping at the first difference, so that the time taken does not tell an
/// attacker how much of a guessed key is right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_api_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else { return next.run(request).await };
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // The scheme's name is case-insensitive (RFC 9110).
    let token = given.and_then(|v| v.split_once(' ')).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t);
    match token {
        Some(token) if same_secret(token.trim().as_bytes(), key.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API key is wrong").into_response(),
        None => ApiError::unauthorized("this server needs an API key: send `Authorization: Bearer <key>`").into_response(),
    }
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_route(method.as_str(), uri.path())
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}

/// A body that could not be read: too large (413) or cut off.
fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than this server's limit of {BODY_LIMIT} bytes")
    } else {
        format!("cannot read the request body: {}", rejection.body_text())
    };
    ApiError { status, ..ApiError::bad_request(message) }
}

fn model_entry(id: &str, created: u64) -> Value {
    json!({ "id": id, "object": "model", "created": created, "owned_by": "lamina" })
}

async fn list_models(State(state): State<Shared>) -> Response {
    let data: Vec<Value> = state.models.names().iter().map(|id| model_entry(id, state.started)).collect();
    json_response(StatusCode::OK, &json!({ "object": "list", "data": data }))
}

async fn get_model(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.models.resolve(Some(&id))?;
    Ok(json_response(StatusCode::OK, &model_entry(&id, state.started)))
}

async fn chat_completions(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    generate(state, Endpoint::Chat, body.map_err(body_error)?).await
}

async fn completions(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    generate(state, Endpoint::Completion, body.map_err(body_error)?).await
}

async fn embeddings(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let bytes = body.map_err(body_error)?;
    let worker = state.clone();
    let result = tokio::task::spawn_blocking(move || worker.embeddings.handle(&bytes, &worker.models))
        .await
        .map_err(|e| ApiError::internal(format!("the embedding task failed: {e}")))?;
    Ok(json_response(StatusCode::OK, &result?))
}

/// Queue a generation and answer it: one JSON object, or a stream of server-sent events.
/// The response starts with the first event, so a request refused before any text (a prompt
/// too long for the context) still gets its error status.
async fn generate(state: Shared, endpoint: Endpoint, bytes: Bytes) -> Result<Response, ApiError> {
    let request = parse_generate(&bytes, endpoint, &state.models, state.limits)?;
    let (events, mut receiver) = unbounded_channel();
    state.scheduler.submit(Job { input: request.input, sampling: request.sampling, adapter: request.adapter, events })?;
    // From here on the state is not needed: a stream that outlives a shutdown holds only its
    // channel.
    drop(state);
    let envelope = Envelope::new(endpoint, request.model);
    let first = receiver.recv().await.ok_or_else(gone)?;
    if let Event::Failed(e) = first {
        return Err(e);
    }
    if request.stream {
        return Ok(stream_response(envelope, first, receiver, request.include_usage));
    }
    let mut event = first;
    loop {
        match event {
            Event::Piece(_) => {}
            Event::Done(g) => return Ok(json_response(StatusCode::OK, &envelope.complete(&g))),
            Event::Failed(e) => return Err(e),
        }
        event = receiver.recv().await.ok_or_else(gone)?;
    }
}

fn gone() -> ApiError {
    ApiError::internal("the generation thread dropped the request")
}

/// One server-sent event.
fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Where a stream stands.
struct StreamState {
    envelope: Envelope,
    /// The event already received, sent before reading more.
    first: Option<Event>,
    receiver: UnboundedReceiver<Event>,
    include_usage: bool,
    ended: bool,
}

/// The events of a stream, in OpenAI's chunk format: for chat, a first chunk with the role;
/// one chunk per piece; a last chunk with the finish reason (and, when asked, one with the
/// usage); then `data: [DONE]`. A failure after the start is sent as an `{"error": ...}`
/// event, which OpenAI's clients raise, and ends the stream without `[DONE]`. When the client
/// goes away, hyper drops this body and with it the receiver: the generation thread sees the
/// closed channel at the sequence's next piece and stops that sequence.
fn stream_response(envelope: Envelope, first: Event, receiver: UnboundedReceiver<Event>, include_usage: bool) -> Response {
    let opening = envelope.role_chunk().map(|chunk| sse(&chunk));
    let state = StreamState { envelope, first: Some(first), receiver, include_usage, ended: false };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        if state.ended {
            return None;
        }
        let event = match state.first.take() {
            Some(event) => Some(event),
            None => state.receiver.recv().await,
        };
        let bytes = match event {
            Some(Event::Piece(piece)) => sse(&state.envelope.piece_chunk(&piece)),
            Some(Event::Done(g)) => {
                state.ended = true;
                let mut out = sse(&state.envelope.finish_chunk(&g)).to_vec();
                if state.include_usage {
                    out.extend_from_slice(&sse(&state.envelope.usage_chunk(&g)));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                Bytes::from(out)
            }
            Some(Event::Failed(e)) => {
                state.ended = true;
                sse(&e.body())
            }
            None => {
                state.ended = true;
                sse(&gone().body())
            }
        };
        Some((Ok::<Bytes, Infallible>(bytes), state))
    });
    let opening = futures_util::stream::iter(opening.map(Ok::<Bytes, Infallible>));
    let mut response = Body::from_stream(futures_util::StreamExt::chain(opening, events)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
