//! `answer(question, optional context)`.

use super::cleanup::{first_paragraphs, strip_label};
use crate::engine::{ChatMessage, Sampling, Session};
use crate::error::{Error, Result};

/// Options for [`answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerOptions {
    /// Upper bound on generated tokens.
    pub max_tokens: u32,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self { max_tokens: 64 }
    }
}

/// Answer `question`, from `context` when one is given (extractive, reading-comprehension
/// style) or from the model's own knowledge otherwise. Returns a short answer: the first
/// paragraph of the reply, without an "Answer:" label. Greedy.
pub fn answer(session: &mut Session, question: &str, context: Option<&str>, options: &AnswerOptions) -> Result<String> {
    let question = question.trim();
    if question.is_empty() {
        return Err(Error::EmptyPrompt { what: "question" });
    }
    if options.max_tokens == 0 {
        return Err(Error::invalid("max_tokens", "must be at least 1"));
    }
    let context = context.map(str::trim).filter(|c| !c.is_empty());
    let user = match context {
        Some(context) => format!("Context:\n{context}\n\nQuestion: {question}"),
        None => question.to_string(),
    };
    let system = if context.is_some() {
        "Answer the question using the context. Give only the short answer, a few words taken from the context, without explanation."
    } else {
        "Answer the question with a short, direct answer: a few words, without explanation."
    };
    let messages = [ChatMessage::system(system), ChatMessage::user(user)];
    let generation = session.complete_chat(&messages, &Sampling::greedy(options.max_tokens), |_| true)?;
    Ok(first_paragraphs(strip_label(&generation.text, &["answer", "a"]), 1))
}
