//! Threads: sessions on one shared model generating at once give the same greedy text as
//! sequential runs; cancellation from another thread stops within one decode step, and within
//! milliseconds in the middle of prompt processing.

use crate::common;

use std::time::{Duration, Instant};

use lamina::{Sampling, StopReason};

const PROMPTS: [&str; 3] = ["The capital of France is", "Once upon a time, there was a little", "The three primary colors are"];

#[test]
fn concurrent_sessions_match_sequential_runs() {
    let model = common::model();
    let sequential: Vec<String> =
        PROMPTS.iter().map(|p| common::session().generate(p, &Sampling::greedy(24), |_| true).unwrap().text).collect();
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

/// Cancel `session`'s running call after `delay`; returns when the call has returned, with
/// the generation and the latency from the cancel to the return.
fn cancel_after(session: &mut lamina::Session, prompt: &str, delay: Duration) -> (lamina::Generation, Duration) {
    use std::sync::{Arc, Mutex};
    let cancel = session.cancel_handle();
    let sent_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let t = {
        let sent_at = sent_at.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            *sent_at.lock().unwrap() = Some(Instant::now());
            cancel.cancel();
        })
    };
    let g = session.generate(prompt, &Sampling::greedy(4), |_| true).unwrap();
    let returned = Instant::now();
    t.join().unwrap();
    let sent = sent_at.lock().unwrap().expect("the cancel was sent");
    (g, returned.saturating_duration_since(sent))
}

#[test]
fn cancel_during_prompt_processing_returns_within_milliseconds() {
    // A ~3000-token prompt, cancelled early and late (where attention over the cache is the
    // largest step), fed as one decode call and in chunks: llama.cpp's abort callback stops it
    // in the middle of the computation, not after the chunk (seconds on two cores).
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    let mut worst = Duration::ZERO;
    for (n_batch, delay_ms) in [(4096, 300), (4096, 3000), (512, 300), (512, 3000), (64, 2000)] {
        let params = lamina::SessionParams { n_ctx: 4096, n_batch, n_threads: 2, ..Default::default() };
        let mut s = lamina::Session::new(common::model(), &params).unwrap();
        let (g, latency) = cancel_after(&mut s, &long, Duration::from_millis(delay_ms));
        println!(
            "n_batch {n_batch}, cancel after {delay_ms} ms of a {}-token prompt: returned after {:.1} ms (prompt_time {:?}, {:?})",
            g.prompt_tokens,
            latency.as_secs_f64() * 1e3,
            g.prompt_time,
            g.stop_reason
        );
        if g.stop_reason != StopReason::Cancelled {
            // This machine finished the prompt before the cancel: nothing to measure here.
            assert!(g.prompt_time < Duration::from_millis(delay_ms), "{g:?}");
            continue;
        }
        worst = worst.max(latency);
        assert_eq!(g.generated_tokens, 0);
        assert!(
            g.prompt_time >= Duration::from_millis(delay_ms.min(1000) / 2),
            "prompt_time {:?} does not count the work done",
            g.prompt_time
        );
        // The session works afterwards.
        let g = s.generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
        assert!(g.text.contains("Paris"), "{:?}", g.text);
    }
    // The contract is 50 ms; a loaded CI machine gets head room, far below the seconds a
    // whole chunk takes.
    assert!(worst < Duration::from_millis(250), "a cancel took {worst:?}");
}

#[test]
fn a_prompt_cancelled_mid_chunk_keeps_only_the_finished_chunks_in_the_cache() {
    // ~1400 tokens in chunks of 1024, each computed by llama.cpp as two micro-batches of 512:
    // a cancel inside a chunk may land after its first micro-batch, which llama.cpp keeps in
    // its cache; lamina drops it, so the cache holds whole chunks only, and finishing the
    // prompt later gives what a fresh session gives.
    let prompt = "Lisbon is the capital of Portugal. Porto lies to the north. ".repeat(100);
    let params = lamina::SessionParams { n_ctx: 2048, n_batch: 1024, n_threads: 2, ..Default::default() };
    let mut fresh = lamina::Session::new(common::model(), &params).unwrap();
    let started = Instant::now();
    let expected = fresh.generate(&prompt, &Sampling::greedy(8), |_| true).unwrap();
    let full = started.elapsed();
    let mut s = lamina::Session::new(common::model(), &params).unwrap();
    // Cancel a little past the first micro-batch (a 1024-token chunk takes about 3/4 of the
    // prompt's time).
    let (g, _) = cancel_after(&mut s, &prompt, full.mul_f64(0.5));
    assert_eq!(g.stop_reason, StopReason::Cancelled);
    let again = s.generate(&prompt, &Sampling::greedy(8), |_| true).unwrap();
    println!(
        "cancelled a {}-token prompt after {:?} of its {:?}; the next call reused {} tokens",
        again.prompt_tokens,
        full.mul_f64(0.5),
        full,
        again.reused_tokens
    );
    if g.generated_tokens == 0 && again.reused_tokens + 1 < again.prompt_tokens {
        assert_eq!(again.reused_tokens % 1024, 0, "only whole chunks may be kept, got {}", again.reused_tokens);
    }
    assert_eq!(again.text, expected.text);
}

#[test]
fn a_cancelled_chat_turn_leaves_history_unchanged() {
    let mut s = common::session();
    s.chat("Hello", &Sampling::greedy(8), |_| true).unwrap();
    let before = s.history().to_vec();
    let cancel = s.cancel_handle();
    let g = s
        .chat("Count from one to one hundred.", &Sampling::greedy(64), |_| {
            cancel.cancel();
            true
        })
        .unwrap();
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
