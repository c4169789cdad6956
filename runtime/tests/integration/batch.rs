//! Several prompts generated together (`Session::generate_batch`): the same greedy text as one
//! at a time, each sequence with its own sampling and stop strings, per-sequence stops, cancel,
//! and every kind of bad request.

use crate::common;

use std::time::Duration;

use lamina::{BatchRequest, Error, Sampling, Session, SessionParams, StopReason};

const PROMPTS: [&str; 6] = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "The three primary colors are",
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
    "Water boils at",
    "A long prompt with many words, to make the sequences differ in length: the history of the printing press begins",
];

fn session(n_sequences: u32) -> Session {
    Session::new(common::model(), &SessionParams { n_ctx: 512, n_threads: 2, n_sequences, ..SessionParams::default() }).unwrap()
}

#[test]
fn greedy_batch_equals_one_prompt_at_a_time() {
    let mut single = session(1);
    let expected: Vec<_> = PROMPTS.iter().map(|p| single.generate(p, &Sampling::greedy(24), |_| true).unwrap()).collect();
    let mut s = session(8);
    let requests: Vec<BatchRequest> = PROMPTS.iter().map(|p| BatchRequest::new(*p, Sampling::greedy(24))).collect();
    let mut streamed = vec![String::new(); PROMPTS.len()];
    let got = s
        .generate_batch(&requests, |i, piece| {
            streamed[i].push_str(piece);
            true
        })
        .unwrap();
    assert_eq!(got.len(), PROMPTS.len());
    for (i, (g, want)) in got.iter().zip(&expected).enumerate() {
        println!("{i}: {:?} ({:?}, {} tokens)", g.text, g.stop_reason, g.generated_tokens);
        assert_eq!(g.text, want.text, "request {i}");
        assert_eq!(g.stop_reason, want.stop_reason, "request {i}");
        assert_eq!(g.generated_tokens, want.generated_tokens, "request {i}");
        assert_eq!(g.prompt_tokens, want.prompt_tokens, "request {i}");
        assert_eq!(streamed[i], g.text, "request {i}: streamed text");
    }
    // The session still generates normally afterwards, and a second batch gives the same.
    let g = s.generate(PROMPTS[0], &Sampling::greedy(24), |_| true).unwrap();
    assert_eq!(g.text, expected[0].text);
    let again = s.generate_batch(&requests[..3], |_, _| true).unwrap();
    assert_eq!(again.iter().map(|g| g.text.clone()).collect::<Vec<_>>(), expected[..3].iter().map(|g| g.text.clone()).collect::<Vec<_>>());
}

#[test]
fn each_sequence_has_its_own_sampling_stops_and_end() {
    let mut s = session(4);
    let seeded = Sampling { temperature: 0.8, seed: 7, max_tokens: 16, ..Sampling::default() };
    let requests = vec![
        BatchRequest::new(PROMPTS[0], Sampling::greedy(3)),
        BatchRequest::new(PROMPTS[1], Sampling { stop: vec![".".into()], ..Sampling::greedy(64) }),
        BatchRequest::new(PROMPTS[2], seeded.clone()),
        BatchRequest::new(PROMPTS[4], Sampling::greedy(20)),
    ];
    let mut pieces = [0usize; 4];
    let got = s
        .generate_batch(&requests, |i, _| {
            pieces[i] += 1;
            // Request 3 stops itself after two pieces; the others go on.
            !(i == 3 && pieces[i] == 2)
        })
        .unwrap();
    assert_eq!(got[0].stop_reason, StopReason::MaxTokens);
    assert_eq!(got[0].generated_tokens, 3);
    assert_eq!(got[1].stop_reason, StopReason::StopString);
    assert!(!got[1].text.contains('.'), "{:?}", got[1].text);
    assert_eq!(got[3].stop_reason, StopReason::CallbackStopped);
    assert_eq!(pieces[3], 2);
    // A seeded sampled sequence gives what the same sampling gives alone.
    let alone = session(1).generate(PROMPTS[2], &seeded, |_| true).unwrap();
    assert_eq!(got[2].text, alone.text);
}

#[test]
fn a_cancel_stops_every_sequence() {
    let mut s = session(4);
    let cancel = s.cancel_handle();
    let requests: Vec<BatchRequest> = (0..4).map(|i| BatchRequest::new(PROMPTS[i], Sampling::greedy(400))).collect();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        cancel.cancel();
    });
    let got = s.generate_batch(&requests, |_, _| true).unwrap();
    t.join().unwrap();
    for g in &got {
        assert!(matches!(g.stop_reason, StopReason::Cancelled | StopReason::EndOfGeneration), "{g:?}");
    }
    assert!(got.iter().any(|g| g.stop_reason == StopReason::Cancelled));
    let g = s.generate(PROMPTS[0], &Sampling::greedy(8), |_| true).unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn bad_requests_get_specific_errors_and_the_session_keeps_working() {
    let mut s = session(2);
    let ok = |p: &str| BatchRequest::new(p, Sampling::greedy(4));
    match s.generate_batch(&[], |_, _| true) {
        Err(Error::InvalidArgument { name: "requests", reason }) => assert!(reason.contains("at least one"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match s.generate_batch(&[ok("a"), ok("b"), ok("c")], |_, _| true) {
        Err(Error::InvalidArgument { name: "requests", reason }) => assert!(reason.contains("at most 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.generate_batch(&[ok("a"), ok("")], |_, _| true), Err(Error::EmptyPrompt { .. })));
    let bad = BatchRequest::new("a", Sampling { temperature: -1.0, ..Sampling::default() });
    match s.generate_batch(&[ok("a"), bad], |_, _| true) {
        Err(Error::InvalidArgument { name: "temperature", reason }) => assert!(reason.contains("request 1"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let long = "word ".repeat(600);
    assert!(matches!(s.generate_batch(&[ok(&long)], |_, _| true), Err(Error::PromptTooLong { .. })));
    match Session::new(common::model(), &SessionParams { n_sequences: 0, ..SessionParams::default() }) {
        Err(Error::InvalidArgument { name: "n_sequences", .. }) => {}
        other => panic!("{other:?}"),
    }
    let got = s.generate_batch(&[ok(PROMPTS[0])], |_, _| true).unwrap();
    assert!(got[0].text.contains("Paris"), "{:?}", got[0].text);
}
