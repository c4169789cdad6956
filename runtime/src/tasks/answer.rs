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
    let user = |context: Option<&str>, question: &str| match context {
        Some(context) => format!("Context: {context}\nQuestion: {question}"),
        None => format!("Question: {question}"),
    };
    // Two worked examples teach the format (a bare answer, no sentence around it) far better
    // than instructions alone, especially for small models.
    let messages = [
        ChatMessage::system("You answer questions with the shortest correct answer: a name, a number, a date or a short phrase. No full sentences, no explanation."),
        ChatMessage::user(user(Some("Mara keeps three goats and a donkey on her farm near Telden."), "How many goats does Mara keep?")),
        ChatMessage::assistant("three"),
        ChatMessage::user(user(None, "Which planet is known as the Red Planet?")),
        ChatMessage::assistant("Mars"),
        ChatMessage::user(user(context, question)),
    ];
    let generation = session.complete_chat(&messages, &Sampling::greedy(options.max_tokens), |_| true)?;
    Ok(first_paragraphs(strip_label(&generation.text, &["answer", "a"]), 1))
}
