//! Writes the seed corpora: small valid inputs for each fuzz target, so that the fuzzer starts
//! from files that reach deep into the parsers instead of rediscovering the formats.
//!
//! `cargo run --release --bin gen_seeds` (from `fuzz/`) rewrites `corpus/<target>/seed-*`.
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
                items: vec![MetaValue::Array {
                    elem: lamina_fuzz::weights::gguf::MetaType::U32,
                    items: vec![1u32.into(), 2u32.into()],
                }],
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

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, generate) in
        [("gguf", gguf_seeds as fn(&Path)), ("safetensors", safetensors_seeds), ("hf_config", hf_config_seeds)]
    {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        generate(&dir);
    }
}
