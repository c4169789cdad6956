//! The native tokenizer against llama.cpp's on the default model: same ids on tricky text
//! (digits, unicode, emoji, whitespace runs, ChatML markers, code), decode round-trips, a saved
//! tokenizer.json reloads to the same ids, and bad input is an error, never a panic.

use crate::common;

use std::path::PathBuf;
use std::sync::OnceLock;

use lamina::native::Tokenizer;
use lamina::weights::gguf::{Gguf, GgufWriter};
use lamina::ErrorKind;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-tokenizer-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn native() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let g = Gguf::open(lamina::paths::default_model_path()).expect("the default model is a GGUF file");
        Tokenizer::from_gguf(&g).expect("the default model's vocabulary builds")
    })
}

const TEXTS: &[&str] = &[
    "",
    "Hello, world!",
    "12345",
    "3.14159",
    "1,000,000",
    "In 2024 there were 365 days, 52 weeks and 8760 hours.",
    "café naïve résumé Ærøskøbing São Paulo",
    "日本語のテキストと中文文本",
    "مرحبا بالعالم",
    "Здравствуй, мир",
    "emoji 😀 🎉 👍🏽 flags 🇫🇷",
    "family 👨‍👩‍👧‍👦 and 🧑‍💻 (ZWJ sequences)",
    "a  b   c",
    "tab\there\t\tdouble",
    "\n\n\n",
    "   leading spaces",
    "trailing spaces   ",
    " \t \n mixed \r\n whitespace ",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "fn main() {\n    println!(\"{}\", x + 1); // comment\n}",
    "def f(x):\n\treturn x**2 if x>0 else -x",
    "It's we'll they've I'M don't",
    "<|endoftext|> literal <not|a|token>",
];

#[test]
fn ids_match_llama_cpp() {
    let model = common::model();
    let tok = native();
    assert_eq!(tok.vocab_size(), model.n_vocab(), "vocabulary size");
    assert_eq!(tok.bos_token(), Some(model.bos_token() as u32));
    assert_eq!(tok.eos_token(), Some(2));
    let mut compared = 0;
    for parse_special in [true, false] {
        for text in TEXTS {
            let ours = tok.encode(text, parse_special).unwrap();
            let reference: Vec<u32> = model.tokenize(text, false, parse_special).into_iter().map(|t| t as u32).collect();
            println!("parse_special={parse_special} {text:?}: {} tokens {:?}", ours.len(), ours);
            assert_eq!(ours, reference, "ids differ from llama.cpp's for {text:?} (parse_special={parse_special})");
            compared += 1;
        }
    }
    println!("{compared} tokenizations identical to llama.cpp's");
}

#[test]
fn special_tokens_follow_parse_special() {
    let tok = native();
    let with = tok.encode("<|im_start|>user", true).unwrap();
    assert_eq!(with[0], 1, "<|im_start|> is token 1 when parsed: {with:?}");
    let without = tok.encode("<|im_start|>user", false).unwrap();
    assert!(!without.contains(&1), "<|im_start|> must be plain text without special parsing: {without:?}");
}

#[test]
fn decode_round_trips() {
    let tok = native();
    for text in TEXTS {
        for parse_special in [true, false] {
            let ids = tok.encode(text, parse_special).unwrap();
            let back = tok.decode(&ids).unwrap();
            assert_eq!(&back, text, "decode(encode({text:?}))");
        }
    }
    let err = tok.decode(&[u32::MAX]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn saved_tokenizer_json_reloads_to_the_same_ids() {
    let tok = native();
    let path = tmp("tokenizer.json");
    tok.save(&path).unwrap();
    let reloaded = Tokenizer::from_file(&path).unwrap();
    assert_eq!(reloaded.vocab_size(), tok.vocab_size());
    for text in TEXTS {
        for parse_special in [true, false] {
            assert_eq!(
                reloaded.encode(text, parse_special).unwrap(),
                tok.encode(text, parse_special).unwrap(),
                "{text:?} (parse_special={parse_special})"
            );
        }
    }
    let json = tok.to_json_string().unwrap();
    let from_str = Tokenizer::from_json_str(&json, "memory").unwrap();
    assert_eq!(from_str.encode("Hello 123", true).unwrap(), tok.encode("Hello 123", true).unwrap());

    // The GGUF form of the vocabulary is the one llama.cpp reads.
    let vocab = reloaded.to_gguf_vocab().unwrap();
    let g = Gguf::open(lamina::paths::default_model_path()).unwrap();
    assert_eq!(vocab.pre, "smollm");
    assert_eq!(vocab.tokens, g.get_str_array("tokenizer.ggml.tokens").unwrap());
    assert_eq!(vocab.merges, g.get_str_array("tokenizer.ggml.merges").unwrap());
    let types: Vec<i32> = g.get_array("tokenizer.ggml.token_type").unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
    assert_eq!(vocab.token_types, types);
}

#[test]
fn tokenizer_config_next_to_tokenizer_json_sets_bos_and_eos() {
    let dir = tmp("with-config");
    std::fs::create_dir_all(&dir).unwrap();
    native().save(dir.join("tokenizer.json")).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "unk_token": "<|endoftext|>"}"#,
    )
    .unwrap();
    let tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    assert_eq!((tok.bos_token(), tok.eos_token(), tok.unk_token()), (Some(1), Some(2), Some(0)));
}

#[test]
fn bad_input_is_an_error() {
    let missing = Tokenizer::from_file(tmp("does-not-exist.json")).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Io, "{missing}");
    println!("missing file: {missing}");

    let invalid = tmp("invalid.json");
    std::fs::write(&invalid, "{ this is not json").unwrap();
    let err = Tokenizer::from_file(&invalid).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("invalid.json"), "{err}");
    println!("invalid JSON: {err}");

    let not_a_tokenizer = tmp("not-a-tokenizer.json");
    std::fs::write(&not_a_tokenizer, r#"{"hello": 1}"#).unwrap();
    let err = Tokenizer::from_file(&not_a_tokenizer).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    println!("JSON that is no tokenizer: {err}");

    // A GGUF with no tokenizer keys.
    let path = tmp("no-tokenizer.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.write(&path).unwrap();
    let err = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");
    println!("GGUF without tokenizer: {err}");

    // Another vocabulary type.
    let path = tmp("spm.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "llama").unwrap();
    w.write(&path).unwrap();
    let err = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("spm.gguf") && err.to_string().contains("`llama`"), "{err}");
    println!("unsupported type: {err}");

    // Wrong-typed and inconsistent keys.
    let path = tmp("bad-types.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "gpt2").unwrap();
    w.add_metadata("tokenizer.ggml.tokens", 7u32).unwrap();
    w.write(&path).unwrap();
    let err = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    println!("mistyped tokens: {err}");

    let path = tmp("bad-merge.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "gpt2").unwrap();
    w.add_metadata("tokenizer.ggml.tokens", lamina::weights::gguf::MetaValue::string_array(["a", "b", "ab"])).unwrap();
    w.add_metadata("tokenizer.ggml.merges", lamina::weights::gguf::MetaValue::string_array(["ab"])).unwrap();
    w.add_metadata(
        "tokenizer.ggml.token_type",
        lamina::weights::gguf::MetaValue::Array {
            elem: lamina::weights::gguf::MetaType::I32,
            items: vec![1i32.into(), 1i32.into(), 1i32.into()],
        },
    )
    .unwrap();
    w.write(&path).unwrap();
    let err = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    assert!(err.to_string().contains("merges[0]"), "{err}");
    println!("malformed merge: {err}");
}
