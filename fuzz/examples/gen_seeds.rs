//! Writes the seed corpora: small valid inputs for each fuzz target, so that the fuzzer starts
//! from files that reach deep into the parsers instead of rediscovering the formats.
//!
//! `cargo run --release --example gen_seeds` (from `fuzz/`) rewrites `corpus/<target>/seed-*`.
//! The output is deterministic and every file stays well under 10 KB.

use std::path::Path;

use lamina_fuzz::weights::gguf::{GgufWriter, MetaValue};
use lamina_fuzz::weights::GgmlType;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// Deterministic filler bytes (a tiny linear congruential generator).
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

/// A tensor of `ty` with `rows` rows of one block each.
fn add(w: &mut GgufWriter<'static>, name: &str, ty: GgmlType, rows: u64) {
    let dims = [ty.block_size() as u64, rows];
    let data = bytes(ty.tensor_bytes(&dims).unwrap() as usize, ty.id());
    w.add_tensor(name, ty, &dims, data).unwrap();
}

fn write_gguf(dir: &Path, name: &str, w: &GgufWriter<'_>) {
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    save(dir, name, &out);
}

fn save(dir: &Path, name: &str, data: &[u8]) {
    assert!(data.len() < 10 * 1024, "seed {name} is {} bytes", data.len());
    std::fs::write(dir.join(name), data).unwrap();
}

fn gguf_seeds(dir: &Path) {
    // A tiny llama model: the metadata LlamaConfig::from_gguf reads, and one tensor per type.
    let mut w = GgufWriter::new();
    let meta: Vec<(&str, MetaValue)> = vec![
        ("general.architecture", "llama".into()),
        ("general.name", "tiny".into()),
        ("llama.context_length", 64u32.into()),
        ("llama.embedding_length", 32u32.into()),
        ("llama.feed_forward_length", 64u32.into()),
        ("llama.block_count", 1u32.into()),
        ("llama.attention.head_count", 4u32.into()),
        ("llama.attention.head_count_kv", 2u32.into()),
        ("llama.rope.dimension_count", 8u32.into()),
        ("llama.attention.layer_norm_rms_epsilon", 1e-5f32.into()),
        ("llama.rope.freq_base", 10_000f32.into()),
        ("llama.rope.scaling.type", "llama3".into()),
        ("llama.rope.scaling.factor", 8f32.into()),
        ("llama.rope.scaling.original_context_length", 32u32.into()),
        ("tokenizer.ggml.model", "gpt2".into()),
        ("tokenizer.ggml.tokens", MetaValue::string_array(["<s>", "</s>", "a", "b"])),
        ("tokenizer.ggml.bos_token_id", 0u32.into()),
        ("tokenizer.ggml.eos_token_id", 1u32.into()),
    ];
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    for (i, ty) in GgmlType::ALL.into_iter().enumerate() {
        add(&mut w, &format!("blk.0.t{i}.weight"), ty, 1);
    }
    write_gguf(dir, "seed-llama.gguf", &w);

    // Every metadata value type, nested arrays, and a custom alignment.
    let mut w = GgufWriter::new();
    w.set_alignment(8).unwrap();
    let values: Vec<(&str, MetaValue)> = vec![
        ("u8", 1u8.into()),
        ("i8", (-1i8).into()),
        ("u16", 2u16.into()),
        ("i16", (-2i16).into()),
        ("u32", 3u32.into()),
        ("i32", (-3i32).into()),
        ("f32", 0.5f32.into()),
        ("bool", true.into()),
        ("string", "text".into()),
        ("u64", 4u64.into()),
        ("i64", (-4i64).into()),
        ("f64", 0.25f64.into()),
        ("strings", MetaValue::string_array(["x", "yz"])),
        (
            "nested",
            MetaValue::Array {
                elem: lamina_fuzz::weights::gguf::MetaType::Array,
                items: vec![MetaValue::Array { elem: lamina_fuzz::weights::gguf::MetaType::U32, items: vec![1u32.into(), 2u32.into()] }],
            },
        ),
    ];
    for (k, v) in values {
        w.add_metadata(k, v).unwrap();
    }
    w.add_tensor("a", GgmlType::F32, &[3, 2], bytes(24, 1)).unwrap();
    w.add_tensor("b", GgmlType::F16, &[5], bytes(10, 2)).unwrap();
    write_gguf(dir, "seed-types.gguf", &w);

    // One file per block type (two rows, four dimensions), so mutations of one block's bytes
    // reach its dequantizer without the other tensors in the way.
    for ty in GgmlType::ALL {
        let mut w = GgufWriter::new();
        let dims = [ty.block_size() as u64, 2, 1, 1];
        let data = bytes(ty.tensor_bytes(&dims).unwrap() as usize, ty.id() + 100);
        w.add_tensor("w", ty, &dims, data).unwrap();
        write_gguf(dir, &format!("seed-{}.gguf", ty.name()), &w);
    }

    // Header only.
    write_gguf(dir, "seed-empty.gguf", &GgufWriter::new());
}

