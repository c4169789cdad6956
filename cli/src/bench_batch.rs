//! `lamina bench --sequences N,...`: the throughput of several prompts decoded together
//! (`Session::generate_batch`) against the same prompts one at a time, in the same process.

use std::time::Instant;

use lamina::{BatchRequest, Error, Sampling, Session, SessionParams};

use crate::options::ModelOptions;

/// Story openings: continuations that do not end within the token budget.
const OPENINGS: [&str; 8] = [
    "Once upon a time, in a village by the sea, there lived",
    "The history of the printing press begins",
    "In the year 2150, the first colony on Mars",
    "The old lighthouse keeper climbed the stairs and",
    "Deep in the forest, a young fox discovered",
    "The recipe for a perfect loaf of bread starts with",
    "When the train stopped in the middle of the desert,",
    "The museum's newest exhibit was a machine that",
];

/// Prompt `i` of a batch: distinct for every i.
fn prompt(i: usize) -> String {
    format!("Story {}. {}", i + 1, OPENINGS[i % OPENINGS.len()])
}

struct Point {
    n: usize,
    batched_tokens_per_s: f64,
    sequential_tokens_per_s: f64,
    same_text: bool,
}

fn measure(model: &lamina::Model, base: &SessionParams, n: usize, gen_tokens: u32) -> Result<Point, Error> {
    let sampling = Sampling::greedy(gen_tokens);
    let requests: Vec<BatchRequest> = (0..n).map(|i| BatchRequest::new(prompt(i), sampling.clone())).collect();
    let mut single = Session::new(model, base)?;
    let start = Instant::now();
    let mut sequential = Vec::with_capacity(n);
    for r in &requests {
        single.reset();
        sequential.push(single.generate(&r.prompt, &r.sampling, |_| true)?);
    }
    let sequential_s = start.elapsed().as_secs_f64();
    let mut batch = Session::new(model, &SessionParams { n_sequences: n as u32, ..base.clone() })?;
    let start = Instant::now();
    let batched = batch.generate_batch(&requests, |_, _| true)?;
    let batched_s = start.elapsed().as_secs_f64();
    let tokens = |gs: &[lamina::Generation]| gs.iter().map(|g| g.generated_tokens).sum::<usize>() as f64;
    Ok(Point {
        n,
        batched_tokens_per_s: tokens(&batched) / batched_s,
        sequential_tokens_per_s: tokens(&sequential) / sequential_s,
        same_text: batched.iter().zip(&sequential).all(|(a, b)| a.text == b.text),
    })
}

/// Measure every `n` of `sequences` (`reps` times each, medians) and print the table.
pub fn run(options: &ModelOptions, sequences: &[usize], gen_tokens: u32, reps: usize, json: bool) -> Result<(), Error> {
    if let Some(&bad) = sequences.iter().find(|&&n| n == 0 || n > lamina::engine::MAX_SEQUENCES as usize) {
        return Err(Error::InvalidArgument {
            name: "sequences",
            reason: format!("{bad} is outside 1..={}", lamina::engine::MAX_SEQUENCES),
        });
    }
    let model = options.load()?;
    let base = SessionParams { n_ctx: 512, ..options.session_params() };
    let threads =
        if base.n_threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u32 } else { base.n_threads };
    // Warm-up (page cache, thread pools), not counted.
    measure(&model, &base, 1, gen_tokens.min(8))?;
    let mut points = Vec::new();
    for &n in sequences {
        let runs: Vec<Point> = (0..reps).map(|_| measure(&model, &base, n, gen_tokens)).collect::<Result<_, _>>()?;
        let median = |f: fn(&Point) -> f64| super::bench::median(runs.iter().map(f).collect());
        points.push(Point {
            n,
            batched_tokens_per_s: median(|p| p.batched_tokens_per_s),
            sequential_tokens_per_s: median(|p| p.sequential_tokens_per_s),
            same_text: runs.iter().all(|p| p.same_text),
        });
    }
    if json {
        let rows: Vec<serde_json::Value> = points
            .iter()
            .map(|p| {
                serde_json::json!({
                    "sequences": p.n,
                    "batched (tokens/s)": p.batched_tokens_per_s,
                    "one at a time (tokens/s)": p.sequential_tokens_per_s,
                    "ratio": p.batched_tokens_per_s / p.sequential_tokens_per_s,
                    "same greedy text": p.same_text,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "threads": threads, "gen_tokens": gen_tokens, "reps": reps, "batch": rows }));
        return Ok(());
    }
    println!(
        "lamina bench --sequences: {threads} threads, {gen_tokens} greedy tokens per prompt, median of {reps} runs; generated tokens/s over the whole call (prompts included)"
    );
    println!("{:>9} {:>14} {:>14} {:>8} {:>16}", "sequences", "batched", "one at a time", "ratio", "same greedy text");
    for p in &points {
        println!(
            "{:>9} {:>14.1} {:>14.1} {:>8.3} {:>16}",
            p.n,
            p.batched_tokens_per_s,
            p.sequential_tokens_per_s,
            p.batched_tokens_per_s / p.sequential_tokens_per_s,
            if p.same_text { "yes" } else { "NO" }
        );
    }
    Ok(())
}
