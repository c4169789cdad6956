//! Request bodies of /v1/chat/completions and /v1/completions, read into what lamina runs: a
//! prompt or a conversation, a [`Sampling`] and the adapter the `model` field names.
//!
//! The contract: a request is either fully understood or refused with a 400 that names the
//! field. Fields that would change the result and that lamina cannot honour (`n` > 1,
//! log-probabilities, tools, frequency and presence penalties, logit biases, `echo`, `suffix`)
//! are refused rather than ignored; fields that do not change the text (`user`, `metadata`,
//! `store`, ...) are ignored. Omitted sampling fields take OpenAI's defaults (temperature 1,
//! top_p 1); `top_k`, `min_p` and `repeat_penalty` are accepted as extensions, off unless given.

use std::hash::{BuildHasher, Hasher};

use lamina::{ChatMessage, OutputFormat, Sampling};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::models::{AdapterChoice, Models};

/// The schema of `response_format: {"type": "json_object"}`: any JSON object.
pub const ANY_OBJECT_SCHEMA: &str = r#"{"type":"object"}"#;

/// Which endpoint a body was sent to: they share every field but the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// The fields of both endpoints, as sent. Types are checked by serde (a string where a number
/// belongs is a 400 naming the field); values are checked when they become lamina's.
#[derive(Debug, Deserialize)]
struct Body {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    prompt: Option<Value>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<Value>,
    n: Option<u32>,
    best_of: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    response_format: Option<Value>,
    logprobs: Option<Value>,
    top_logprobs: Option<u32>,
    echo: Option<bool>,
    suffix: Option<String>,
    tools: Option<Vec<Value>>,
    functions: Option<Vec<Value>>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// What a request asks lamina to do.
#[derive(Debug, Clone)]
pub enum Input {
    /// Raw text, continued as it is (`/v1/completions`).
    Prompt(String),
    /// A conversation, rendered with the model's chat template and continued in an open
    /// assistant turn (`/v1/chat/completions`).
    Chat(Vec<ChatMessage>),
}

/// A generation request, understood.
#[derive(Debug, Clone)]
pub struct Generate {
    /// The `model` field as given (echoed in responses), or the model's id.
    pub model: String,
    pub adapter: AdapterChoice,
    pub input: Input,
    pub sampling: Sampling,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the token counts.
    pub include_usage: bool,
}

/// The server-wide bounds a request must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most tokens one request may ask for (`--max-tokens-limit`).
    pub max_tokens: u32,
}

/// Parse a JSON body with serde, reporting the field at fault: malformed JSON and wrong types
/// are both 400s, the first naming the position, the second the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                ApiError::invalid_param(path.clone(), format!("invalid request body: `{path}`: {inner}"))
            }
            serde_json::error::Category::Data => ApiError::bad_request(format!("invalid request body: {inner}")),
            _ => ApiError::bad_request(format!("the request body is not valid JSON: {inner}")),
        }
    })?;
    de.end().map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Read the body of a generation request sent to `endpoint`.
pub fn parse_generate(bytes: &[u8], endpoint: Endpoint, models: &Models, limits: Limits) -> Result<Generate, ApiError> {
    let body: Body = parse_json(bytes)?;
    refuse_unsupported(&body, endpoint)?;
    let adapter = models.resolve(body.model.as_deref())?;
    let input = match endpoint {
        Endpoint::Chat => Input::Chat(messages(body.messages.as_deref())?),
        Endpoint::Completion => Input::Prompt(prompt(body.prompt.as_ref())?),
    };
    let sampling = sampling(&body, endpoint, limits)?;
    Ok(Generate {
        model: body.model.clone().unwrap_or_else(|| models.id.clone()),
        adapter,
        input,
        sampling,
        stream: body.stream.unwrap_or(false),
        include_usage: body.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
    })
}

