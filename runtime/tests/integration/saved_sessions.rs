//! Saved sessions (`Session::save_state` / `restore_state`): a restored session continues a
//! conversation byte for byte as the saved one does under greedy decoding, without processing
//! its prompt again (the time saved on a long prompt is printed); adapters in use come back
//! with it; a state of another model, a corrupt or truncated one, or one too large for the
//! context is refused with a clear error and the session keeps working.

use crate::common;

use std::path::PathBuf;

use lamina::adapters::{write_gguf_adapter, LoraTensor, LoraTensorRef};
use lamina::weights::gguf::Gguf;
use lamina::{Error, Model, ModelParams, Sampling, Session, SessionParams};

fn session(n_ctx: u32) -> Session {
    Session::new(common::model(), &SessionParams { n_ctx, n_threads: 2, ..SessionParams::default() }).unwrap()
}

fn tmp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-saved-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn state_error(result: lamina::Result<()>) -> String {
    match result {
        Err(Error::InvalidArgument { name: "state", reason }) => reason,
        other => panic!("expected InvalidArgument on `state`, got {other:?}"),
    }
}

#[test]
fn a_restored_chat_continues_byte_for_byte() {
    let greedy = Sampling::greedy(24);
    let mut reference = session(1024);
    reference.set_system_prompt(Some("You are a concise assistant."));
    reference.chat("My name is Ada and I live in Lisbon.", &greedy, |_| true).unwrap();
    let expected = reference.chat("Where do I live, and what is my name?", &greedy, |_| true).unwrap();

    let mut saved = session(1024);
    saved.set_system_prompt(Some("You are a concise assistant."));
    saved.chat("My name is Ada and I live in Lisbon.", &greedy, |_| true).unwrap();
    let state = saved.save_state().unwrap();
    let history = saved.history().to_vec();
    drop(saved);

    let mut restored = session(1024);
    restored.restore_state(&state).unwrap();
    assert_eq!(restored.history(), history.as_slice());
    let got = restored.chat("Where do I live, and what is my name?", &greedy, |_| true).unwrap();
    println!("continued: {:?} (reused {} of {} prompt tokens)", got.text, got.reused_tokens, got.prompt_tokens);
    assert_eq!(got.text, expected.text);
    assert_eq!(got.reused_tokens, expected.reused_tokens, "the restored cache was not reused as the saved one was");
    assert_eq!(restored.history(), reference.history());
}

#[test]
fn restoring_a_long_prompt_skips_its_processing() {
    let long: String = (0..80).map(|i| format!("Sentence number {i} of a long document about printing presses. ")).collect();
    let greedy = Sampling::greedy(8);
    let mut cold = session(4096);
    let first = cold.generate(&long, &greedy, |_| true).unwrap();
    assert!(first.prompt_tokens > 900, "{} tokens", first.prompt_tokens);
    let path = tmp_dir().join("long.lamina-session");
    let start = std::time::Instant::now();
    cold.save_state_to_file(&path).unwrap();
    let save_ms = start.elapsed().as_secs_f64() * 1e3;
    let size = std::fs::metadata(&path).unwrap().len();

    let mut warm = session(4096);
    let start = std::time::Instant::now();
    warm.restore_state_from_file(&path).unwrap();
    let restore_ms = start.elapsed().as_secs_f64() * 1e3;
    let again = warm.generate(&long, &greedy, |_| true).unwrap();
    // What the saved session itself does next: the same prompt again, from its cache.
    let expected = cold.generate(&long, &greedy, |_| true).unwrap();
    println!(
        "{} prompt tokens: processed in {:.0} ms; state of {:.1} MB saved in {save_ms:.0} ms, restored in {restore_ms:.0} ms, \
         then the prompt took {:.0} ms ({} tokens reused): {:.1}x faster to the first token",
        first.prompt_tokens,
        first.prompt_time.as_secs_f64() * 1e3,
        size as f64 / 1e6,
        again.prompt_time.as_secs_f64() * 1e3,
        again.reused_tokens,
        first.prompt_time.as_secs_f64() * 1e3 / (restore_ms + again.prompt_time.as_secs_f64() * 1e3),
    );
    assert_eq!(again.text, expected.text);
    assert_eq!(again.reused_tokens, first.prompt_tokens - 1);
    assert!(again.prompt_time < first.prompt_time / 4, "{:?} vs {:?}", again.prompt_time, first.prompt_time);
}