fn safetensors_seeds(dir: &Path) {
    let f32s = bytes(4 * 6, 1);
    let f16s = bytes(2 * 4, 2);
    let bf16s = bytes(2 * 3, 3);
    let i32s = bytes(4 * 2, 4);
    let u8s = bytes(5, 5);
    let tensors = vec![
        ("model.embed_tokens.weight", TensorView::new(Dtype::F32, vec![2, 3], &f32s).unwrap()),
        ("model.norm.weight", TensorView::new(Dtype::F16, vec![4], &f16s).unwrap()),
        ("lm_head.weight", TensorView::new(Dtype::BF16, vec![3, 1], &bf16s).unwrap()),
        ("ids", TensorView::new(Dtype::I32, vec![2], &i32s).unwrap()),
        ("bytes", TensorView::new(Dtype::U8, vec![5], &u8s).unwrap()),
        ("empty", TensorView::new(Dtype::F32, vec![0, 7], &[]).unwrap()),
    ];
    let metadata = Some([("format".to_string(), "pt".to_string())].into_iter().collect());
    save(dir, "seed-mixed.safetensors", &safetensors::serialize(tensors, metadata).unwrap());
    let one = vec![("x", TensorView::new(Dtype::F32, vec![1], &f32s[..4]).unwrap())];
    save(dir, "seed-one.safetensors", &safetensors::serialize(one, None).unwrap());
    let none: Vec<(&str, TensorView<'_>)> = Vec::new();
    save(dir, "seed-empty.safetensors", &safetensors::serialize(none, None).unwrap());
}

fn hf_config_seeds(dir: &Path) {
    let full = r#"{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "vocab_size": 128256,
  "hidden_size": 2048,
  "intermediate_size": 8192,
  "num_hidden_layers": 16,
  "num_attention_heads": 32,
  "num_key_value_heads": 8,
  "head_dim": 64,
  "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
  "max_position_embeddings": 131072,
  "tie_word_embeddings": true,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009]
}
"#;
    save(dir, "seed-llama3.json", full.as_bytes());
    let minimal = r#"{"vocab_size": 32, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
"num_attention_heads": 2, "rms_norm_eps": 1e-6, "max_position_embeddings": 64,
"rope_scaling": {"type": "default"}, "eos_token_id": null}
"#;
    save(dir, "seed-minimal.json", minimal.as_bytes());
}

/// A GGUF LoRA adapter for the tiny base model: `targets` (index into its linear weights),
/// rank `rank`, tensors of `ty` (F32 or F16).
fn adapter(targets: &[usize], rank: u64, ty: GgmlType, alpha: Option<f32>) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("general.type", "adapter").unwrap();
    w.add_metadata("adapter.type", "lora").unwrap();
    if let Some(alpha) = alpha {
        w.add_metadata("adapter.lora.alpha", MetaValue::F32(alpha)).unwrap();
    }
    let weights = lamina_fuzz::tiny_linear_weights();
    for (i, &t) in targets.iter().enumerate() {
        let (name, [n_in, n_out]) = &weights[t];
        for (suffix, dims) in [("lora_a", [*n_in, rank]), ("lora_b", [rank, *n_out])] {
            let data = bytes(ty.tensor_bytes(&dims).unwrap() as usize, 7 * i as u32 + dims[0] as u32);
            // Finite values: random bytes as floats are often NaN, which hides the arithmetic.
            let data: Vec<u8> = match ty {
                GgmlType::F32 => data.chunks(4).flat_map(|c| (f32::from(c[0]) / 255.0 - 0.5).to_le_bytes()).collect(),
                _ => data.chunks(2).flat_map(|c| half::f16::from_f32(f32::from(c[0]) / 255.0 - 0.5).to_le_bytes()).collect(),
            };
            w.add_tensor(format!("{name}.{suffix}"), ty, &dims, data).unwrap();
        }
    }
    w
}

fn gguf_adapter_seeds(dir: &Path) {
    write_gguf(dir, "seed-q-v-f32.gguf", &adapter(&[0, 2], 2, GgmlType::F32, Some(4.0)));
    write_gguf(dir, "seed-all-f16.gguf", &adapter(&[0, 1, 2, 3, 4, 5, 6], 1, GgmlType::F16, None));
    write_gguf(dir, "seed-layer1-down.gguf", &adapter(&[13], 3, GgmlType::F32, Some(0.0)));
    // A model file, which must be refused as one.
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_tensor("blk.0.attn_q.weight", GgmlType::F32, &[2, 2], bytes(16, 9)).unwrap();
    write_gguf(dir, "seed-model.gguf", &w);
}

/// A PEFT target input: the config's length (u16 LE), the config, the safetensors file.
fn peft_input(config: &str, tensors: &[(&str, Vec<usize>)]) -> Vec<u8> {
    let datas: Vec<Vec<u8>> = tensors
        .iter()
        .enumerate()
        .map(|(i, (_, shape))| (0..shape.iter().product::<usize>()).flat_map(|j| ((i * 31 + j) as f32 * 0.01).to_le_bytes()).collect())
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&datas)
        .map(|((name, shape), data)| (*name, TensorView::new(Dtype::F32, shape.clone(), data).unwrap()))
        .collect();
    let st = safetensors::serialize(views, None).unwrap();
    let mut out = (config.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(config.as_bytes());
    out.extend_from_slice(&st);
    out
}

