//! GGUF <-> safetensors conversion on the default model: names, shapes, config and the RoPE
//! row un-permutation of GGUF -> safetensors; safetensors -> GGUF loads in llama.cpp and
//! predicts like the original; the q/k permutation round-trips exactly; cancellation and bad
//! input are reported, never a panic.

use crate::common;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use lamina::native::convert::{gguf_to_safetensors, safetensors_to_gguf, Dtype};
use lamina::native::{LlamaConfig, Tokenizer};
use lamina::weights::dequant::dequantize_row;
use lamina::weights::gguf::Gguf;
use lamina::weights::names::permute_qk_rows;
use lamina::weights::safetensors::{Dtype as StDtype, SafeTensors};
use lamina::weights::GgmlType;
use lamina::{ErrorKind, Model, ModelParams};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-convert-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn dequantized(g: &Gguf, name: &str) -> Vec<f32> {
    let t = g.tensor(name).unwrap_or_else(|| panic!("{name} in {}", g.path().display()));
    let mut out = vec![0f32; t.n_elements() as usize];
    dequantize_row(t.ggml_type(), t.data(), &mut out).unwrap();
    out
}

/// Logits of every position of `tokens` (one decode, all rows requested).
fn all_logits(model: &Model, tokens: &[i32]) -> Vec<Vec<f32>> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(256))
        .with_n_batch(256)
        .with_n_ubatch(256)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.llama().new_context(lamina::engine::llama_backend(), params).expect("context");
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(LlamaToken(t), i as i32, &[0], true).unwrap();
    }
    ctx.decode(&mut batch).expect("decode");
    (0..tokens.len()).map(|i| ctx.get_logits_ith(i as i32).to_vec()).collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap()
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Once upon a time, there was a little girl \
                    named Emma who loved to play in the garden with her 3 cats and 12 goldfish.";

