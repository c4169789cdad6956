//! A model's chat template, as both engines render it: the model's Jinja template, rendered by
//! the bounded renderer of [`crate::chat`], and llama.cpp's built-in renderer as the fallback.
//! When the model has no template, or its template uses something minijinja cannot run, we
//! fall back to llama.cpp's renderer, which recognises the common template families (ChatML,
//! Llama 2/3, Gemma, ...) by their source.
//!
//! The fallback is `llama_chat_apply_template`, a pure function of llama.cpp's library that
//! needs no loaded model or backend, which is why this module sits below both engines: the
//! llama.cpp engine builds a template from a loaded model (`engine::model`), the native engine
//! from a GGUF file's keys (`native::train_data`).
//!
//! A render stopped by one of [`crate::chat`]'s limits is an error naming the limit; it does
//! not fall back to llama.cpp's renderer, which would guess at the intent of a template that
//! misbehaves.

use std::ffi::{c_char, CString};

use crate::chat::{ChatMessage, JinjaFailure, JinjaTemplate};
use crate::error::{Error, Result};

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
    /// The compiled template, or why it did not compile.
    jinja: Option<std::result::Result<JinjaTemplate, String>>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compile `source` (Jinja). A template that does not compile is kept for llama.cpp's
    /// fallback renderer.
    pub fn new(source: Option<String>, bos_token: String, eos_token: String) -> Self {
        let jinja = source.as_deref().map(JinjaTemplate::compile);
        Self { source, jinja, bos_token, eos_token }
    }

    /// The Jinja source, if the model has one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// Render `messages` into prompt text. With `add_generation_prompt`, the text ends with the
    /// opening of an assistant turn, ready for generation.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<(String, TemplateEngine)> {
        let jinja_error = match &self.jinja {
            Some(Ok(template)) => match template.render(messages, add_generation_prompt, &self.bos_token, &self.eos_token) {
                Ok(text) => return Ok((text, TemplateEngine::Jinja)),
                Err(JinjaFailure::Limit(reason)) => return Err(Error::ChatTemplate(reason)),
                Err(JinjaFailure::Other(e)) => Some(e),
            },
            Some(Err(compile)) => Some(format!("the Jinja template does not compile: {compile}")),
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
        let messages: Vec<ChatMessage> = (0..5000)
            .map(|i| if i % 2 == 0 { ChatMessage::user(format!("question {i}")) } else { ChatMessage::assistant("x".repeat(200)) })
            .collect();
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
}
