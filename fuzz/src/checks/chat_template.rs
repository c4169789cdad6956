//! Arbitrary bytes as a chat template and a conversation: the bytes before the first NUL are
//! the template's source, the rest are messages separated by 0x01 (roles cycle system, user,
//! assistant); the first byte after the NUL, when odd, asks for the generation prompt.
//!
//! Contract: compiling either succeeds or fails with an error; rendering ends (minijinja's
//! fuel and recursion limit) with text no longer than the output cap, or with an error;
//! never a panic (not even one lamina catches), a hang or a stack overflow.

use crate::chat::{output_cap, ChatMessage, JinjaFailure, JinjaTemplate};

const ROLES: [&str; 3] = ["system", "user", "assistant"];

pub fn run(data: &[u8]) {
    let (source, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(source) else { return };
    let add_generation_prompt = rest.first().is_some_and(|b| b % 2 == 1);
    let text = String::from_utf8_lossy(rest.get(1..).unwrap_or_default());
    let messages: Vec<ChatMessage> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\u{1}').enumerate().map(|(i, c)| ChatMessage::new(ROLES[i % 3], c)).collect()
    };
    let Ok(template) = JinjaTemplate::compile(source) else { return };
    match template.render(&messages, add_generation_prompt, "<s>", "</s>") {
        Ok(out) => assert!(out.len() <= output_cap(&messages), "{} bytes passed the cap", out.len()),
        // lamina turns a panic inside minijinja into this failure; it is still a bug to find.
        Err(JinjaFailure::Other(e)) => assert!(!e.contains("internal error"), "minijinja panicked: {e}"),
        Err(JinjaFailure::Limit(_)) => {}
    }
}
