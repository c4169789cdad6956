//! Perplexity and multiple-choice scoring through the llama.cpp engine on the default model.

use crate::common;

use lamina::eval::choice::score_options;
use lamina::eval::perplexity::perplexity;

fn prose_tokens() -> Vec<i32> {
    // Plain English prose present on every Debian system.
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("GPL-3 text");
    common::model().tokenize(&text, true, false)
}

#[test]
fn perplexity_of_english_prose_is_plausible_and_reproducible() {
    let tokens = prose_tokens();
    let tokens = &tokens[..1024];
    let mut s = common::session_with_ctx(256);
    let mut calls = Vec::new();
    let p = perplexity(&mut s, tokens, 256, None, |done, total| {
        calls.push((done, total));
        true
    })
    .unwrap()
    .unwrap();
    assert_eq!(p.chunks, 4);
    assert_eq!(p.scored_tokens, 4 * (256 - 1 - 128));
    assert!(p.ppl > 2.0 && p.ppl < 40.0, "ppl {}", p.ppl);
    assert!(p.ppl_stderr > 0.0 && p.ppl_stderr < p.ppl);
    assert_eq!(calls.last(), Some(&(4, 4)));
    println!("GPL-3, 1024 tokens, ctx 256: PPL = {:.4} +/- {:.5}", p.ppl, p.ppl_stderr);
    let again = perplexity(&mut common::session_with_ctx(256), tokens, 256, None, |_, _| true).unwrap().unwrap();
    assert_eq!(p.ppl, again.ppl);
}

#[test]
fn teacher_forced_logprobs_agree_with_greedy_generation() {
    let model = common::model();
    let mut s = common::session();
    let prompt = model.tokenize("The capital of France is", true, false);
    let g = s.generate_from_tokens(&prompt, &lamina::Sampling::greedy(6), |_| true).unwrap();
    let full = model.tokenize(&format!("The capital of France is{}", g.text), true, false);
    // The greedy first token (" Paris") is the model's confident choice. (Later tokens are
    // not compared: re-tokenizing generated text may merge tokens differently.)
    let lps = s.token_logprobs(&full, prompt.len()).unwrap().unwrap();
    assert_eq!(lps.len(), full.len() - prompt.len());
    assert!(lps[0] > (0.3f64).ln(), "{lps:?}");
    // Reusing the cache changes nothing.
    let again = common::session().token_logprobs(&full, prompt.len()).unwrap().unwrap();
    let max_diff = lps.iter().zip(&again).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("max |logprob difference| with and without cache reuse: {max_diff:e}");
    assert!(max_diff < 1e-3);
}

#[test]
fn choices_are_scored_by_likelihood() {
    let mut s = common::session();
    let options = vec!["Paris.".to_string(), "a purple banana.".to_string(), "the number seven.".to_string()];
    let r = score_options(&mut s, "The capital of France is", &options).unwrap().unwrap();
    assert_eq!(r.best_by_sum, 0, "{:?}", r.scores);
    assert_eq!(r.best_by_mean, 0, "{:?}", r.scores);
    assert!(r.scores.iter().all(|sc| sc.tokens > 0 && sc.logprob_sum < 0.0));
    assert!(score_options(&mut s, "Q", &options[..1]).is_err());
    assert!(score_options(&mut s, "Q", &["a".into(), " ".into()]).is_err());
}

#[test]
fn bad_scoring_arguments() {
    let mut s = common::session_with_ctx(64);
    assert!(s.token_logprobs(&[1], 1).is_err());
    assert!(s.token_logprobs(&[1, 2, 3], 0).is_err());
    assert!(s.token_logprobs(&[1, 2, 3], 3).is_err());
    assert!(s.token_logprobs(&[1, -2, 3], 1).is_err());
    assert!(s.token_logprobs(&vec![5; 65], 1).is_err());
    let tokens = prose_tokens();
    assert!(perplexity(&mut s, &tokens[..100], 64, None, |_, _| true).is_err(), "fewer than 2*n_ctx tokens");
}

#[test]
fn a_cancel_stops_the_whole_evaluation_and_does_not_leak() {
    use lamina::eval::run::{evaluate, EvalOptions, Task};
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/choice.jsonl");
    let mut s = common::session();
    let cancel = s.cancel_handle();
    let report = evaluate(&mut s, Task::Choice, &data, &EvalOptions::default(), |done, _| {
        if done == 1 {
            cancel.cancel(); // between two examples: no generation is running at this moment
        }
        true
    })
    .unwrap();
    assert!(report.cancelled);
    assert_eq!(report.evaluated, 1);
    let full = evaluate(&mut s, Task::Choice, &data, &EvalOptions::default(), |_, _| true).unwrap();
    assert!(!full.cancelled);
    assert_eq!(full.evaluated, 4);
    assert_eq!(full.metric("accuracy"), Some(100.0));
}
