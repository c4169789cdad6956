//! Gradient check of the native engine's LoRA backward pass on a tiny random LLaMA model whose
//! base weights are quantized (Q8_0 and Q4_0, as in QLoRA) or F32: the analytic gradient of
//! every LoRA matrix (f32) must match central finite differences of an independent, plainly
//! written f64 implementation of the same model. The f64 model also checks the forward loss.

use std::path::PathBuf;

use lamina::native::lora::SplitMix64;
use lamina::native::{Example, LoraConfig, LoraTarget, LoraWeights, NativeModel, NativeParams, PassOptions, Precision};
use lamina::weights::dequant::dequantize_row;
use lamina::weights::gguf::{Gguf, GgufWriter, MetaValue};
use lamina::weights::GgmlType;

/// One layer's LoRA pairs in f64, indexed like `LoraTarget::ALL`: (A, B).
type RefLora = [Option<(Vec<f64>, Vec<f64>)>; 7];

const D: usize = 32; // hidden
const FF: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = 8;
const LAYERS: usize = 2;
const VOCAB: usize = 40;
const EPS: f32 = 1e-5;
const THETA: f32 = 10_000.0;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-lora-grad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Random bytes of a `rows × cols` tensor of `ty` with sane block scales.
fn random_tensor(rng: &mut SplitMix64, ty: GgmlType, rows: usize, cols: usize, amp: f32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rows {
        match ty {
            GgmlType::F32 => (0..cols).for_each(|_| out.extend(((rng.next_f32() * 2.0 - 1.0) * amp).to_le_bytes())),
            GgmlType::Q8_0 => {
                for _ in 0..cols / 32 {
                    out.extend(half::f16::from_f32(amp / 127.0).to_le_bytes());
                    (0..32).for_each(|_| out.push((rng.next_u64() % 255) as u8 ^ 0x80));
                }
            }
            GgmlType::Q4_0 => {
                for _ in 0..cols / 32 {
                    out.extend(half::f16::from_f32(amp / 8.0).to_le_bytes());
                    (0..16).for_each(|_| out.push(rng.next_u64() as u8));
                }
            }
            other => panic!("unsupported {other}"),
        }
    }
    out
}

