//! `lamina bench`: lamina against a bare llama-cpp-2 loop and llama-bench's method, measured in
//! the same process, and against llama.cpp's own `llama-bench` binaries (`--llama-bench`,
//! built outside lamina by scripts/build-llama-bench.sh), run in the same invocation.
//!
//! The machine may be shared and noisy, so absolute numbers mean little; the ratios do. Every
//! side runs the same tokens with the same context parameters, the sides alternate within each
//! repetition, and each reports its median. The bare side is the minimal loop a llama-cpp-2
//! user would write: batch decode of the prompt, then sample-greedy-and-decode.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use clap::Args;
use lamina::{Error, Sampling, Session, SessionParams};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::llama_bench;
use crate::options::ModelOptions;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Prompt tokens for the prompt-processing test.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to generate for the generation test.
    #[arg(long, default_value_t = 128)]
    gen_tokens: u32,
    /// Repetitions per side (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// A llama.cpp `llama-bench` binary to compare with (repeatable; the fastest that runs is
    /// the baseline). scripts/build-llama-bench.sh builds them from llama.cpp's sources.
    #[arg(long = "llama-bench", value_name = "PATH")]
    llama_bench: Vec<std::path::PathBuf>,
    /// Measure instead the throughput of N prompts generated together against the same prompts
    /// one at a time, for each N of the list (e.g. 1,4,8,16).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    sequences: Vec<usize>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    load: Duration,
    pp_tokens_per_s: f64,
    tg_tokens_per_s: f64,
    ttft: Duration,
}

const TEXT: &str = "The history of the printing press begins in the fifteenth century, when movable type \
made it possible to produce books quickly and cheaply. Before that, every copy of a text had to be \
written by hand, a slow and expensive process that kept books rare. ";

fn bench_tokens(model: &lamina::Model, n: usize) -> Vec<i32> {
    let mut tokens = Vec::with_capacity(n);
    while tokens.len() < n {
        tokens.extend(model.tokenize(TEXT, false, false));
    }
    tokens.truncate(n);
    tokens
}

/// The median over rounds of `ours[i] / theirs[i]` (rounds where both sides ran). Each round
/// runs the sides back to back, so a change in the machine's speed between rounds (it is
/// shared) moves both sides of a ratio, where it moves only one median of the two.
fn per_round_ratio(ours: &[f64], theirs: &[f64]) -> f64 {
    median(ours.iter().zip(theirs).map(|(a, b)| a / b).collect())
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[xs.len() / 2]
}

fn lamina_run(args: &BenchArgs, params: &SessionParams, pp: &[i32], tg_prompt: &[i32]) -> Result<Sample, Error> {
    let load_start = Instant::now();
    let model = args.model.load()?;
    let load = load_start.elapsed();
    let mut session = Session::new(&model, params)?;
    // Prompt processing: one token generated so only the prompt is timed.
    let g = session.generate_from_tokens(pp, &Sampling::greedy(1), |_| true)?;
    let pp_tokens_per_s = pp.len() as f64 / g.prompt_time.as_secs_f64();
    session.reset();
    // Generation after a short prompt; EOG is not expected from this prompt within the budget.
    let g = session.generate_from_tokens(tg_prompt, &Sampling::greedy(args.gen_tokens), |_| true)?;
    let tg_tokens_per_s = g.generated_tokens as f64 / g.generation_time.as_secs_f64();
    Ok(Sample { load, pp_tokens_per_s, tg_tokens_per_s, ttft: g.time_to_first_token })
}

