//! `lamina embed`: pooled, normalised embeddings of texts, as JSON lines (one per text) or one
//! JSON document with the vectors and, for two or more texts, their cosine similarities.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lamina::{EmbedParams, Embedder, Error, Pooling};

use crate::options::ModelOptions;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelOptions,
    /// A text to embed (repeatable).
    #[arg(long = "text", short = 'p', value_name = "TEXT")]
    pub texts: Vec<String>,
    /// A file with one text per line (empty lines skipped); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// How a text's token states become one vector.
    #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
    pub pooling: PoolingArg,
    /// Keep the vectors' own length (by default they are scaled to unit length).
    #[arg(long)]
    pub no_normalize: bool,
    /// Print the cosine similarity of every pair of texts instead of the vectors.
    #[arg(long)]
    pub similarity: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum PoolingArg {
    /// The mean over the text's tokens.
    Mean,
    /// The last token's state.
    Last,
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>, Error> {
    let io = |source| Error::Io { path: path.clone(), source };
    let lines: Vec<String> = if path.as_os_str() == "-" {
        std::io::stdin().lock().lines().collect::<Result<_, _>>().map_err(io)?
    } else {
        std::fs::read_to_string(path).map_err(io)?.lines().map(str::to_string).collect()
    };
    Ok(lines.into_iter().filter(|l| !l.trim().is_empty()).collect())
}

pub fn run(args: &EmbedArgs) -> Result<(), Error> {
    let mut texts = args.texts.clone();
    if let Some(file) = &args.file {
        texts.extend(read_lines(file)?);
    }
    if texts.is_empty() {
        return Err(Error::InvalidArgument { name: "text", reason: "give at least one --text or a --file".into() });
    }
    let model = args.model.load()?;
    let pooling = match args.pooling {
        PoolingArg::Mean => Pooling::Mean,
        PoolingArg::Last => Pooling::Last,
    };
    let params = EmbedParams { pooling, normalize: !args.no_normalize, n_threads: args.model.threads, ..EmbedParams::default() };
    let mut embedder = Embedder::new(&model, &params)?;
    let vectors = embedder.embed(&texts)?;
    let mut out = std::io::stdout().lock();
    let result = if args.similarity {
        let mut lines = Vec::new();
        for i in 0..texts.len() {
            for j in i + 1..texts.len() {
                let cos = lamina::engine::embed::cosine(&vectors[i], &vectors[j]);
                lines.push(serde_json::json!({ "a": i, "b": j, "cosine": cos }).to_string());
            }
        }
        lines.iter().try_for_each(|l| writeln!(out, "{l}"))
    } else {
        texts.iter().zip(&vectors).try_for_each(|(t, v)| writeln!(out, "{}", serde_json::json!({ "text": t, "embedding": v })))
    };
    // A closed pipe ends the output quietly.
    let _ = result;
    Ok(())
}