fn peft_adapter_seeds(dir: &Path) {
    let config =
        r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 8, "use_rslora": false, "target_modules": ["q_proj", "k_proj", "down_proj"]}"#;
    let tensors = [
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", vec![2, 32]),
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", vec![32, 2]),
        ("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", vec![2, 32]),
        ("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight", vec![16, 2]),
        ("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", vec![2, 64]),
        ("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", vec![32, 2]),
    ];
    save(dir, "seed-q-k-down.bin", &peft_input(config, &tensors));
    let rslora = r#"{"r": 1, "lora_alpha": 16.0, "use_rslora": true, "rank_pattern": {}, "alpha_pattern": {}}"#;
    let v =
        [("model.layers.1.self_attn.v_proj.lora_A.weight", vec![1, 32]), ("model.layers.1.self_attn.v_proj.lora_B.weight", vec![16, 1])];
    save(dir, "seed-rslora-v.bin", &peft_input(rslora, &v));
}

fn train_records_seeds(dir: &Path) {
    let jsonl = r#"{"text": "Plain text to model."}
{"prompt": "Q: 2+2?\nA:", "completion": " 4"}

{"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!<|im_end|>"}]}
{"instruction": "Translate to French", "input": "cat", "output": "chat", "system": "Be brief.", "id": 7}
{"instruction": "Say yes", "input": null, "output": "yes"}
"#;
    save(dir, "seed-formats.jsonl", jsonl.as_bytes());
    let array = r#"[{"text": "one"}, {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}, {"prompt": "p", "completion": "c"}]"#;
    save(dir, "seed-array.json", array.as_bytes());
    save(dir, "seed-history.jsonl", br#"{"instruction": "x", "output": "y", "history": [["a", "b"]]}"#);
}

fn eval_records_seeds(dir: &Path) {
    let qa = r#"{"id": "q1", "question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris.", "answers": ["Paris", "in Paris"]}
{"question": "Who wrote Hamlet?", "answer": "Shakespeare"}
"#;
    save(dir, "seed-qa.jsonl", qa.as_bytes());
    let translations = r#"{"id": 3, "source": "Le chat dort.", "reference": "The cat sleeps.", "source_lang": "fr", "target_lang": "en"}
{"source": "Bonjour", "references": ["Hello", "Good morning"]}
"#;
    save(dir, "seed-translations.jsonl", translations.as_bytes());
    let choices = r#"{"question": "2+2?", "choices": ["3", "4", 5], "label": 1}
{"id": "c2", "question": "Sky colour?", "choices": ["blue", "green"], "label": 0}
"#;
    save(dir, "seed-choices.jsonl", choices.as_bytes());
}

/// A chat-template target input: the source, NUL, the generation-prompt flag, the messages.
fn template_input(source: &str, messages: &[&str]) -> Vec<u8> {
    let mut out = source.as_bytes().to_vec();
    out.push(0);
    out.push(1);
    out.extend_from_slice(messages.join("\u{1}").as_bytes());
    out
}

fn chat_template_seeds(dir: &Path) {
    let conversation = ["You are helpful.", "What is 2+2?", "4", "Thanks"];
    let chatml = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    save(dir, "seed-chatml.bin", &template_input(chatml, &conversation));
    let llama3 = "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}{{- 'Today Date: ' + strftime_now('%d %b %Y') + '\\n\\n' }}{{- system_message }}{{- '<|eot_id|>' }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";
    save(dir, "seed-llama3.bin", &template_input(llama3, &conversation));
    let strict = "{% if messages|length % 2 == 0 %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}{% macro turn(m) %}[{{ m.role|upper }}] {{ m.content.strip()|replace('\\n', ' ')|e }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{{ eos_token if m.role == 'assistant' }}{% endfor %}{% set ns = namespace(n=0) %}{% for m in messages|reverse %}{% set ns.n = ns.n + m.content|length %}{% endfor %}{{ ns.n|string|trim }}{{ messages|map(attribute='role')|join(',') }}{{ messages|tojson }}";
    save(dir, "seed-macros-filters.bin", &template_input(strict, &conversation));
    let hostile = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{% for i in range(10) %}{{ 'x' * 1000 }}{% endfor %}{{ f(0) }}";
    save(dir, "seed-hostile.bin", &template_input(hostile, &conversation));
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, generate) in [
        ("gguf", gguf_seeds as fn(&Path)),
        ("safetensors", safetensors_seeds),
        ("hf_config", hf_config_seeds),
        ("gguf_adapter", gguf_adapter_seeds),
        ("peft_adapter", peft_adapter_seeds),
        ("train_records", train_records_seeds),
        ("eval_records", eval_records_seeds),
        ("chat_template", chat_template_seeds),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        generate(&dir);
    }
}
