//! `lamina compare-devices`: do the GPU and the CPU compute the same model?
//!
//! Loads the model twice in one process, once entirely on the CPU and once with `--gpu-layers`
//! layers on the GPU, feeds both the same text in chunks (teacher forcing: every position is
//! conditioned on the reference text, so one near-tie cannot snowball), and reports top-1
//! agreement, mean KL(CPU || GPU), the largest logit difference and each side's perplexity.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use lamina::eval::agreement::Agreement;
use lamina::eval::perplexity::log_softmax_at;
use lamina::{Error, Model, ModelParams, Session, SessionParams};

use crate::options::ModelOptions;

#[derive(Args, Debug)]
pub struct CompareDevicesArgs {
    #[command(flatten)]
    model: ModelOptions,
    /// Plain UTF-8 text to feed both sides.
    #[arg(long, short)]
    file: PathBuf,
    /// Chunk size in tokens (each chunk is scored from an empty context).
    #[arg(long = "chunk", default_value_t = 512)]
    chunk: usize,
    /// Compare at most this many chunks (0 = all).
    #[arg(long, default_value_t = 0)]
    chunks: usize,
    /// Also compare both sides with lamina's native engine, which computes in f32 from the
    /// dequantized weights (no activation quantization, f32 attention): shows which side
    /// strays from exact arithmetic.
    #[arg(long)]
    native_reference: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &CompareDevicesArgs) -> Result<(), Error> {
    if args.model.gpu_layers == 0 {
        return Err(Error::InvalidArgument {
            name: "gpu-layers",
            reason: "pass --gpu-layers N (N > 0): the layers to run on the GPU side".into(),
        });
    }
    if !args.model.lora.is_empty() {
        return Err(Error::InvalidArgument {
            name: "lora",
            reason: "compare-devices compares the base model; --lora is not supported here".into(),
        });
    }
    if args.chunk < 2 {
        return Err(Error::InvalidArgument { name: "chunk", reason: "must be at least 2 tokens".into() });
    }
    let text = std::fs::read_to_string(&args.file).map_err(|source| Error::Io { path: args.file.clone(), source })?;
    let gpu_model = args.model.load()?;
    if gpu_model.info().gpu_layers == 0 {
        return Err(Error::Backend("no GPU device is loaded (see `lamina info`), so there is nothing to compare the CPU with".into()));
    }
    let cpu_model = Model::load(args.model.model_path(), &ModelParams { n_gpu_layers: 0, ..ModelParams::default() })?;

    let tokens = cpu_model.tokenize(&text, true, false);
    let mut chunks: Vec<&[i32]> = tokens.chunks_exact(args.chunk).collect();
    if args.chunks > 0 {
        chunks.truncate(args.chunks);
    }
    if chunks.is_empty() {
        return Err(Error::Data {
            path: args.file.clone(),
            line: None,
            reason: format!("the text has {} tokens, fewer than one chunk of {}", tokens.len(), args.chunk),
        });
    }
    let params = SessionParams { n_ctx: args.chunk as u32, n_batch: args.chunk.min(512) as u32, ..args.model.session_params() };
    let mut cpu = Session::new(&cpu_model, &params)?;
    let mut gpu = Session::new(&gpu_model, &params)?;

    let native = if args.native_reference {
        Some(lamina::native::NativeModel::load(
            args.model.model_path(),
            &lamina::native::NativeParams {
                n_threads: args.model.threads as usize,
                precision: lamina::native::Precision::F32,
                ..Default::default()
            },
        )?)
    } else {
        None
    };
    let (mut cpu_vs_native, mut gpu_vs_native) = (Agreement::default(), Agreement::default());
    let mut agreement = Agreement::default();
    let (mut cpu_nll, mut gpu_nll) = (0.0f64, 0.0f64);
    let (mut cpu_secs, mut gpu_secs) = (0.0f64, 0.0f64);
    for (c, chunk) in chunks.iter().enumerate() {
        let mut reference: Vec<Vec<f32>> = Vec::with_capacity(chunk.len() - 1);
        let start = Instant::now();
        cpu.reset();
        cpu.teacher_forced_logits(chunk, 1, |pos, logits| {
            cpu_nll -= log_softmax_at(logits, chunk[pos + 1] as usize);
            reference.push(logits.to_vec());
        })?;
        cpu_secs += start.elapsed().as_secs_f64();
        // The exact reference, computed before the GPU pass so that each GPU row is compared
        // with it as it arrives.
        let exact = match &native {
            Some(native) => {
                let ids: Vec<u32> = chunk.iter().map(|&t| t as u32).collect();
                let exact = native.logits(&ids[..ids.len() - 1], 0)?;
                for (i, cpu_row) in reference.iter().enumerate() {
                    cpu_vs_native.add(exact.row(i), cpu_row);
                }
                Some(exact)
            }
            None => None,
        };
        let start = Instant::now();
        gpu.reset();
        let mut row = 0;
        gpu.teacher_forced_logits(chunk, 1, |pos, logits| {
            gpu_nll -= log_softmax_at(logits, chunk[pos + 1] as usize);
            agreement.add(&reference[row], logits);
            if let Some(exact) = &exact {
                gpu_vs_native.add(exact.row(row), logits);
            }
            row += 1;
        })?;
        gpu_secs += start.elapsed().as_secs_f64();
        if !args.json {
            eprintln!("chunk {}/{}: top-1 {:.2}% so far", c + 1, chunks.len(), 100.0 * agreement.top1());
        }
    }
    let n = agreement.positions as f64;
    let info = gpu_model.info();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "positions": agreement.positions,
                "top1_agreement": agreement.top1(),
                "mean_kl": agreement.mean_kl(),
                "max_logit_diff": agreement.max_logit_diff,
                "ppl_cpu": (cpu_nll / n).exp(),
                "ppl_gpu": (gpu_nll / n).exp(),
                "gpu_layers": info.gpu_layers,
                "native_reference": native.as_ref().map(|_| serde_json::json!({
                    "cpu_top1": cpu_vs_native.top1(), "cpu_mean_kl": cpu_vs_native.mean_kl(),
                    "gpu_top1": gpu_vs_native.top1(), "gpu_mean_kl": gpu_vs_native.mean_kl(),
                })),
                "cpu_seconds": cpu_secs,
                "gpu_seconds": gpu_secs,
            })
        );
        return Ok(());
    }
    println!(
        "compare-devices: {} positions ({} chunks of {} tokens), {} of {} layers on the GPU",
        agreement.positions,
        chunks.len(),
        args.chunk,
        info.gpu_layers,
        info.n_layer + 1
    );
    println!("top-1 agreement      {:.2}% ({} of {})", 100.0 * agreement.top1(), agreement.top1_matches, agreement.positions);
    println!("mean KL(CPU || GPU)  {:.6} nats", agreement.mean_kl());
    println!("max |logit diff|     {:.4}", agreement.max_logit_diff);
    println!("perplexity           CPU {:.4}, GPU {:.4}", (cpu_nll / n).exp(), (gpu_nll / n).exp());
    println!("time                 CPU {cpu_secs:.2} s, GPU {gpu_secs:.2} s");
    if native.is_some() {
        println!("against the native f32 engine (exact arithmetic on the dequantized weights):");
        println!("  CPU  top-1 {:.2}%, mean KL {:.6}", 100.0 * cpu_vs_native.top1(), cpu_vs_native.mean_kl());
        println!("  GPU  top-1 {:.2}%, mean KL {:.6}", 100.0 * gpu_vs_native.top1(), gpu_vs_native.mean_kl());
    }
    Ok(())
}
