//! End to end: the native trainer fine-tunes the default model (Q4_1, QLoRA-style) on 30
//! made-up facts (tests/data/made_up_facts.jsonl, invented for this test), the adapter is
//! exported as GGUF and PEFT, and llama.cpp serves it:
//!
//! - it learns: greedy chat answers through llama.cpp go from about 0% exact match without the
//!   adapter to at least 90% with it;
//! - parity: llama.cpp with the exported adapter and the native engine with the in-memory one
//!   agree at the base model's parity tolerance (see native_parity.rs for why the top-1 bar
//!   is set against llama.cpp's f32 path on the same weights);
//! - round trip: importing the exported GGUF and PEFT files gives the in-memory adapter back.
//!
//! CI runs a reduced budget; `LAMINA_FULL_TRAINING=1` trains longer.

use crate::common;

use lamina::eval::squad::exact_match;
use lamina::native::lora_io::{export_gguf, export_peft, import_adapter};
use lamina::native::train::{Schedule, TrainConfig, Trainer};
use lamina::native::train_data::{chat_template_from_gguf, load_dataset, DataOptions};
use lamina::native::{convert, LoraWeights, NativeModel, NativeParams, Tokenizer};
use lamina::weights::gguf::Gguf;
use lamina::{Model, ModelParams, Sampling, Session, SessionParams};

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn facts() -> Vec<(String, String)> {
    std::fs::read_to_string(repo("tests/data/made_up_facts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["messages"][0]["content"].as_str().unwrap().to_string(), v["messages"][1]["content"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Exact-match rate of greedy chat answers through llama.cpp.
fn accuracy(session: &mut Session, facts: &[(String, String)], show: usize) -> f64 {
    let mut hits = 0;
    for (i, (q, a)) in facts.iter().enumerate() {
        session.reset();
        let reply = session.chat(q, &Sampling::greedy(16), |_| true).unwrap().text;
        let em = exact_match(reply.trim(), std::slice::from_ref(a)).unwrap();
        if i < show {
            println!("  {q} -> {:?} (gold {a:?})", reply.trim());
        }
        hits += usize::from(em > 0.0);
    }
    hits as f64 / facts.len() as f64
}

fn softmax(l: &[f32]) -> Vec<f64> {
    let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = l.iter().map(|&v| f64::from(v - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// (mean KL(ref || other), top-1 agreement).
fn compare(reference: &[Vec<f32>], other: &[Vec<f32>]) -> (f64, f64) {
    let argmax = |l: &[f32]| (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b });
    let mut kl = 0.0;
    let mut agree = 0;
    for (r, o) in reference.iter().zip(other) {
        let (p, q) = (softmax(r), softmax(o));
        kl += p.iter().zip(&q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q.max(1e-300)).ln()).sum::<f64>();
        agree += usize::from(argmax(r) == argmax(o));
    }
    (kl / reference.len() as f64, agree as f64 / reference.len() as f64)
}

fn llama_logits(session: &mut Session, tokens: &[i32]) -> Vec<Vec<f32>> {
    let mut rows = Vec::new();
    assert!(session.teacher_forced_logits(tokens, 1, |_, l| rows.push(l.to_vec())).unwrap());
    rows
}

#[test]
fn fine_tuning_on_made_up_facts_teaches_them_and_llama_cpp_serves_the_adapter() {
    let full = std::env::var_os("LAMINA_FULL_TRAINING").is_some();
    let path = lamina::paths::default_model_path();
    let native = NativeModel::load(&path, &NativeParams { n_threads: 2, ..NativeParams::default() }).unwrap();
    let gguf = Gguf::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let template = chat_template_from_gguf(&gguf, &tok).expect("the default model has a chat template");
    let data = load_dataset(
        &repo("tests/data/made_up_facts.jsonl"),
        &tok,
        Some(&template),
        &DataOptions { max_len: 256, ..DataOptions::default() },
    )
    .unwrap();
    assert_eq!(data.train.len(), 30);
    let facts = facts();

    let model = common::model();
    let params = SessionParams { n_ctx: 1024, n_threads: 2, ..SessionParams::default() };
    let mut session = Session::new(model, &params).unwrap();
    let before = accuracy(&mut session, &facts, 2);

    let config = TrainConfig {
        rank: 16,
        alpha: 32.0,
        learning_rate: 3e-3,
        warmup_steps: 5,
        schedule: Schedule::Cosine,
        batch_size: 6,
        steps: if full { 120 } else { 30 },
        seed: 1,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&native, config, data.train, Vec::new()).unwrap();
    let start = std::time::Instant::now();
    trainer
        .run(None, |p| {
            if p.step % 10 == 0 || p.step == 1 {
                println!(
                    "step {:>3}/{} loss {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s",
                    p.step, p.total_steps, p.loss, p.learning_rate, p.grad_norm, p.tokens_per_second
                );
            }
            true
        })
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();

    let dir = std::env::temp_dir().join(format!("lamina-lora-learns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let adapter_path = dir.join("facts.gguf");
    let peft_dir = dir.join("facts-peft");
    export_gguf(trainer.lora(), &native, &adapter_path).unwrap();
    export_peft(trainer.lora(), &native, &peft_dir).unwrap();

    // Round trips.
    let from_gguf: LoraWeights = import_adapter(&adapter_path, &native).unwrap();
    let from_peft: LoraWeights = import_adapter(&peft_dir, &native).unwrap();
    assert_eq!(from_gguf.layers, trainer.lora().layers, "GGUF export/import changed the adapter");
    assert_eq!(from_peft.layers, trainer.lora().layers, "PEFT export/import changed the adapter");
    assert!((from_gguf.config.scale() - trainer.lora().config.scale()).abs() < 1e-6);

    // It learns, served by llama.cpp.
    let adapter = model.load_adapter(&adapter_path).unwrap();
    session.set_adapters(&[(adapter, 1.0)]).unwrap();
    let after = accuracy(&mut session, &facts, 4);
    println!(
        "exact match on {} made-up facts through llama.cpp: before {:.1}%, after {:.1}% ({} steps, {seconds:.0} s of training)",
        facts.len(),
        before * 100.0,
        after * 100.0,
        trainer.step()
    );
    assert!(before <= 0.1, "the base model already knows {before}");
    assert!(after >= 0.9, "only {after} learned");

    // Parity on prose plus the facts' own prompts, teacher-forced.
    let mut text = std::fs::read_to_string(repo("tests/data/prose.txt")).unwrap();
    text.push_str(&facts.iter().take(8).map(|(q, a)| format!("{q} {a}\n")).collect::<String>());
    let tokens = model.tokenize(&text, false, false);
    let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
    let logits = native.logits_with_lora(Some(trainer.lora()), &ids[..ids.len() - 1], 0).unwrap();
    let ours: Vec<Vec<f32>> = (0..logits.rows()).map(|i| logits.row(i).to_vec()).collect();
    session.reset();
    let quantized = llama_logits(&mut session, &tokens);
    let (kl_q, top1_q) = compare(&quantized, &ours);

    let hf = dir.join("hf");
    let f32_path = dir.join("model-f32.gguf");
    convert::gguf_to_safetensors(&path, &hf, convert::Dtype::F32, |_, _| true).unwrap().unwrap();
    convert::safetensors_to_gguf(&hf, &f32_path, |_, _| true).unwrap().unwrap();
    let f32_model = Model::load(&f32_path, &ModelParams::default()).unwrap();
    let mut f32_session = Session::new(&f32_model, &params).unwrap();
    f32_session.set_adapters(&[(f32_model.load_adapter(&adapter_path).unwrap(), 1.0)]).unwrap();
    let reference = llama_logits(&mut f32_session, &tokens);
    let (kl_f, top1_f) = compare(&reference, &ours);
    let (_, llama_self) = compare(&reference, &quantized);
    println!(
        "adapter parity over {} positions: native vs llama.cpp Q4_1 top-1 {:.2}% KL {kl_q:.5}; vs llama.cpp F32 top-1 {:.2}% KL {kl_f:.2e}; llama.cpp Q4_1 vs F32 top-1 {:.2}%",
        ours.len(),
        top1_q * 100.0,
        top1_f * 100.0,
        llama_self * 100.0
    );
    assert!(kl_q <= 0.005 && kl_f <= 0.005, "KL {kl_q} / {kl_f}");
    // The f32 path agrees with llama.cpp's F32 model on 99% of positions; the bf16 path rounds
    // both operands of the weight products, which costs about a point more (its fidelity is
    // checked by bf16_fidelity.rs: perplexity within 0.5%, gradient cosine >= 0.999).
    let min_top1 = if native.precision() == lamina::native::Precision::Bf16 { 0.98 } else { 0.99 };
    assert!(top1_f >= min_top1, "top-1 vs llama.cpp F32 {top1_f} (at least {min_top1} on the {} path)", native.precision().name());
    assert!(top1_q + 0.01 >= llama_self, "top-1 vs llama.cpp Q4_1 {top1_q} below llama.cpp's own {llama_self}");
    drop((f32_session, f32_model));
    std::fs::remove_dir_all(&dir).unwrap();
}
