//! Conversations, and the bounded Jinja renderer of chat templates. No llama.cpp here: the
//! fallback to llama.cpp's built-in renderer, and reading a template out of a loaded model,
//! are `chat_template` and `engine::model`.
//!
//! Models ship their template as Jinja source in the GGUF key `tokenizer.chat_template`. We
//! render it with minijinja (a real Jinja engine, with Python-style string methods enabled, as
//! Hugging Face templates assume).
//!
//! A template is untrusted input: anyone who makes a GGUF file writes it. Rendering is bounded:
//! - time and memory, by minijinja's fuel: at most [`FUEL`] units per render, where an
//!   instruction costs one and an operation that builds a string or list also costs what it
//!   allocates (an endless or runaway loop, a string doubled in every step; real templates use
//!   a few thousand for a long conversation);
//! - depth, by a recursion limit of [`RECURSION_LIMIT`] (endless recursion through macros,
//!   before it can exhaust a host thread's stack);
//! - output, by a cap of 1 MiB plus 16 bytes per byte of the conversation;
//! - a single repeated string (`'x' * n`), by minijinja itself (100 MB);
//! - a panic inside minijinja, by catching it: the render fails like any other.
//!
//! The renderer is fuzzed (`fuzz/`, target `chat_template`).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};
use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant" (templates may accept others).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

const TEMPLATE_NAME: &str = "chat";

/// Fuel one render may spend: instructions, plus bytes allocated by string and list operations
/// (see the module docs).
///
/// minijinja 3 charges a string operation the bytes it builds, so a template spends about
/// 1-3 units per byte of the conversation on top of its instructions: 20 M leaves room for
/// conversations of several megabytes, while an endless loop stops within a second.
pub const FUEL: u64 = 20_000_000;
/// minijinja's recursion budget (a macro call costs about 10 of it, a loop or `if` 1).
pub const RECURSION_LIMIT: usize = 100;
/// Output allowed whatever the conversation's size.
const OUTPUT_FLOOR: usize = 1 << 20;

/// The output cap of a render of `messages`: [`OUTPUT_FLOOR`] plus 16 bytes per input byte.
pub fn output_cap(messages: &[ChatMessage]) -> usize {
    let input: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    OUTPUT_FLOOR.saturating_add(input.saturating_mul(16))
}