#[test]
fn adapters_in_use_come_back() {
    let base = lamina::paths::default_model_path();
    let g = Gguf::open(&base).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    let rank = 4;
    let tensors: Vec<LoraTensor> = g
        .tensors()
        .iter()
        .filter(|t| t.name.ends_with("attn_q.weight") || t.name.ends_with("ffn_up.weight"))
        .map(|t| {
            let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
            LoraTensor {
                name: t.name.clone(),
                a: (0..rank * n_in).map(|_| next()).collect(),
                b: (0..n_out * rank).map(|_| next()).collect(),
                rank,
                n_in,
                n_out,
            }
        })
        .collect();
    let refs: Vec<LoraTensorRef<'_>> = tensors.iter().map(LoraTensor::as_ref).collect();
    let path = tmp_dir().join("adapter.gguf");
    write_gguf_adapter(&path, "llama", 8.0, &refs).unwrap();

    let greedy = Sampling::greedy(12);
    let mut saved = session(1024);
    saved.set_adapters(&[(common::model().load_adapter(&path).unwrap(), 0.7)]).unwrap();
    saved.generate("The capital of France is", &greedy, |_| true).unwrap();
    let state = saved.save_state().unwrap();
    let expected = saved.generate("The capital of France is Paris, and the capital of Spain is", &greedy, |_| true).unwrap();

    let mut restored = session(1024);
    restored.restore_state(&state).unwrap();
    assert_eq!(restored.adapters().len(), 1);
    assert_eq!(restored.adapters()[0].0.path(), path.as_path());
    assert_eq!(restored.adapters()[0].1, 0.7);
    let got = restored.generate("The capital of France is Paris, and the capital of Spain is", &greedy, |_| true).unwrap();
    assert_eq!(got.text, expected.text);
    assert_eq!(got.reused_tokens, expected.reused_tokens);
}

#[test]
fn bad_states_are_refused_and_the_session_keeps_working() {
    let mut s = session(2048);
    let long: String = (0..60).map(|i| format!("Line {i} of some text. ")).collect();
    s.generate(&long, &Sampling::greedy(4), |_| true).unwrap();
    let state = s.save_state().unwrap();

    let mut target = session(2048);
    let mut flipped = state.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    for (bytes, needle) in [
        (b"not a state at all".to_vec(), "not a lamina session state"),
        (Vec::new(), "not a lamina session state"),
        (state[..state.len() / 3].to_vec(), "checksum"),
        (flipped, "checksum"),
    ] {
        let reason = state_error(target.restore_state(&bytes));
        println!("{needle}: {reason}");
        assert!(reason.contains(needle), "{reason}");
    }
    // Too many tokens for a smaller context.
    let mut small = session(256);
    let reason = state_error(small.restore_state(&state));
    assert!(reason.contains("room for"), "{reason}");
    // A file: the error names it; a missing file is an I/O error.
    let path = tmp_dir().join("corrupt.lamina-session");
    std::fs::write(&path, b"garbage").unwrap();
    let reason = state_error(target.restore_state_from_file(&path));
    assert!(reason.contains("corrupt.lamina-session"), "{reason}");
    assert!(matches!(target.restore_state_from_file(tmp_dir().join("missing")), Err(Error::Io { .. })));
    // Nothing was half restored, and the session still generates.
    assert!(target.history().is_empty());
    let g = target.generate("The capital of France is", &Sampling::greedy(4), |_| true).unwrap();
    assert_eq!(g.reused_tokens, 0);
    assert!(!g.text.is_empty());
    // And a good state still restores afterwards.
    target.restore_state(&state).unwrap();
}

#[test]
fn a_state_of_another_model_is_refused() {
    // The same model with one weight byte near the end changed: the same shape, another model.
    let base = lamina::paths::default_model_path();
    let mut bytes = std::fs::read(&base).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x01;
    let other_path = tmp_dir().join("other-model.gguf");
    std::fs::write(&other_path, &bytes).unwrap();
    drop(bytes);
    let other = Model::load(&other_path, &ModelParams::default()).unwrap();

    let mut s = session(512);
    s.generate("The capital of France is", &Sampling::greedy(4), |_| true).unwrap();
    let state = s.save_state().unwrap();
    let mut theirs = Session::new(&other, &SessionParams { n_ctx: 512, n_threads: 2, ..SessionParams::default() }).unwrap();
    let reason = state_error(theirs.restore_state(&state));
    println!("{reason}");
    assert!(reason.contains("another model"), "{reason}");
    assert!(theirs.generate("Hello", &Sampling::greedy(2), |_| true).is_ok());
    drop(theirs);
    drop(other);
    let _ = std::fs::remove_file(&other_path);
}
