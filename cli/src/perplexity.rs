//! `lamina perplexity`: llama-perplexity's method (non-overlapping chunks of `--ctx` tokens,
//! second half of each chunk scored, PPL with its standard error) on either engine, or on both
//! side by side. Both engines go through the same `lamina::eval::perplexity::perplexity`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lamina::eval::perplexity::{log_softmax_at, perplexity, Perplexity, TokenScorer};
use lamina::native::lora_io::import_adapter;
use lamina::native::LoraWeights;
use lamina::native::{NativeModel, NativeParams};
use lamina::{Error, Session, SessionParams};

use crate::options::ModelOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// llama.cpp's quantized kernels (GGUF only).
    Llama,
    /// lamina's Rust forward pass (GGUF or a safetensors checkpoint).
    Native,
    /// Both, with the relative difference.
    Both,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Precision of the native engine's weight products (the native engine only): auto (bf16
    /// where the CPU has AMX tiles, or AVX512-BF16 with a dot product measured faster than f32
    /// FMAs; else f32), f32 or bf16.
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "bf16"])]
    precision: String,
    /// Plain UTF-8 text to score.
    #[arg(long, short)]
    file: PathBuf,
    /// Chunk size in tokens (llama-perplexity's -c).
    #[arg(long = "chunk", default_value_t = 512)]
    chunk: usize,
    /// Score at most this many chunks (0 = all; at least 2).
    #[arg(long, default_value_t = 0)]
    chunks: usize,
    /// Which engine computes the logits.
    #[arg(long, value_enum, default_value_t = Engine::Llama)]
    engine: Engine,
}

struct Outcome {
    engine: &'static str,
    result: Perplexity,
    seconds: f64,
}

pub fn run(args: &PerplexityArgs) -> Result<(), Error> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| Error::Io { path: args.file.clone(), source })?;
    let mut outcomes = Vec::new();
    if matches!(args.engine, Engine::Llama | Engine::Both) {
        outcomes.push(run_llama(args, &text)?);
    }
    if matches!(args.engine, Engine::Native | Engine::Both) {
        outcomes.push(run_native(args, &text)?);
    }
    println!("model   {}", args.model.model_path().display());
    println!("text    {}", args.file.display());
    for o in &outcomes {
        let p = &o.result;
        println!(
            "{:<7} PPL = {:.4} +/- {:.4}  ({} chunks of {}, {} tokens scored, {:.1} s, {:.0} tokens/s)",
            o.engine,
            p.ppl,
            p.ppl_stderr,
            p.chunks,
            p.n_ctx,
            p.scored_tokens,
            o.seconds,
            (p.chunks * p.n_ctx) as f64 / o.seconds
        );
    }
    if let [a, b] = &outcomes[..] {
        println!("relative difference {:.4}%", (a.result.ppl - b.result.ppl).abs() / a.result.ppl * 100.0);
    }
    Ok(())
}

/// The tokens to score: whole chunks only, capped by `--chunks`.
fn limit_tokens(args: &PerplexityArgs, mut tokens: Vec<i32>) -> Result<Vec<i32>, Error> {
    let n_ctx = args.chunk;
    if n_ctx < 4 {
        return Err(Error::InvalidArgument { name: "chunk", reason: format!("must be at least 4, got {n_ctx}") });
    }
    if tokens.len() < 2 * n_ctx {
        return Err(Error::Data {
            path: args.file.clone(),
            line: None,
            reason: format!("the text has {} tokens; perplexity with chunks of {n_ctx} needs at least {}", tokens.len(), 2 * n_ctx),
        });
    }
    let mut chunks = tokens.len() / n_ctx;
    if args.chunks > 0 {
        chunks = chunks.min(args.chunks.max(2));
    }
    tokens.truncate(chunks * n_ctx);
    Ok(tokens)
}