fn bare_run(args: &BenchArgs, params: &SessionParams, pp: &[i32], tg_prompt: &[i32]) -> Result<Sample, Error> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Decode(format!("bare llama-cpp-2 {what}: {e}"));
    let backend = lamina::engine::llama_backend();
    let load_start = Instant::now();
    let mparams = LlamaModelParams::default().with_n_gpu_layers(args.model.gpu_layers);
    let model = LlamaModel::load_from_file(backend, args.model.model_path(), &mparams).map_err(|e| fail("load", &e))?;
    let load = load_start.elapsed();
    let threads = if params.n_threads == 0 {
        std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1)
    } else {
        params.n_threads as i32
    };
    let n_ctx = if params.n_ctx == 0 { model.n_ctx_train().min(4096) } else { params.n_ctx };
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(params.n_batch)
        .with_n_ubatch(params.n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(params.flash_attention.llama_policy());
    let mut ctx = model.new_context(backend, cparams).map_err(|e| fail("context", &e))?;
    let mut batch = LlamaBatch::new(params.n_batch as usize, 1);

    // Prompt processing.
    let start = Instant::now();
    for (c, chunk) in pp.chunks(params.n_batch as usize).enumerate() {
        batch.clear();
        for (i, &t) in chunk.iter().enumerate() {
            let pos = (c * params.n_batch as usize + i) as i32;
            batch.add(LlamaToken(t), pos, &[0], pos as usize + 1 == pp.len()).map_err(|e| fail("batch", &e))?;
        }
        ctx.decode(&mut batch).map_err(|e| fail("decode", &e))?;
    }
    let mut sampler = LlamaSampler::greedy();
    let _ = sampler.sample(&ctx, batch.n_tokens() - 1);
    let pp_tokens_per_s = pp.len() as f64 / start.elapsed().as_secs_f64();
    ctx.clear_kv_cache();

    // Generation.
    let start = Instant::now();
    batch.clear();
    for (i, &t) in tg_prompt.iter().enumerate() {
        batch.add(LlamaToken(t), i as i32, &[0], i + 1 == tg_prompt.len()).map_err(|e| fail("batch", &e))?;
    }
    ctx.decode(&mut batch).map_err(|e| fail("decode", &e))?;
    let gen_start = Instant::now();
    let mut ttft = Duration::ZERO;
    let mut pos = tg_prompt.len() as i32;
    let mut idx = batch.n_tokens() - 1;
    let mut generated = 0u32;
    let mut piece = Vec::new();
    loop {
        let token = sampler.sample(&ctx, idx);
        generated += 1;
        if generated == 1 {
            ttft = start.elapsed();
        }
        if model.vocab().is_eog(token) {
            break;
        }
        piece.clear();
        model.vocab().token_to_piece_into(token, &mut piece, false, None);
        if generated >= args.gen_tokens {
            break;
        }
        batch.clear();
        batch.add(token, pos, &[0], true).map_err(|e| fail("batch", &e))?;
        ctx.decode(&mut batch).map_err(|e| fail("decode", &e))?;
        pos += 1;
        idx = 0;
    }
    let tg_tokens_per_s = f64::from(generated) / gen_start.elapsed().as_secs_f64();
    Ok(Sample { load, pp_tokens_per_s, tg_tokens_per_s, ttft })
}

