//! Fine-tune a LoRA adapter with the native engine, export it, and serve it with llama.cpp.
//!
//! cargo run --release -p lamina --example finetune -- DATA.jsonl STEPS OUT.gguf "QUESTION" [VAL_FRACTION]
//!
//! Prints the loss of every step (and the validation loss before and after when a validation
//! fraction is given), writes the adapter, then answers QUESTION without and with it.

use std::path::PathBuf;
use std::time::Instant;

use lamina::native::lora_io::export_gguf;
use lamina::native::train::{TrainConfig, Trainer};
use lamina::native::train_data::{chat_template_from_gguf, load_dataset, DataOptions};
use lamina::native::{NativeModel, NativeParams, Tokenizer};
use lamina::weights::gguf::Gguf;
use lamina::{Model, ModelParams, Sampling, Session, SessionParams};

fn main() -> Result<(), lamina::Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: finetune DATA.jsonl STEPS OUT.gguf QUESTION [VAL_FRACTION]");
        std::process::exit(2);
    }
    let (data, out, question) = (PathBuf::from(&args[1]), PathBuf::from(&args[3]), &args[4]);
    let steps: usize =
        args[2].parse().map_err(|_| lamina::Error::InvalidArgument { name: "steps", reason: format!("`{}` is not a number", args[2]) })?;
    let val_fraction: f32 = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(0.0);

    let model_path = lamina::paths::default_model_path();
    let native = NativeModel::load(&model_path, &NativeParams::default())?;
    let gguf = Gguf::open(&model_path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let template = chat_template_from_gguf(&gguf, &tokenizer);
    let dataset = load_dataset(
        &data,
        &tokenizer,
        template.as_ref(),
        &DataOptions { max_len: 512, val_fraction, truncate: true, ..DataOptions::default() },
    )?;
    println!(
        "{} training and {} validation sequences, {} target tokens",
        dataset.train.len(),
        dataset.val.len(),
        dataset.stats.target_tokens
    );

    let config = TrainConfig {
        rank: 16,
        alpha: 32.0,
        learning_rate: 2e-3,
        warmup_steps: steps / 10,
        batch_size: 4,
        steps,
        seed: 1,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&native, config, dataset.train, dataset.val)?;
    if let Some(v) = trainer.evaluate()? {
        println!("validation loss before: {v:.4}");
    }
    let start = Instant::now();
    trainer.run(None, |p| {
        println!(
            "step {:>4}/{} loss {:.4} lr {:.2e} {:.0} tok/s eta {:.0}s",
            p.step,
            p.total_steps,
            p.loss,
            p.learning_rate,
            p.tokens_per_second,
            p.eta.as_secs_f64()
        );
        true
    })?;
    println!("trained {} steps in {:.0} s", trainer.step(), start.elapsed().as_secs_f64());
    if let Some((_, v)) = trainer.val_losses().last() {
        println!("validation loss after: {v:.4}");
    }
    export_gguf(trainer.lora(), &native, &out)?;
    println!("adapter written to {}", out.display());

    let model = Model::load(&model_path, &ModelParams::default())?;
    let mut session = Session::new(&model, &SessionParams::default())?;
    println!("base:    {}", session.chat(question, &Sampling::greedy(48), |_| true)?.text.trim());
    session.set_adapters(&[(model.load_adapter(&out)?, 1.0)])?;
    session.reset();
    println!("adapted: {}", session.chat(question, &Sampling::greedy(48), |_| true)?.text.trim());
    Ok(())
}
