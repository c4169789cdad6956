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
use lamina::pretrain::init::{init_model, InitOptions, ModelSpec, TrainingMemory, PRESETS};
use lamina::Error;

#[derive(Args, Debug)]
pub struct InitModelArgs {
    /// Directory with the tokenizer (tokenizer.json, tokenizer_config.json), as `lamina
    /// tokenizer train` writes it.
    #[arg(long, value_name = "DIR")]
    tokenizer: PathBuf,
    /// Sizes to start from: 1m, 5m or 20m (parameters at a 4096-token vocabulary); the flags
    /// below override them. Without a preset, --layers, --width, --heads and --ffn are needed.
    #[arg(long, value_parser = PRESETS)]
    preset: Option<String>,
    /// Transformer blocks.
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Width of the residual stream (hidden size).
    #[arg(long, value_name = "N")]
    width: Option<usize>,
    /// Attention heads (width / heads must be even).
    #[arg(long, value_name = "N")]
    heads: Option<usize>,
    /// Key/value heads (default: the preset's, or --heads).
    #[arg(long, value_name = "N")]
    kv_heads: Option<usize>,
    /// Inner width of the MLP.
    #[arg(long, value_name = "N")]
    ffn: Option<usize>,
    /// Context length (default: the preset's, or 512).
    #[arg(long, value_name = "N")]
    ctx: Option<usize>,
    /// RoPE base frequency.
    #[arg(long, value_name = "F")]
    rope_base: Option<f32>,
    /// RMSNorm epsilon.
    #[arg(long, value_name = "F")]
    rms_eps: Option<f32>,
    /// Tie the LM head to the token embeddings (the default).
    #[arg(long, conflicts_with = "untied")]
    tied: bool,
    /// A separate LM head.
    #[arg(long)]
    untied: bool,
    /// Rows of the embedding, when more than the tokenizer's vocabulary (e.g. a multiple of 64).
    #[arg(long, value_name = "N")]
    vocab_size: Option<usize>,
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

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument { name, reason: reason.into() }
}

impl InitModelArgs {
    fn spec(&self, vocab_size: usize) -> Result<ModelSpec, Error> {
        let mut spec = match &self.preset {
            Some(name) => ModelSpec::preset(name, vocab_size)?,
            None => {
                let missing: Vec<&str> = [("--layers", self.layers), ("--width", self.width), ("--heads", self.heads), ("--ffn", self.ffn)]
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(flag, _)| *flag)
                    .collect();
                if !missing.is_empty() {
                    return Err(invalid(
                        "preset",
                        format!("give a --preset ({}) or the sizes; missing: {}", PRESETS.join(", "), missing.join(", ")),
                    ));
                }
                let mut spec = ModelSpec::preset(PRESETS[0], vocab_size)?;
                spec.context_length = 512;
                spec.n_kv_heads = self.heads.unwrap_or(1);
                spec
            }
        };
        let set = |field: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut spec.n_layers, self.layers);
        set(&mut spec.width, self.width);
        if let Some(heads) = self.heads {
            spec.n_heads = heads;
            // A preset's KV heads need not divide other head counts: with --heads alone,
            // every head has its own keys and values.
            if self.kv_heads.is_none() && !heads.is_multiple_of(spec.n_kv_heads.max(1)) {
                spec.n_kv_heads = heads;
            }
        }
        set(&mut spec.n_kv_heads, self.kv_heads);
        set(&mut spec.ffn_width, self.ffn);
        set(&mut spec.context_length, self.ctx);
        set(&mut spec.vocab_size, self.vocab_size);
        if let Some(base) = self.rope_base {
            spec.rope_base = base;
        }
        if let Some(eps) = self.rms_eps {
            spec.rms_norm_eps = eps;
        }
        if self.untied {
            spec.tied_embeddings = false;
        } else if self.tied {
            spec.tied_embeddings = true;
        }
        spec.validate()?;
        Ok(spec)
    }
}

pub fn run(args: &InitModelArgs) -> Result<(), Error> {
    let tokenizer = Tokenizer::from_file(args.tokenizer.join("tokenizer.json"))?;
    let spec = args.spec(tokenizer.vocab_size())?;
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
