//! Response bodies in OpenAI's shapes: `chat.completion` and its streamed
//! `chat.completion.chunk`s, `text_completion` (whole and streamed), and the usage counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lamina::{Generation, StopReason};
use serde_json::{json, Value};

use super::request::Endpoint;

/// Seconds since the Unix epoch, OpenAI's `created`.
pub fn unix_time() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A response id unique within this server's life: `chatcmpl-...` or `cmpl-...`.
pub fn response_id(endpoint: Endpoint) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    format!("{prefix}-{:x}{n:06x}", unix_time())
}

/// OpenAI's `finish_reason`: "stop" for an end of turn or a stop string, "length" for the
/// token limit or a full context.
pub fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

pub fn usage(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.generated_tokens,
        "total_tokens": g.prompt_tokens + g.generated_tokens,
    })
}

/// The fields every response and chunk of one request shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Envelope {
    pub fn new(endpoint: Endpoint, model: String) -> Self {
        Envelope { endpoint, id: response_id(endpoint), created: unix_time(), model }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    fn with_choices(&self, chunk: bool, choices: Value) -> Value {
        json!({ "id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices })
    }

    /// The whole response of a request that was not streamed.
    pub fn complete(&self, g: &Generation) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": g.text },
                "logprobs": null,
                "finish_reason": finish_reason(g.stop_reason),
            }),
            Endpoint::Completion => json!({
                "index": 0, "text": g.text, "logprobs": null, "finish_reason": finish_reason(g.stop_reason),
            }),
        };
        let mut body = self.with_choices(false, json!([choice]));
        body["usage"] = usage(g);
        body
    }

    /// The first chunk of a chat stream, which names the role (completions have none).
    pub fn role_chunk(&self) -> Option<Value> {
        (self.endpoint == Endpoint::Chat).then(|| {
            self.with_choices(
                true,
                json!([{ "index": 0, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null }]),
            )
        })
    }

    /// A chunk carrying the next piece of text.
    pub fn piece_chunk(&self, piece: &str) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({ "index": 0, "delta": { "content": piece }, "logprobs": null, "finish_reason": null }),
            Endpoint::Completion => json!({ "index": 0, "text": piece, "logprobs": null, "finish_reason": null }),
        };
        self.with_choices(true, json!([choice]))
    }

    /// The chunk that ends the choice, with its finish reason.
    pub fn finish_chunk(&self, g: &Generation) -> Value {
        let reason = finish_reason(g.stop_reason);
        let choice = match self.endpoint {
            Endpoint::Chat => json!({ "index": 0, "delta": {}, "logprobs": null, "finish_reason": reason }),
            Endpoint::Completion => json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": reason }),
        };
        self.with_choices(true, json!([choice]))
    }

    /// The chunk of `stream_options.include_usage`: no choices, the token counts.
    pub fn usage_chunk(&self, g: &Generation) -> Value {
        let mut body = self.with_choices(true, json!([]));
        body["usage"] = usage(g);
        body
    }
}