/// llama-bench's method, for comparison with its published numbers: a context just large
/// enough for the test, the whole prompt in one batch (split into micro-batches of `n_batch`
/// by llama.cpp), and generation that decodes one token at a time without sampling or reading
/// the text (the logits are only touched to wait for the device, as llama-bench's
/// `llama_synchronize` does). Load time and time to first token are not measured.
fn llama_bench_run(args: &BenchArgs, params: &SessionParams, pp: &[i32]) -> Result<Sample, Error> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Decode(format!("llama-bench method {what}: {e}"));
    let backend = lamina::engine::llama_backend();
    let mparams = LlamaModelParams::default().with_n_gpu_layers(args.model.gpu_layers);
    let model = LlamaModel::load_from_file(backend, args.model.model_path(), &mparams).map_err(|e| fail("load", &e))?;
    let threads = if params.n_threads == 0 {
        std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1)
    } else {
        params.n_threads as i32
    };
    let n_ctx = (pp.len() + args.gen_tokens as usize) as u32;
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(pp.len() as u32)
        .with_n_ubatch(params.n_batch)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(params.flash_attention.llama_policy());
    let mut ctx = model.new_context(backend, cparams).map_err(|e| fail("context", &e))?;
    let mut batch = LlamaBatch::new(pp.len(), 1);
    let start = Instant::now();
    for (i, &t) in pp.iter().enumerate() {
        batch.add(LlamaToken(t), i as i32, &[0], i + 1 == pp.len()).map_err(|e| fail("batch", &e))?;
    }
    ctx.decode(&mut batch).map_err(|e| fail("decode", &e))?;
    std::hint::black_box(ctx.get_logits_ith(batch.n_tokens() - 1)[0]);
    let pp_tokens_per_s = pp.len() as f64 / start.elapsed().as_secs_f64();
    ctx.clear_kv_cache();
    let n_vocab = model.n_vocab();
    let start = Instant::now();
    for i in 0..args.gen_tokens {
        // llama-bench feeds arbitrary tokens; any fixed sequence does the same work.
        let token = LlamaToken(((i as i64 * 7919) % i64::from(n_vocab)) as i32);
        batch.clear();
        batch.add(token, i as i32, &[0], true).map_err(|e| fail("batch", &e))?;
        ctx.decode(&mut batch).map_err(|e| fail("decode", &e))?;
        std::hint::black_box(ctx.get_logits_ith(0)[0]);
    }
    let tg_tokens_per_s = f64::from(args.gen_tokens) / start.elapsed().as_secs_f64();
    Ok(Sample { load: Duration::ZERO, pp_tokens_per_s, tg_tokens_per_s, ttft: Duration::ZERO })
}

