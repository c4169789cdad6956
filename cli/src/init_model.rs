//! `lamina init-model`: a randomly initialised LLaMA model for a trained tokenizer, from a
//! preset or explicit sizes, written as a Hugging Face directory and optionally a GGUF file;
//! prints the parameter count and the memory full-parameter training would take. Ctrl-C
//! cancels.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::native::Tokenizer;
use lamina::pretrain::init::{init_model, InitOptions, TrainingMemory};
use lamina::Error;

use crate::model_size::ModelSpecArgs;

#[derive(Args, Debug)]
pub struct InitModelArgs {
    /// Directory with the tokenizer (tokenizer.json, tokenizer_config.json), as `lamina
    /// tokenizer train` writes it.
    #[arg(long, value_name = "DIR")]
    tokenizer: PathBuf,
    /// The model's sizes (a preset and the flags that override it), as `lamina pretrain` takes
    /// them.
    #[command(flatten)]
    spec: ModelSpecArgs,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = InitOptions::default().seed)]
    seed: u64,
    /// Standard deviation of embeddings and projections (output projections get
    /// std / sqrt(2 × layers)).
    #[arg(long, value_name = "F", default_value_t = InitOptions::default().std)]
    std: f32,
    /// Take the token embeddings from this GGUF model (same vocabulary, same width).
    #[arg(long, value_name = "GGUF")]
    embeddings_from: Option<PathBuf>,
    /// Directory for the Hugging Face checkpoint (created).
    #[arg(long, value_name = "DIR")]
    output_hf: PathBuf,
    /// Also write the model as a GGUF file (converted from the checkpoint).
    #[arg(long, value_name = "PATH")]
    gguf: Option<PathBuf>,
    /// Sequences per micro-batch, for the training memory estimate.
    #[arg(long, value_name = "N", default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence, for the training memory estimate (default: the context length).
    #[arg(long, value_name = "N")]
    seq: Option<usize>,
}

pub fn run(args: &InitModelArgs) -> Result<(), Error> {
    let tokenizer = Tokenizer::from_file(args.tokenizer.join("tokenizer.json"))?;
    let spec = args.spec.spec(tokenizer.vocab_size())?;
    let seq = args.seq.unwrap_or(spec.context_length);
    eprintln!(
        "model: {} layers, width {}, {} heads ({} KV, head dim {}), FFN {}, context {}, vocabulary {}, RoPE base {}, {} LM head",
        spec.n_layers,
        spec.width,
        spec.n_heads,
        spec.n_kv_heads,
        spec.head_dim(),
        spec.ffn_width,
        spec.context_length,
        spec.vocab_size,
        spec.rope_base,
        if spec.tied_embeddings { "tied" } else { "untied" }
    );
    let embeddings = spec.vocab_size as u64 * spec.width as u64 * if spec.tied_embeddings { 1 } else { 2 };
    eprintln!(
        "parameters: {} ({} in the embeddings, {} in the blocks and final norm)",
        spec.n_params(),
        embeddings,
        spec.n_params() - embeddings
    );
    print_memory(&spec.training_memory(args.batch, seq), args.batch, seq);
    match spec.check_training_fits(args.batch, seq) {
        Ok(_) => eprintln!("  fits in the memory available now"),
        Err(e) => eprintln!("lamina: warning: {e}"),
    }

    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("initialising [{elapsed_precise}] {wide_bar} {pos}/{len} tensors")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let options = InitOptions { seed: args.seed, std: args.std, embeddings_from: args.embeddings_from.clone() };
    let result = init_model(&spec, &args.tokenizer, &args.output_hf, args.gguf.as_deref(), &options, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        !cancelled.load(Ordering::SeqCst)
    });
    bar.finish_and_clear();
    let Some(report) = result? else {
        eprintln!("lamina: initialisation cancelled");
        std::process::exit(130);
    };
    if let Some(from) = &report.embeddings_from {
        eprintln!("token embeddings copied from {}", from.display());
    }
    for file in report.hf_files.iter().chain(&report.gguf) {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        println!("{}\t{size}", file.display());
    }
    Ok(())
}

fn print_memory(m: &TrainingMemory, batch: usize, seq: usize) {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    eprintln!(
        "full training memory at {batch} × {seq} tokens: about {:.1} MiB = weights {:.1} + gradients {:.1} + AdamW {:.1} + model file {:.1} + activations {:.1}",
        mib(m.total()),
        mib(m.weights),
        mib(m.gradients),
        mib(m.optimizer),
        mib(m.model_file),
        mib(m.activations)
    );
}
