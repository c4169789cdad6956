//! `lamina bench-native`: the native engine's forward pass against llama.cpp's prompt
//! processing, on the same tokens, in the same process, alternating runs (the machine may be
//! shared and noisy: the ratio is the number that means something).
//!
//! Native: one forward pass over a sequence of `--seq-len` tokens with logits for every
//! position (what scoring and training need). llama.cpp: the same tokens decoded as a prompt
//! through a lamina session (logits for the last position only, as llama-bench's pp test).
//! Also printed: the native pass's achieved GFLOP/s (weight products: 2 FLOPs per weight per
//! token, plus the causal attention products) against this machine's measured f32 FMA peak,
//! then the same for one LoRA training pass (forward + backward), and the peak RSS.

use std::time::{Duration, Instant};

use clap::Args;
use lamina::native::peak::measure_fma_peak;
use lamina::native::{Example, LoraConfig, LoraWeights, NativeModel, NativeParams, PassOptions};
use lamina::{Error, Sampling, Session, SessionParams};

use crate::options::ModelOptions;

#[derive(Args, Debug)]
pub struct NativeBenchArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Repetitions per side (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Precision of the native engine's weight products: auto (bf16 where the CPU has AMX tiles,
    /// or AVX512-BF16 with a dot product measured faster than f32 FMAs; else f32), f32 or bf16.
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "bf16"])]
    precision: String,
    /// Also time every product shape on its own (GFLOP/s per shape, forward and backward).
    #[arg(long)]
    products: bool,
    /// Time the native forward pass alone: no llama.cpp model in the process and no training
    /// pass, so that its speed and peak memory compare with another runtime's forward measured
    /// in a process of its own (what scripts/bench-vs-pytorch.sh does).
    #[arg(long, conflicts_with = "products")]
    forward_only: bool,
}

const TEXT: &str = include_str!("../../tests/data/prose.txt");

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

