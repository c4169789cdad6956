//! The native engine computes the same model as llama.cpp, on the default model and more than
//! 256 tokens of English prose (teacher-forced next-token distributions and perplexity), and
//! the safetensors path computes the same as the GGUF path. The numbers are printed.

use crate::common;

use lamina::eval::perplexity::{perplexity, TokenScorer};
use lamina::native::convert::{gguf_to_safetensors, safetensors_to_gguf, Dtype};
use lamina::native::{NativeModel, NativeParams, Precision};

const PROSE: &str = include_str!("../../../tests/data/prose.txt");

fn prose_tokens() -> Vec<i32> {
    common::model().tokenize(PROSE, false, false)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let z: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / z).collect()
}

fn argmax(logits: &[f32]) -> usize {
    logits.iter().enumerate().fold(0, |best, (i, &l)| if l > logits[best] { i } else { best })
}

/// Mean KL(p_ref || p_other) and top-1 agreement over rows of logits.
fn compare(reference: &[Vec<f32>], other: &[Vec<f32>]) -> (f64, f64) {
    assert_eq!(reference.len(), other.len());
    let mut kl_sum = 0.0;
    let mut agree = 0usize;
    for (r, o) in reference.iter().zip(other) {
        let (p, q) = (softmax(r), softmax(o));
        kl_sum += p.iter().zip(&q).filter(|(&p, _)| p > 0.0).map(|(&p, &q)| p * (p / q.max(1e-300)).ln()).sum::<f64>();
        agree += usize::from(argmax(r) == argmax(o));
    }
    (kl_sum / reference.len() as f64, agree as f64 / reference.len() as f64)
}

/// Teacher-forced logits from llama.cpp for every position after the first.
fn llama_logits(model: &lamina::Model, tokens: &[i32]) -> Vec<Vec<f32>> {
    let params = lamina::SessionParams { n_ctx: 1024, n_threads: 2, ..lamina::SessionParams::default() };
    let mut session = lamina::Session::new(model, &params).unwrap();
    let mut rows = Vec::new();
    assert!(session.teacher_forced_logits(tokens, 1, |_, l| rows.push(l.to_vec())).unwrap());
    rows
}

fn native_logits(model: &NativeModel, tokens: &[i32]) -> Vec<Vec<f32>> {
    let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
    let logits = model.logits(&ids[..ids.len() - 1], 0).unwrap();
    (0..logits.rows()).map(|i| logits.row(i).to_vec()).collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().zip(b).flat_map(|(r, o)| r.iter().zip(o).map(|(x, y)| (x - y).abs())).fold(0.0f32, f32::max)
}

