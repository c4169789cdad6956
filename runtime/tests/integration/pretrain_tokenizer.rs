//! Tokenizer training for models trained from scratch: a BPE vocabulary learnt from a small
//! text (the GPL-3 licence text, split into paragraphs) gives the same ids in the `tokenizers`
//! library that trained it, in lamina's native tokenizer read back from a GGUF, and in
//! llama.cpp on that GGUF, on text chosen to trip tokenizers up; and each bad input is its
//! own error.

use std::path::{Path, PathBuf};

use lamina::native::Tokenizer;
use lamina::pretrain::init::{init_model, InitOptions, ModelSpec};
use lamina::pretrain::tokenizer_train::{train, train_files, TokenizerTrainOptions};
use lamina::weights::gguf::Gguf;
use lamina::{ErrorKind, Model, ModelParams};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-pretrain-tokenizer-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Paragraphs of English prose: the GPL-3 text where the system has it, else lamina's own
/// documentation.
fn paragraphs() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").unwrap_or_else(|_| {
        ["README.md", "ARCHITECTURE.md"].iter().map(|f| std::fs::read_to_string(root.join(f)).unwrap()).collect::<Vec<_>>().join("\n\n")
    });
    let paragraphs: Vec<String> = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect();
    assert!(paragraphs.len() > 50, "the training text has only {} paragraphs", paragraphs.len());
    paragraphs
}

/// The paragraphs as `{"text": ...}` JSONL, the format `lamina corpus` writes.
fn corpus_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("train.jsonl");
    let lines: Vec<String> = paragraphs().iter().map(|p| serde_json::json!({ "text": p }).to_string()).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn chat_options(vocab_size: usize) -> TokenizerTrainOptions {
    TokenizerTrainOptions {
        vocab_size,
        special_tokens: vec!["<|im_start|>".into(), "<|im_end|>".into()],
        chat_template: Some(CHATML.into()),
        ..TokenizerTrainOptions::default()
    }
}

/// A tiny model for `tokenizer_dir`, as GGUF.
fn tiny_gguf(tokenizer_dir: &Path, dir: &Path, vocab_size: usize) -> PathBuf {
    let spec = ModelSpec {
        n_layers: 1,
        width: 32,
        n_heads: 2,
        n_kv_heads: 1,
        ffn_width: 64,
        context_length: 256,
        ..ModelSpec::preset("1m", vocab_size).unwrap()
    };
    let gguf = dir.join("tiny.gguf");
    init_model(&spec, tokenizer_dir, &dir.join("hf"), Some(&gguf), &InitOptions::default(), |_, _| true).unwrap().unwrap();
    gguf
}

const TRICKY: &[&str] = &[
    "",
    " ",
    "Hello, world!",
    "   leading spaces",
    "trailing spaces   ",
    "multiple   spaces  between    words",
    "line\nbreaks\n\nand a blank line\n",
    "\n\n\n",
    "tabs\tand\t\tdouble tabs\t",
    " \t \n mixed \r\n whitespace ",
    "12345",
    "3.14159 and 1,000,000 and 2024-01-01",
    "don't can't it's we'll they've I'M you're He'd",
    "café ñ 日本語 🎉",
    "emoji 😀👍🏽 flags 🇫🇷 and a family 👨‍👩‍👧‍👦",
    "Здравствуй, мир; مرحبا",
    "<s>a sentence</s><pad>",
    "<|im_start|>user\nWhat is free software?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|> spaced <|im_end|>  <not|a|token>",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidociousandthensomemorelettersinonewordwithoutanyspaceatallxyz",
    "fn main() {\n    println!(\"{}\", x + 1); // comment\n}",
    "the GNU General Public License, version 3 of the License, or (at your option) any later version.",
];

