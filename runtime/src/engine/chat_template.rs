//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Models ship their template as Jinja source in the GGUF key `tokenizer.chat_template`. We
//! render it with minijinja (a real Jinja engine, with Python-style string methods enabled, as
//! Hugging Face templates assume). When the model has no template, or its template uses
//! something minijinja cannot run, we fall back to llama.cpp's built-in renderer, which
//! recognises the common template families (ChatML, Llama 2/3, Gemma, ...) by their source.
//!
//! A template is untrusted input: anyone who makes a GGUF file writes it. Rendering is bounded:
//! - time, by minijinja's fuel: at most [`FUEL`] instructions per render (an endless or
//!   runaway loop; real templates use a few thousand for a long conversation);
//! - depth, by a recursion limit of [`RECURSION_LIMIT`] (endless recursion through macros,
//!   before it can exhaust a host thread's stack);
//! - output, by a cap of 1 MiB plus 16 bytes per byte of the conversation;
//! - a single repeated string (`'x' * n`), by minijinja itself (100 MB).
//!
//! A render stopped by one of these limits is an error naming the limit; it does not fall back
//! to llama.cpp's renderer, which would guess at the intent of a template that misbehaves.
//! What these limits do not bound is memory held in a value that is never printed, such as a
//! string doubled in every step of a short loop; fuel keeps such loops short.

use std::ffi::{c_char, CString};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind as JinjaErrorKind};
use serde::Serialize;

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Which engine rendered a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateEngine {
    /// The model's Jinja template, rendered by minijinja.
    Jinja,
    /// llama.cpp's built-in renderer (fallback).
    LlamaCpp,
}

/// A model's chat template, compiled once at load.
pub struct ChatTemplate {
    source: Option<String>,
    env: Option<Environment<'static>>,
    bos_token: String,
    eos_token: String,
}

const TEMPLATE_NAME: &str = "chat";

/// Instructions one render may execute (see the module docs).
pub const FUEL: u64 = 2_000_000;
/// minijinja's recursion budget (a macro call costs about 10 of it, a loop or `if` 1).
pub const RECURSION_LIMIT: usize = 100;
/// Output allowed whatever the conversation's size.
const OUTPUT_FLOOR: usize = 1 << 20;

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

/// Why the Jinja render failed.
enum JinjaFailure {
    /// A resource limit stopped it: an error, without fallback.
    Limit(String),
    /// Anything else (an unsupported feature, a template error): llama.cpp's renderer may
    /// still know the template.
    Other(String),
}

fn raise_exception(message: String) -> std::result::Result<String, JinjaError> {
    Err(JinjaError::new(JinjaErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Templates use this to stamp the current date; a fixed UTC clock keeps prompts
    // reproducible across runs within a day, which is what greedy determinism needs.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
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

fn token_text(model: &LlamaModel, token: LlamaToken) -> String {
    if token.0 < 0 {
        return String::new();
    }
    String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
}

impl ChatTemplate {
    /// Read and compile the template of `model`.
    pub(crate) fn from_model(model: &LlamaModel) -> Self {
        let source = model.chat_template(None).ok().and_then(|t| t.to_string().ok());
        let vocab = model.vocab();
        Self::new(source, token_text(model, vocab.bos()), token_text(model, vocab.eos()))
    }

    /// Compile `source` (Jinja). A template that does not compile is kept for llama.cpp's
    /// fallback renderer.
    pub fn new(source: Option<String>, bos_token: String, eos_token: String) -> Self {
        let env = source.as_ref().and_then(|src| {
            let mut env = Environment::new();
            minijinja_contrib::add_to_environment(&mut env);
            env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            env.add_function("raise_exception", raise_exception);
            env.add_function("strftime_now", strftime_now);
            env.set_trim_blocks(true);
            env.set_lstrip_blocks(true);
            env.set_fuel(Some(FUEL));
            env.set_recursion_limit(RECURSION_LIMIT);
            env.add_template_owned(TEMPLATE_NAME, src.clone()).ok()?;
            Some(env)
        });
        Self { source, env, bos_token, eos_token }
    }

    /// The Jinja source, if the model has one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Render `messages` into prompt text. With `add_generation_prompt`, the text ends with the
    /// opening of an assistant turn, ready for generation.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<(String, TemplateEngine)> {
        let jinja_error = match &self.env {
            Some(env) => match self.render_jinja(env, messages, add_generation_prompt) {
                Ok(text) => return Ok((text, TemplateEngine::Jinja)),
                Err(JinjaFailure::Limit(reason)) => return Err(Error::ChatTemplate(reason)),
                Err(JinjaFailure::Other(e)) => Some(e),
            },
            None => None,
        };
        match render_llama_cpp(self.source.as_deref(), messages, add_generation_prompt) {
            Ok(text) => Ok((text, TemplateEngine::LlamaCpp)),
            Err(fallback) => Err(Error::ChatTemplate(match jinja_error {
                Some(jinja) => format!("{jinja}; llama.cpp's renderer also failed: {fallback}"),
                None => fallback,
            })),
        }
    }

    fn render_jinja(&self, env: &Environment<'static>, messages: &[ChatMessage], add_generation_prompt: bool) -> std::result::Result<String, JinjaFailure> {
        let template = env.get_template(TEMPLATE_NAME).map_err(|e| JinjaFailure::Other(e.to_string()))?;
        let input: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
        let mut out = CappedOutput { text: Vec::new(), cap: OUTPUT_FLOOR.saturating_add(input.saturating_mul(16)), exceeded: false };
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.text).map_err(|_| JinjaFailure::Other("the template rendered invalid UTF-8".into())),
            Err(_) if out.exceeded => Err(JinjaFailure::Limit(format!("the model's chat template was stopped: its output passed {} bytes for a conversation of {input} bytes", out.cap))),
            Err(e) if e.kind() == JinjaErrorKind::OutOfFuel => {
                Err(JinjaFailure::Limit(format!("the model's chat template was stopped after {FUEL} instructions (an endless or runaway loop?)")))
            }
            Err(e) if e.kind() == JinjaErrorKind::InvalidOperation && matches!(e.detail(), Some("recursion limit exceeded" | "repeated string is too large")) => {
                Err(JinjaFailure::Limit(format!("the model's chat template was stopped: {} (endless recursion, or a runaway string?)", e.detail().unwrap_or_default())))
            }
            Err(e) => Err(JinjaFailure::Other(format!("Jinja rendering failed: {e:#}"))),
        }
    }
}