/// One test, because its steps share a 540 MB conversion of the default model:
///
/// 1. On the default Q4_1 file, native vs llama.cpp: mean KL <= 0.005 nats, perplexities within
///    1%. llama.cpp's Q4_1 kernels quantize activations to 8 bits (Q8_1) before every product,
///    and those roundings flip near-tied top-1 choices, so llama.cpp disagrees with *itself*
///    on the same weights in f32 at a few percent of positions; the native engine, which
///    computes in f32, must agree with llama.cpp's Q4_1 run at least as often as that.
/// 2. On the same weights converted to F32 (GGUF -> safetensors -> GGUF, which also runs the
///    converters), where llama.cpp multiplies in f32 too: top-1 agreement >= 99% and mean KL
///    <= 0.005 nats.
/// 3. The safetensors checkpoint (HF names, rotate_half q/k layout) through the native engine
///    gives the GGUF's logits within 1e-4 relative to the largest logit.
#[test]
fn native_engine_matches_llama_cpp_on_the_default_model() {
    let tokens = prose_tokens();
    assert!(tokens.len() >= 256, "the parity text must have at least 256 tokens, has {}", tokens.len());
    let gguf = lamina::paths::default_model_path();
    let params = NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() };

    // 1. The quantized default model.
    let reference_q = llama_logits(common::model(), &tokens);
    let mut native = NativeModel::load(&gguf, &params).unwrap();
    let ours = native_logits(&native, &tokens);
    let (kl_q, top1_q) = compare(&reference_q, &ours);
    println!(
        "Q4_1 file, native vs llama.cpp: {} positions | top-1 agreement {:.2}% | mean KL {kl_q:.6} nats | max |logit diff| {:.4}",
        ours.len(),
        top1_q * 100.0,
        max_abs_diff(&reference_q, &ours)
    );
    assert!(kl_q <= 0.005, "mean KL {kl_q}");

    let mut session = common::session_with_ctx(1024);
    let ppl_llama = perplexity(&mut session, &tokens, 128, None, |_, _| true).unwrap().unwrap();
    let ppl_native = perplexity(&mut native, &tokens, 128, None, |_, _| true).unwrap().unwrap();
    let rel = (ppl_native.ppl - ppl_llama.ppl).abs() / ppl_llama.ppl;
    println!(
        "perplexity (ctx 128): llama.cpp {:.4} +/- {:.4}, native {:.4} +/- {:.4}, relative difference {:.4}%",
        ppl_llama.ppl,
        ppl_llama.ppl_stderr,
        ppl_native.ppl,
        ppl_native.ppl_stderr,
        rel * 100.0
    );
    assert!(rel <= 0.01, "perplexities differ by {rel}");

    // 2. The same weights in F32, through both converters.
    let dir = std::env::temp_dir().join(format!("lamina-native-parity-{}", std::process::id()));
    let hf_dir = dir.join("hf");
    let f32_gguf = dir.join("model-f32.gguf");
    std::fs::create_dir_all(&dir).unwrap();
    gguf_to_safetensors(&gguf, &hf_dir, Dtype::F32, |_, _| true).unwrap().unwrap();
    safetensors_to_gguf(&hf_dir, &f32_gguf, |_, _| true).unwrap().unwrap();
    let f32_model = lamina::Model::load(&f32_gguf, &lamina::ModelParams::default()).unwrap();
    let reference_f = llama_logits(&f32_model, &tokens);
    let (kl_f, top1_f) = compare(&reference_f, &ours);
    let (_, llama_self) = compare(&reference_f, &reference_q);
    println!(
        "F32 file, native vs llama.cpp: top-1 agreement {:.2}% | mean KL {kl_f:.2e} nats | max |logit diff| {:.4}",
        top1_f * 100.0,
        max_abs_diff(&reference_f, &ours)
    );
    println!("llama.cpp Q4_1 vs llama.cpp F32 (same weights): top-1 agreement {:.2}%", llama_self * 100.0);
    assert!(top1_f >= 0.99, "top-1 agreement with llama.cpp in f32: {top1_f}");
    assert!(kl_f <= 0.005, "mean KL with llama.cpp in f32: {kl_f}");
    assert!(top1_q + 0.005 >= llama_self, "native agrees with llama.cpp Q4_1 on {top1_q}, below llama.cpp's own f32 run ({llama_self})");

    // 3. The safetensors checkpoint through the native engine.
    let from_st = NativeModel::load(&hf_dir, &params).unwrap();
    assert_eq!(from_st.rope_layout(), lamina::native::RopeLayout::Halves);
    let st_logits = native_logits(&from_st, &tokens);
    let scale = ours.iter().flatten().fold(0.0f32, |m, &v| m.max(v.abs()));
    let rel_st = max_abs_diff(&ours, &st_logits) / scale;
    println!("safetensors vs GGUF through the native engine: max |logit diff| / max |logit| = {rel_st:e}");
    assert!(rel_st <= 1e-4, "safetensors path differs by {rel_st} relative");
    drop((from_st, f32_model));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batched_sequences_give_the_same_logits_as_single_ones() {
    let tokens: Vec<u32> = prose_tokens().iter().map(|&t| t as u32).collect();
    let native = NativeModel::load(
        lamina::paths::default_model_path(),
        &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() },
    )
    .unwrap();
    let (a, b) = (&tokens[..40], &tokens[40..100]);
    let single_a = native.logits(a, 0).unwrap();
    let single_b = native.logits(b, 0).unwrap();
    let both = native.forward(&[a, b], &[0..a.len(), 0..b.len()]).unwrap();
    let joined: Vec<f32> = single_a.data.iter().chain(&single_b.data).copied().collect();
    let max_diff = joined.iter().zip(&both.data).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    println!("batched vs single: max |logit diff| {max_diff:e}");
    assert!(max_diff < 1e-3, "max diff {max_diff}");
}

#[test]
fn native_scorer_rejects_bad_input() {
    let mut native = NativeModel::load(
        lamina::paths::default_model_path(),
        &NativeParams { n_threads: 1, precision: Precision::F32, ..Default::default() },
    )
    .unwrap();
    let vocab = native.config().vocab_size as i32;
    let err = native.token_logprobs(&[1, vocab], 1).unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let err = native.token_logprobs(&[1, -3], 1).unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
    assert!(native.token_logprobs(&[1], 1).is_err());
    assert!(native.token_logprobs(&[1, 2, 3], 0).is_err());
    assert!(native.logits(&[], 0).is_err());
    assert!(native.logits(&[1, 2], 3).is_err());
    // Still usable afterwards.
    assert_eq!(native.logits(&[1, 2], 0).unwrap().rows(), 2);
}

#[test]
fn loading_errors_name_the_problem() {
    let err = NativeModel::load("/nonexistent/model.gguf", &NativeParams::default()).unwrap_err();
    assert_eq!(err.kind(), lamina::ErrorKind::ModelNotFound);
    let dir = std::env::temp_dir().join(format!("lamina-native-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = NativeModel::load(&dir, &NativeParams::default()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
