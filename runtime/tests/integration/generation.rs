//! Generation on the default model: greedy output, streaming, sampling, stop conditions.

use crate::common;

use lamina::{Sampling, StopReason};

#[test]
fn greedy_continues_with_paris_and_is_deterministic() {
    let mut s = common::session();
    let a = s.generate("The capital of France is", &Sampling::greedy(16), |_| true).unwrap();
    assert!(a.text.contains("Paris"), "{:?}", a.text);
    let mut s2 = common::session();
    let b = s2.generate("The capital of France is", &Sampling::greedy(16), |_| true).unwrap();
    assert_eq!(a.text, b.text);
    // Same session again (the KV cache is reused): still identical.
    let c = s.generate("The capital of France is", &Sampling::greedy(16), |_| true).unwrap();
    assert_eq!(a.text, c.text);
    assert!(c.reused_tokens > 0);
}

#[test]
fn streamed_pieces_are_whole_characters_and_add_up_to_the_text() {
    let mut s = common::session();
    let mut pieces = Vec::new();
    // Emoji and accents are split across byte-level BPE tokens.
    let prompt = "Translate to French with emoji: I love pizza 🍕 and café ☕. Réponse:";
    let g = s
        .generate(prompt, &Sampling::greedy(40), |p| {
            pieces.push(p.to_string());
            true
        })
        .unwrap();
    assert_eq!(pieces.concat(), g.text);
    assert!(pieces.iter().all(|p| !p.is_empty()));
    assert!(!g.text.contains('\u{fffd}'), "{:?}", g.text);
}

/// max_tokens may fall between the tokens that spell one character (emoji are several
/// byte-level tokens): the text then ends at the last whole character, with no partial bytes
/// and no U+FFFD, and each shorter run's text is a prefix of the longer one's.
#[test]
fn max_tokens_inside_a_character_returns_whole_characters_only() {
    let prompt = "Reply with emoji only. Food: 🍕🍔🌮 Animals:";
    let n = 16;
    let mut s = common::session();
    let texts: Vec<String> = (1..=n).map(|k| s.generate(prompt, &Sampling::greedy(k), |_| true).unwrap().text).collect();
    println!("{texts:?}");
    let full = &texts[n as usize - 1];
    let mut held = 0;
    for k in 1..texts.len() {
        let (before, now) = (&texts[k - 1], &texts[k]);
        assert!(!now.contains('\u{fffd}'), "{now:?}");
        assert!(now.starts_with(before.as_str()) && full.starts_with(now.as_str()), "{before:?} / {now:?} / {full:?}");
        // A token that completed no character, followed by one that completes a non-ASCII one.
        if k + 1 < texts.len() && now == before && texts[k + 1][now.len()..].chars().next().is_some_and(|c| !c.is_ascii()) {
            held += 1;
        }
    }
    assert!(held > 0, "no run stopped inside a character: {texts:?}");
}

#[test]
fn max_tokens_stops_generation() {
    let mut s = common::session();
    let g = s.generate("Once upon a time, there was a little", &Sampling::greedy(5), |_| true).unwrap();
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(g.generated_tokens, 5);
}

#[test]
fn stop_string_ends_generation_and_is_not_returned() {
    let mut s = common::session();
    let free = s.generate("Once upon a time, there was a little", &Sampling::greedy(24), |_| true).unwrap();
    // Pick a word from the free-running text and stop on it.
    let stop = free.text.split_whitespace().nth(2).unwrap().to_string();
    let sampling = Sampling { stop: vec![stop.clone()], ..Sampling::greedy(24) };
    let g = s.generate("Once upon a time, there was a little", &sampling, |_| true).unwrap();
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert!(!g.text.contains(&stop), "{:?} contains {stop:?}", g.text);
    assert!(free.text.starts_with(&g.text));
}

#[test]
fn callback_returning_false_stops() {
    let mut s = common::session();
    let mut calls = 0;
    let g = s
        .generate("Once upon a time", &Sampling::greedy(50), |_| {
            calls += 1;
            calls < 3
        })
        .unwrap();
    assert_eq!(g.stop_reason, StopReason::CallbackStopped);
    assert_eq!(calls, 3);
}

#[test]
fn seeded_sampling_is_reproducible_and_differs_from_greedy_sometimes() {
    let sampling = |seed| Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Sampling::greedy(24) };
    let mut s = common::session();
    let a = s.generate("My favourite animal is", &sampling(7), |_| true).unwrap();
    let b = s.generate("My favourite animal is", &sampling(7), |_| true).unwrap();
    assert_eq!(a.text, b.text, "same seed, same text");
    let texts: std::collections::HashSet<String> =
        (0..4).map(|seed| s.generate("My favourite animal is", &sampling(seed), |_| true).unwrap().text).collect();
    assert!(texts.len() > 1, "temperature 1 with different seeds should vary: {texts:?}");
}

#[test]
fn repeat_penalty_changes_greedy_output() {
    let mut s = common::session();
    let prompt = "one two one two one two one two";
    let plain = s.generate(prompt, &Sampling::greedy(12), |_| true).unwrap();
    let penalised = s.generate(prompt, &Sampling { repeat_penalty: 1.8, ..Sampling::greedy(12) }, |_| true).unwrap();
    assert_ne!(plain.text, penalised.text);
}

#[test]
fn generation_from_tokens_matches_text_prompt() {
    let mut s = common::session();
    let tokens = common::model().tokenize("The capital of France is", true, true);
    let a = s.generate_from_tokens(&tokens, &Sampling::greedy(8), |_| true).unwrap();
    let b = common::session().generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
    assert_eq!(a.text, b.text);
}

#[test]
fn context_full_is_a_stop_reason_not_an_error() {
    let mut s = common::session_with_ctx(32);
    let g = s.generate("Once upon a time, there was a little", &Sampling::greedy(200), |_| true).unwrap();
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    assert!(g.prompt_tokens + g.generated_tokens <= 32);
}
