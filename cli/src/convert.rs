//! `lamina convert`: GGUF <-> Hugging Face safetensors, with a progress bar; Ctrl-C cancels
//! and removes the partial output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::native::convert::{gguf_to_safetensors, safetensors_to_gguf, ConvertReport, Dtype};
use lamina::Error;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// A .gguf file (converted to a safetensors directory) or a directory with config.json,
    /// model.safetensors and tokenizer.json (converted to a GGUF file).
    input: PathBuf,
    /// The output: a directory for GGUF input, a .gguf file for directory input.
    output: PathBuf,
    /// Element type of the safetensors weights (GGUF -> safetensors only; GGUF output keeps
    /// the input's F32/F16/BF16).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
}

pub fn run(args: &ConvertArgs) -> Result<(), Error> {
    let dtype: Dtype = args.dtype.parse()?;
    let to_gguf = args.input.is_dir();
    if to_gguf && !args.input.join("config.json").is_file() {
        return Err(Error::InvalidArgument {
            name: "input",
            reason: format!("{} is a directory without config.json (not a Hugging Face model)", args.input.display()),
        });
    }
    if !to_gguf && !args.input.exists() {
        return Err(Error::ModelNotFound { path: args.input.clone() });
    }

    let cancelled = Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} tensors (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
        !cancelled.load(Ordering::SeqCst)
    };
    let result = if to_gguf {
        bar.set_prefix("safetensors -> GGUF");
        safetensors_to_gguf(&args.input, &args.output, progress)
    } else {
        bar.set_prefix(format!("GGUF -> safetensors ({})", args.dtype));
        gguf_to_safetensors(&args.input, &args.output, dtype, progress)
    };
    bar.finish_and_clear();
    match result? {
        Some(report) => {
            print_report(&report, &args.output);
            Ok(())
        }
        None => {
            eprintln!("lamina: conversion cancelled; partial output removed");
            std::process::exit(130);
        }
    }
}

fn print_report(report: &ConvertReport, output: &Path) {
    eprintln!("converted {} tensors ({} parameters) to {}", report.n_tensors, report.n_params, output.display());
    for file in &report.files {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        println!("{}\t{size}", file.display());
    }
}