pub fn run(args: &NativeBenchArgs) -> Result<(), Error> {
    if !args.model.lora.is_empty() {
        return Err(Error::InvalidArgument {
            name: "lora",
            reason: "benchmarks measure the base model; --lora is not supported here".into(),
        });
    }
    if args.reps == 0 || args.seq_len < 2 {
        return Err(Error::InvalidArgument { name: "bench", reason: "--reps must be at least 1 and --seq-len at least 2".into() });
    }
    let threads = if args.model.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        args.model.threads as usize
    };
    if args.forward_only {
        return forward_only(args, threads);
    }
    let model = args.model.load()?;
    let mut tokens = Vec::new();
    while tokens.len() < args.seq_len {
        tokens.extend(model.tokenize(TEXT, false, false));
    }
    tokens.truncate(args.seq_len);
    let mut session = Session::new(
        &model,
        &SessionParams {
            n_ctx: args.seq_len as u32 + 16,
            n_batch: args.seq_len as u32,
            n_threads: threads as u32,
            ..SessionParams::default()
        },
    )?;
    let native = NativeModel::load(
        args.model.model_path(),
        &NativeParams { n_threads: threads, precision: lamina::native::Precision::parse(&args.precision)?, ..Default::default() },
    )?;
    let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();

    let llama_once = |session: &mut Session| -> Result<f64, Error> {
        session.reset();
        let g = session.generate_from_tokens(&tokens, &Sampling::greedy(1), |_| true)?;
        Ok(g.prompt_time.as_secs_f64())
    };
    let native_once = || timed_forward(&native, &ids);
    // Warm-up (page cache, thread pools, buffers), not counted.
    llama_once(&mut session)?;
    native_once()?;
    let (mut llama_t, mut native_t) = (Vec::new(), Vec::new());
    for _ in 0..args.reps {
        llama_t.push(llama_once(&mut session)?);
        native_t.push(native_once()?);
    }
    let (lt, nt) = (median(llama_t), median(native_t));
    let n = args.seq_len as f64;
    let (flops, attention_flops) = forward_flops(&native, n);
    let achieved = flops / nt / 1e9;
    let peak = measure_fma_peak(threads, Duration::from_millis(500));

    // One LoRA training pass (rank 8 on every projection, every position a target): forward
    // with saved activations plus backward. The backward pass multiplies every frozen weight
    // once more (dx = dy·W) and runs attention's four products, so it costs about the forward's
    // FLOPs again; LoRA's own products are small next to those and not counted.
    let lora = LoraWeights::new(native.config(), &LoraConfig::default(), 0)?;
    let example = Example { tokens: ids.clone(), targets: vec![true; ids.len()] };
    let mut grads = lora.zeros_like();
    native.loss_and_grads(&lora, std::slice::from_ref(&example), PassOptions::default(), &mut grads)?;
    let mut train_t = Vec::new();
    for _ in 0..args.reps {
        let start = Instant::now();
        native.loss_and_grads(&lora, std::slice::from_ref(&example), PassOptions::default(), &mut grads)?;
        train_t.push(start.elapsed().as_secs_f64());
    }
    let tt = median(train_t);
    let train_flops = 2.0 * flops + attention_flops;
    let train_gflops = train_flops / tt / 1e9;
    let peak_rss_mib = peak_rss_kib().map(|k| k as f64 / 1024.0);
    let (llama_tps, native_tps) = (n / lt, n / nt);
    // Every product shape on its own, at the training batch's row count (4 sequences).
    let products = if args.products { native.benchmark_products(4 * args.seq_len, args.reps) } else { Vec::new() };
    let product_json: Vec<_> = products
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "m": p.m, "n": p.n, "k": p.k, "weight_type": p.weight_type, "seconds": p.seconds, "gflops": p.gflops(), "fraction_of_peak": p.gflops() / peak.gflops}))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "threads": threads, "seq_len": args.seq_len, "reps": args.reps,
                "llama_pp_tokens_per_s": llama_tps, "native_tokens_per_s": native_tps, "ratio": native_tps / llama_tps,
                "native_gflops": achieved, "peak_gflops": peak.gflops, "fraction_of_peak": achieved / peak.gflops,
                "peak_method": peak.describe(),
                "train_tokens_per_s": n / tt, "train_gflops": train_gflops, "peak_rss_mib": peak_rss_mib,
                "kernel_path": native.describe_kernels(), "precision": native.precision().name(), "products": product_json,
            })
        );
        return Ok(());
    }
    println!("lamina bench-native: {threads} threads, {}-token sequence, median of {} runs per side", args.seq_len, args.reps);
    println!("{:<44} {:>12}", "llama.cpp prompt processing (tokens/s)", format!("{llama_tps:.1}"));
    println!("{:<44} {:>12}", "native forward, all logits (tokens/s)", format!("{native_tps:.1}"));
    println!("{:<44} {:>12}", "ratio native / llama.cpp", format!("{:.3}", native_tps / llama_tps));
    println!("{:<44} {:>12}", "native achieved (GFLOP/s)", format!("{achieved:.1}"));
    println!("{:<44} {:>12}", "f32 FMA peak (GFLOP/s)", format!("{:.1}", peak.gflops));
    println!("{:<44} {:>12}", "fraction of peak", format!("{:.1}%", achieved / peak.gflops * 100.0));
    println!("{:<44} {:>12}", "LoRA training pass, fwd+bwd (tokens/s)", format!("{:.1}", n / tt));
    println!("{:<44} {:>12}", "LoRA training pass (GFLOP/s)", format!("{train_gflops:.1}"));
    if let Some(rss) = peak_rss_mib {
        println!("{:<44} {:>12}", "peak resident memory (MiB)", format!("{rss:.0}"));
    }
    println!(
        "FLOPs per pass: {:.2} G (weights {:.2} G + attention {:.2} G); training pass {:.2} G",
        flops / 1e9,
        (flops - attention_flops) / 1e9,
        attention_flops / 1e9,
        train_flops / 1e9
    );
    println!("peak: {}", peak.describe());
    println!("kernels: {}", native.describe_kernels());
    if let Some(note) = native.precision_note() {
        println!("note: {note}");
    }
    if !products.is_empty() {
        println!("\nproducts, {} rows of activations (m x n x depth, weight type): GFLOP/s and share of the peak", 4 * args.seq_len);
        for p in &products {
            println!(
                "{:<18} {:>6} x {:>6} x {:>5} {:>5} {:>9.1} {:>6.1}%",
                p.name,
                p.m,
                p.n,
                p.k,
                p.weight_type,
                p.gflops(),
                p.gflops() / peak.gflops * 100.0
            );
        }
    }
    Ok(())
}

