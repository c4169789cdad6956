//! Multi-turn chat: template rendering, history, KV-cache reuse.

use crate::common;

use lamina::engine::TemplateEngine;
use lamina::{ChatMessage, Sampling, StopReason};

#[test]
fn the_models_jinja_template_renders_chatml() {
    let s = common::session();
    let (prompt, engine) = s.render_chat(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")]).unwrap();
    assert_eq!(engine, TemplateEngine::Jinja);
    assert_eq!(prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn second_turn_reuses_the_cache_and_keeps_history() {
    let mut s = common::session();
    s.set_system_prompt(Some("You are a helpful assistant."));
    let first = s.chat("What is the capital of France?", &Sampling::greedy(24), |_| true).unwrap();
    assert!(!first.text.contains("<|im_"), "{:?}", first.text);
    assert_eq!(first.stop_reason, StopReason::EndOfGeneration, "{:?}", first.text);
    let second = s.chat("And of Germany?", &Sampling::greedy(24), |_| true).unwrap();
    // Everything up to the end of the first reply is already in the cache.
    assert!(second.reused_tokens >= first.prompt_tokens, "{} reused < {} first prompt", second.reused_tokens, first.prompt_tokens);
    assert_eq!(s.history().len(), 5);
    assert_eq!(s.history()[2].content, first.text);

    // The same conversation from scratch gives the same second reply: reuse changes nothing.
    let mut fresh = common::session();
    let msgs = s.history()[..4].to_vec();
    let again = fresh.complete_chat(&msgs, &Sampling::greedy(24), |_| true).unwrap();
    assert_eq!(again.text, second.text);
}

#[test]
fn reset_clears_history() {
    let mut s = common::session();
    s.chat("Hello", &Sampling::greedy(8), |_| true).unwrap();
    s.reset();
    assert!(s.history().is_empty());
    let g = s.chat("Hello", &Sampling::greedy(8), |_| true).unwrap();
    assert_eq!(g.reused_tokens, 0);
}