/// Whether a JSON value asks for something: anything but absent, null, false, 0 or empty.
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn refuse_unsupported(body: &Body, endpoint: Endpoint) -> Result<(), ApiError> {
    if let Some(n) = body.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid_param("n", format!("n = {n}: this server generates one choice per request (n = 1)")));
    }
    if let Some(b) = body.best_of.filter(|&b| b > 1) {
        return Err(ApiError::invalid_param("best_of", format!("best_of = {b}: this server generates one choice per request")));
    }
    if body.logprobs.as_ref().is_some_and(is_set) || body.top_logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::invalid_param("logprobs", "log-probabilities are not supported by this server"));
    }
    if body.echo == Some(true) {
        return Err(ApiError::invalid_param("echo", "echo is not supported by this server"));
    }
    if body.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param("suffix", "suffix (fill in the middle) is not supported by this server"));
    }
    if body.tools.as_ref().is_some_and(|t| !t.is_empty()) || body.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(ApiError::invalid_param("tools", "tools (function calling) are not supported by this server"));
    }
    for (name, value) in [("frequency_penalty", body.frequency_penalty), ("presence_penalty", body.presence_penalty)] {
        if let Some(v) = value.filter(|&v| v != 0.0) {
            return Err(ApiError::invalid_param(name, format!("{name} = {v} is not supported; use repeat_penalty instead")));
        }
    }
    if body.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(ApiError::invalid_param("logit_bias", "logit_bias is not supported by this server"));
    }
    match endpoint {
        Endpoint::Chat if body.prompt.is_some() => {
            Err(ApiError::invalid_param("prompt", "/v1/chat/completions takes `messages`; send a `prompt` to /v1/completions"))
        }
        Endpoint::Completion if body.messages.is_some() => {
            Err(ApiError::invalid_param("messages", "/v1/completions takes a `prompt`; send `messages` to /v1/chat/completions"))
        }
        _ => Ok(()),
    }
}

/// The conversation: system (or developer), user and assistant messages, each with text
/// content (a string, or a list of text parts, joined).
fn messages(messages: Option<&[Message]>) -> Result<Vec<ChatMessage>, ApiError> {
    let messages = messages.ok_or_else(|| ApiError::invalid_param("messages", "`messages` is required"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "`messages` is empty: give at least one message"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::invalid_param(
                        format!("messages[{i}].role"),
                        format!("messages[{i}]: role `{other}` is not supported (use system, user or assistant)"),
                    ))
                }
            };
            Ok(ChatMessage::new(role, content(m.content.as_ref(), i)?))
        })
        .collect()
}

fn content(content: Option<&Value>, i: usize) -> Result<String, ApiError> {
    let param = || format!("messages[{i}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::invalid_param(
                            param(),
                            format!(
                                "messages[{i}].content[{j}]: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported, got type {}",
                                kind.unwrap_or("(none)")
                            ),
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::invalid_param(param(), format!("messages[{i}].content must be a string or a list of text parts"))),
    }
}

/// The prompt of /v1/completions: a string, or a list holding one string.
fn prompt(prompt: Option<&Value>) -> Result<String, ApiError> {
    match prompt {
        None | Some(Value::Null) => Err(ApiError::invalid_param("prompt", "`prompt` is required")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => Ok(s.clone()),
            [] => Err(ApiError::invalid_param("prompt", "`prompt` is an empty list")),
            [Value::String(_), ..] => {
                Err(ApiError::invalid_param("prompt", "several prompts in one request are not supported: send one request per prompt"))
            }
            _ => Err(ApiError::invalid_param("prompt", "`prompt` must be a string (token-id prompts are not supported)")),
        },
        Some(_) => Err(ApiError::invalid_param("prompt", "`prompt` must be a string")),
    }
}

/// `stop`: a string or a list of strings.
fn stop(stop: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::invalid_param("stop", "`stop` must be a string or a list of strings");
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
    }
}

/// `response_format`: text, any JSON object, or the JSON schema of `json_schema.schema`.
fn output_format(format: Option<&Value>) -> Result<Option<OutputFormat>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else { return Ok(None) };
    let kind = format.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonSchema(ANY_OBJECT_SCHEMA.to_string()))),
        Some("json_schema") => {
            let schema = format.get("json_schema").and_then(|j| j.get("schema")).filter(|s| !s.is_null()).ok_or_else(|| {
                ApiError::invalid_param("response_format.json_schema.schema", "a json_schema response format needs `json_schema.schema`")
            })?;
            Ok(Some(OutputFormat::JsonSchema(schema.to_string())))
        }
        _ => Err(ApiError::invalid_param(
            "response_format.type",
            format!(
                "response_format type {} is not supported (use text, json_object or json_schema)",
                kind.map(|k| format!("`{k}`")).unwrap_or_else(|| "(missing)".into())
            ),
        )),
    }
}

/// A seed for a request that gives none: a fresh one each time, as OpenAI's sampling is.
fn random_seed() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    h.finish() as u32
}

