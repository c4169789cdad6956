//! /v1/embeddings: lamina's [`Embedder`] (mean pooling, unit vectors) behind OpenAI's request
//! and response shapes.
//!
//! The embedder has its own llama.cpp context, separate from the generation thread's session,
//! created on the first request (a server that only generates never pays for it) and used by
//! one request at a time. Embeddings are of the base model: an adapter name in `model` is a
//! 400, not silently the base model's vectors.

use std::sync::Mutex;

use lamina::{EmbedParams, Embedder, Model, Pooling};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::models::Models;
use super::request::parse_json;

/// The most texts one request may embed (OpenAI's limit too).
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
struct Body {
    model: Option<String>,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
}

/// How vectors are written: JSON numbers, or base64 of their little-endian f32 bytes (what
/// OpenAI's Python client asks for unless told otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

/// The embedder, made on first use.
pub struct Embeddings {
    model: Model,
    threads: u32,
    embedder: Mutex<Option<Embedder>>,
}

impl Embeddings {
    pub fn new(model: Model, threads: u32) -> Self {
        Embeddings { model, threads, embedder: Mutex::new(None) }
    }

    /// Answer one request body (blocking: call it off the async threads).
    pub fn handle(&self, bytes: &[u8], models: &Models) -> Result<Value, ApiError> {
        let body: Body = parse_json(bytes)?;
        if models.resolve(body.model.as_deref())?.is_some() {
            return Err(ApiError::invalid_param(
                "model",
                format!("embeddings come from the base model `{}`; adapters are not applied to them", models.id),
            ));
        }
        let encoding = match body.encoding_format.as_deref() {
            None | Some("float") => Encoding::Float,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(ApiError::invalid_param(
                    "encoding_format",
                    format!("encoding_format `{other}` is not supported (float or base64)"),
                ))
            }
        };
        let texts = inputs(&body.input)?;
        let mut guard = self.embedder.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let params = EmbedParams { pooling: Pooling::Mean, normalize: true, n_threads: self.threads, ..EmbedParams::default() };
            *guard = Some(Embedder::new(&self.model, &params).map_err(|e| ApiError::internal(format!("cannot create the embedder: {e}")))?);
        }
        let embedder = guard.as_mut().ok_or_else(|| ApiError::internal("the embedder is missing"))?;
        if let Some(d) = body.dimensions.filter(|&d| d as usize != embedder.dimensions()) {
            return Err(ApiError::invalid_param(
                "dimensions",
                format!("dimensions = {d}: this model's embeddings have {} dimensions and cannot be shortened", embedder.dimensions()),
            ));
        }
        let vectors = embedder.embed(&texts).map_err(|e| ApiError::from_lamina(&e).with_param("input"))?;
        drop(guard);
        let tokens: usize = texts.iter().map(|t| self.model.tokenize(t, true, false).len()).sum();
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = match encoding {
                    Encoding::Float => json!(v),
                    Encoding::Base64 => json!(base64_f32(v)),
                };
                json!({ "object": "embedding", "index": index, "embedding": embedding })
            })
            .collect();
        Ok(json!({
            "object": "list",
            "data": data,
            "model": body.model.unwrap_or_else(|| models.id.clone()),
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        }))
    }
}

/// `input`: a string or a list of strings.
fn inputs(input: &Value) -> Result<Vec<String>, ApiError> {
    let texts = match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid_param("input", format!("input[{i}] is not a string (token-id inputs are not supported)"))
                })
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::invalid_param("input", "`input` must be a string or a list of strings")),
    };
    if texts.is_empty() {
        return Err(ApiError::invalid_param("input", "`input` is an empty list"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid_param("input", format!("{} inputs; at most {MAX_INPUTS} per request", texts.len())));
    }
    Ok(texts)
}

/// Standard base64 (with padding) of the vector's little-endian f32 bytes.
fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 = 00 00 80 3f; two of them = AACAPwAAgD8=
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64_f32(&[]), "");
    }
}
