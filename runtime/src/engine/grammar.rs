//! Structured output: generation constrained to a GBNF grammar, or to a JSON schema that
//! llama.cpp's own converter turns into one. llama.cpp's grammar sampler then gives every token
//! that cannot continue a sentence of the grammar a probability of zero before the rest of the
//! sampling chain runs, so whatever the model, temperature or seed, the text is a prefix of a
//! sentence of the grammar, and a whole sentence when generation ends on its own (the grammar
//! only lets the end-of-generation token through once it is complete). `max_tokens` still cuts
//! a sentence short: `StopReason::MaxTokens` says so.
//!
//! Why llama.cpp's converter (compiled by build.rs from the llama.cpp that lamina links) rather
//! than a Rust one: it is the converter llama.cpp's server and bindings use, it covers far more
//! of JSON Schema (references, `anyOf`, `pattern`, formats, lengths, numeric ranges) than the
//! Rust crates that exist, and it is maintained together with the grammar parser it feeds.

use std::ffi::{c_char, c_int, CStr, CString};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use crate::error::{Error, Result};

/// A constraint on the generated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// A grammar in llama.cpp's GBNF format; generation starts at its `root` rule.
    Grammar(String),
    /// A JSON schema (its JSON text): the output is one JSON value the schema accepts.
    JsonSchema(String),
}

extern "C" {
    // csrc/json_schema.cpp: 0 = grammar in *out, 1 = error message in *out, 2 = out of memory.
    fn lamina_json_schema_to_grammar(schema: *const c_char, out: *mut *mut c_char) -> c_int;
    fn lamina_cxx_free(p: *mut c_char);
}

/// The GBNF grammar (root rule `root`) of the values a JSON schema accepts, from llama.cpp's
/// converter. A schema that is not JSON, that uses what the converter does not handle (an
/// unknown type, an unresolvable `$ref`, ...), or that has a keyword the converter would
/// silently leave unenforced (see [`unenforced_keyword`]), is `InvalidArgument` on
/// `json_schema` with the reason.
pub fn json_schema_to_grammar(schema: &str) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(schema).map_err(|e| Error::invalid("json_schema", format!("is not JSON: {e}")))?;
    if let Some((path, reason)) = unenforced_keyword(&value, "#") {
        return Err(Error::invalid("json_schema", format!("at {path}: {reason}; the output could break it, so the schema is refused")));
    }
    let c_schema = CString::new(schema).map_err(|_| Error::invalid("json_schema", "contains a NUL byte"))?;
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: the schema is NUL-terminated; the function writes a malloc'ed string (or NULL)
    // to `out` and never unwinds (it catches every C++ exception).
    let rc = unsafe { lamina_json_schema_to_grammar(c_schema.as_ptr(), &mut out) };
    let text = if out.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string the converter allocated; freed right after copying.
        let s = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
        unsafe { lamina_cxx_free(out) };
        Some(s)
    };
    match (rc, text) {
        (0, Some(grammar)) => Ok(grammar),
        (1, Some(message)) => {
            let message = message.trim().trim_start_matches("JSON schema conversion failed:").trim().to_string();
            Err(Error::invalid("json_schema", format!("cannot be converted to a grammar: {message}")))
        }
        _ => Err(Error::Internal("the JSON-schema converter ran out of memory".into())),
    }
}

/// Keywords that constrain values but that llama.cpp's converter does not turn into grammar
/// rules. It ignores them without a word, so an output "constrained" by such a schema could
/// still violate it; lamina refuses the schema instead and says which keyword is the reason.
const UNENFORCED: &[&str] = &[
    "multipleOf",
    "not",
    "if",
    "then",
    "else",
    "minProperties",
    "maxProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedProperties",
    "unevaluatedItems",
];

/// The formats the converter has rules for; any other `format` would be ignored.
const FORMATS: &[&str] = &["date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"];

