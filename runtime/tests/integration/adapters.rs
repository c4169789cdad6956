//! LoRA adapters through llama.cpp, on the default model with synthetic adapters (seeded random
//! A/B on q, k, v, o, gate, up, down): scale 0 is the base model; an adapter changes logits and
//! text; llama.cpp's application equals a dense F32 reference `W + s·B·A` (one adapter and a
//! set of two); a PEFT directory gives the same logits as the GGUF adapter; switching adapters
//! clears the KV cache; bad input is a specific error and the process keeps working.

use crate::common;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lamina::adapters::{write_gguf_adapter, write_peft_adapter, LoraTensor, LoraTensorRef, PeftSettings};
use lamina::native::convert::{gguf_to_safetensors, safetensors_to_gguf, Dtype};
use lamina::weights::gguf::{Gguf, GgufWriter, MetaValue};
use lamina::weights::names::{gguf_to_hf_name, permute_qk_rows};
use lamina::weights::GgmlType;
use lamina::{Adapter, Error, ErrorKind, Model, ModelParams, Sampling, Session, SessionParams};

const TARGETS: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
const TEXT: &str = "The quick brown fox jumps over the lazy dog. Paris is the capital of";

fn tmp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-adapter-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// xorshift64*, uniform in [-amp, amp).
struct Rng(u64);
impl Rng {
    fn next(&mut self, amp: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * amp
    }
}

/// Random LoRA tensors for every target of every layer of the model at `base`.
fn synthetic(base: &Path, rank: usize, seed: u64) -> Vec<LoraTensor> {
    let g = Gguf::open(base).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::new();
    for t in g.tensors() {
        let Some(rest) = t.name.strip_prefix("blk.") else { continue };
        let Some((_, suffix)) = rest.split_once('.') else { continue };
        if !TARGETS.iter().any(|k| suffix == format!("{k}.weight")) {
            continue;
        }
        let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
        let a = (0..rank * n_in).map(|_| rng.next(0.08)).collect();
        let b = (0..n_out * rank).map(|_| rng.next(0.08)).collect();
        out.push(LoraTensor { name: t.name.clone(), a, b, rank, n_in, n_out });
    }
    out
}

fn write_adapter(path: &Path, alpha: f32, tensors: &[LoraTensor]) {
    let w: Vec<LoraTensorRef<'_>> = tensors.iter().map(LoraTensor::as_ref).collect();
    write_gguf_adapter(path, "llama", alpha, &w).unwrap();
}

struct Fixture {
    a1: Vec<LoraTensor>,
    a2: Vec<LoraTensor>,
    p1: PathBuf,
    p2: PathBuf,
}

const ALPHA1: f32 = 16.0; // rank 8: llama.cpp factor 2 * scale
const ALPHA2: f32 = 4.0; // rank 4: factor 1 * scale

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base = lamina::paths::default_model_path();
        let a1 = synthetic(&base, 8, 1);
        let a2 = synthetic(&base, 4, 2);
        let dir = tmp_dir();
        let (p1, p2) = (dir.join("a1.gguf"), dir.join("a2.gguf"));
        write_adapter(&p1, ALPHA1, &a1);
        write_adapter(&p2, ALPHA2, &a2);
        Fixture { a1, a2, p1, p2 }
    })
}

fn session(model: &Model) -> Session {
    Session::new(model, &SessionParams { n_ctx: 256, n_threads: 2, ..SessionParams::default() }).unwrap()
}

fn logits(session: &mut Session, tokens: &[i32]) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    session.reset();
    assert!(session.teacher_forced_logits(tokens, 1, |_, l| out.push(l.to_vec())).unwrap());
    out
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::MIN), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0
}

fn top1_agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| argmax(x) == argmax(y)).count();
    same as f64 / a.len() as f64
}

fn greedy(session: &mut Session, prompt: &str) -> String {
    session.reset();
    session.generate(prompt, &Sampling::greedy(16), |_| true).unwrap().text
}