fn score(name: &'static str, scorer: &mut dyn TokenScorer, tokens: &[i32], n_ctx: usize, bos: Option<i32>) -> Result<Outcome, Error> {
    let bar = ProgressBar::new((tokens.len() / n_ctx) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} chunks (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("perplexity ({name})"));
    let cancel = interrupted();
    let start = Instant::now();
    let result = perplexity(scorer, tokens, n_ctx, bos, |done, _| {
        bar.set_position(done as u64);
        !cancel.load(Ordering::SeqCst)
    });
    bar.finish_and_clear();
    match result? {
        Some(result) => Ok(Outcome { engine: name, result, seconds: start.elapsed().as_secs_f64() }),
        None => {
            eprintln!("lamina: perplexity cancelled");
            std::process::exit(130);
        }
    }
}

fn run_llama(args: &PerplexityArgs, text: &str) -> Result<Outcome, Error> {
    let model = args.model.load()?;
    let tokens = limit_tokens(args, model.tokenize(text, true, false))?;
    let mut session = Session::new(&model, &SessionParams { n_ctx: args.chunk as u32, ..args.model.session_params() })?;
    session.set_adapters(&args.model.load_adapters(&model)?)?;
    let bos = model.adds_bos().then(|| model.bos_token());
    score("llama", &mut session, &tokens, args.chunk, bos)
}

fn run_native(args: &PerplexityArgs, text: &str) -> Result<Outcome, Error> {
    let path = args.model.model_path();
    let mut model = load_native(&path, args.model.threads as usize, &args.precision)?;
    let tokenizer = model.load_tokenizer()?;
    let mut ids: Vec<i32> = tokenizer.encode(text, false)?.into_iter().map(|t| t as i32).collect();
    let bos = if model.adds_bos() { tokenizer.bos_token().map(|b| b as i32) } else { None };
    if let Some(b) = bos {
        ids.insert(0, b);
    }
    let tokens = limit_tokens(args, ids)?;
    match native_adapter(args, &model)? {
        None => score("native", &mut model, &tokens, args.chunk, bos),
        Some(lora) => score("native", &mut AdaptedScorer { model: &model, lora }, &tokens, args.chunk, bos),
    }
}

/// The `--lora` adapter for the native engine (one, its scale folded into B).
fn native_adapter(args: &PerplexityArgs, model: &NativeModel) -> Result<Option<LoraWeights>, Error> {
    match &args.model.lora[..] {
        [] => Ok(None),
        [one] => {
            let (path, scale) = crate::options::parse_lora(one)?;
            let mut lora = import_adapter(&path, model)?;
            lora.for_each_tensor_mut(|_, _, is_b, t| {
                if is_b {
                    t.iter_mut().for_each(|v| *v *= scale);
                }
            });
            Ok(Some(lora))
        }
        _ => Err(Error::InvalidArgument { name: "lora", reason: "the native engine applies one adapter at a time".into() }),
    }
}

/// The native engine with an in-memory adapter, as a [`TokenScorer`].
struct AdaptedScorer<'a> {
    model: &'a NativeModel,
    lora: LoraWeights,
}

impl TokenScorer for AdaptedScorer<'_> {
    fn token_logprobs(&mut self, tokens: &[i32], first: usize) -> lamina::Result<Option<Vec<f64>>> {
        if first == 0 || first >= tokens.len() || tokens.iter().any(|&t| t < 0) {
            return Err(Error::InvalidArgument { name: "tokens", reason: "bad token ids or first position".into() });
        }
        let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
        let logits = self.model.logits_with_lora(Some(&self.lora), &ids[..ids.len() - 1], first - 1)?;
        let logprobs = (0..logits.rows()).map(|i| log_softmax_at(logits.row(i), ids[first + i] as usize)).collect();
        self.model.recycle(logits);
        Ok(Some(logprobs))
    }
}

fn load_native(path: &Path, threads: usize, precision: &str) -> Result<NativeModel, Error> {
    NativeModel::load(
        path,
        &NativeParams { n_threads: threads, precision: lamina::native::Precision::parse(precision)?, ..Default::default() },
    )
}

/// Set by Ctrl-C (the handler is installed on first use; a process has only one).
fn interrupted() -> &'static AtomicBool {
    static FLAG: OnceLock<&'static AtomicBool> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
        flag
    })
}
