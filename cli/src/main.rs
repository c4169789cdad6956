//! `lamina`: the command-line face of the runtime.
//!
//! Every subcommand takes `--model PATH` and falls back to the default model in the cache
//! (see `scripts/fetch-model.sh`). llama.cpp's own log stays silent unless `--verbose`.
//! Generated text goes to stdout; everything else (timings, prompts) to stderr.

mod bench;
mod bench_batch;
mod bench_native;
mod commands;
mod compare_devices;
mod convert;
mod corpus;
mod embed;
mod eval;
mod finetune;
mod init_model;
mod llama_bench;
mod model_size;
mod options;
mod perplexity;
mod pretrain;
mod serve;
mod sweep;
mod tokenizer_train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use options::{ModelOptions, SamplingOptions};

#[derive(Parser, Debug)]
#[command(name = "lamina", version, about = "An embeddable LLM runtime: generation, chat, translation and QA on llama.cpp's kernels")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Continue a prompt (raw text, no chat template), streaming the output.
    Generate {
        #[command(flatten)]
        model: ModelOptions,
        #[command(flatten)]
        sampling: SamplingOptions,
        /// The text to continue.
        #[arg(long, short)]
        prompt: String,
    },
    /// Interactive multi-turn chat with the model's chat template. Reads one message per line
    /// from stdin; `/reset` clears the conversation, `/exit` (or end of input) quits. Ctrl-C
    /// stops the current reply.
    Chat {
        #[command(flatten)]
        model: ModelOptions,
        #[command(flatten)]
        sampling: SamplingOptions,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
    },
    /// Translate text between languages (greedy).
    Translate {
        #[command(flatten)]
        model: ModelOptions,
        /// Source language: ISO 639-1 code ("en") or English name ("English").
        #[arg(long)]
        from: String,
        /// Target language: ISO 639-1 code ("de") or English name ("German").
        #[arg(long)]
        to: String,
        /// The text to translate (reads stdin when omitted).
        #[arg(long, short)]
        prompt: Option<String>,
    },
    /// Answer a question, optionally from a context passage (greedy, short answer).
    Ask {
        #[command(flatten)]
        model: ModelOptions,
        /// The question.
        #[arg(long, short)]
        prompt: String,
        /// Passage to answer from (`@FILE` reads a file).
        #[arg(long)]
        context: Option<String>,
    },
    /// Embed texts: one pooled, normalised vector per text (JSON lines), or with
    /// --similarity the cosine similarity of every pair.
    Embed(embed::EmbedArgs),
    /// Show the model's architecture, metadata and this build's backends.
    Info {
        #[command(flatten)]
        model: ModelOptions,
        /// Print every GGUF metadata key.
        #[arg(long)]
        all: bool,
    },
    /// Evaluate the model on a data set: perplexity, qa (EM/F1), translate (BLEU/chrF) or
    /// choice (accuracy). Prints a summary table; --output writes every prediction as JSON.
    Eval(eval::EvalArgs),
    /// Measure load time, prompt and generation throughput and time to first token, against a
    /// bare llama-cpp-2 loop in the same process; prints the ratios lamina/bare.
    Bench(bench::BenchArgs),
    /// Measure the native Rust engine's forward pass against llama.cpp's prompt processing in
    /// the same process (ratio), and its GFLOP/s against this machine's measured FMA peak.
    BenchNative(bench_native::NativeBenchArgs),
    /// Check a GPU backend against the CPU: the same text teacher-forced through the model on
    /// both (--gpu-layers N on the GPU side); prints top-1 agreement, mean KL and perplexities.
    CompareDevices(compare_devices::CompareDevicesArgs),
    /// Perplexity of a text with llama-perplexity's method, on the llama.cpp engine, the native
    /// Rust engine, or both side by side.
    Perplexity(perplexity::PerplexityArgs),
    /// Convert a model: a .gguf file to a Hugging Face safetensors directory (config.json,
    /// tokenizer.json, dequantized weights), or such a directory to a GGUF file.
    Convert(convert::ConvertArgs),
    /// Prepare a text corpus for training from scratch: read .txt, .md and .jsonl files or
    /// directories, clean (Unicode normalisation, control characters, whitespace, optionally
    /// markup and case), remove duplicate and near-duplicate documents and repeated lines,
    /// filter by length, and split by document into train/validation/test JSONL with a report.
    Corpus(corpus::CorpusArgs),
    /// Train a tokenizer for a model trained from scratch: `lamina tokenizer train` learns a
    /// byte-level BPE vocabulary from a corpus and writes tokenizer.json and
    /// tokenizer_config.json, which llama.cpp tokenizes identically once in a GGUF.
    Tokenizer(tokenizer_train::TokenizerArgs),
    /// Initialise a LLaMA model from scratch for a trained tokenizer: a preset (1m, 5m, 20m)
    /// or explicit sizes, seeded random weights, written as a Hugging Face directory and
    /// optionally GGUF; prints the parameter count and the training memory estimate.
    InitModel(init_model::InitModelArgs),
    /// Fine-tune a LoRA adapter on a data set (chat, prompt/completion, text or instruction
    /// records) with the native engine, and save it as GGUF (for --lora) and/or PEFT. Ctrl-C
    /// stops after the current step; --checkpoint-dir and --resume continue a run.
    Finetune(finetune::FinetuneArgs),
    /// Serve the model over HTTP with OpenAI's API: /v1/chat/completions, /v1/completions
    /// (streamed or not), /v1/embeddings and /v1/models; requests that arrive together are
    /// decoded together, and --lora NAME=PATH serves adapters by name.
    Serve(serve::ServeArgs),
    /// Train a LLaMA model from scratch on a corpus directory (train/validation/test JSONL):
    /// a preset or explicit sizes (or --init MODEL.gguf), every weight trained within a step,
    /// token or time budget; writes the model as GGUF (and --hf), log.json and loss.svg.
    /// Ctrl-C stops after the current step; --checkpoint-dir and --resume continue a run.
    Pretrain(Box<pretrain::PretrainArgs>),
    /// Search pretraining hyper-parameters (learning rate, batch size, warmup, weight decay,
    /// dropout, model size) by grid or seeded random trials, each within the same budget,
    /// hopeless trials stopped early; prints the trials by validation loss, writes sweep.json.
    Sweep(Box<sweep::SweepArgs>),
}