#[test]
fn scale_zero_is_the_base_model_and_an_adapter_changes_the_output() {
    let f = fixture();
    let model = common::model();
    let adapter = model.load_adapter(&f.p1).unwrap();
    assert_eq!(adapter.rank(), 8);
    assert_eq!(adapter.alpha(), ALPHA1);
    assert_eq!(adapter.targets().len(), 7 * 30);
    let tokens = model.tokenize(TEXT, true, false);
    let mut s = session(model);
    let base = logits(&mut s, &tokens);
    let base_text = greedy(&mut s, TEXT);

    s.set_adapters(&[(adapter.clone(), 0.0)]).unwrap();
    assert_eq!(s.adapters().len(), 1);
    assert_eq!(max_diff(&base, &logits(&mut s, &tokens)), 0.0, "scale 0 must be the base model");

    s.set_adapters(&[(adapter.clone(), 1.0)]).unwrap();
    let adapted = logits(&mut s, &tokens);
    let adapted_text = greedy(&mut s, TEXT);
    let diff = max_diff(&base, &adapted);
    println!("base {base_text:?}\nadapted {adapted_text:?}\nmax logit change {diff}");
    assert!(diff > 1.0, "the adapter must change the logits (max change {diff})");
    assert_ne!(base_text, adapted_text);

    s.set_adapters(&[]).unwrap();
    assert!(s.adapters().is_empty());
    assert_eq!(max_diff(&base, &logits(&mut s, &tokens)), 0.0, "removing the adapter restores the base model");
}

/// The default model as an F32 GGUF, and a dense copy with `W += Σ f·B·A` per adapter part.
fn f32_base() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tmp_dir();
        let st = dir.join("f32-st");
        gguf_to_safetensors(&lamina::paths::default_model_path(), &st, Dtype::F32, |_, _| true).unwrap().unwrap();
        let out = dir.join("base-f32.gguf");
        safetensors_to_gguf(&st, &out, |_, _| true).unwrap().unwrap();
        std::fs::remove_dir_all(&st).unwrap();
        out
    })
}

fn dense_merge(base: &Path, out: &Path, parts: &[(&[LoraTensor], f32)]) {
    let g = Gguf::open(base).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.add_metadata(k.clone(), v.clone()).unwrap();
    }
    let mut deltas: HashMap<&str, Vec<(&LoraTensor, f32)>> = HashMap::new();
    for (tensors, factor) in parts {
        for t in *tensors {
            deltas.entry(&t.name).or_default().push((t, *factor));
        }
    }
    for info in g.tensors() {
        let view = g.tensor(&info.name).unwrap();
        let Some(list) = deltas.get(info.name.as_str()) else {
            w.add_tensor(info.name.clone(), info.ggml_type, &info.dims, Cow::Borrowed(view.data())).unwrap();
            continue;
        };
        assert_eq!(info.ggml_type, GgmlType::F32);
        let mut wt: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        for (t, factor) in list {
            for o in 0..t.n_out {
                for k in 0..t.rank {
                    let bk = factor * t.b[o * t.rank + k];
                    let row = &mut wt[o * t.n_in..(o + 1) * t.n_in];
                    for (x, a) in row.iter_mut().zip(&t.a[k * t.n_in..(k + 1) * t.n_in]) {
                        *x += bk * a;
                    }
                }
            }
        }
        let bytes: Vec<u8> = wt.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.add_tensor(info.name.clone(), GgmlType::F32, &info.dims, bytes).unwrap();
    }
    w.write(out).unwrap();
}

#[test]
fn llama_cpp_application_matches_a_dense_f32_merge() {
    let f = fixture();
    let base_path = f32_base();
    let base = Model::load(base_path, &ModelParams::default()).unwrap();
    let tokens = base.tokenize(TEXT, true, false);
    let a1 = base.load_adapter(&f.p1).unwrap();
    let a2 = base.load_adapter(&f.p2).unwrap();
    let mut s = session(&base);

    // One adapter, scale 0.5: llama.cpp factor 0.5 * 16 / 8 = 1.
    let dense_path = tmp_dir().join("dense1.gguf");
    dense_merge(base_path, &dense_path, &[(&f.a1, 0.5 * ALPHA1 / 8.0)]);
    let dense = Model::load(&dense_path, &ModelParams::default()).unwrap();
    let want = logits(&mut session(&dense), &tokens);
    s.set_adapters(&[(a1.clone(), 0.5)]).unwrap();
    let got = logits(&mut s, &tokens);
    let (diff, agree) = (max_diff(&want, &got), top1_agreement(&want, &got));
    println!("one adapter: max |llama.cpp(F32 + adapter) - llama.cpp(dense merge)| = {diff:.2e}, top-1 agreement {agree}");
    assert!(diff < 6e-2, "max diff {diff} (f32 rounding through 30 layers is ~1e-2)");
    assert_eq!(agree, 1.0);
    drop(dense);
    std::fs::remove_file(&dense_path).unwrap();

    // A set of two with scales 0.7 and -0.5.
    let dense_path = tmp_dir().join("dense2.gguf");
    dense_merge(base_path, &dense_path, &[(&f.a1, 0.7 * ALPHA1 / 8.0), (&f.a2, -0.5 * ALPHA2 / 4.0)]);
    let dense = Model::load(&dense_path, &ModelParams::default()).unwrap();
    let want = logits(&mut session(&dense), &tokens);
    s.set_adapters(&[(a1.clone(), 0.7), (a2.clone(), -0.5)]).unwrap();
    let got = logits(&mut s, &tokens);
    let (diff, agree) = (max_diff(&want, &got), top1_agreement(&want, &got));
    println!("two adapters: max |llama.cpp(F32 + merged set) - llama.cpp(dense merge)| = {diff:.2e}, top-1 agreement {agree}");
    assert!(diff < 6e-2, "max diff {diff} (f32 rounding through 30 layers is ~1e-2)");
    assert_eq!(agree, 1.0);
    // Switching away and back reuses the cached merged adapter and gives the same logits.
    s.set_adapters(&[(a2.clone(), 1.0)]).unwrap();
    s.set_adapters(&[(a2, -0.5), (a1, 0.7)]).unwrap();
    assert_eq!(max_diff(&got, &logits(&mut s, &tokens)), 0.0);
    drop(dense);
    std::fs::remove_file(&dense_path).unwrap();
}

