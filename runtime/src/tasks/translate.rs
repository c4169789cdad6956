//! `translate(text, from, to)`.

use super::cleanup::{first_paragraphs, strip_label, strip_quotes};
use super::languages::language_name;
use crate::engine::{ChatMessage, Sampling, Session};
use crate::error::{Error, Result};

/// Options for [`translate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TranslateOptions {
    /// Upper bound on generated tokens; 0 = twice the source's token count plus 32.
    pub max_tokens: u32,
}

/// Translate `text` from language `from` to language `to` (ISO 639-1 codes such as "en", "de",
/// or English names). Greedy, so the same input gives the same output.
pub fn translate(session: &mut Session, text: &str, from: &str, to: &str, options: &TranslateOptions) -> Result<String> {
    let source = text.trim();
    if source.is_empty() {
        return Err(Error::EmptyPrompt { what: "text to translate" });
    }
    let from_name = language_name(from).ok_or_else(|| Error::UnknownLanguage(from.to_string()))?;
    let to_name = language_name(to).ok_or_else(|| Error::UnknownLanguage(to.to_string()))?;
    if from_name == to_name {
        return Ok(source.to_string());
    }
    let max_tokens = if options.max_tokens > 0 {
        options.max_tokens
    } else {
        let n = session.model().tokenize(source, false, false).len() as u32;
        n.saturating_mul(2).saturating_add(32)
    };
    let messages = [
        ChatMessage::system(format!(
            "You are a professional translator. Translate the user's {from_name} text into {to_name}. \
             Reply with the {to_name} translation only, without notes or explanations."
        )),
        ChatMessage::user(format!("Translate from {from_name} to {to_name}:\n\n{source}")),
    ];
    let sampling = Sampling { max_tokens, ..Sampling::greedy(max_tokens) };
    let generation = session.complete_chat(&messages, &sampling, |_| true)?;
    // Keep as many paragraphs as the source has; drop anything the model adds after them.
    let paragraphs = source.split("\n\n").filter(|p| !p.trim().is_empty()).count();
    let labels = ["here is the translation", "translation", to_name];
    let reply = first_paragraphs(strip_label(&generation.text, &labels), paragraphs);
    Ok(strip_quotes(&reply, source).to_string())
}