/// A tiny llama GGUF: attention weights Q8_0, MLP Q4_0 (or all F32), norms F32 around 1.
fn tiny_model(name: &str, quantized: bool) -> PathBuf {
    let mut rng = SplitMix64(7);
    let mut w = GgufWriter::new();
    let meta: Vec<(&str, MetaValue)> = vec![
        ("general.architecture", "llama".into()),
        ("llama.block_count", (LAYERS as u32).into()),
        ("llama.embedding_length", (D as u32).into()),
        ("llama.feed_forward_length", (FF as u32).into()),
        ("llama.attention.head_count", (HEADS as u32).into()),
        ("llama.attention.head_count_kv", (KV_HEADS as u32).into()),
        ("llama.attention.layer_norm_rms_epsilon", EPS.into()),
        ("llama.rope.freq_base", THETA.into()),
        ("llama.context_length", 64u32.into()),
        ("llama.vocab_size", (VOCAB as u32).into()),
    ];
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    let (attn_ty, mlp_ty) = if quantized { (GgmlType::Q8_0, GgmlType::Q4_0) } else { (GgmlType::F32, GgmlType::F32) };
    let add = |w: &mut GgufWriter, name: String, ty: GgmlType, rows: usize, cols: usize, amp: f32, rng: &mut SplitMix64| {
        let data = random_tensor(rng, ty, rows, cols, amp);
        w.add_tensor(name, ty, &[cols as u64, rows as u64], data).unwrap();
    };
    add(&mut w, "token_embd.weight".into(), GgmlType::F32, VOCAB, D, 1.0, &mut rng);
    for l in 0..LAYERS {
        add(&mut w, format!("blk.{l}.attn_q.weight"), attn_ty, HEADS * HD, D, 0.5, &mut rng);
        add(&mut w, format!("blk.{l}.attn_k.weight"), attn_ty, KV_HEADS * HD, D, 0.5, &mut rng);
        add(&mut w, format!("blk.{l}.attn_v.weight"), attn_ty, KV_HEADS * HD, D, 0.5, &mut rng);
        add(&mut w, format!("blk.{l}.attn_output.weight"), attn_ty, D, HEADS * HD, 0.3, &mut rng);
        add(&mut w, format!("blk.{l}.ffn_gate.weight"), mlp_ty, FF, D, 0.5, &mut rng);
        add(&mut w, format!("blk.{l}.ffn_up.weight"), mlp_ty, FF, D, 0.5, &mut rng);
        add(&mut w, format!("blk.{l}.ffn_down.weight"), GgmlType::F32, D, FF, 0.3, &mut rng);
        for norm in ["attn_norm", "ffn_norm"] {
            let v: Vec<u8> = (0..D).flat_map(|_| (0.8 + 0.4 * rng.next_f32()).to_le_bytes()).collect();
            w.add_tensor(format!("blk.{l}.{norm}.weight"), GgmlType::F32, &[D as u64], v).unwrap();
        }
    }
    let v: Vec<u8> = (0..D).flat_map(|_| (0.8 + 0.4 * rng.next_f32()).to_le_bytes()).collect();
    w.add_tensor("output_norm.weight", GgmlType::F32, &[D as u64], v).unwrap();
    let path = tmp(name);
    w.write(&path).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// An independent f64 reference: plain loops, HF-style math on the GGUF (interleaved) layout.
// ---------------------------------------------------------------------------------------------

struct RefModel {
    embed: Vec<f64>,
    layers: Vec<RefLayer>,
    final_norm: Vec<f64>,
}

struct RefLayer {
    attn_norm: Vec<f64>,
    ffn_norm: Vec<f64>,
    w: [Vec<f64>; 7], // q k v o gate up down, row-major out × in
}

fn load_ref(path: &PathBuf) -> RefModel {
    let g = Gguf::open(path).unwrap();
    let tensor = |name: &str| -> Vec<f64> {
        let t = g.tensor(name).unwrap();
        let mut out = vec![0f32; t.n_elements() as usize];
        dequantize_row(t.ggml_type(), t.data(), &mut out).unwrap();
        out.into_iter().map(f64::from).collect()
    };
    let names = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
    RefModel {
        embed: tensor("token_embd.weight"),
        layers: (0..LAYERS)
            .map(|l| RefLayer {
                attn_norm: tensor(&format!("blk.{l}.attn_norm.weight")),
                ffn_norm: tensor(&format!("blk.{l}.ffn_norm.weight")),
                w: std::array::from_fn(|i| tensor(&format!("blk.{l}.{}.weight", names[i]))),
            })
            .collect(),
        final_norm: tensor("output_norm.weight"),
    }
}

fn rms(x: &[f64], w: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + f64::from(EPS)).sqrt();
    x.iter().zip(w).map(|(a, b)| a * r * b).collect()
}

