//! Tasks built on a session's chat template: translation and question answering.
//!
//! Both run greedily on a fresh conversation (the session's chat history is left alone, but its
//! KV cache is reused for the shared instruction prefix) and return clean text: no template
//! markers, no preamble such as "Translation:", nothing after the answer.

mod answer;
mod cleanup;
mod languages;
mod translate;

pub use answer::{answer, AnswerOptions};
pub use languages::{language_name, LANGUAGES};
pub use translate::{translate, TranslateOptions};