/// The whole chain on the real model, in one test so that only one llama.cpp context exists at
/// a time: GGUF (Q4_1) -> safetensors (F32) -> GGUF (F32).
#[test]
fn default_model_round_trip() {
    let src = lamina::paths::default_model_path();
    let g = Gguf::open(&src).unwrap();
    let config = LlamaConfig::from_gguf(&g).unwrap();
    let dir = tmp("smollm-f32");

    // --- GGUF -> safetensors -------------------------------------------------------------------
    let mut calls = 0u64;
    let mut last = (0, 0);
    let start = std::time::Instant::now();
    let report = gguf_to_safetensors(&src, &dir, Dtype::F32, |done, total| {
        calls += 1;
        last = (done, total);
        true
    })
    .unwrap()
    .expect("not cancelled");
    println!("GGUF -> safetensors: {} tensors, {} params in {:.1?}", report.n_tensors, report.n_params, start.elapsed());
    assert_eq!(report.n_tensors, 272);
    assert_eq!((calls, last), (272, (272, 272)));
    for name in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(dir.join(name).is_file(), "{name} written");
    }

    let st = SafeTensors::open(dir.join("model.safetensors")).unwrap();
    assert_eq!(st.tensors().len(), 272);
    assert!(st.info("lm_head.weight").is_none(), "tied embeddings: no lm_head");
    let shape = |n: &str| st.info(n).unwrap_or_else(|| panic!("{n}")).shape.clone();
    assert_eq!(shape("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.29.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.7.self_attn.v_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.3.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(shape("model.layers.3.mlp.gate_proj.weight"), [1536, 576]);
    assert_eq!(shape("model.layers.0.input_layernorm.weight"), [576]);
    assert_eq!(shape("model.norm.weight"), [576]);
    assert!(st.tensors().iter().all(|t| t.dtype == StDtype::F32));

    let hf_config = LlamaConfig::from_hf_config_json(dir.join("config.json")).unwrap();
    assert_eq!(hf_config, config, "config.json reads back as the GGUF's configuration");

    // The un-permutation: HF row h*hd + half*hd/2 + i is GGUF row h*hd + 2i + half.
    let (hd, width) = (config.head_dim, config.hidden_size);
    let mut rows_checked = 0;
    for (layer, proj, gguf_proj, heads) in
        [(0, "q_proj", "attn_q", 9), (0, "k_proj", "attn_k", 3), (29, "q_proj", "attn_q", 9), (29, "k_proj", "attn_k", 3)]
    {
        let ours = st.to_f32(&format!("model.layers.{layer}.self_attn.{proj}.weight")).unwrap();
        let theirs = dequantized(&g, &format!("blk.{layer}.{gguf_proj}.weight"));
        for h in 0..heads {
            for half in 0..2 {
                for i in 0..hd / 2 {
                    let hf_row = h * hd + half * hd / 2 + i;
                    let gguf_row = h * hd + 2 * i + half;
                    assert_eq!(
                        ours[hf_row * width..(hf_row + 1) * width],
                        theirs[gguf_row * width..(gguf_row + 1) * width],
                        "layer {layer} {proj} HF row {hf_row} vs GGUF row {gguf_row}"
                    );
                    rows_checked += 1;
                }
            }
        }
        assert_ne!(ours, theirs, "the rows were reordered");
    }
    println!("un-permutation: {rows_checked} q/k rows equal their GGUF rows");
    assert_eq!(st.to_f32("model.layers.5.self_attn.v_proj.weight").unwrap(), dequantized(&g, "blk.5.attn_v.weight"));
    assert_eq!(st.to_f32("model.embed_tokens.weight").unwrap(), dequantized(&g, "token_embd.weight"));

    let tok_config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(tok_config["chat_template"].as_str(), Some(g.get_str("tokenizer.chat_template").unwrap()));
    assert_eq!(tok_config["bos_token"], "<|im_start|>");
    assert_eq!(tok_config["eos_token"], "<|im_end|>");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    assert_eq!((tokenizer.bos_token(), tokenizer.eos_token(), tokenizer.unk_token()), (Some(1), Some(2), Some(0)));

    // --- safetensors -> GGUF -------------------------------------------------------------------
    let out = tmp("smollm-f32.gguf");
    let start = std::time::Instant::now();
    let report = safetensors_to_gguf(&dir, &out, |_, _| true).unwrap().expect("not cancelled");
    println!(
        "safetensors -> GGUF: {} tensors in {:.1?}, {} bytes",
        report.n_tensors,
        start.elapsed(),
        std::fs::metadata(&out).unwrap().len()
    );
    let back = Gguf::open(&out).unwrap();
    assert_eq!(LlamaConfig::from_gguf(&back).unwrap(), config);
    for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges"] {
        assert_eq!(back.get_str_array(key).unwrap(), g.get_str_array(key).unwrap(), "{key}");
    }
    for key in ["tokenizer.ggml.pre", "tokenizer.ggml.model", "tokenizer.chat_template"] {
        assert_eq!(back.get_str(key).unwrap(), g.get_str(key).unwrap(), "{key}");
    }
    let types = |g: &Gguf| -> Vec<i64> { g.get_array("tokenizer.ggml.token_type").unwrap().iter().map(|v| v.as_i64().unwrap()).collect() };
    assert_eq!(types(&back), types(&g));
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"] {
        assert_eq!(back.get_u32(key).unwrap(), g.get_u32(key).unwrap(), "{key}");
    }
    assert!(!back.get_bool("tokenizer.ggml.add_bos_token").unwrap());

    // Every tensor, q and k included, is exactly the dequantized original: the permutation
    // round-trips bit for bit.
    assert_eq!(back.tensors().len(), g.tensors().len());
    for t in g.tensors() {
        let converted = back.tensor(&t.name).unwrap_or_else(|| panic!("{} in the converted file", t.name));
        assert_eq!(converted.ggml_type(), GgmlType::F32, "{}", t.name);
        assert_eq!(converted.dims(), t.dims.as_slice(), "{}", t.name);
        assert!(dequantized(&back, &t.name) == dequantized(&g, &t.name), "{} differs after the round trip", t.name);
    }
    println!("all {} tensors identical to the dequantized original", g.tensors().len());

    // --- llama.cpp on the converted file ----------------------------------------------------------
    let original = common::model();
    let converted = Model::load(&out, &ModelParams::default()).expect("llama.cpp loads the converted GGUF");
    assert_eq!(converted.n_vocab(), original.n_vocab());
    for text in [TEXT, "<|im_start|>user\nhi<|im_end|>", "1,000,000 café 日本 👨‍👩‍👧", "  a\n\n\tb  "] {
        assert_eq!(converted.tokenize(text, false, true), original.tokenize(text, false, true), "{text:?}");
        let native: Vec<i32> = tokenizer.encode(text, true).unwrap().into_iter().map(|t| t as i32).collect();
        assert_eq!(native, original.tokenize(text, false, true), "native tokenizer.json on {text:?}");
    }

    let tokens = original.tokenize(TEXT, false, true);
    let a = all_logits(original, &tokens);
    let b = all_logits(&converted, &tokens);
    let agree = a.iter().zip(&b).filter(|(x, y)| argmax(x) == argmax(y)).count();
    let max_diff = a.iter().zip(&b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0f32, f32::max);
    println!("teacher-forced top-1 agreement Q4_1 vs converted F32: {agree}/{} positions, max |logit diff| {max_diff:.3}", tokens.len());
    assert!(agree * 10 >= tokens.len() * 9, "top-1 agrees on {agree}/{} positions", tokens.len());

    let prompt = "Once upon a time, there was a little";
    let generate = |model: &Model| {
        let mut s = lamina::Session::new(model, &lamina::SessionParams { n_ctx: 256, n_threads: 2, ..Default::default() }).unwrap();
        s.generate(prompt, &lamina::Sampling::greedy(12), |_| true).unwrap().text
    };
    let (g_orig, g_conv) = (generate(original), generate(&converted));
    println!("greedy, original : {prompt}{g_orig:?}\ngreedy, converted: {prompt}{g_conv:?}");
    assert!(!g_conv.trim().is_empty());

    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn permutation_is_inverted_by_its_inverse() {
    // 2 heads of 6 rows, 3 bytes a row.
    let data: Vec<u8> = (0..36).collect();
    let to_gguf = permute_qk_rows(&data, 2, 3, true);
    assert_ne!(to_gguf, data);
    // GGUF row 1 (head 0, i 0, half 1) is HF row 3.
    assert_eq!(&to_gguf[3..6], &data[9..12]);
    assert_eq!(permute_qk_rows(&to_gguf, 2, 3, false), data);
}