/// `W x + s B (A x)` for one row.
fn lin(w: &[f64], x: &[f64], lora: Option<(&[f64], &[f64], usize)>, s: f64) -> Vec<f64> {
    let n_in = x.len();
    let n_out = w.len() / n_in;
    let mut y: Vec<f64> = (0..n_out).map(|o| (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum()).collect();
    if let Some((a, b, r)) = lora {
        let u: Vec<f64> = (0..r).map(|j| (0..n_in).map(|i| a[j * n_in + i] * x[i]).sum()).collect();
        for (o, yo) in y.iter_mut().enumerate() {
            *yo += s * (0..r).map(|j| b[o * r + j] * u[j]).sum::<f64>();
        }
    }
    y
}

fn rope(x: &mut [f64], n_heads: usize, pos: usize) {
    for h in 0..n_heads {
        for i in 0..HD / 2 {
            let freq = f64::from(THETA).powf(-2.0 * i as f64 / HD as f64);
            let (c, s) = ((pos as f64 * freq).cos(), (pos as f64 * freq).sin());
            let (a, b) = (h * HD + 2 * i, h * HD + 2 * i + 1);
            let (x0, x1) = (x[a], x[b]);
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/// Summed NLL of the example's targets; `lora[layer][target] = (A, B)` in f64.
fn ref_loss(m: &RefModel, lora: &[RefLora], rank: usize, s: f64, ex: &Example) -> f64 {
    let n = ex.tokens.len();
    let mut x: Vec<Vec<f64>> = ex.tokens.iter().map(|&t| m.embed[t as usize * D..(t as usize + 1) * D].to_vec()).collect();
    for (l, layer) in m.layers.iter().enumerate() {
        let lo = |i: usize| lora[l][i].as_ref().map(|(a, b)| (a.as_slice(), b.as_slice(), rank));
        let h: Vec<Vec<f64>> = x.iter().map(|r| rms(r, &layer.attn_norm)).collect();
        let mut q: Vec<Vec<f64>> = h.iter().map(|r| lin(&layer.w[0], r, lo(0), s)).collect();
        let mut k: Vec<Vec<f64>> = h.iter().map(|r| lin(&layer.w[1], r, lo(1), s)).collect();
        let v: Vec<Vec<f64>> = h.iter().map(|r| lin(&layer.w[2], r, lo(2), s)).collect();
        for p in 0..n {
            rope(&mut q[p], HEADS, p);
            rope(&mut k[p], KV_HEADS, p);
        }
        let mut att = vec![vec![0.0; HEADS * HD]; n];
        for hh in 0..HEADS {
            let kv = hh / (HEADS / KV_HEADS);
            for i in 0..n {
                let sc: Vec<f64> =
                    (0..=i).map(|j| (0..HD).map(|c| q[i][hh * HD + c] * k[j][kv * HD + c]).sum::<f64>() / (HD as f64).sqrt()).collect();
                let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|v| (v - mx).exp()).sum();
                for c in 0..HD {
                    att[i][hh * HD + c] = (0..=i).map(|j| (sc[j] - mx).exp() / z * v[j][kv * HD + c]).sum();
                }
            }
        }
        for p in 0..n {
            let o = lin(&layer.w[3], &att[p], lo(3), s);
            x[p].iter_mut().zip(o).for_each(|(a, b)| *a += b);
            let h2 = rms(&x[p], &layer.ffn_norm);
            let g = lin(&layer.w[4], &h2, lo(4), s);
            let u = lin(&layer.w[5], &h2, lo(5), s);
            let act: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let dn = lin(&layer.w[6], &act, lo(6), s);
            x[p].iter_mut().zip(dn).for_each(|(a, b)| *a += b);
        }
    }
    let mut nll = 0.0;
    for t in 1..n {
        if !ex.targets[t] {
            continue;
        }
        let h = rms(&x[t - 1], &m.final_norm);
        let logits: Vec<f64> = (0..VOCAB).map(|v| (0..D).map(|c| m.embed[v * D + c] * h[c]).sum()).collect();
        let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logits.iter().map(|v| (v - mx).exp()).sum();
        nll += z.ln() + mx - logits[ex.tokens[t] as usize];
    }
    nll
}

fn to_f64(w: &LoraWeights) -> Vec<RefLora> {
    w.layers
        .iter()
        .map(|layer| {
            std::array::from_fn(|i| {
                layer[i].as_ref().map(|p| (p.a.iter().map(|&v| f64::from(v)).collect(), p.b.iter().map(|&v| f64::from(v)).collect()))
            })
        })
        .collect()
}

fn examples() -> Vec<Example> {
    let a: Vec<u32> = vec![3, 17, 5, 22, 9, 31, 2, 14, 8];
    let b: Vec<u32> = vec![11, 4, 39, 0, 25, 6];
    vec![
        Example { targets: (0..a.len()).map(|t| t > 2).collect(), tokens: a },
        Example { targets: vec![false, true, true, false, true, true], tokens: b },
    ]
}

fn check_gradients(quantized: bool) {
    let path = tiny_model(if quantized { "tiny-q.gguf" } else { "tiny-f32.gguf" }, quantized);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let reference = load_ref(&path);
    let config = LoraConfig { rank: 3, alpha: 6.0, dropout: 0.0, rslora: false, targets: LoraTarget::ALL.to_vec() };
    let mut lora = LoraWeights::new(model.config(), &config, 42).unwrap();
    // Non-zero B, so that the gradients of A are not zero.
    let mut rng = SplitMix64(99);
    lora.for_each_tensor_mut(|_, _, is_b, t| {
        if is_b {
            t.iter_mut().for_each(|v| *v = (rng.next_f32() - 0.5) * 0.4);
        }
    });
    let batch = examples();
    let mut grads = lora.zeros_like();
    let loss = model.loss_and_grads(&lora, &batch, PassOptions::default(), &mut grads).unwrap();
    let s = f64::from(config.scale());
    let ref_total = |w: &[RefLora]| batch.iter().map(|e| ref_loss(&reference, w, config.rank, s, e)).sum::<f64>();
    let base = to_f64(&lora);
    let ref_value = ref_total(&base);
    let rel_loss = (loss.nll_sum - ref_value).abs() / ref_value;
    println!(
        "quantized={quantized}: loss native {:.8} vs f64 reference {:.8} (relative {rel_loss:.2e}), {} targets",
        loss.nll_sum, ref_value, loss.n_targets
    );
    assert!(rel_loss < 1e-5, "forward loss differs: {rel_loss}");
    assert_eq!(loss.n_targets, 10);

    // Central differences in f64 for every element of every LoRA matrix.
    let h = 1e-5;
    let mut worst = 0.0f64;
    let mut checked = 0usize;
    let mut analytic = Vec::new();
    grads.for_each_tensor(|l, t, is_b, g| analytic.push((l, t, is_b, g.to_vec())));
    for (l, t, is_b, g) in analytic {
        let len = g.len();
        for (idx, &ga) in g.iter().enumerate().take(len) {
            let mut plus = base.clone();
            let mut minus = base.clone();
            let slot = |w: &mut Vec<RefLora>, delta: f64| {
                let (a, b) = w[l][t.index()].as_mut().unwrap();
                if is_b {
                    b[idx] += delta;
                } else {
                    a[idx] += delta;
                }
            };
            slot(&mut plus, h);
            slot(&mut minus, -h);
            let fd = (ref_total(&plus) - ref_total(&minus)) / (2.0 * h);
            let err = (f64::from(ga) - fd).abs() / (fd.abs() + f64::from(ga).abs()).max(1e-2);
            worst = worst.max(err);
            checked += 1;
            assert!(
                err < 2e-3,
                "layer {l} {} {}[{idx}]: analytic {ga} vs finite difference {fd}",
                t.hf_name(),
                if is_b { "B" } else { "A" }
            );
        }
    }
    println!("quantized={quantized}: {checked} LoRA parameters checked, max relative error {worst:.2e}");
}

/// Full-parameter gradients (embedding tied with the LM head, norms, every projection) against
/// central differences of the f64 reference, starting from the file's weights.
fn check_full_gradients(quantized: bool) {
    let path = tiny_model(if quantized { "tiny-full-q.gguf" } else { "tiny-full-f32.gguf" }, quantized);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let reference = load_ref(&path);
    let weights = model.full_weights();
    assert!(weights.lm_head.is_none(), "the tiny model ties its LM head to the embedding");
    assert_eq!(
        weights.n_params(),
        reference.embed.len()
            + reference.final_norm.len()
            + reference.layers.iter().map(|l| 2 * D + l.w.iter().map(Vec::len).sum::<usize>()).sum::<usize>()
    );
    let batch = examples();
    let mut grads = weights.zeros_like();
    let loss = model.loss_and_full_grads(&weights, &batch, PassOptions::default(), &mut grads).unwrap();
    let no_lora: Vec<RefLora> = (0..LAYERS).map(|_| Default::default()).collect();
    let ref_total = |m: &RefModel| batch.iter().map(|e| ref_loss(m, &no_lora, 1, 0.0, e)).sum::<f64>();
    let ref_value = ref_total(&reference);
    let rel_loss = (loss.nll_sum - ref_value).abs() / ref_value;
    println!("full, quantized={quantized}: loss native {:.8} vs f64 reference {ref_value:.8} (relative {rel_loss:.2e})", loss.nll_sum);
    assert!(rel_loss < 1e-5, "forward loss differs: {rel_loss}");
    assert_eq!(model.loss_full(&weights, &batch).unwrap().nll_sum, loss.nll_sum, "scoring and training run the same pass");

    // (name, analytic gradient, accessor of the same tensor in the reference, stride).
    type Slot = fn(&mut RefModel, usize) -> &mut f64;
    let mut cases: Vec<crate::common::GradCase<RefModel>> = Vec::new();
    let embed: Slot = |m, i| &mut m.embed[i];
    let final_norm: Slot = |m, i| &mut m.final_norm[i];
    cases.push(("token_embd (tied head)".into(), grads.embed.clone(), Box::new(embed), 1));
    cases.push(("output_norm".into(), grads.final_norm.clone(), Box::new(final_norm), 1));
    for l in 0..LAYERS {
        let b = &grads.blocks[l];
        cases.push((
            format!("blk.{l}.attn_norm"),
            b.attn_norm.clone(),
            Box::new(move |m: &mut RefModel, i| &mut m.layers[l].attn_norm[i]),
            1,
        ));
        cases.push((format!("blk.{l}.ffn_norm"), b.ffn_norm.clone(), Box::new(move |m: &mut RefModel, i| &mut m.layers[l].ffn_norm[i]), 1));
        for t in LoraTarget::ALL {
            cases.push((
                format!("blk.{l}.{}", t.gguf_name()),
                b.proj[t.index()].clone(),
                Box::new(move |m: &mut RefModel, i| &mut m.layers[l].w[t.index()][i]),
                7,
            ));
        }
    }
    let (worst, checked) = crate::common::check_central_differences(&mut load_ref(&path), &cases, ref_total);
    println!("full, quantized={quantized}: {checked} of {} parameters checked, max relative error {worst:.2e}", weights.n_params());
}

#[test]
fn full_gradients_match_finite_differences_on_a_quantized_base() {
    check_full_gradients(true);
}

#[test]
fn full_gradients_match_finite_differences_on_an_f32_base() {
    check_full_gradients(false);
}

#[test]
fn full_training_rejects_mismatched_weights_and_estimates_its_memory() {
    let path = tiny_model("tiny-full-bad.gguf", true);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 1, precision: Precision::F32, ..Default::default() }).unwrap();
    let weights = model.full_weights();
    let mut bad = weights.clone();
    bad.blocks[1].proj[2].pop();
    let err = model.loss_full(&bad, &examples()).unwrap_err().to_string();
    assert!(err.contains("shapes"), "{err}");
    let mut grads = weights.zeros_like();
    grads.lm_head = Some(vec![0.0; weights.embed.len()]);
    let err = model.loss_and_full_grads(&weights, &examples(), PassOptions::default(), &mut grads).unwrap_err().to_string();
    assert!(err.contains("tie"), "{err}");
    // Weights, gradients and two AdamW moments in f32, plus activations and the file.
    let bytes = model.full_training_bytes(1000);
    assert!(bytes >= 16 * weights.n_params() as u64 + 1000, "{bytes}");
    model.check_full_training_fits(0).unwrap();
    let err = model.check_full_training_fits(usize::MAX / 2).unwrap_err().to_string();
    assert!(err.contains("GiB") && err.contains("available"), "{err}");
}

#[test]
fn lora_gradients_match_finite_differences_on_a_quantized_base() {
    check_gradients(true);
}

#[test]
fn lora_gradients_match_finite_differences_on_an_f32_base() {
    check_gradients(false);
}

#[test]
fn checkpointing_and_dropout_masks_are_reproducible() {
    let path = tiny_model("tiny-ckpt.gguf", true);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let config =
        LoraConfig { rank: 2, alpha: 4.0, dropout: 0.25, rslora: true, targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down] };
    let mut lora = LoraWeights::new(model.config(), &config, 1).unwrap();
    lora.for_each_tensor_mut(|_, _, is_b, t| {
        if is_b {
            t.iter_mut().enumerate().for_each(|(i, v)| *v = ((i % 7) as f32 - 3.0) * 0.05);
        }
    });
    let batch = examples();
    let run_with = |model: &NativeModel, checkpointing: bool, activation_budget: Option<usize>, seed: u64| {
        let mut g = lora.zeros_like();
        let loss = model
            .loss_and_grads(&lora, &batch, PassOptions { dropout_seed: Some(seed), checkpointing, activation_budget }, &mut g)
            .unwrap();
        (loss, g)
    };
    let run = |checkpointing: bool, seed: u64| run_with(&model, checkpointing, None, seed);
    let (l1, g1) = run(false, 5);
    let (l2, g2) = run(true, 5);
    assert_eq!(l1, l2, "checkpointing changed the loss");
    assert_eq!(g1, g2, "checkpointing changed the gradients");
    // A budget for one block's activations: the first block is recomputed, the second kept.
    let lens: Vec<usize> = batch.iter().map(|e| e.tokens.len()).collect();
    let one_block = model.tape_bytes(Some(&lora), &lens);
    let (l4, g4) = run_with(&model, false, Some(one_block), 5);
    assert!(l4 == l1 && g4 == g1, "a partial activation budget changed the result");
    // Every sum runs in an order that does not depend on the thread count.
    let three = NativeModel::load(&path, &NativeParams { n_threads: 3, precision: Precision::F32, ..Default::default() }).unwrap();
    let (l5, g5) = run_with(&three, false, None, 5);
    assert!(l5 == l1 && g5 == g1, "the thread count changed the result");
    let (l3, _) = run(false, 6);
    assert_ne!(l1.nll_sum, l3.nll_sum, "a different dropout seed should draw different masks");
    // Without dropout the loss equals the evaluation loss.
    let mut g = lora.zeros_like();
    let train = model.loss_and_grads(&lora, &batch, PassOptions::default(), &mut g).unwrap();
    let eval = model.loss(Some(&lora), &batch).unwrap();
    assert!((train.nll_sum - eval.nll_sum).abs() < 1e-9);
}