/// Where a render writes: fails once `cap` bytes would be passed.
struct CappedOutput {
    text: Vec<u8>,
    cap: usize,
    exceeded: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > self.cap {
            self.exceeded = true;
            return Err(std::io::Error::other("the chat template's output cap was reached"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a Jinja render failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JinjaFailure {
    /// A resource limit stopped it (fuel, recursion, output cap, a huge repeated string):
    /// the template misbehaves, and no other renderer should guess at its intent.
    Limit(String),
    /// Anything else (an unsupported feature, a template error, `raise_exception`): another
    /// renderer may still know the template.
    Other(String),
}

fn raise_exception(message: String) -> std::result::Result<String, JinjaError> {
    Err(JinjaError::new(JinjaErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Templates use this to stamp the current date; a fixed UTC clock keeps prompts
    // reproducible across runs within a day, which is what greedy determinism needs.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    format
        .replace("%Y", &format!("{y:04}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
        .replace("%B", MONTHS[(m - 1) as usize])
        .replace("%b", &MONTHS[(m - 1) as usize][..3])
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A chat template compiled by minijinja, with the limits of the module docs.
pub struct JinjaTemplate {
    env: Environment<'static>,
}

impl JinjaTemplate {
    /// Compile `source`; the error is minijinja's (a syntax error, an unknown filter...).
    pub fn compile(source: &str) -> std::result::Result<JinjaTemplate, String> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks on.
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.expect("the default delimiters are a valid syntax"));
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        // No debug info (it costs time on every render), and errors printed without `{:#}`:
        // minijinja 2.24's debug rendering of an error whose span ended before it started
        // overflowed (found by fuzzing; the input is in fuzz/regressions/chat_template/). The
        // plain message keeps the kind, the detail and the line.
        env.set_debug(false);
        env.add_template_owned(TEMPLATE_NAME, source.to_string()).map_err(|e| e.to_string())?;
        Ok(JinjaTemplate { env })
    }

    /// Render `messages`; with `add_generation_prompt`, the text ends with the opening of an
    /// assistant turn. `bos_token` and `eos_token` are the texts templates see under those names.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> std::result::Result<String, JinjaFailure> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| JinjaFailure::Other(e.to_string()))?;
        let input: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
        let mut out = CappedOutput { text: Vec::new(), cap: output_cap(messages), exceeded: false };
        let ctx = context! {
            messages => Serde(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
        };
        // A panic inside minijinja on a hostile template (fuzzing found two in 2.24, fixed by
        // 3.x) must not take the host down: it becomes an ordinary template failure. Nothing
        // is shared between renders but the compiled template, which rendering only reads.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| template.render_captured_to(ctx, &mut out)));
        let Ok(rendered) = rendered else {
            return Err(JinjaFailure::Other("the Jinja engine failed on this template (an internal error)".into()));
        };
        match rendered {
            Ok(_) => String::from_utf8(out.text).map_err(|_| JinjaFailure::Other("the template rendered invalid UTF-8".into())),
            Err(_) if out.exceeded => Err(JinjaFailure::Limit(format!(
                "the model's chat template was stopped: its output passed {} bytes for a conversation of {input} bytes",
                out.cap
            ))),
            Err(e) if e.kind() == JinjaErrorKind::OutOfFuel => {
                Err(JinjaFailure::Limit(format!(
                    "the model's chat template was stopped after spending its budget of {FUEL} instructions and bytes (an endless or runaway loop, or a runaway string?)"
                )))
            }
            Err(e)
                if e.kind() == JinjaErrorKind::InvalidOperation
                    && matches!(e.detail(), Some("recursion limit exceeded" | "repeated string is too large")) =>
            {
                Err(JinjaFailure::Limit(format!(
                    "the model's chat template was stopped: {} (endless recursion, or a runaway string?)",
                    e.detail().unwrap_or_default()
                )))
            }
            Err(e) => Err(JinjaFailure::Other(format!("Jinja rendering failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    /// The budget leaves room for real use: a ChatML conversation of 4 MB renders.
    #[test]
    fn a_conversation_of_megabytes_renders() {
        let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let messages: Vec<ChatMessage> =
            (0..20_000).map(|i| ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, "y".repeat(200))).collect();
        let text = JinjaTemplate::compile(chatml).unwrap().render(&messages, true, "", "").unwrap();
        assert_eq!(text.matches("<|im_start|>").count(), 20_001);
    }

    #[test]
    fn limits_are_limits_and_errors_are_not() {
        let render = |src: &str| JinjaTemplate::compile(src).unwrap().render(&[ChatMessage::user("Hi")], true, "", "");
        assert!(matches!(
            render("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"),
            Err(JinjaFailure::Limit(_))
        ));
        assert!(matches!(render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"), Err(JinjaFailure::Limit(_))));
        // Doubling a string that is never printed: bounded since minijinja 3 charges fuel for
        // the bytes an operation allocates (2^60 bytes otherwise).
        let doubling = "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
        assert!(matches!(render(doubling), Err(JinjaFailure::Limit(_))), "{:?}", render(doubling));
        assert!(matches!(render("{{ raise_exception('no') }}"), Err(JinjaFailure::Other(_))));
        assert!(matches!(render("{{ undefined_function() }}"), Err(JinjaFailure::Other(_))));
        assert_eq!(render("{{ messages[0].content }}").unwrap(), "Hi");
        assert!(JinjaTemplate::compile("{% for %}").is_err());
    }
}