pub fn run(args: &BenchArgs) -> Result<(), Error> {
    if !args.model.lora.is_empty() {
        return Err(Error::InvalidArgument {
            name: "lora",
            reason: "benchmarks measure the base model; --lora is not supported here".into(),
        });
    }
    if args.reps == 0 || args.prompt_tokens == 0 || args.gen_tokens == 0 {
        return Err(Error::InvalidArgument { name: "bench", reason: "--reps, --prompt-tokens and --gen-tokens must be at least 1".into() });
    }
    if !args.sequences.is_empty() {
        return crate::bench_batch::run(&args.model, &args.sequences, args.gen_tokens, args.reps, args.json);
    }
    let probe = args.model.load()?;
    let params = SessionParams { n_ctx: 0, n_batch: 512, ..args.model.session_params() };
    let n_ctx = if params.n_ctx == 0 { probe.info().n_ctx_train.min(4096) as usize } else { params.n_ctx as usize };
    if args.prompt_tokens >= n_ctx || 16 + args.gen_tokens as usize >= n_ctx {
        return Err(Error::InvalidArgument { name: "bench", reason: format!("the test does not fit in the {n_ctx}-token context") });
    }
    let info = probe.info();
    let gpus: Vec<String> = lamina::engine::devices()
        .into_iter()
        .filter(|d| d.kind.takes_offloaded_layers())
        .map(|d| format!("{} ({})", d.name, d.description))
        .collect();
    let placement = if info.gpu_layers == 0 {
        "CPU only".to_string()
    } else {
        format!("{} of {} layers on {}", info.gpu_layers, info.n_layer + 1, gpus.join(", "))
    };
    let pp = bench_tokens(&probe, args.prompt_tokens);
    let tg_prompt = probe.tokenize("Once upon a time, there was a little", false, false);
    drop(probe);

    // Warm-up (page cache, thread pools), not counted.
    lamina_run(args, &params, &pp, &tg_prompt)?;
    bare_run(args, &params, &pp, &tg_prompt)?;
    llama_bench_run(args, &params, &pp)?;
    let threads =
        if params.n_threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u32 } else { params.n_threads };
    let model_path = args.model.model_path();
    let external_test = llama_bench::Test {
        model: &model_path,
        threads,
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        gpu_layers: args.model.gpu_layers,
    };
    let mut externals: Vec<llama_bench::External> = args.llama_bench.iter().map(|p| llama_bench::External::new(p)).collect();
    let (mut lamina, mut bare, mut method) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.reps {
        lamina.push(lamina_run(args, &params, &pp, &tg_prompt)?);
        bare.push(bare_run(args, &params, &pp, &tg_prompt)?);
        method.push(llama_bench_run(args, &params, &pp)?);
        for external in &mut externals {
            external.run_once(&external_test);
        }
    }
    // The fastest llama-bench binary that ran, per test: its median, its path, and lamina's
    // ratio to it round by round.
    let best = |f: fn(&llama_bench::External) -> &Vec<f64>, g: fn(&Sample) -> f64| {
        externals
            .iter()
            .filter(|e| e.failure.is_none())
            .map(|e| {
                let ours: Vec<f64> = lamina.iter().map(g).collect();
                (median(f(e).clone()), e.path.display().to_string(), per_round_ratio(&ours, f(e)))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let best_pp = best(|e| &e.pp_tokens_per_s, |s| s.pp_tokens_per_s);
    let best_tg = best(|e| &e.tg_tokens_per_s, |s| s.tg_tokens_per_s);
    let med = |xs: &[Sample], f: fn(&Sample) -> f64| median(xs.iter().map(f).collect());
    // lamina's ratio to another side, round by round (the median of the rounds' ratios).
    let paired = |xs: &[Sample], f: fn(&Sample) -> f64| {
        per_round_ratio(&lamina.iter().map(f).collect::<Vec<_>>(), &xs.iter().map(f).collect::<Vec<_>>())
    };
    type Row = (&'static str, fn(&Sample) -> f64, bool);
    let rows: [Row; 4] = [
        ("load time (ms)", |s| s.load.as_secs_f64() * 1e3, false),
        ("prompt processing (tokens/s)", |s| s.pp_tokens_per_s, true),
        ("generation (tokens/s)", |s| s.tg_tokens_per_s, true),
        ("time to first token (ms)", |s| s.ttft.as_secs_f64() * 1e3, false),
    ];
    if args.json {
        let mut obj = serde_json::Map::new();
        for (name, f, _) in rows {
            obj.insert(
                name.to_string(),
                serde_json::json!({
                    "lamina": med(&lamina, f),
                    "bare": med(&bare, f),
                    "ratio": med(&lamina, f) / med(&bare, f),
                    "ratio_per_round": paired(&bare, f),
                }),
            );
        }
        obj.insert(
            "llama_bench_method".into(),
            serde_json::json!({
                "prompt processing (tokens/s)": med(&method, |s| s.pp_tokens_per_s),
                "generation (tokens/s)": med(&method, |s| s.tg_tokens_per_s),
                "ratio_per_round": {
                    "prompt processing": paired(&method, |s| s.pp_tokens_per_s),
                    "generation": paired(&method, |s| s.tg_tokens_per_s),
                },
            }),
        );
        let externals_json: Vec<serde_json::Value> = externals
            .iter()
            .map(|e| {
                serde_json::json!({
                    "path": e.path.display().to_string(),
                    "prompt processing (tokens/s)": (!e.pp_tokens_per_s.is_empty()).then(|| median(e.pp_tokens_per_s.clone())),
                    "generation (tokens/s)": (!e.tg_tokens_per_s.is_empty()).then(|| median(e.tg_tokens_per_s.clone())),
                    "failure": e.failure,
                })
            })
            .collect();
        obj.insert("llama_bench".into(), externals_json.into());
        let lamina_pp = med(&lamina, |s| s.pp_tokens_per_s);
        let lamina_tg = med(&lamina, |s| s.tg_tokens_per_s);
        obj.insert(
            "ratio_to_fastest_llama_bench".into(),
            serde_json::json!({
                "prompt processing": best_pp.as_ref().map(|(v, _, _)| lamina_pp / v),
                "generation": best_tg.as_ref().map(|(v, _, _)| lamina_tg / v),
            }),
        );
        obj.insert(
            "ratio_to_fastest_llama_bench_per_round".into(),
            serde_json::json!({
                "prompt processing": best_pp.as_ref().map(|(_, _, r)| r),
                "generation": best_tg.as_ref().map(|(_, _, r)| r),
            }),
        );
        obj.insert("threads".into(), threads.into());
        obj.insert("gpu_layers".into(), info.gpu_layers.into());
        obj.insert("placement".into(), placement.clone().into());
        obj.insert("prompt_tokens".into(), args.prompt_tokens.into());
        obj.insert("gen_tokens".into(), args.gen_tokens.into());
        obj.insert("reps".into(), args.reps.into());
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    println!(
        "lamina bench: {} threads, {placement}, pp{} / tg{}, median of {} interleaved rounds per side (ratio = lamina / bare \
         llama-cpp-2 of the medians; per round: the median of each round's ratio, which a machine whose speed drifts moves less)",
        threads, args.prompt_tokens, args.gen_tokens, args.reps
    );
    println!("{:<30} {:>12} {:>12} {:>8} {:>10}", "metric", "lamina", "bare", "ratio", "per round");
    for (name, f, higher_is_better) in rows {
        let (l, b) = (med(&lamina, f), med(&bare, f));
        let note = if higher_is_better { "" } else { " (lower is better)" };
        println!("{name:<30} {l:>12.1} {b:>12.1} {:>8.3} {:>10.3}{note}", l / b, paired(&bare, f));
    }
    println!("llama-bench's method on the same device (no sampling, the prompt as one batch):");
    for (name, f) in [
        ("prompt processing (tokens/s)", (|s: &Sample| s.pp_tokens_per_s) as fn(&Sample) -> f64),
        ("generation (tokens/s)", |s: &Sample| s.tg_tokens_per_s),
    ] {
        let (l, m) = (med(&lamina, f), med(&method, f));
        println!("{name:<30} {l:>12.1} {m:>12.1} {:>8.3} {:>10.3}  (lamina / llama-bench method)", l / m, paired(&method, f));
    }
    if !externals.is_empty() {
        println!("llama.cpp's llama-bench, built outside lamina (median of {} runs each):", args.reps);
        for e in &externals {
            match &e.failure {
                Some(reason) if e.pp_tokens_per_s.is_empty() => println!("  {}: did not run: {reason}", e.path.display()),
                _ => println!(
                    "  {}: pp {:.1} tokens/s, tg {:.1} tokens/s{}",
                    e.path.display(),
                    median(e.pp_tokens_per_s.clone()),
                    median(e.tg_tokens_per_s.clone()),
                    e.failure.as_ref().map(|r| format!(" (then failed: {r})")).unwrap_or_default()
                ),
            }
        }
        // (metric, lamina's value, the fastest llama-bench's value and path)
        type ExternalRow<'a> = (&'a str, fn(&Sample) -> f64, &'a Option<(f64, String, f64)>);
        let rows: [ExternalRow; 2] =
            [("prompt processing (tokens/s)", |s| s.pp_tokens_per_s, &best_pp), ("generation (tokens/s)", |s| s.tg_tokens_per_s, &best_tg)];
        for (name, f, best) in rows {
            let l = med(&lamina, f);
            match best {
                Some((b, path, r)) => {
                    println!("{name:<30} {l:>12.1} {b:>12.1} {:>8.3} {r:>10.3}  (lamina / fastest llama-bench: {path})", l / b)
                }
                None => println!("{name:<30} {l:>12.1} {:>12} {:>8}  (no llama-bench binary ran)", "-", "-"),
            }
        }
    }
    Ok(())
}
