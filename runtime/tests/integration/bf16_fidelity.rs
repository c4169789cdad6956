//! The native engine's bf16 path against its f32 path on the default model: perplexity within
//! 0.5%, LoRA gradients with cosine similarity at least 0.999, and the same losses to within
//! bf16's rounding. Skipped, with the reason printed, on CPUs without AVX512-BF16. (The
//! made-up-facts training test, lora_learns.rs, runs on the path the CPU picks, which is bf16
//! where it is available.)

use lamina::native::bf16;
use lamina::native::{Example, LoraConfig, LoraWeights, NativeModel, NativeParams, PassOptions, Precision};

fn load(precision: Precision) -> NativeModel {
    NativeModel::load(lamina::paths::default_model_path(), &NativeParams { n_threads: 2, precision, ..Default::default() }).unwrap()
}

/// GPL-3 cut into `n` windows of `len` tokens, every position after the first a target.
fn windows(model: &NativeModel, n: usize, len: usize) -> Vec<Example> {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("GPL-3 text");
    let tokens = model.load_tokenizer().unwrap().encode(&text, false).unwrap();
    tokens.chunks_exact(len).take(n).map(|c| Example { tokens: c.to_vec(), targets: vec![true; len] }).collect()
}

fn skip() -> bool {
    if !bf16::available() {
        println!("skipped: this CPU has no AVX512-BF16, so the native engine has no bf16 path here");
        return true;
    }
    false
}

#[test]
fn bf16_perplexity_is_within_half_a_percent_of_f32() {
    if skip() {
        return;
    }
    let (f32m, bf16m) = (load(Precision::F32), load(Precision::Bf16));
    assert_eq!((f32m.precision(), bf16m.precision()), (Precision::F32, Precision::Bf16));
    let batch = windows(&f32m, 4, 256);
    let ppl = |m: &NativeModel| {
        let l = m.loss(None, &batch).unwrap();
        (l.nll_sum / l.n_targets as f64).exp()
    };
    let (p32, p16) = (ppl(&f32m), ppl(&bf16m));
    let rel = (p16 - p32).abs() / p32;
    println!("GPL-3, 4 x 256 tokens: perplexity f32 {p32:.4}, bf16 {p16:.4}, relative difference {:.3}%", rel * 100.0);
    assert!(rel < 0.005, "bf16 perplexity {p16} is {:.3}% from f32's {p32}", rel * 100.0);
}

#[test]
fn bf16_lora_gradients_point_the_same_way_as_f32() {
    if skip() {
        return;
    }
    let (f32m, bf16m) = (load(Precision::F32), load(Precision::Bf16));
    // An adapter with non-zero B, so that every A gradient is non-zero too.
    let mut lora = LoraWeights::new(f32m.config(), &LoraConfig::default(), 5).unwrap();
    let mut rng = lamina::native::lora::SplitMix64(9);
    lora.for_each_tensor_mut(|_, _, _, t| t.iter_mut().for_each(|v| *v += (rng.next_f32() - 0.5) * 0.02));
    let batch = windows(&f32m, 2, 128);
    let grads = |m: &NativeModel| {
        let mut g = lora.zeros_like();
        let loss = m.loss_and_grads(&lora, &batch, PassOptions::default(), &mut g).unwrap();
        let mut flat = Vec::new();
        g.for_each_tensor_mut(|_, _, _, t| flat.extend(t.iter().map(|&v| f64::from(v))));
        (loss.nll_sum / loss.n_targets as f64, flat)
    };
    let ((l32, g32), (l16, g16)) = (grads(&f32m), grads(&bf16m));
    let dot: f64 = g32.iter().zip(&g16).map(|(a, b)| a * b).sum();
    let norm = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let cosine = dot / (norm(&g32) * norm(&g16));
    println!("LoRA gradients, {} parameters: cosine(bf16, f32) = {cosine:.6}; mean loss f32 {l32:.5}, bf16 {l16:.5}", g32.len());
    assert!(cosine >= 0.999, "cosine {cosine}");
    assert!((l16 - l32).abs() / l32 < 0.005, "losses {l16} vs {l32}");
}

#[test]
fn a_forced_precision_falls_back_with_a_reason_when_the_cpu_lacks_it() {
    let m = load(Precision::Bf16);
    if bf16::available() {
        assert_eq!(m.precision(), Precision::Bf16);
        assert!(m.precision_note().is_none());
    } else {
        assert_eq!(m.precision(), Precision::F32);
        assert!(m.precision_note().unwrap().contains("AVX512-BF16"), "{:?}", m.precision_note());
    }
    assert!(Precision::parse("fp8").unwrap_err().to_string().contains("auto, f32 or bf16"));
}

/// `Auto` takes the bf16 path only where AMX tiles are usable or the measured dot-product
/// rate pays for its conversions, and says why it did not where AVX512-BF16 is present but
/// slow.
#[test]
fn auto_chooses_bf16_only_where_it_is_measured_faster() {
    let speedup = bf16::dot_speedup();
    println!("AVX512-BF16 dot product vs f32 FMA, multiply-adds per second: {speedup:?} (bf16 taken from {}x)", bf16::MIN_SPEEDUP);
    println!("AMX tiles: {}", lamina::native::amx::unavailable_reason().unwrap_or_else(|| "usable".into()));
    assert_eq!(speedup.is_some(), bf16::available());
    let auto = load(Precision::Auto);
    let description = lamina::native::model::describe_kernels(Precision::Auto);
    println!("auto: {} ({description})", auto.precision().name());
    match speedup {
        Some(s) => {
            assert!(s.is_finite() && (0.25..8.0).contains(&s), "implausible bf16 speedup {s}");
            let amx = lamina::native::amx::available();
            assert_eq!(amx, description.contains("AMX tiles"), "{description}");
            let expected = if amx || s >= bf16::MIN_SPEEDUP { Precision::Bf16 } else { Precision::F32 };
            assert_eq!(auto.precision(), expected);
            if expected == Precision::F32 {
                assert!(description.contains("not bf16"), "{description}");
            }
        }
        None => assert_eq!(auto.precision(), Precision::F32),
    }
    assert!(auto.precision_note().is_none(), "Auto needs no note: {:?}", auto.precision_note());
}
