//! `lamina eval`: run the evaluation harness with a progress bar and a summary table.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lamina::eval::run::{evaluate, EvalOptions, EvalReport, Task};
use lamina::{Error, Session, SessionParams};

use crate::options::ModelOptions;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// perplexity (plain text), qa, translate or choice (JSONL; see docs/datasets.md).
    #[arg(value_parser = ["perplexity", "qa", "translate", "choice"])]
    task: String,
    #[command(flatten)]
    model: ModelOptions,
    /// The data file.
    #[arg(long)]
    data: PathBuf,
    /// Evaluate only the first N examples (perplexity: N chunks, at least 2).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Perplexity chunk size in tokens.
    #[arg(long, default_value_t = 512)]
    chunk: usize,
    /// Source language for translation records that do not name one.
    #[arg(long)]
    from: Option<String>,
    /// Target language for translation records that do not name one.
    #[arg(long)]
    to: Option<String>,
    /// Write the scores and every prediction as JSON to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> Result<(), Error> {
    let task = Task::parse(&args.task)?;
    let model = args.model.load()?;
    let n_ctx = if args.model.ctx == 0 { args.chunk.max(2048) as u32 } else { args.model.ctx };
    let mut session = Session::new(&model, &SessionParams { n_ctx, ..args.model.session_params() })?;
    let adapters = args.model.load_adapters(&model)?;
    let options =
        EvalOptions { limit: args.limit, perplexity_ctx: args.chunk, source_lang: args.from.clone(), target_lang: args.to.clone() };

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let run_once = |session: &mut Session, label: &str| {
        bar.set_prefix(format!("eval {}{label}", task.name()));
        bar.reset();
        let report = evaluate(session, task, &args.data, &options, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            true
        });
        bar.finish_and_clear();
        report
    };
    let report = run_once(&mut session, "")?;
    // With --lora: the base model first, then the adapted one, in the same run.
    let adapted = if adapters.is_empty() {
        None
    } else {
        session.set_adapters(&adapters)?;
        Some(run_once(&mut session, " (lora)")?)
    };
    match &adapted {
        None => print_table(&report, &args.data, &model.path().display().to_string()),
        Some(lora) => print_comparison(&report, lora, &args.data, &model.path().display().to_string(), &args.model.lora),
    }
    if let Some(path) = &args.output {
        let mut json = report.to_json();
        if let Some(lora) = &adapted {
            json = serde_json::json!({ "base": json, "lora": lora.to_json(), "adapters": args.model.lora });
        }
        json["model"] = serde_json::Value::String(model.path().display().to_string());
        json["data"] = serde_json::Value::String(args.data.display().to_string());
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::InvalidArgument { name: "output", reason: e.to_string() })?;
        lamina::atomic_file::write_bytes(path, (text + "\n").as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(report: &EvalReport, data: &std::path::Path, model: &str) {
    println!("task      {}", report.task.name());
    println!("model     {model}");
    println!("data      {}", data.display());
    println!(
        "evaluated {} of {}{} in {:.1} s",
        report.evaluated,
        report.total,
        if report.task == Task::Perplexity { " chunks" } else { " examples" },
        report.elapsed.as_secs_f64()
    );
    println!("{:<18} {:>12}", "metric", "value");
    for (name, value) in &report.metrics {
        println!("{name:<18} {value:>12.4}");
    }
}

/// The base and adapted scores side by side.
fn print_comparison(base: &EvalReport, lora: &EvalReport, data: &std::path::Path, model: &str, adapters: &[String]) {
    println!("task      {}", base.task.name());
    println!("model     {model}");
    println!("lora      {}", adapters.join(", "));
    println!("data      {}", data.display());
    println!(
        "evaluated {} of {}{} in {:.1} s + {:.1} s",
        base.evaluated,
        base.total,
        if base.task == Task::Perplexity { " chunks" } else { " examples" },
        base.elapsed.as_secs_f64(),
        lora.elapsed.as_secs_f64()
    );
    println!("{:<18} {:>12} {:>12} {:>12}", "metric", "base", "lora", "change");
    for (name, value) in &base.metrics {
        match lora.metrics.iter().find(|(n, _)| n == name) {
            Some((_, adapted)) => println!("{name:<18} {value:>12.4} {adapted:>12.4} {:>+12.4}", adapted - value),
            None => println!("{name:<18} {value:>12.4} {:>12} {:>12}", "-", "-"),
        }
    }
}
