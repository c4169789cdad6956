//! `lamina tokenizer train`: learn a byte-level BPE vocabulary from a corpus and write
//! tokenizer.json and tokenizer_config.json, ready for `lamina init-model`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lamina::pretrain::tokenizer_train::{train_files, TokenizerTrainOptions, BYTE_TOKENS};
use lamina::Error;

#[derive(Args, Debug)]
pub struct TokenizerArgs {
    #[command(subcommand)]
    command: TokenizerCommand,
}

#[derive(Subcommand, Debug)]
enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer (SmolLM2's pre-tokenizer, which llama.cpp reproduces
    /// exactly) on .jsonl ({"text": ...}), .txt and .md files or directories of them.
    Train(TrainArgs),
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// A .jsonl file of {"text": ...} records (what `lamina corpus` writes), a .txt file
    /// (documents separated by blank lines), a .md file, or a directory of them. Repeatable.
    #[arg(long = "input", short = 'i', value_name = "PATH", required = true)]
    inputs: Vec<PathBuf>,
    /// Directory for tokenizer.json and tokenizer_config.json (created).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Tokens in the vocabulary, the 256 byte tokens and the special tokens included.
    #[arg(long, value_name = "N")]
    vocab_size: usize,
    /// Pairs seen fewer times in the corpus are never merged.
    #[arg(long, value_name = "N", default_value_t = TokenizerTrainOptions::default().min_frequency)]
    min_frequency: u64,
    /// The beginning-of-sequence token.
    #[arg(long, value_name = "TOKEN", default_value_t = TokenizerTrainOptions::default().bos_token)]
    bos: String,
    /// The end-of-sequence token (may be the BOS token).
    #[arg(long, value_name = "TOKEN", default_value_t = TokenizerTrainOptions::default().eos_token)]
    eos: String,
    /// The padding token (may be the BOS or EOS token).
    #[arg(long, value_name = "TOKEN", default_value = "<pad>", conflicts_with = "no_pad")]
    pad: String,
    /// No padding token.
    #[arg(long)]
    no_pad: bool,
    /// More special tokens, such as the chat markers <|im_start|> and <|im_end|>. Repeatable.
    #[arg(long = "special", value_name = "TOKEN", num_args = 1..)]
    special: Vec<String>,
    /// A Jinja chat template for tokenizer_config.json (and the GGUF).
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Put the BOS token before every text (add_bos_token).
    #[arg(long)]
    add_bos: bool,
}

pub fn run(args: &TokenizerArgs) -> Result<(), Error> {
    match &args.command {
        TokenizerCommand::Train(args) => train(args),
    }
}

fn train(args: &TrainArgs) -> Result<(), Error> {
    let chat_template = match &args.chat_template {
        Some(path) => Some(lamina::data_file::read_text(path)?),
        None => None,
    };
    let options = TokenizerTrainOptions {
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
        bos_token: args.bos.clone(),
        eos_token: args.eos.clone(),
        pad_token: (!args.no_pad).then(|| args.pad.clone()),
        special_tokens: args.special.clone(),
        chat_template,
        add_bos_token: args.add_bos,
    };
    eprintln!("lamina: reading {} input(s) and training a {}-token vocabulary", args.inputs.len(), args.vocab_size);
    let report = train_files(&args.inputs, &args.output, &options)?;
    eprintln!(
        "vocabulary: {} tokens = {} special ({}) + {BYTE_TOKENS} bytes + {} from {} merges",
        report.vocab_size,
        report.special_tokens.len(),
        report.special_tokens.join(" "),
        report.vocab_size - report.special_tokens.len() - BYTE_TOKENS,
        report.n_merges
    );
    eprintln!("trained on {} document(s), {:.2} MB, in {:.2} s", report.documents, report.bytes as f64 / 1e6, report.seconds);
    for file in &report.files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        println!("{}\t{size}", file.display());
    }
    Ok(())
}