/// llama.cpp's own renderer. `source` may be a Jinja source it recognises or a built-in name
/// ("chatml", "llama3", ...); without one we use ChatML, the most common format.
fn render_llama_cpp(source: Option<&str>, messages: &[ChatMessage], add_generation_prompt: bool) -> std::result::Result<String, String> {
    let template = CString::new(source.unwrap_or("chatml")).map_err(|_| "the template contains a NUL byte".to_string())?;
    let mut owned = Vec::with_capacity(messages.len());
    for m in messages {
        let role = CString::new(m.role.as_str()).map_err(|_| "a message role contains a NUL byte".to_string())?;
        let content = CString::new(m.content.as_str()).map_err(|_| "a message contains a NUL byte".to_string())?;
        owned.push((role, content));
    }
    let raw: Vec<llama_cpp_sys_2::llama_chat_message> = owned
        .iter()
        .map(|(role, content)| llama_cpp_sys_2::llama_chat_message { role: role.as_ptr(), content: content.as_ptr() })
        .collect();
    let total: usize = messages.iter().map(|m| m.role.len() + m.content.len()).sum();
    let mut buf: Vec<u8> = vec![0; (total * 2 + 256).min(i32::MAX as usize)];
    for _ in 0..2 {
        let cap = i32::try_from(buf.len()).map_err(|_| "the conversation is too long".to_string())?;
        // SAFETY: every pointer is valid for the call: the CStrings live in `owned`, `raw` and
        // `buf` outlive it, and `cap` is `buf`'s length.
        let n = unsafe {
            llama_cpp_sys_2::llama_chat_apply_template(
                template.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                add_generation_prompt,
                buf.as_mut_ptr().cast::<c_char>(),
                cap,
            )
        };
        if n < 0 {
            return Err("llama.cpp does not recognise this chat template".to_string());
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return String::from_utf8(buf).map_err(|_| "llama.cpp rendered invalid UTF-8".to_string());
        }
        buf.resize(n, 0);
    }
    Err("llama.cpp's renderer did not converge on a buffer size".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// The limits leave room for real use: a conversation of 5,000 messages renders.
    #[test]
    fn a_long_conversation_stays_within_the_limits() {
        let t = ChatTemplate::new(Some(CHATML.into()), "<s>".into(), "</s>".into());
        let messages: Vec<ChatMessage> = (0..5000).map(|i| if i % 2 == 0 { ChatMessage::user(format!("question {i}")) } else { ChatMessage::assistant("x".repeat(200)) }).collect();
        let (text, engine) = t.render(&messages, true).unwrap();
        assert_eq!(engine, TemplateEngine::Jinja);
        assert_eq!(text.matches("<|im_start|>").count(), 5001);
    }

    #[test]
    fn jinja_renders_chatml() {
        let t = ChatTemplate::new(Some(CHATML.into()), "<s>".into(), "</s>".into());
        let (text, engine) = t.render(&[ChatMessage::user("Hi")], true).unwrap();
        assert_eq!(engine, TemplateEngine::Jinja);
        assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn jinja_and_llama_cpp_agree_on_chatml() {
        let t = ChatTemplate::new(Some(CHATML.into()), "<s>".into(), "</s>".into());
        let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi"), ChatMessage::assistant("Hello!"), ChatMessage::user("Bye")];
        let (jinja, _) = t.render(&msgs, true).unwrap();
        let fallback = render_llama_cpp(Some(CHATML), &msgs, true).unwrap();
        assert_eq!(jinja, fallback);
    }

    #[test]
    fn python_string_methods_work() {
        let src = "{% for m in messages %}{{ m['content'].strip().upper() }}|{% endfor %}";
        let t = ChatTemplate::new(Some(src.into()), String::new(), String::new());
        assert_eq!(t.render(&[ChatMessage::user("  hi ")], false).unwrap().0, "HI|");
    }

    #[test]
    fn broken_jinja_falls_back_to_llama_cpp() {
        // Not valid Jinja, but contains the ChatML marker llama.cpp detects.
        let src = "{% for %} <|im_start|> {{";
        let t = ChatTemplate::new(Some(src.into()), String::new(), String::new());
        let (text, engine) = t.render(&[ChatMessage::user("Hi")], true).unwrap();
        assert_eq!(engine, TemplateEngine::LlamaCpp);
        assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_falls_back_then_errors_cleanly() {
        let src = "{{ raise_exception('no system role') }}";
        let t = ChatTemplate::new(Some(src.into()), String::new(), String::new());
        let err = t.render(&[ChatMessage::user("Hi")], true).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn no_template_uses_chatml() {
        let t = ChatTemplate::new(None, String::new(), String::new());
        let (text, engine) = t.render(&[ChatMessage::user("Hi")], true).unwrap();
        assert_eq!(engine, TemplateEngine::LlamaCpp);
        assert!(text.starts_with("<|im_start|>user\nHi"));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }
}
