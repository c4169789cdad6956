//! The corpus, tokenizer and model size that the pretraining tests (pretrain_run, pretrain_sweep)
//! share, made once per test process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lamina::pretrain::init::ModelSpec;
use lamina::pretrain::tokenizer_train::{train, TokenizerTrainOptions};

pub fn write_jsonl(path: &Path, docs: &[&str]) {
    let lines: String = docs.iter().map(|d| serde_json::json!({ "text": d }).to_string() + "\n").collect();
    std::fs::write(path, lines).unwrap();
}

/// A corpus directory of the GPL-3 text (or lamina's README where the system has no GPL-3),
/// one paragraph a document, every 20th in validation and the one after it in test; and a
/// 512-token tokenizer trained on its training set. Made once for all tests.
pub fn corpus_and_tokenizer() -> &'static (PathBuf, PathBuf) {
    static MADE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MADE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3")
            .unwrap_or_else(|_| std::fs::read_to_string(root.join("README.md")).unwrap());
        let paragraphs: Vec<&str> = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).collect();
        let pick = |r: usize| paragraphs.iter().enumerate().filter(|(i, _)| i % 20 == r).map(|(_, p)| *p).collect::<Vec<_>>();
        let train_docs: Vec<&str> = paragraphs.iter().enumerate().filter(|(i, _)| i % 20 > 1).map(|(_, p)| *p).collect();
        let dir = std::env::temp_dir().join(format!("lamina-pretrain-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_jsonl(&dir.join("train.jsonl"), &train_docs);
        write_jsonl(&dir.join("validation.jsonl"), &pick(0));
        write_jsonl(&dir.join("test.jsonl"), &pick(1));
        let trained = train(&train_docs, &TokenizerTrainOptions { vocab_size: 512, ..TokenizerTrainOptions::default() }).unwrap();
        let tokenizer = dir.join("tokenizer");
        trained.save(&tokenizer).unwrap();
        (dir, tokenizer)
    })
}

/// Smaller than the 1m preset: 2 blocks of width 64.
pub fn tiny_spec() -> ModelSpec {
    ModelSpec {
        n_layers: 2,
        width: 64,
        n_heads: 4,
        n_kv_heads: 2,
        ffn_width: 160,
        context_length: 128,
        ..ModelSpec::preset("1m", 512).unwrap()
    }
}
