//! The native engine has one model pass: inference (`logits`), scoring (`loss`) and training
//! (`loss_and_grads`, which keeps each block's activations for the backward pass) all run it.
//! With an adapter whose B matrices are zero (a fresh LoRA adapter), the training path's
//! projections add exactly nothing, so every path must give the base model's numbers.

use lamina::native::{Example, LoraConfig, LoraWeights, NativeModel, NativeParams, PassOptions, Precision};

#[test]
fn inference_scoring_and_training_paths_agree_with_a_zero_b_adapter() {
    // Bf16 falls back to f32 (with a note) on a CPU without AVX512-BF16.
    for precision in [Precision::F32, Precision::Bf16] {
        let model = NativeModel::load(lamina::paths::default_model_path(), &NativeParams { n_threads: 2, precision, ..Default::default() })
            .unwrap();
        let tokenizer = model.load_tokenizer().unwrap();
        let tokens = tokenizer
            .encode("The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times.", false)
            .unwrap();
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
        println!(
            "{:?}: summed NLL inference {reference:.6}, scoring {:.6}, training {:.6}",
            model.precision(),
            scored.nll_sum,
            trained.nll_sum
        );
        assert_eq!(scored.nll_sum, trained.nll_sum, "scoring and training run the same pass");
        assert!((scored.nll_sum - reference).abs() / reference < 1e-5, "scoring {} vs logits {reference}", scored.nll_sum);
    }
}

/// The model keeps its activation buffers from pass to pass (see `buffer_pool`), with the
/// values the last pass left in them: no pass may read those. A pass after other passes of
/// other lengths, with and without an adapter, gives the same bits as on a fresh model, a
/// repeated training pass settles on the buffers it already has, and releasing them works.
#[test]
fn kept_buffers_change_no_result_and_settle_from_step_to_step() {
    let params = NativeParams { n_threads: 2, precision: Precision::Auto, ..Default::default() };
    let fresh = NativeModel::load(lamina::paths::default_model_path(), &params).unwrap();
    let used = NativeModel::load(lamina::paths::default_model_path(), &params).unwrap();
    let tokenizer = fresh.load_tokenizer().unwrap();
    let short = tokenizer.encode("A short prompt about cats.", false).unwrap();
    let long = tokenizer
        .encode(&"Every sentence of this prose is here to make the sequence longer than the other one. ".repeat(6), false)
        .unwrap();
    let example = |t: &Vec<u32>| Example { tokens: t.clone(), targets: vec![true; t.len()] };
    let mut lora = LoraWeights::new(fresh.config(), &LoraConfig::default(), 5).unwrap();
    // Non-zero B, so that the branches contribute.
    lora.layers
        .iter_mut()
        .flatten()
        .flatten()
        .enumerate()
        .for_each(|(i, p)| p.b.iter_mut().enumerate().for_each(|(j, v)| *v = ((i * 31 + j) % 17) as f32 * 1e-3 - 8e-3));

    let expected_logits = fresh.logits(&short, 0).unwrap();
    let batch = [example(&short), example(&long)];
    let mut expected_grads = lora.zeros_like();
    let expected_loss = fresh.loss_and_grads(&lora, &batch, PassOptions::default(), &mut expected_grads).unwrap();

    // Dirty every kept buffer with other lengths and values first.
    let long_batch = [example(&long), example(&long), example(&short)];
    used.loss_and_grads(&lora, &long_batch, PassOptions::default(), &mut lora.zeros_like()).unwrap();
    used.logits(&long, 3).unwrap();
    assert!(used.kept_buffer_bytes() > 0, "a pass leaves its buffers with the model");
    let logits = used.logits(&short, 0).unwrap();
    assert_eq!(logits.data, expected_logits.data, "inference after other passes");
    let mut grads = lora.zeros_like();
    let loss = used.loss_and_grads(&lora, &batch, PassOptions::default(), &mut grads).unwrap();
    assert_eq!(loss, expected_loss, "training loss after other passes");
    let flat = |g: &LoraWeights| g.layers.iter().flatten().flatten().flat_map(|p| p.a.iter().chain(&p.b).copied()).collect::<Vec<f32>>();
    assert!(flat(&grads) == flat(&expected_grads), "training gradients after other passes");

    let settled = used.kept_buffer_bytes();
    used.loss_and_grads(&lora, &batch, PassOptions::default(), &mut lora.zeros_like()).unwrap();
    println!("kept after a step: {settled} bytes; after the same step again: {}", used.kept_buffer_bytes());
    assert_eq!(used.kept_buffer_bytes(), settled, "a repeated step reuses its buffers");
    used.release_buffers();
    assert_eq!(used.kept_buffer_bytes(), 0);
    assert_eq!(used.logits(&short, 0).unwrap().data, expected_logits.data, "after a release");
}

