//! Train a tiny language model from scratch: text in, a GGUF model out, a few greedy tokens
//! from it at the end.
//!
//! cargo run --release -p lamina --example pretrain -- OUT_DIR STEPS INPUT...
//!
//! INPUT: .txt files (documents separated by blank lines), .md files (one document each),
//! .jsonl files of `{"text": ...}` records, or directories of those. The steps, each shown
//! as it goes: the corpus (cleaned, deduplicated, split into train/validation/test) in
//! OUT_DIR/corpus, a byte-level BPE tokenizer in OUT_DIR/tokenizer, then the `1m` preset
//! initialised and pretrained for STEPS steps into OUT_DIR/run (model.gguf, log.json,
//! loss.svg). A few hundred steps on a few hundred KB of text make it babble in the corpus's
//! words; this shows the pipeline, not a useful model.

use std::path::PathBuf;

use lamina::corpus::{self, CorpusOptions};
use lamina::native::Tokenizer;
use lamina::pretrain::init::ModelSpec;
use lamina::pretrain::run::{pretrain, Budget, ModelSource, PretrainOptions};
use lamina::pretrain::tokenizer_train::{train_files, TokenizerTrainOptions, TOKENIZER_FILE};
use lamina::{Model, ModelParams, Sampling, Session, SessionParams};

fn main() -> Result<(), lamina::Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: pretrain OUT_DIR STEPS INPUT...");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[1]);
    let steps: usize =
        args[2].parse().map_err(|_| lamina::Error::InvalidArgument { name: "steps", reason: format!("`{}` is not a number", args[2]) })?;
    let inputs: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();

    // 1. The corpus: a tenth each for validation and test, so that a small input still gives
    //    both sets a document.
    let corpus_dir = out.join("corpus");
    let options = CorpusOptions { train_fraction: 0.8, validation_fraction: 0.1, test_fraction: 0.1, ..CorpusOptions::default() };
    let report = corpus::build(&inputs, &corpus_dir, &options, |_| true)?.expect("the progress closure never cancels");
    println!("corpus: {} documents in, {} kept", report.input.documents, report.output.documents);

    // 2. The tokenizer, trained on the training set only (validation and test stay unseen).
    let tokenizer_dir = out.join("tokenizer");
    let tok = TokenizerTrainOptions { vocab_size: 512, ..TokenizerTrainOptions::default() };
    let tok_report = train_files(&[corpus_dir.join(corpus::TRAIN_FILE)], &tokenizer_dir, &tok)?;
    println!("tokenizer: {} tokens ({} merges)", tok_report.vocab_size, tok_report.n_merges);
    let vocab = Tokenizer::from_file(tokenizer_dir.join(TOKENIZER_FILE))?.vocab_size();

    // 3. Pretraining: the smallest preset at the tokenizer's vocabulary, short sequences, a
    //    warmup of a tenth of the steps and a validation every quarter of the run.
    let options = PretrainOptions {
        corpus: corpus_dir,
        model: ModelSource::New { spec: ModelSpec::preset("1m", vocab)?, tokenizer: tokenizer_dir, std: 0.02 },
        output: out.join("run"),
        seq_len: 64,
        batch_size: 4,
        learning_rate: 2e-3,
        warmup_steps: (steps / 10).max(1),
        eval_every: (steps / 4).max(1),
        budget: Budget { steps: Some(steps), ..Budget::default() },
        ..PretrainOptions::default()
    };
    let report = pretrain(&options, |p| {
        let val = p.val_perplexity().filter(|_| p.evaluated).map(|v| format!(", validation perplexity {v:.1}")).unwrap_or_default();
        println!(
            "step {:>4}/{} loss {:.3} lr {:.1e} {:.0} tok/s{val}",
            p.step, p.planned_steps, p.loss, p.learning_rate, p.tokens_per_second
        );
        true
    })?
    .expect("the progress closure never cancels");
    if let Some((before, after)) = report.val_loss_change() {
        println!("validation perplexity: {:.1} before, {:.1} after", before.exp(), after.exp());
    }
    if let Some(test) = &report.test {
        println!("test: perplexity {:.1}, next-token accuracy {:.1}%", test.perplexity, 100.0 * test.accuracy);
    }
    let gguf = report.files.gguf.expect("a finished run writes its model");
    println!("model: {}", gguf.display());

    // 4. The trained GGUF is an ordinary llama.cpp model: sample a few greedy tokens.
    let model = Model::load(&gguf, &ModelParams::default())?;
    let mut session = Session::new(&model, &SessionParams { n_ctx: 128, ..SessionParams::default() })?;
    let text = session.generate("The", &Sampling::greedy(16), |_| true)?.text;
    println!("sample: The{text}");
    Ok(())
}
