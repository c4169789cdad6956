//! Structured output (`Sampling::format`): generation constrained by a JSON schema or a GBNF
//! grammar, alone and in a batch, and bad constraints refused before any work. The Python
//! tests (bindings/python/tests/test_structured.py) validate the outputs of 25 schemas with a
//! JSON-schema validator; these check the Rust API's own behaviour.

use crate::common;

use lamina::{BatchRequest, Error, OutputFormat, Sampling, Session, SessionParams, StopReason};
use serde_json::Value;

fn session(n_sequences: u32) -> Session {
    Session::new(common::model(), &SessionParams { n_ctx: 1024, n_threads: 2, n_sequences, ..SessionParams::default() }).unwrap()
}

const PERSON: &str = r#"{"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "languages": {"type": "array", "items": {"enum": ["en", "fr", "de"]}, "minItems": 1, "maxItems": 3},
    "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"], "additionalProperties": false}
  }, "required": ["name", "age", "languages", "address"], "additionalProperties": false}"#;

fn with_format(format: OutputFormat, max_tokens: u32) -> Sampling {
    Sampling { format: Some(format), ..Sampling::greedy(max_tokens) }
}

/// The parsed output has every required field, with the types and ranges the schema asks.
fn check_person(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let age = v["age"].as_i64().unwrap_or_else(|| panic!("no integer age: {text}"));
    assert!((0..=120).contains(&age), "{text}");
    assert!(v["name"].as_str().is_some_and(|n| n.chars().count() <= 20), "{text}");
    let langs = v["languages"].as_array().unwrap_or_else(|| panic!("no languages: {text}"));
    assert!((1..=3).contains(&langs.len()) && langs.iter().all(|l| ["en", "fr", "de"].contains(&l.as_str().unwrap_or(""))), "{text}");
    assert!(v["address"]["city"].is_string(), "{text}");
    assert_eq!(v.as_object().unwrap().len(), 4, "additional properties: {text}");
}

#[test]
fn a_json_schema_constrains_generation_and_chat() {
    let mut s = session(1);
    let g = s.generate("A person, as JSON:\n", &with_format(OutputFormat::JsonSchema(PERSON.into()), 160), |_| true).unwrap();
    println!("generate: {:?} ({:?})", g.text, g.stop_reason);
    assert_eq!(g.stop_reason, StopReason::EndOfGeneration);
    check_person(&g.text);
    let c = s.chat("Describe a French person.", &with_format(OutputFormat::JsonSchema(PERSON.into()), 160), |_| true).unwrap();
    println!("chat: {:?}", c.text);
    check_person(&c.text);
    // Free text afterwards is free again.
    let free = s.generate("The capital of France is", &Sampling::greedy(4), |_| true).unwrap();
    assert!(!free.text.trim_start().starts_with('{'), "{:?}", free.text);
}

#[test]
fn a_gbnf_grammar_constrains_generation() {
    let mut s = session(1);
    let g = s
        .generate("Is water wet? Answer:", &with_format(OutputFormat::Grammar(r#"root ::= " " ("yes" | "no")"#.into()), 8), |_| true)
        .unwrap();
    assert!(g.text == " yes" || g.text == " no", "{:?}", g.text);
    assert_eq!(g.stop_reason, StopReason::EndOfGeneration);
    // A sentence cut short by max_tokens says so.
    let cut = s.generate("Digits:", &with_format(OutputFormat::Grammar("root ::= [0-9]{40}".into()), 3), |_| true).unwrap();
    assert_eq!(cut.stop_reason, StopReason::MaxTokens);
    assert!(cut.text.chars().all(|c| c.is_ascii_digit()), "{:?}", cut.text);
}

#[test]
fn batched_sequences_keep_their_own_constraints() {
    let prompts = ["A person, as JSON:\n", "The capital of France is", "Is water wet? Answer:"];
    let samplings = [
        with_format(OutputFormat::JsonSchema(PERSON.into()), 160),
        Sampling::greedy(12),
        with_format(OutputFormat::Grammar(r#"root ::= " " ("yes" | "no")"#.into()), 8),
    ];
    let mut single = session(1);
    let expected: Vec<String> = prompts.iter().zip(&samplings).map(|(p, s)| single.generate(p, s, |_| true).unwrap().text).collect();
    let mut batch = session(3);
    let requests: Vec<BatchRequest> = prompts.iter().zip(&samplings).map(|(p, s)| BatchRequest::new(*p, s.clone())).collect();
    let got = batch.generate_batch(&requests, |_, _| true).unwrap();
    for (i, (g, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(&g.text, want, "request {i}");
    }
    check_person(&got[0].text);
}

#[test]
fn bad_constraints_are_refused_before_the_prompt_and_the_session_keeps_its_cache() {
    let mut s = session(2);
    let prompt = "The history of the printing press begins in";
    s.generate(prompt, &Sampling::greedy(4), |_| true).unwrap();
    let cases = [
        (OutputFormat::JsonSchema(r#"{"type": "foo"}"#.into()), "json_schema", "unrecognized type foo"),
        (OutputFormat::JsonSchema("{".into()), "json_schema", "is not JSON"),
        (OutputFormat::JsonSchema(r#"{"type": "number", "minimum": 1}"#.into()), "json_schema", "`minimum`"),
        (OutputFormat::Grammar("root ::= missing-rule".into()), "grammar", "not a grammar"),
        (OutputFormat::Grammar(r#"start ::= "x""#.into()), "grammar", "root"),
        (OutputFormat::Grammar(String::new()), "grammar", "empty"),
    ];
    for (format, field, needle) in cases {
        let sampling = with_format(format.clone(), 4);
        match s.generate(prompt, &sampling, |_| true) {
            Err(Error::InvalidArgument { name, reason }) => {
                println!("{field}: {reason}");
                assert_eq!(name, field);
                assert!(reason.contains(needle), "{format:?}: {reason}");
            }
            other => panic!("{format:?}: expected InvalidArgument, got {other:?}"),
        }
        // The batch path refuses it too, naming the request.
        let requests = [BatchRequest::new(prompt, Sampling::greedy(4)), BatchRequest::new(prompt, sampling)];
        match s.generate_batch(&requests, |_, _| true) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.starts_with("request 1:"), "{reason}"),
            other => panic!("batch {format:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    // A batch call clears the cache: decode the prompt once more, then a refused grammar must
    // leave it in place for the next call.
    s.generate(prompt, &Sampling::greedy(4), |_| true).unwrap();
    let bad = with_format(OutputFormat::Grammar("root ::= missing-rule".into()), 4);
    assert!(s.generate(prompt, &bad, |_| true).is_err());
    let again = s.generate(prompt, &Sampling::greedy(4), |_| true).unwrap();
    assert!(again.reused_tokens > 0, "a refused grammar threw the cache away");
}