#[test]
fn bad_batches_are_rejected() {
    let path = tiny_model("tiny-bad.gguf", false);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 1, precision: Precision::F32, ..Default::default() }).unwrap();
    let lora = LoraWeights::new(model.config(), &LoraConfig::default(), 0).unwrap();
    let mut g = lora.zeros_like();
    let opts = PassOptions::default();
    let err = model.loss_and_grads(&lora, &[], opts, &mut g).unwrap_err();
    assert!(err.to_string().contains("no examples"), "{err}");
    let short = Example { tokens: vec![1], targets: vec![true] };
    assert!(model.loss_and_grads(&lora, &[short], opts, &mut g).unwrap_err().to_string().contains("at least 2"));
    let oov = Example { tokens: vec![1, VOCAB as u32], targets: vec![false, true] };
    assert!(model.loss_and_grads(&lora, &[oov], opts, &mut g).unwrap_err().to_string().contains("outside the vocabulary"));
    let flags = Example { tokens: vec![1, 2, 3], targets: vec![true] };
    assert!(model.loss_and_grads(&lora, &[flags], opts, &mut g).unwrap_err().to_string().contains("target flags"));
    let other = LoraWeights::new(model.config(), &LoraConfig { rank: 4, ..LoraConfig::default() }, 0).unwrap();
    let mut wrong = other.zeros_like();
    wrong.layers.pop();
    assert!(model.loss_and_grads(&lora, &examples(), opts, &mut wrong).is_err());
    assert!(LoraWeights::new(model.config(), &LoraConfig { rank: 0, ..LoraConfig::default() }, 0).is_err());
    assert!(LoraWeights::new(model.config(), &LoraConfig { dropout: 1.0, ..LoraConfig::default() }, 0).is_err());
    assert!(LoraTarget::parse("q_proj").is_ok() && LoraTarget::parse("attn_output").is_ok() && LoraTarget::parse("lm_head").is_err());
    // Still usable.
    assert!(model.loss_and_grads(&lora, &examples(), opts, &mut g).is_ok());
}