fn sampling(body: &Body, endpoint: Endpoint, limits: Limits) -> Result<Sampling, ApiError> {
    let (max_tokens, max_name) = match (body.max_completion_tokens, body.max_tokens) {
        (Some(n), _) => (Some(n), "max_completion_tokens"),
        (None, n) => (n, "max_tokens"),
    };
    let max_tokens = match (max_tokens, endpoint) {
        (Some(n), _) if n > limits.max_tokens => {
            return Err(ApiError::invalid_param(
                max_name,
                format!("{max_name} = {n} is more than this server's limit of {} (--max-tokens-limit)", limits.max_tokens),
            ))
        }
        (Some(n), _) => n,
        // OpenAI's defaults: a reply runs to its end (or the context's), a completion to 16 tokens.
        (None, Endpoint::Chat) => limits.max_tokens,
        (None, Endpoint::Completion) => 16.min(limits.max_tokens),
    };
    let seed = match body.seed {
        None => random_seed(),
        Some(s) => u32::try_from(s).map_err(|_| ApiError::invalid_param("seed", format!("seed = {s} must be in 0..={}", u32::MAX)))?,
    };
    let sampling = Sampling {
        temperature: body.temperature.unwrap_or(1.0),
        top_k: body.top_k.unwrap_or(0),
        top_p: body.top_p.unwrap_or(1.0),
        min_p: body.min_p.unwrap_or(0.0),
        repeat_penalty: body.repeat_penalty.unwrap_or(1.0),
        repeat_last_n: 64,
        seed,
        max_tokens,
        stop: stop(body.stop.as_ref())?,
        format: output_format(body.response_format.as_ref())?,
    };
    // lamina's own checks: ranges, empty stop strings, and whether a schema converts to a
    // grammar (its message says what is wrong and where).
    sampling.validate().map_err(|e| {
        let param = match &e {
            lamina::Error::InvalidArgument { name: "json_schema" | "grammar", .. } => "response_format",
            lamina::Error::InvalidArgument { name, .. } => name,
            _ => "",
        };
        let err = ApiError::from_lamina(&e);
        if param.is_empty() {
            err
        } else {
            err.with_param(param)
        }
    })?;
    Ok(sampling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> Models {
        Models { id: "m".into(), adapters: Vec::new() }
    }

    fn parse(body: &str, endpoint: Endpoint) -> Result<Generate, ApiError> {
        parse_generate(body.as_bytes(), endpoint, &models(), Limits { max_tokens: 100 })
    }

    #[test]
    fn reads_a_chat_request() {
        let g = parse(
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],
                "temperature":0,"max_tokens":8,"stop":"\n","seed":3,"stream":true}"#,
            Endpoint::Chat,
        )
        .unwrap();
        let Input::Chat(m) = &g.input else { panic!("not a chat") };
        assert_eq!(m, &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")]);
        assert_eq!((g.sampling.temperature, g.sampling.max_tokens, g.sampling.seed), (0.0, 8, 3));
        assert_eq!(g.sampling.stop, vec!["\n".to_string()]);
        assert!(g.stream);
    }

    #[test]
    fn refuses_what_it_cannot_honour_by_field() {
        for (body, endpoint, param) in [
            (r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, Endpoint::Chat, "n"),
            (r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, Endpoint::Chat, "temperature"),
            (r#"{"messages":[{"role":"tool","content":"x"}]}"#, Endpoint::Chat, "messages[0].role"),
            (r#"{"messages":[]}"#, Endpoint::Chat, "messages"),
            (r#"{"prompt":"x","max_tokens":1000}"#, Endpoint::Completion, "max_tokens"),
            (r#"{"prompt":"x","top_p":0}"#, Endpoint::Completion, "top_p"),
            (r#"{"prompt":"x","stop":[1]}"#, Endpoint::Completion, "stop"),
            (r#"{"prompt":[1,2]}"#, Endpoint::Completion, "prompt"),
            (r#"{"prompt":"x","seed":-1}"#, Endpoint::Completion, "seed"),
            (
                r#"{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"foo"}}}}"#,
                Endpoint::Completion,
                "response_format",
            ),
        ] {
            let e = parse(body, endpoint).expect_err(body);
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
        let e = parse(r#"{"prompt": "x""#, Endpoint::Completion).unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e = parse(r#"{"model":"other","prompt":"x"}"#, Endpoint::Completion).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
    }
}