/// Seconds of one native forward pass over `ids` with every position's logits. The logits are
/// given back for the next pass to reuse, as a program that runs forward passes in a loop does
/// (see NativeModel::recycle).
fn timed_forward(native: &NativeModel, ids: &[u32]) -> Result<f64, Error> {
    let start = Instant::now();
    let logits = native.logits(ids, 0)?;
    std::hint::black_box(&logits);
    let elapsed = start.elapsed().as_secs_f64();
    native.recycle(logits);
    Ok(elapsed)
}

/// FLOPs of one forward pass over `n` tokens, and the part of them in attention: 2 per weight
/// per token, plus causal attention's QKᵀ and PV over the lower triangle, per layer and query
/// head.
fn forward_flops(native: &NativeModel, n: f64) -> (f64, f64) {
    let c = native.config();
    let attention = 2.0 * 2.0 * (c.n_layers * c.n_heads * c.head_dim) as f64 * n * (n + 1.0) / 2.0;
    (native.matmul_flops_per_token() as f64 * n + attention, attention)
}

/// `--forward-only`: the native forward pass over the same prose, tokenized by the native
/// engine's own tokenizer (the same ids llama.cpp gives: see the tokenizer parity tests), each
/// pass's logits recycled into the next as in the full benchmark.
fn forward_only(args: &NativeBenchArgs, threads: usize) -> Result<(), Error> {
    let native = NativeModel::load(
        args.model.model_path(),
        &NativeParams { n_threads: threads, precision: lamina::native::Precision::parse(&args.precision)?, ..Default::default() },
    )?;
    let tokenizer = native.load_tokenizer()?;
    let mut ids = Vec::new();
    while ids.len() < args.seq_len {
        ids.extend(tokenizer.encode(TEXT, false)?);
    }
    ids.truncate(args.seq_len);
    let native_once = || timed_forward(&native, &ids);
    native_once()?;
    let times = (0..args.reps).map(|_| native_once()).collect::<Result<Vec<f64>, Error>>()?;
    let nt = median(times);
    let n = args.seq_len as f64;
    let achieved = forward_flops(&native, n).0 / nt / 1e9;
    let peak_rss_mib = peak_rss_kib().map(|k| k as f64 / 1024.0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "threads": threads, "seq_len": args.seq_len, "reps": args.reps, "forward_only": true,
                "native_tokens_per_s": n / nt, "native_gflops": achieved, "peak_rss_mib": peak_rss_mib,
                "kernel_path": native.describe_kernels(), "precision": native.precision().name(),
            })
        );
        return Ok(());
    }
    println!("lamina bench-native --forward-only: {threads} threads, {}-token sequence, median of {} runs", args.seq_len, args.reps);
    println!("{:<44} {:>12}", "native forward, all logits (tokens/s)", format!("{:.1}", n / nt));
    println!("{:<44} {:>12}", "native achieved (GFLOP/s)", format!("{achieved:.1}"));
    if let Some(rss) = peak_rss_mib {
        println!("{:<44} {:>12}", "peak resident memory (MiB)", format!("{rss:.0}"));
    }
    println!("kernels: {}", native.describe_kernels());
    if let Some(note) = native.precision_note() {
        println!("note: {note}");
    }
    Ok(())
}

/// The process's peak resident set (VmHWM) in KiB, where /proc provides it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