/// A PEFT directory holding the same adapter: Hugging Face names, q/k lora_B rows in the
/// rotate_half layout.
fn write_peft(dir: &Path, tensors: &[LoraTensor], r: usize, alpha: f32, n_head: usize, n_head_kv: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for t in tensors {
        let hf = gguf_to_hf_name(&t.name).unwrap();
        let module = hf.strip_suffix(".weight").unwrap();
        let a: Vec<u8> = t.a.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut b: Vec<u8> = t.b.iter().flat_map(|v| v.to_le_bytes()).collect();
        if t.name.ends_with("attn_q.weight") {
            b = permute_qk_rows(&b, n_head, t.rank * 4, false);
        } else if t.name.ends_with("attn_k.weight") {
            b = permute_qk_rows(&b, n_head_kv, t.rank * 4, false);
        }
        data.push((format!("base_model.model.{module}.lora_A.weight"), a, vec![t.rank, t.n_in]));
        data.push((format!("base_model.model.{module}.lora_B.weight"), b, vec![t.n_out, t.rank]));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, bytes, shape)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("adapter_model.safetensors")).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": false,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "base_model_name_or_path": "SmolLM2-135M-Instruct",
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
}

#[test]
fn a_peft_directory_gives_the_same_logits_as_the_gguf_adapter() {
    let f = fixture();
    let model = common::model();
    let info = model.info();
    let dir = tmp_dir().join("peft1");
    write_peft(&dir, &f.a1, 8, ALPHA1, info.n_head as usize, info.n_head_kv as usize);
    let from_gguf = model.load_adapter(&f.p1).unwrap();
    let from_peft = model.load_adapter(&dir).unwrap();
    assert_eq!(from_peft.targets(), from_gguf.targets());
    assert_eq!(from_peft.alpha(), ALPHA1);
    let tokens = model.tokenize(TEXT, true, false);
    let mut s = session(model);
    s.set_adapters(&[(from_gguf.clone(), 0.8)]).unwrap();
    let want = logits(&mut s, &tokens);
    s.set_adapters(&[(from_peft.clone(), 0.8)]).unwrap();
    let got = logits(&mut s, &tokens);
    let diff = max_diff(&want, &got);
    println!("PEFT vs GGUF adapter: max logit diff {diff:.2e}");
    assert!(diff < 1e-4, "max diff {diff}");
    // PEFT adapters also merge (read again from the directory).
    let a2 = model.load_adapter(&f.p2).unwrap();
    s.set_adapters(&[(from_peft, 0.8), (a2.clone(), 0.3)]).unwrap();
    let got = logits(&mut s, &tokens);
    s.set_adapters(&[(from_gguf, 0.8), (a2, 0.3)]).unwrap();
    let want = logits(&mut s, &tokens);
    assert!(max_diff(&want, &got) < 1e-4);

    // rsLoRA: scaling alpha/sqrt(r) = 16/sqrt(8), i.e. GGUF alpha 16*sqrt(8).
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap()).unwrap();
    cfg["use_rslora"] = true.into();
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
    let rs = model.load_adapter(&dir).unwrap();
    assert!((rs.alpha() - 16.0 * 8f32.sqrt()).abs() < 1e-4);
}

