//! The native engine has one model pass: inference (`logits`), scoring (`loss`) and training
//! (`loss_and_grads`, which keeps each block's activations for the backward pass) all run it.
//! With an adapter whose B matrices are zero (a fresh LoRA adapter), the training path's
//! projections add exactly nothing, so every path must give the base model's numbers.

use lamina::native::{Example, LoraConfig, LoraWeights, NativeModel, NativeParams, PassOptions, Precision};

#[test]
fn inference_scoring_and_training_paths_agree_with_a_zero_b_adapter() {
    for precision in [Precision::F32, Precision::Auto] {
        let model = NativeModel::load(lamina::paths::default_model_path(), &NativeParams { n_threads: 2, precision }).unwrap();
        let tokenizer = model.load_tokenizer().unwrap();
        let tokens = tokenizer.encode("The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.", false).unwrap();
        let lora = LoraWeights::new(model.config(), &LoraConfig::default(), 11).unwrap();
        assert!(lora.layers.iter().flatten().flatten().all(|p| p.b.iter().all(|&v| v == 0.0)), "a fresh adapter has B = 0");

        let inference = model.logits(&tokens, 0).unwrap();
        let adapted = model.logits_with_lora(Some(&lora), &tokens, 0).unwrap();
        let max_diff = inference.data.iter().zip(&adapted.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("{:?}: {} logits, inference vs the adapted path: max |diff| {max_diff:e}", model.precision(), inference.data.len());
        assert!(max_diff <= 1e-6, "max diff {max_diff}");

        let example = Example { tokens: tokens.clone(), targets: vec![true; tokens.len()] };
        let batch = std::slice::from_ref(&example);
        let scored = model.loss(None, batch).unwrap();
        let mut grads = lora.zeros_like();
        let trained = model.loss_and_grads(&lora, batch, PassOptions::default(), &mut grads).unwrap();
        // The NLL from the logits, computed here in f64 from the inference path's output.
        let reference: f64 = (1..tokens.len())
            .map(|t| {
                let row = inference.row(t - 1);
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let z: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
                z.ln() - f64::from(row[tokens[t] as usize] - max)
            })
            .sum();
        println!("{:?}: summed NLL inference {reference:.6}, scoring {:.6}, training {:.6}", model.precision(), scored.nll_sum, trained.nll_sum);
        assert_eq!(scored.nll_sum, trained.nll_sum, "scoring and training run the same pass");
        assert!((scored.nll_sum - reference).abs() / reference < 1e-5, "scoring {} vs logits {reference}", scored.nll_sum);
    }
}