#[test]
fn trained_tokenizer_agrees_with_native_and_llama_cpp() {
    let dir = tmp("agree");
    let corpus = corpus_jsonl(&dir);
    let tokenizer_dir = dir.join("tokenizer");
    let report = train_files(&[&corpus], &tokenizer_dir, &chat_options(512)).unwrap();
    println!(
        "trained {} tokens ({} special, {} merges) on {} documents, {} bytes, in {:.3} s",
        report.vocab_size,
        report.special_tokens.len(),
        report.n_merges,
        report.documents,
        report.bytes,
        report.seconds
    );
    assert_eq!(report.vocab_size, 512);
    assert_eq!(report.special_tokens, ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]);
    assert!(report.n_merges >= 512 - 5 - 256, "{} merges", report.n_merges);

    let gguf = tiny_gguf(&tokenizer_dir, &dir, 512);
    let g = Gguf::open(&gguf).unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 512);
    assert_eq!(g.get_str_array("tokenizer.ggml.merges").unwrap().len(), report.n_merges);
    assert_eq!(g.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 0);
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 1);
    assert!(!g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(g.get_str("tokenizer.chat_template").unwrap(), CHATML);
    let types: Vec<i64> = g.get_array("tokenizer.ggml.token_type").unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(types[..5].iter().all(|&t| t == 3), "special tokens are control tokens: {:?}", &types[..5]);
    assert!(types[5..].iter().all(|&t| t == 1), "every other token is normal");

    let trained = tokenizers::Tokenizer::from_file(tokenizer_dir.join("tokenizer.json")).unwrap();
    let trained_lamina = Tokenizer::from_file(tokenizer_dir.join("tokenizer.json")).unwrap();
    let native = Tokenizer::from_gguf(&g).unwrap();
    let llama = Model::load(&gguf, &ModelParams::default()).unwrap();
    assert_eq!(llama.n_vocab(), 512);
    assert_eq!(llama.bos_token(), 0);
    assert!(llama.is_end_of_generation(1), "</s> ends generation");

    let mut differ = Vec::new();
    let mut compared = 0;
    for parse_special in [true, false] {
        for text in TRICKY {
            // The trained tokenizer itself: `tokenizers` parses special tokens; without special
            // parsing, through lamina's wrapper of the same tokenizer.json.
            let reference: Vec<u32> = if parse_special {
                trained.encode(*text, false).unwrap().get_ids().to_vec()
            } else {
                trained_lamina.encode(text, false).unwrap()
            };
            let from_gguf = native.encode(text, parse_special).unwrap();
            let by_llama: Vec<u32> = llama.tokenize(text, false, parse_special).into_iter().map(|t| t as u32).collect();
            println!("parse_special={parse_special} {text:?}: {} tokens {reference:?}", reference.len());
            if reference != from_gguf || reference != by_llama {
                differ.push(format!(
                    "parse_special={parse_special} {text:?}:\n  tokenizers {reference:?}\n  native     {from_gguf:?}\n  llama.cpp  {by_llama:?}"
                ));
            }
            // Decoding gives the text back, in lamina and in llama.cpp.
            let decoded = native.decode(&from_gguf).unwrap();
            let bytes: Vec<u8> = by_llama.iter().flat_map(|&t| llama.token_bytes(t as i32, true)).collect();
            let detokenized = String::from_utf8_lossy(&bytes);
            if decoded != *text || detokenized != *text {
                differ.push(format!("parse_special={parse_special} {text:?} decodes to {decoded:?} (native), {detokenized:?} (llama.cpp)"));
            }
            compared += 1;
        }
    }
    assert!(differ.is_empty(), "tokenizations or decodings that differ:\n{}", differ.join("\n"));
    println!("{compared} tokenizations identical in tokenizers, lamina's native tokenizer (from the GGUF) and llama.cpp");

    // Special tokens are single tokens only with special parsing.
    assert_eq!(native.encode("<|im_start|>", true).unwrap(), [3]);
    assert!(native.encode("<|im_start|>", false).unwrap().len() > 1);
    // Digits are split one by one (the `smollm` pre-tokenizer).
    assert_eq!(native.encode("12345", true).unwrap().len(), 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn add_bos_puts_bos_first_everywhere() {
    let dir = tmp("add-bos");
    let options = TokenizerTrainOptions { vocab_size: 400, add_bos_token: true, ..TokenizerTrainOptions::default() };
    let trained = train(&paragraphs(), &options).unwrap();
    let tokenizer_dir = dir.join("tokenizer");
    trained.save(&tokenizer_dir).unwrap();
    let gguf = tiny_gguf(&tokenizer_dir, &dir, 400);
    let llama = Model::load(&gguf, &ModelParams::default()).unwrap();
    assert!(llama.adds_bos());
    let hf = tokenizers::Tokenizer::from_file(tokenizer_dir.join("tokenizer.json")).unwrap();
    let with_bos = hf.encode("free software", true).unwrap().get_ids().to_vec();
    let by_llama: Vec<u32> = llama.tokenize("free software", true, false).into_iter().map(|t| t as u32).collect();
    println!("with BOS: tokenizers {with_bos:?}, llama.cpp {by_llama:?}");
    assert_eq!(with_bos[0], 0);
    assert_eq!(with_bos, by_llama);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_is_deterministic() {
    let docs = paragraphs();
    let options = TokenizerTrainOptions { vocab_size: 600, ..TokenizerTrainOptions::default() };
    let a = train(&docs, &options).unwrap().tokenizer.to_json_string().unwrap();
    let b = train(&docs, &options).unwrap().tokenizer.to_json_string().unwrap();
    assert!(a == b, "two trainings on the same text differ");
}

#[test]
fn bad_input_is_a_specific_error() {
    let dir = tmp("bad");
    let docs = paragraphs();
    let out = dir.join("out");

    // An empty corpus: no document, or only blank ones; a file of blank lines.
    let err = train(&[] as &[&str], &TokenizerTrainOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    println!("no documents: {err}");
    let blank = dir.join("blank.txt");
    std::fs::write(&blank, "\n\n   \n\t\n").unwrap();
    let err = train_files(&[&blank], &out, &TokenizerTrainOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("empty") && err.to_string().contains("blank.txt"), "{err}");
    println!("blank file: {err}");
    assert!(!out.join("tokenizer.json").exists(), "nothing is written on an error");

    // A vocabulary smaller than the byte tokens and the special tokens.
    let small = TokenizerTrainOptions { vocab_size: 256 + 3 - 1, ..TokenizerTrainOptions::default() };
    let err = train(&docs, &small).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("`vocab_size`") && err.to_string().contains("at least 259"), "{err}");
    println!("too small: {err}");
    assert!(train(&docs, &TokenizerTrainOptions { vocab_size: 259, ..TokenizerTrainOptions::default() }).is_ok());

    // A vocabulary larger than the corpus supports: the error says how many it does, and
    // that many trains.
    let large = TokenizerTrainOptions { vocab_size: 100_000, ..TokenizerTrainOptions::default() };
    let err = train(&docs, &large).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let message = err.to_string();
    println!("too large: {message}");
    let supported: usize = message.split("supports only ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(supported > 259 && supported < 100_000, "{message}");
    let exact = train(&docs, &TokenizerTrainOptions { vocab_size: supported, ..TokenizerTrainOptions::default() }).unwrap();
    assert_eq!(exact.vocab_size(), supported);
    assert!(train(&docs, &TokenizerTrainOptions { vocab_size: supported + 1, ..TokenizerTrainOptions::default() }).is_err());

    // Duplicate special tokens, and blank ones.
    for (special, pad, expect) in [
        (vec!["<|im_start|>", "<|im_start|>"], Some("<pad>"), "given twice"),
        (vec!["<s>"], Some("<pad>"), "already the BOS, EOS or PAD"),
        (vec!["<x>"], Some("<x>"), "already the BOS, EOS or PAD"),
        (vec![""], Some("<pad>"), "empty or blank"),
        (vec![" <x>"], Some("<pad>"), "whitespace"),
        (vec![], Some("  "), "empty or blank"),
    ] {
        let options = TokenizerTrainOptions {
            vocab_size: 512,
            special_tokens: special.iter().map(|s| s.to_string()).collect(),
            pad_token: pad.map(str::to_string),
            ..TokenizerTrainOptions::default()
        };
        let err = train(&docs, &options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("`special_tokens`") && err.to_string().contains(expect), "{special:?}: {err}");
        println!("special tokens {special:?} (pad {pad:?}): {err}");
    }
    // BOS, EOS and PAD may be one token (GPT-2 style): it gets one id.
    let shared = TokenizerTrainOptions {
        vocab_size: 400,
        bos_token: "<|endoftext|>".into(),
        eos_token: "<|endoftext|>".into(),
        pad_token: Some("<|endoftext|>".into()),
        ..TokenizerTrainOptions::default()
    };
    let trained = train(&docs, &shared).unwrap();
    assert_eq!(trained.special_tokens, ["<|endoftext|>"]);
    assert_eq!((trained.tokenizer.bos_token(), trained.tokenizer.eos_token()), (Some(0), Some(0)));

    // A chat template that does not render.
    let options = TokenizerTrainOptions { chat_template: Some("{{ broken".into()), ..chat_options(512) };
    let err = train(&docs, &options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChatTemplate, "{err}");
    println!("broken template: {err}");

    // Inputs: none, missing, a JSONL record without text.
    let err = train_files(&[] as &[&Path], &out, &TokenizerTrainOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = train_files(&[dir.join("missing.jsonl")], &out, &TokenizerTrainOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n{\"title\": \"no text\"}\n").unwrap();
    let err = train_files(&[&bad], &out, &TokenizerTrainOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("bad.jsonl:2"), "{err}");
    println!("bad record: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
