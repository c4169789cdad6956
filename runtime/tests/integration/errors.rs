//! Bad input: each kind gets its own error with a clear message, and the process (and the
//! same model and session) keeps working afterwards.

use crate::common;

use std::io::Write;

use lamina::{Error, ErrorKind, Model, ModelParams, Sampling, Session, SessionParams};

fn load_err(path: &std::path::Path) -> Error {
    Model::load(path, &ModelParams::default()).expect_err("loading must fail")
}

fn still_works() {
    let mut s = common::session();
    let g = s.generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn bad_model_files() {
    let dir = std::env::temp_dir().join(format!("lamina-bad-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.gguf");
    let e = load_err(&missing);
    assert_eq!(e.kind(), ErrorKind::ModelNotFound, "{e}");
    assert!(e.to_string().contains("missing.gguf"), "{e}");

    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a model, just some text").unwrap();
    let e = load_err(&text);
    assert_eq!(e.kind(), ErrorKind::NotGguf, "{e}");
    assert!(e.to_string().contains("bad magic"), "{e}");

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = load_err(&empty);
    assert_eq!(e.kind(), ErrorKind::NotGguf, "{e}");

    let e = load_err(&dir);
    assert_eq!(e.kind(), ErrorKind::NotGguf, "{e}");
    assert!(e.to_string().contains("directory"), "{e}");

    let bad_version = dir.join("v9.gguf");
    std::fs::write(&bad_version, b"GGUF\x09\x00\x00\x00rest").unwrap();
    let e = load_err(&bad_version);
    assert_eq!(e.kind(), ErrorKind::NotGguf, "{e}");
    assert!(e.to_string().contains("version 9"), "{e}");

    // A real model cut short: the header parses, the tensor data is missing.
    let real = std::fs::read(lamina::paths::default_model_path()).unwrap();
    for cut in [64usize, 4 << 20, real.len() - 4096] {
        let truncated = dir.join(format!("truncated-{cut}.gguf"));
        std::fs::File::create(&truncated).unwrap().write_all(&real[..cut]).unwrap();
        let e = load_err(&truncated);
        assert_eq!(e.kind(), ErrorKind::ModelLoad, "cut at {cut}: {e}");
        assert!(e.to_string().contains("truncated-"), "{e}");
    }
    std::fs::remove_dir_all(&dir).ok();
    still_works();
}

#[test]
fn empty_prompts_are_rejected() {
    let mut s = common::session();
    let e = s.generate("", &Sampling::greedy(4), |_| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EmptyPrompt);
    let e = s.chat("   ", &Sampling::greedy(4), |_| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EmptyPrompt);
    let e = s.generate_from_tokens(&[], &Sampling::greedy(4), |_| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::EmptyPrompt);
    let e = s.generate_from_tokens(&[1, 999_999], &Sampling::greedy(4), |_| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("999999"), "{e}");
    let g = s.generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
    assert!(g.text.contains("Paris"));
}

#[test]
fn prompt_longer_than_the_context_is_an_error_not_a_truncation() {
    let mut s = common::session_with_ctx(64);
    let long = "word ".repeat(200);
    match s.generate(&long, &Sampling::greedy(4), |_| true) {
        Err(Error::PromptTooLong { tokens, n_ctx }) => {
            assert!(tokens > 64);
            assert_eq!(n_ctx, 64);
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    // Exactly n_ctx tokens still leaves no room: rejected too.
    let tokens: Vec<i32> = std::iter::repeat_n(common::model().tokenize(" word", false, false)[0], 64).collect();
    assert_eq!(s.generate_from_tokens(&tokens, &Sampling::greedy(4), |_| true).unwrap_err().kind(), ErrorKind::PromptTooLong);
    let g = s.generate("The capital of France is", &Sampling::greedy(8), |_| true).unwrap();
    assert!(g.text.contains("Paris"));
}

#[test]
fn bad_sampling_values_are_rejected_by_name() {
    let mut s = common::session();
    for (sampling, field) in [
        (Sampling { temperature: f32::NAN, ..Sampling::greedy(4) }, "temperature"),
        (Sampling { temperature: -1.0, ..Sampling::greedy(4) }, "temperature"),
        (Sampling { top_p: -0.1, ..Sampling::greedy(4) }, "top_p"),
        (Sampling { min_p: f32::NAN, ..Sampling::greedy(4) }, "min_p"),
        (Sampling { repeat_penalty: 0.0, ..Sampling::greedy(4) }, "repeat_penalty"),
        (Sampling { top_k: -5, ..Sampling::greedy(4) }, "top_k"),
        (Sampling { max_tokens: 0, ..Sampling::greedy(4) }, "max_tokens"),
    ] {
        let e = s.generate("Hello", &sampling, |_| true).unwrap_err();
        assert!(matches!(&e, Error::InvalidArgument { name, .. } if *name == field), "{field}: {e}");
        let e = s.chat("Hello", &sampling, |_| true).unwrap_err();
        assert!(matches!(&e, Error::InvalidArgument { name, .. } if *name == field), "{field}: {e}");
    }
    still_works();
}

#[test]
fn invalid_utf8_is_reported_with_its_offset() {
    let e = lamina::error::utf8("prompt", b"ab\xffcd").unwrap_err();
    assert!(matches!(e, Error::InvalidUtf8 { name: "prompt", offset: 2 }), "{e}");
}

#[test]
fn zero_batch_is_rejected() {
    let e = Session::new(common::model(), &SessionParams { n_batch: 0, ..SessionParams::default() }).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn absurd_thread_counts_are_rejected() {
    let e = Session::new(common::model(), &SessionParams { n_threads: 1_000_000, ..SessionParams::default() }).unwrap_err();
    assert!(matches!(&e, Error::InvalidArgument { name: "n_threads", .. }), "{e}");
}