/// A model that keeps its weights packed for the bf16 kernel (the default) gives the same
/// bits as one that packs every tile on every pass: logits, loss and LoRA gradients. Logits
/// given back with `recycle` and reused by the next pass change nothing either. Where the CPU
/// has no bf16 path nothing is packed, and the model says so.
#[test]
fn weights_packed_at_load_and_recycled_logits_change_no_result() {
    let load = |pack_weights| {
        let params = NativeParams { n_threads: 2, precision: Precision::Auto, pack_weights };
        NativeModel::load(lamina::paths::default_model_path(), &params).unwrap()
    };
    let (packed, per_pass) = (load(true), load(false));
    assert_eq!(per_pass.packed_weight_bytes(), 0, "pack_weights: false packs nothing");
    let f32_model = NativeModel::load(
        lamina::paths::default_model_path(),
        &NativeParams { n_threads: 2, precision: Precision::F32, pack_weights: true },
    )
    .unwrap();
    assert_eq!(f32_model.packed_weight_bytes(), 0, "the f32 path keeps no bf16 panels");
    println!("{}: {}", packed.precision().name(), packed.describe_kernels());
    if packed.precision() != Precision::Bf16 {
        assert_eq!(packed.packed_weight_bytes(), 0);
        println!("skipped the comparison: this CPU runs f32, which keeps no packed weights");
        return;
    }
    // 2 bytes per weight of the 30 blocks' projections and the (tied) 49,152 × 576 LM head.
    let c = packed.config();
    let per_block = c.hidden_size * (2 * c.n_heads * c.head_dim + 2 * c.n_kv_heads * c.head_dim + 3 * c.intermediate_size);
    let weights = (per_block * c.n_layers + c.vocab_size * c.hidden_size) as u64;
    assert_eq!(packed.packed_weight_bytes(), 2 * weights, "panels of every projection and the LM head");
    assert!(packed.describe_kernels().contains("weights kept packed in bf16"), "{}", packed.describe_kernels());

    let tokenizer = packed.load_tokenizer().unwrap();
    let a = tokenizer.encode("Packed weights must give the very same logits as packing per pass.", false).unwrap();
    let b =
        tokenizer.encode(&"A longer and different sequence, so that the recycled buffer holds other values. ".repeat(3), false).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let expected = per_pass.logits(&a, 0).unwrap();
    let first = packed.logits(&a, 0).unwrap();
    assert_eq!(bits(&first.data), bits(&expected.data), "logits: packed at load vs packed per pass");
    packed.recycle(first);
    let other = packed.logits(&b, 0).unwrap();
    assert_eq!(bits(&other.data), bits(&per_pass.logits(&b, 0).unwrap().data), "logits of a second sequence");
    packed.recycle(other);
    let again = packed.logits(&a, 0).unwrap();
    assert_eq!(bits(&again.data), bits(&expected.data), "logits in a recycled buffer");

    let mut lora = LoraWeights::new(c, &LoraConfig::default(), 3).unwrap();
    lora.layers.iter_mut().flatten().flatten().for_each(|p| p.b.iter_mut().enumerate().for_each(|(j, v)| *v = (j % 7) as f32 * 1e-3));
    let batch = [Example { tokens: b.clone(), targets: vec![true; b.len()] }];
    assert_eq!(packed.loss(Some(&lora), &batch).unwrap(), per_pass.loss(Some(&lora), &batch).unwrap(), "scoring");
    let (mut g_packed, mut g_per_pass) = (lora.zeros_like(), lora.zeros_like());
    let l_packed = packed.loss_and_grads(&lora, &batch, PassOptions::default(), &mut g_packed).unwrap();
    let l_per_pass = per_pass.loss_and_grads(&lora, &batch, PassOptions::default(), &mut g_per_pass).unwrap();
    assert_eq!(l_packed, l_per_pass, "training loss");
    for (x, y) in g_packed.layers.iter().flatten().flatten().zip(g_per_pass.layers.iter().flatten().flatten()) {
        assert_eq!(bits(&x.a), bits(&y.a), "LoRA A gradients");
        assert_eq!(bits(&x.b), bits(&y.b), "LoRA B gradients");
    }
}
