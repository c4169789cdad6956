//! Threads: sessions on one shared model generating at once give the same greedy text as
//! sequential runs; cancellation from another thread stops within one decode step.

mod common;

use std::time::{Duration, Instant};

use lamina::{Sampling, StopReason};

const PROMPTS: [&str; 3] = ["The capital of France is", "Once upon a time, there was a little", "The three primary colors are"];

#[test]
fn concurrent_sessions_match_sequential_runs() {
    let model = common::model();
    let sequential: Vec<String> = PROMPTS
        .iter()
        .map(|p| common::session().generate(p, &Sampling::greedy(24), |_| true).unwrap().text)
        .collect();
    let concurrent: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let model = model.clone();
                scope.spawn(move || {
                    let params = lamina::SessionParams { n_ctx: 1024, n_threads: 1, ..Default::default() };
                    let mut s = lamina::Session::new(&model, &params).unwrap();
                    s.generate(p, &Sampling::greedy(24), |_| true).unwrap().text
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sequential, concurrent);
}

#[test]
fn cancel_from_another_thread_stops_within_one_decode_step() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    let mut s = common::session_with_ctx(4096);
    let cancel = s.cancel_handle();
    let (tx, rx) = mpsc::channel::<()>();
    let cancel_sent = Arc::new(AtomicBool::new(false));
    let pieces_after_cancel = Arc::new(AtomicUsize::new(0));
    let canceller = {
        let cancel_sent = cancel_sent.clone();
        std::thread::spawn(move || {
            rx.recv().unwrap();
            cancel.cancel();
            cancel_sent.store(true, Ordering::SeqCst);
        })
    };
    let mut pieces = 0;
    let started = Instant::now();
    // Counting never ends by itself within the budget.
    let g = s
        .generate("1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", &Sampling::greedy(3000), |_| {
            pieces += 1;
            if cancel_sent.load(Ordering::SeqCst) {
                pieces_after_cancel.fetch_add(1, Ordering::SeqCst);
            }
            if pieces == 5 {
                tx.send(()).unwrap();
            }
            true
        })
        .unwrap();
    canceller.join().unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled, "{:?}", g.text);
    // The sampled token in flight when the cancel landed may still be emitted; no more.
    let late = pieces_after_cancel.load(Ordering::SeqCst);
    assert!(late <= 1, "{late} pieces arrived after the cancel");
    assert!(g.generated_tokens < 100, "{} tokens generated", g.generated_tokens);
    assert!(started.elapsed() < Duration::from_secs(60));
    // The session works afterwards, and a consumed cancel does not leak into the next call.
    let g = s.generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn cancel_during_a_long_prompt_stops_between_chunks() {
    let params = lamina::SessionParams { n_ctx: 4096, n_batch: 64, n_threads: 2, ..Default::default() };
    let mut s = lamina::Session::new(common::model(), &params).unwrap();
    let cancel = s.cancel_handle();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(300); // ~3000 tokens, 47 chunks
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        cancel.cancel();
    });
    let started = Instant::now();
    let g = s.generate(&long, &Sampling::greedy(4), |_| true).unwrap();
    t.join().unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert_eq!(g.generated_tokens, 0);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_cancelled_chat_turn_leaves_history_unchanged() {
    let mut s = common::session();
    s.chat("Hello", &Sampling::greedy(8), |_| true).unwrap();
    let before = s.history().to_vec();
    let cancel = s.cancel_handle();
    let g = s.chat("Count from one to one hundred.", &Sampling::greedy(64), |_| {
        cancel.cancel();
        true
    }).unwrap();
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    assert_eq!(s.history(), &before[..]);
}

#[test]
fn a_cancel_while_idle_does_not_leak_into_the_next_generation() {
    let mut s = common::session();
    s.cancel_handle().cancel();
    let g = s.generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert!(g.text.contains("Paris"));
}
