//! translate() and answer(): clean output, errors for bad languages and empty input.

use crate::common;

use lamina::tasks::{answer, translate, AnswerOptions, TranslateOptions};
use lamina::ErrorKind;

fn assert_clean(text: &str) {
    assert!(!text.is_empty());
    assert!(!text.contains("<|im_"), "template marker in {text:?}");
    assert!(!text.contains("\n\n"), "chatter after the answer in {text:?}");
    assert_eq!(text, text.trim());
}

#[test]
fn translate_returns_clean_deterministic_text() {
    let mut s = common::session();
    let a = translate(&mut s, "Good morning, my friend.", "en", "de", &TranslateOptions::default()).unwrap();
    assert_clean(&a);
    let b = translate(&mut s, "Good morning, my friend.", "English", "German", &TranslateOptions::default()).unwrap();
    assert_eq!(a, b);
    assert!(s.history().is_empty(), "tasks do not touch the chat history");
}

#[test]
fn translate_errors() {
    let mut s = common::session();
    let e = translate(&mut s, "Hello", "en", "klingon", &TranslateOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownLanguage);
    assert!(e.to_string().contains("klingon"), "{e}");
    let e = translate(&mut s, "  ", "en", "de", &TranslateOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EmptyPrompt);
    // Same language: returned as is, no model call.
    assert_eq!(translate(&mut s, " Hello ", "en", "EN", &TranslateOptions::default()).unwrap(), "Hello");
}

#[test]
fn answer_without_and_with_context() {
    let mut s = common::session();
    let a = answer(&mut s, "What is the capital of France?", None, &AnswerOptions::default()).unwrap();
    assert_clean(&a);
    assert!(a.contains("Paris"), "{a:?}");
    let context = "Zorbland is a small island nation. Its capital city is Quellport, home to 40,000 people.";
    let a = answer(&mut s, "What is the capital of Zorbland?", Some(context), &AnswerOptions::default()).unwrap();
    assert_clean(&a);
    assert!(a.contains("Quellport"), "{a:?}");
    let e = answer(&mut s, "", None, &AnswerOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EmptyPrompt);
}