#[test]
fn bf16_conversion_is_cancellable_and_converts() {
    let src = lamina::paths::default_model_path();
    let dir = tmp("smollm-bf16-cancel");
    let mut seen = 0;
    let result = gguf_to_safetensors(&src, &dir, Dtype::BF16, |done, _| {
        seen = done;
        done < 3
    })
    .unwrap();
    assert!(result.is_none(), "cancelled");
    assert_eq!(seen, 3, "no work after the cancel");
    assert!(!dir.join("model.safetensors").exists(), "a cancelled conversion leaves no weight file");

    let dir = tmp("smollm-bf16");
    gguf_to_safetensors(&src, &dir, Dtype::BF16, |_, _| true).unwrap().unwrap();
    let st = SafeTensors::open(dir.join("model.safetensors")).unwrap();
    assert!(st.tensors().iter().all(|t| t.dtype == StDtype::BF16));

    let out = tmp("cancelled.gguf");
    let result = safetensors_to_gguf(&dir, &out, |done, _| done < 5).unwrap();
    assert!(result.is_none() && !out.exists(), "cancelled before writing");

    let out = tmp("smollm-bf16.gguf");
    safetensors_to_gguf(&dir, &out, |_, _| true).unwrap().unwrap();
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.tensor("blk.0.attn_q.weight").unwrap().ggml_type(), GgmlType::BF16);
    assert_eq!(g.tensor("blk.0.attn_norm.weight").unwrap().ggml_type(), GgmlType::F32, "norms in F32");
    assert_eq!(g.get_u32("general.file_type").unwrap(), 32);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny model directory: the real tokenizer, a 2-layer config with the real vocabulary size.