/// The first place in `schema` (a JSON pointer-like path from `path`) where a keyword would go
/// unenforced, and why: one of [`UNENFORCED`], `uniqueItems: true`, a `format` outside
/// [`FORMATS`], or a numeric bound on anything but an integer (the converter bounds integers
/// only).
pub fn unenforced_keyword(schema: &serde_json::Value, path: &str) -> Option<(String, String)> {
    use serde_json::Value;
    let Value::Object(map) = schema else { return None };
    if let Some(k) = UNENFORCED.iter().find(|k| map.contains_key(**k)) {
        return Some((path.to_string(), format!("`{k}` is not enforced by llama.cpp's schema converter")));
    }
    if map.get("uniqueItems") == Some(&Value::Bool(true)) {
        return Some((path.to_string(), "`uniqueItems: true` is not enforced by llama.cpp's schema converter".into()));
    }
    if let Some(Value::String(f)) = map.get("format") {
        if !FORMATS.contains(&f.as_str()) {
            return Some((
                path.to_string(),
                format!("format `{f}` is not enforced (llama.cpp's converter knows {})", FORMATS[..4].join(", ")),
            ));
        }
    }
    let integer_only = match map.get("type") {
        Some(Value::String(t)) => t == "integer",
        _ => false,
    };
    if !integer_only {
        if let Some(k) = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"].iter().find(|k| map.contains_key(**k)) {
            return Some((path.to_string(), format!("`{k}` is enforced only on `\"type\": \"integer\"`, not on other numbers")));
        }
    }
    // The subschemas, in the places the converter reads them.
    for (key, value) in map {
        let sub = format!("{path}/{key}");
        let found = match (key.as_str(), value) {
            ("properties" | "$defs" | "definitions", Value::Object(children)) => {
                children.iter().find_map(|(name, child)| unenforced_keyword(child, &format!("{sub}/{name}")))
            }
            ("prefixItems" | "anyOf" | "oneOf" | "allOf", Value::Array(children)) => {
                children.iter().enumerate().find_map(|(i, child)| unenforced_keyword(child, &format!("{sub}/{i}")))
            }
            ("items" | "additionalProperties", child @ Value::Object(_)) => unenforced_keyword(child, &sub),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

impl OutputFormat {
    /// Check the constraint without a model: the grammar is not empty and has no NUL byte, a
    /// schema converts. (Whether a grammar parses is known when its sampler is built.)
    pub fn validate(&self) -> Result<()> {
        match self {
            OutputFormat::Grammar(g) if g.trim().is_empty() => Err(Error::invalid("grammar", "is empty")),
            OutputFormat::Grammar(g) if g.contains('\0') => Err(Error::invalid("grammar", "contains a NUL byte")),
            OutputFormat::Grammar(_) => Ok(()),
            OutputFormat::JsonSchema(s) => json_schema_to_grammar(s).map(|_| ()),
        }
    }

    /// llama.cpp's grammar sampler for this constraint and `model`'s vocabulary. A grammar
    /// that does not parse (or has no `root` rule) is `InvalidArgument` with llama.cpp's
    /// message.
    pub(crate) fn sampler(&self, model: &LlamaModel) -> Result<LlamaSampler> {
        let (grammar, name) = match self {
            OutputFormat::Grammar(g) => (g.clone(), "grammar"),
            OutputFormat::JsonSchema(s) => (json_schema_to_grammar(s)?, "json_schema"),
        };
        // Clear a stale message so that the one read below is this parse's.
        let _ = super::llama_global::take_last_llama_error();
        LlamaSampler::grammar(model, &grammar, "root").map_err(|e| {
            let detail = super::llama_global::take_last_llama_error().unwrap_or_else(|| e.to_string());
            Error::invalid(name, format!("is not a grammar llama.cpp accepts: {detail}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_a_schema_and_reports_what_it_cannot() {
        let g = json_schema_to_grammar(r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}"#).unwrap();
        assert!(g.contains("root ::="), "{g}");
        for (schema, needle) in [
            (r#"{"type":"foo"}"#, "unrecognized type foo"),
            (r##"{"$ref":"#/defs/x"}"##, "cannot resolve $ref"),
            (r#"{"type": "#, "is not JSON"),
            (r#"{"type":"number","minimum":0}"#, "only on"),
            (r#"{"type":"object","properties":{"a":{"type":"integer","multipleOf":3}}}"#, "#/properties/a: `multipleOf`"),
            (r#"{"type":"array","items":{"type":"string","format":"email"}}"#, "#/items: format `email`"),
            (r#"{"type":"array","uniqueItems":true}"#, "uniqueItems"),
        ] {
            match json_schema_to_grammar(schema) {
                Err(Error::InvalidArgument { name: "json_schema", reason }) => {
                    assert!(reason.contains(needle), "{schema}: {reason}")
                }
                other => panic!("{schema}: expected InvalidArgument, got {other:?}"),
            }
        }
        assert!(matches!(OutputFormat::Grammar("  ".into()).validate(), Err(Error::InvalidArgument { name: "grammar", .. })));
        assert!(matches!(json_schema_to_grammar("{\0}"), Err(Error::InvalidArgument { name: "json_schema", .. })));
    }
}