/// A training run is bit-reproducible: the same data, seed and settings give the same adapter
/// on 1, 2 or 3 threads (every sum of the pass and of the optimizer runs in a fixed order),
/// with dropout and gradient accumulation on.
#[test]
fn training_runs_are_bit_identical_across_runs_and_thread_counts() {
    use lamina::native::train::{TrainConfig, Trainer};
    let path = tiny_model("tiny-repro.gguf", true);
    let config = TrainConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        batch_size: 2,
        grad_accum: 2,
        steps: 4,
        warmup_steps: 1,
        learning_rate: 1e-2,
        seed: 3,
        ..TrainConfig::default()
    };
    let run = |threads: usize| {
        let model =
            NativeModel::load(&path, &NativeParams { n_threads: threads, precision: Precision::F32, ..Default::default() }).unwrap();
        let mut trainer = Trainer::new(&model, config.clone(), examples(), Vec::new()).unwrap();
        for _ in 0..config.steps {
            trainer.train_step().unwrap();
        }
        (trainer.losses().to_vec(), trainer.lora().clone())
    };
    let first = run(2);
    assert!(first.0.iter().all(|l| l.is_finite()) && first.0.len() == 4);
    for threads in [2, 1, 3] {
        let again = run(threads);
        assert!(again.0 == first.0 && again.1 == first.1, "{threads} threads: losses {:?} vs {:?}", again.0, first.0);
    }
}