fn main() -> ExitCode {
    // A closed pipe (`lamina info | head`) ends the process quietly, as it does other Unix
    // tools, instead of a panic inside println!.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A file-size limit (`ulimit -f`) would kill the process with SIGXFSZ in the middle of a
    // write; ignored, the write fails with EFBIG and lamina reports it like a full disk.
    #[cfg(unix)]
    // SAFETY: sets a signal's disposition to ignore, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate { model, sampling, prompt } => commands::generate(&model, &sampling, &prompt),
        Command::Chat { model, sampling, system } => commands::chat(&model, &sampling, system.as_deref()),
        Command::Translate { model, from, to, prompt } => commands::translate(&model, &from, &to, prompt.as_deref()),
        Command::Ask { model, prompt, context } => commands::ask(&model, &prompt, context.as_deref()),
        Command::Info { model, all } => commands::info(&model, all),
        Command::Embed(args) => embed::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchNative(args) => bench_native::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Corpus(args) => corpus::run(&args),
        Command::Tokenizer(args) => tokenizer_train::run(&args),
        Command::InitModel(args) => init_model::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Perplexity(args) => perplexity::run(&args),
        Command::CompareDevices(args) => compare_devices::run(&args),
        Command::Finetune(args) => finetune::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Pretrain(args) => pretrain::run(&args),
        Command::Sweep(args) => sweep::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lamina: error: {e}");
            ExitCode::FAILURE
        }
    }
}