fn tiny_dir(name: &str, skip: Option<&str>, bad_shape: Option<&str>) -> PathBuf {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    let g = Gguf::open(lamina::paths::default_model_path()).unwrap();
    Tokenizer::from_gguf(&g).unwrap().save(dir.join("tokenizer.json")).unwrap();
    let config = LlamaConfig {
        vocab_size: 49152,
        hidden_size: 8,
        intermediate_size: 16,
        n_layers: 2,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    };
    std::fs::write(dir.join("config.json"), config.to_hf_config_json().to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![("model.embed_tokens.weight".into(), vec![49152, 8])];
    for l in 0..2 {
        for (n, s) in [
            ("input_layernorm.weight", vec![8]),
            ("self_attn.q_proj.weight", vec![8, 8]),
            ("self_attn.k_proj.weight", vec![4, 8]),
            ("self_attn.v_proj.weight", vec![4, 8]),
            ("self_attn.o_proj.weight", vec![8, 8]),
            ("post_attention_layernorm.weight", vec![8]),
            ("mlp.gate_proj.weight", vec![16, 8]),
            ("mlp.up_proj.weight", vec![16, 8]),
            ("mlp.down_proj.weight", vec![8, 16]),
        ] {
            shapes.push((format!("model.layers.{l}.{n}"), s));
        }
    }
    shapes.push(("model.norm.weight".into(), vec![8]));
    let datas: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .filter(|(n, _)| Some(n.as_str()) != skip)
        .map(|(n, mut s)| {
            if Some(n.as_str()) == bad_shape {
                s[0] += 1;
            }
            let bytes = vec![0u8; s.iter().product::<usize>() * 4];
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        datas.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(StDtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn bad_input_is_an_error() {
    let show = |what: &str, e: &lamina::Error| println!("{what}: {e}");

    let e = gguf_to_safetensors(Path::new("/nonexistent/model.gguf"), &tmp("x"), Dtype::F32, |_, _| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    show("missing GGUF", &e);

    let empty = tmp("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let e = safetensors_to_gguf(&empty, &tmp("x.gguf"), |_, _| true).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
    show("empty directory", &e);

    let ok = tiny_dir("tiny-ok", None, None);
    let out = tmp("tiny.gguf");
    safetensors_to_gguf(&ok, &out, |_, _| true).unwrap().unwrap();
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.tensors().len(), 2 * 9 + 2);

    let missing = tiny_dir("tiny-missing", Some("model.layers.1.mlp.up_proj.weight"), None);
    let e = safetensors_to_gguf(&missing, &tmp("y.gguf"), |_, _| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("model.layers.1.mlp.up_proj.weight") && e.to_string().contains("model.safetensors"), "{e}");
    show("missing tensor", &e);

    let bad = tiny_dir("tiny-shape", None, Some("model.layers.0.self_attn.k_proj.weight"));
    let e = safetensors_to_gguf(&bad, &tmp("z.gguf"), |_, _| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("model.layers.0.self_attn.k_proj.weight") && e.to_string().contains("[5, 8]"), "{e}");
    show("shape mismatch", &e);

    std::fs::remove_file(bad.join("tokenizer.json")).unwrap();
    let e = safetensors_to_gguf(&bad, &tmp("w.gguf"), |_, _| true).unwrap_err();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    show("missing tokenizer.json", &e);

    // A GGUF whose tensors do not fit its configuration: the tiny GGUF with a renamed tensor
    // is covered by the name check; here the vocabulary is not gpt2.
    let spm = tmp("spm.gguf");
    let mut w = lamina::weights::gguf::GgufWriter::new();
    for (k, v) in g.metadata() {
        let v = if k == "tokenizer.ggml.model" { "llama".into() } else { v.clone() };
        w.add_metadata(k.clone(), v).unwrap();
    }
    for t in g.tensors() {
        w.add_tensor(t.name.clone(), t.ggml_type, &t.dims, g.tensor(&t.name).unwrap().data()).unwrap();
    }
    w.write(&spm).unwrap();
    let e = gguf_to_safetensors(&spm, &tmp("spm-out"), Dtype::F32, |_, _| true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Data, "{e}");
    assert!(e.to_string().contains("spm.gguf"), "{e}");
    show("unsupported vocabulary", &e);
}