/// A run whose loss or gradient stops being finite (here: a learning rate that blows the
/// adapter's weights up to overflow) stops with an error naming the step and the last good
/// checkpoint, and the step's update is withheld: the adapter is still finite, so nothing
/// non-finite is saved, and a checkpoint from before is left as it was.
#[test]
fn a_diverging_run_stops_with_finite_weights_and_names_its_last_checkpoint() {
    use lamina::native::train::{TrainConfig, Trainer};
    let path = tiny_model("tiny-diverge.gguf", true);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let config = TrainConfig {
        rank: 4,
        alpha: 8.0,
        batch_size: 2,
        steps: 50,
        warmup_steps: 0,
        learning_rate: 1e30,
        checkpoint_every: 1,
        seed: 1,
        ..TrainConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("lamina-diverge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut trainer = Trainer::new(&model, config, examples(), Vec::new()).unwrap();
    let err = trainer.run(Some(&dir), |_| true).expect_err("a learning rate of 1e30 must diverge");
    let message = err.to_string();
    println!("{message}");
    let step = trainer.step();
    assert!((2..50).contains(&step), "diverged at step {step}");
    assert!(message.contains(&format!("diverged at step {step}")), "{message}");
    let last = dir.join(format!("checkpoint-{:08}.safetensors", step - 1));
    assert!(last.is_file() && message.contains(&last.display().to_string()), "{message}");
    assert!(!trainer.losses()[step - 1].is_finite(), "the stopping step's loss: {:?}", trainer.losses());
    assert!(trainer.losses()[..step - 1].iter().all(|l| l.is_finite()), "{:?}", trainer.losses());
    let mut finite = true;
    trainer.lora().for_each_tensor(|_, _, _, values| finite &= values.iter().all(|v| v.is_finite()));
    assert!(finite, "the withheld update left non-finite adapter weights");
    assert!(!dir.join(format!("checkpoint-{step:08}.safetensors")).exists(), "a checkpoint of the diverged step was written");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A full fine-tune through the trainer: the loss falls on a batch it trains on, a run stopped
/// at a checkpoint and resumed ends with exactly the weights of an uninterrupted run, and the
/// exported GGUF loads back with the trained weights (F32) and the same loss. A LoRA checkpoint
/// is not taken for a full one.
#[test]
fn full_fine_tuning_trains_resumes_exactly_and_exports_a_model() {
    use lamina::native::full::export_full_gguf;
    use lamina::native::train::{Schedule, TrainConfig, Trainer};
    use lamina::native::FullWeights;
    let path = tiny_model("tiny-full-train.gguf", true);
    let model = NativeModel::load(&path, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    let config = TrainConfig {
        batch_size: 2,
        steps: 6,
        warmup_steps: 0,
        learning_rate: 3e-3,
        schedule: Schedule::Constant,
        seed: 4,
        ..TrainConfig::default()
    };
    let batch = examples();
    let mut trainer: Trainer<'_, FullWeights> = Trainer::new(&model, config.clone(), batch.clone(), Vec::new()).unwrap();
    let before = model.loss_full(trainer.params(), &batch).unwrap().nll_sum;
    for _ in 0..3 {
        trainer.train_step().unwrap();
    }
    let ckpt = tmp("full-ckpt");
    trainer.save_checkpoint(&ckpt).unwrap();
    for _ in 3..6 {
        trainer.train_step().unwrap();
    }
    let after = model.loss_full(trainer.params(), &batch).unwrap().nll_sum;
    println!("full fine-tune of the tiny model: summed NLL {before:.4} before, {after:.4} after 6 steps");
    assert!(after < 0.8 * before, "the loss did not fall: {before} -> {after}");

    let mut resumed: Trainer<'_, FullWeights> = Trainer::resume(&model, &ckpt, batch.clone(), Vec::new(), 0).unwrap();
    assert_eq!(resumed.step(), 3);
    for _ in 3..6 {
        resumed.train_step().unwrap();
    }
    assert!(resumed.params() == trainer.params() && resumed.losses() == trainer.losses(), "the resumed run differs");
    let err = Trainer::<'_, LoraWeights>::resume(&model, &ckpt, batch.clone(), Vec::new(), 0)
        .err()
        .expect("a full checkpoint is not a LoRA one")
        .to_string();
    assert!(err.contains("full") && err.contains("lora"), "{err}");

    let out = tmp("tiny-full-trained.gguf");
    export_full_gguf(trainer.params(), &model, &out).unwrap();
    let back = NativeModel::load(&out, &NativeParams { n_threads: 2, precision: Precision::F32, ..Default::default() }).unwrap();
    assert!(&back.full_weights() == trainer.params(), "the exported model holds other weights");
    assert_eq!(back.loss(None, &batch).unwrap().nll_sum, after, "the exported model scores differently");
}