/// lamina's PEFT writer gives the directory written by hand above, tensor for tensor, and a
/// tensor name that is no LLaMA projection is refused.
#[test]
fn the_peft_writer_matches_the_hand_written_directory() {
    let f = fixture();
    let info = common::model().info();
    let config = lamina::weights::llama_config::LlamaConfig::from_gguf(&Gguf::open(lamina::paths::default_model_path()).unwrap()).unwrap();
    let (by_hand, written) = (tmp_dir().join("peft-hand"), tmp_dir().join("peft-written"));
    write_peft(&by_hand, &f.a1, 8, ALPHA1, info.n_head as usize, info.n_head_kv as usize);
    let refs: Vec<LoraTensorRef<'_>> = f.a1.iter().map(LoraTensor::as_ref).collect();
    let settings = PeftSettings { rank: 8, lora_alpha: ALPHA1, dropout: 0.0, rslora: false };
    write_peft_adapter(&written, &settings, &refs, &config).unwrap();
    let read = |dir: &Path| std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let (hand_bytes, written_bytes) = (read(&by_hand), read(&written));
    let (hand, ours) =
        (safetensors::SafeTensors::deserialize(&hand_bytes).unwrap(), safetensors::SafeTensors::deserialize(&written_bytes).unwrap());
    let mut names: Vec<String> = hand.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut our_names: Vec<String> = ours.names().into_iter().map(str::to_string).collect();
    our_names.sort();
    assert_eq!(names, our_names);
    for name in &names {
        let (h, o) = (hand.tensor(name).unwrap(), ours.tensor(name).unwrap());
        assert_eq!((h.shape(), h.data()), (o.shape(), o.data()), "{name}");
    }
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(written.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!((cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()), (Some(8), Some(f64::from(ALPHA1))));
    assert_eq!(cfg["target_modules"].as_array().map(Vec::len), Some(7));

    let mut bad = f.a1[0].clone();
    bad.name = "blk.0.not_a_projection.weight".into();
    let err = write_peft_adapter(&tmp_dir().join("peft-bad"), &settings, &[bad.as_ref()], &config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn changing_adapters_clears_the_kv_cache() {
    let f = fixture();
    let model = common::model();
    let adapter = model.load_adapter(&f.p1).unwrap();
    let tokens = model.tokenize(TEXT, true, false);

    let mut fresh = session(model);
    fresh.set_adapters(&[(adapter.clone(), 1.0)]).unwrap();
    let want = fresh.token_logprobs(&tokens, 1).unwrap().unwrap();

    // The same tokens in the cache from the base model must not be reused after the switch.
    let mut s = session(model);
    let base = s.token_logprobs(&tokens, 1).unwrap().unwrap();
    s.set_adapters(&[(adapter.clone(), 1.0)]).unwrap();
    let got = s.token_logprobs(&tokens, 1).unwrap().unwrap();
    assert_eq!(got, want);
    assert_ne!(got, base);
    // Setting the same set again keeps the cache (nothing changed).
    s.set_adapters(&[(adapter.clone(), 1.0)]).unwrap();
    let g = s.generate_from_tokens(&tokens, &Sampling::greedy(1), |_| true).unwrap();
    assert_eq!(g.reused_tokens, tokens.len() - 1);

    // A chat continues across a switch: the history is kept and re-read.
    let mut chat = session(model);
    chat.chat("Hi! My name is Ada.", &Sampling::greedy(12), |_| true).unwrap();
    chat.set_adapters(&[(adapter.clone(), 0.5)]).unwrap();
    let turn = chat.chat("What is my name?", &Sampling::greedy(12), |_| true).unwrap();
    assert_eq!(turn.reused_tokens, 0, "the cache was cleared by the switch");
    assert_eq!(chat.history().len(), 4 + usize::from(chat.history()[0].role == "system"));
    let mut other = session(model);
    other.set_adapters(&[(adapter, 0.5)]).unwrap();
    let again = other.complete_chat(&chat.history()[..chat.history().len() - 1], &Sampling::greedy(12), |_| true).unwrap();
    assert_eq!(again.text, turn.text, "the continued chat equals a fresh session over the same history");
}

fn expect_err(result: lamina::Result<Adapter>, kind: ErrorKind, needle: &str) {
    match result {
        Ok(_) => panic!("expected a {kind:?} error mentioning {needle:?}"),
        Err(e) => {
            let msg = e.to_string();
            println!("{kind:?}: {msg}");
            assert_eq!(e.kind(), kind, "{msg}");
            assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
        }
    }
}

fn write_raw(path: &Path, meta: &[(&str, MetaValue)], tensors: &[(&str, GgmlType, Vec<u64>)]) {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(*k, v.clone()).unwrap();
    }
    for (name, ty, dims) in tensors {
        let n: u64 = dims.iter().product();
        w.add_tensor(*name, *ty, dims, vec![0u8; (n as usize) * ty.type_size()]).unwrap();
    }
    w.write(path).unwrap();
}

#[test]
fn bad_adapters_are_specific_errors() {
    let model = common::model();
    let dir = tmp_dir().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let meta = |alpha: MetaValue| {
        vec![
            ("general.architecture", MetaValue::from("llama")),
            ("general.type", MetaValue::from("adapter")),
            ("adapter.type", MetaValue::from("lora")),
            ("adapter.lora.alpha", alpha),
        ]
    };
    let q = |suffix: &str, dims: Vec<u64>| (format!("blk.0.attn_q.weight.{suffix}"), GgmlType::F32, dims);
    let good = vec![q("lora_a", vec![576, 4]), q("lora_b", vec![4, 576])];
    let write = |name: &str, meta: Vec<(&str, MetaValue)>, tensors: Vec<(String, GgmlType, Vec<u64>)>| {
        let p = dir.join(name);
        let t: Vec<(&str, GgmlType, Vec<u64>)> = tensors.iter().map(|(n, ty, d)| (n.as_str(), *ty, d.clone())).collect();
        write_raw(&p, &meta, &t);
        p
    };

    // A correct minimal file loads.
    let ok = write("ok.gguf", meta(MetaValue::F32(4.0)), good.clone());
    model.load_adapter(&ok).unwrap();

    expect_err(model.load_adapter(dir.join("missing.gguf")), ErrorKind::Io, "missing.gguf");
    std::fs::write(dir.join("text.gguf"), "this is not a gguf file at all").unwrap();
    expect_err(model.load_adapter(dir.join("text.gguf")), ErrorKind::Data, "text.gguf");
    expect_err(model.load_adapter(lamina::paths::default_model_path()), ErrorKind::Data, "not a LoRA adapter");
    let p = write("alpha-u32.gguf", meta(MetaValue::U32(4)), good.clone());
    expect_err(model.load_adapter(p), ErrorKind::Data, "adapter.lora.alpha is a u32");
    let p = write("no-b.gguf", meta(MetaValue::F32(4.0)), vec![q("lora_a", vec![576, 4])]);
    expect_err(model.load_adapter(p), ErrorKind::Data, "only one of `.lora_a` and `.lora_b`");
    let p = write(
        "unknown-target.gguf",
        meta(MetaValue::F32(4.0)),
        vec![
            ("blk.99.attn_q.weight.lora_a".into(), GgmlType::F32, vec![576, 4]),
            ("blk.99.attn_q.weight.lora_b".into(), GgmlType::F32, vec![4, 576]),
        ],
    );
    expect_err(model.load_adapter(p), ErrorKind::Data, "does not exist in the model");
    let p = write("shape.gguf", meta(MetaValue::F32(4.0)), vec![q("lora_a", vec![576, 4]), q("lora_b", vec![4, 192])]);
    expect_err(model.load_adapter(p), ErrorKind::Data, "shape mismatch");
    let p = write("rank.gguf", meta(MetaValue::F32(4.0)), vec![q("lora_a", vec![576, 4]), q("lora_b", vec![8, 576])]);
    expect_err(model.load_adapter(p), ErrorKind::Data, "do not share a rank");
    let mut wrong_arch = meta(MetaValue::F32(4.0));
    wrong_arch[0].1 = MetaValue::from("qwen2");
    let p = write("arch.gguf", wrong_arch, good.clone());
    expect_err(model.load_adapter(p), ErrorKind::Data, "qwen2");
    let peft = dir.join("peft-no-config");
    std::fs::create_dir_all(&peft).unwrap();
    expect_err(model.load_adapter(&peft), ErrorKind::Data, "adapter_config.json");

    // Another model's adapter, and bad scales.
    let other = Model::load(lamina::paths::default_model_path(), &ModelParams::default()).unwrap();
    let foreign = other.load_adapter(&ok).unwrap();
    let mine = model.load_adapter(&ok).unwrap();
    let mut s = session(model);
    let before = greedy(&mut s, TEXT);
    let err = s.set_adapters(&[(foreign, 1.0)]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains("another model"), "{err}");
    let err = s.set_adapters(&[(mine.clone(), f32::NAN)]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains("NaN"), "{err}");
    let err = s.set_adapters(&[(mine.clone(), 1.0), (mine, 2.0)]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains("twice"), "{err}");
    // The process and the session keep working, unchanged.
    assert!(s.adapters().is_empty());
    assert_eq!(greedy(&mut s, TEXT), before);
}
