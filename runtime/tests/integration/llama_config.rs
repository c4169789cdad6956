//! `LlamaConfig`: from the default model's GGUF metadata, from Hugging Face `config.json`
//! files (round trip, llama3 rope scaling), and bad input with clear errors.

use std::path::PathBuf;

use lamina::native::{LlamaConfig, RopeScaling};
use lamina::weights::gguf::{Gguf, GgufWriter, MetaValue};
use lamina::weights::GgmlType;
use lamina::ErrorKind;
use serde_json::json;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-config-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_json(name: &str, value: &serde_json::Value) -> PathBuf {
    let path = tmp(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

fn default_config() -> LlamaConfig {
    let path = lamina::paths::default_model_path();
    assert!(path.exists(), "the default model is missing at {}: run scripts/fetch-model.sh", path.display());
    LlamaConfig::from_gguf(&Gguf::open(&path).unwrap()).unwrap()
}

#[test]
fn reads_the_default_model() {
    let c = default_config();
    assert_eq!(c.n_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.n_heads, 9);
    assert_eq!(c.n_kv_heads, 3);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.rope_theta, 100_000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.vocab_size, 49_152);
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.bos_token_id, Some(1));
    assert_eq!(c.eos_token_id, Some(2));
    c.validate().unwrap();
}

#[test]
fn hf_round_trip() {
    let c = default_config();
    let v = c.to_hf_config_json();
    assert_eq!(v["model_type"], "llama");
    assert_eq!(v["num_hidden_layers"], 30);
    assert_eq!(v["rms_norm_eps"], json!(1e-5));
    let path = write_json("roundtrip-config.json", &v);
    assert_eq!(LlamaConfig::from_hf_config_json(&path).unwrap(), c);

    // And with llama3 scaling and untied embeddings.
    let mut c2 = c.clone();
    c2.tie_word_embeddings = false;
    c2.rope_scaling =
        Some(RopeScaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 });
    c2.bos_token_id = None;
    let path = write_json("roundtrip-config-2.json", &c2.to_hf_config_json());
    assert_eq!(LlamaConfig::from_hf_config_json(&path).unwrap(), c2);
}

fn llama3_json() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3"
        },
        "max_position_embeddings": 131072,
        "tie_word_embeddings": true,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "torch_dtype": "bfloat16"
    })
}

#[test]
fn llama3_style_config() {
    let c = LlamaConfig::from_hf_config_json(write_json("llama3.json", &llama3_json())).unwrap();
    assert_eq!(c.vocab_size, 128_256);
    assert_eq!(c.n_layers, 16);
    assert_eq!(c.n_heads, 32);
    assert_eq!(c.n_kv_heads, 8);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.rope_theta, 500_000.0);
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling { factor: 32.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 })
    );
    assert!(c.tie_word_embeddings);
    assert_eq!(c.bos_token_id, Some(128_000));
    assert_eq!(c.eos_token_id, Some(128_001));

    // Defaults: kv heads = heads, rope theta 10000, untied, no scaling; legacy `type` key.
    let mut v = llama3_json();
    let o = v.as_object_mut().unwrap();
    for k in ["num_key_value_heads", "rope_theta", "tie_word_embeddings", "bos_token_id", "eos_token_id"] {
        o.remove(k);
    }
    o.insert("rope_scaling".into(), serde_json::Value::Null);
    o.insert("head_dim".into(), json!(128));
    let c = LlamaConfig::from_hf_config_json(write_json("defaults.json", &v)).unwrap();
    assert_eq!((c.n_kv_heads, c.head_dim, c.rope_theta), (32, 128, 10_000.0));
    assert!(!c.tie_word_embeddings && c.rope_scaling.is_none() && c.eos_token_id.is_none());

    let mut v = llama3_json();
    v["rope_scaling"] = json!({"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    let c = LlamaConfig::from_hf_config_json(write_json("legacy-type.json", &v)).unwrap();
    assert_eq!(c.rope_scaling.unwrap().factor, 8.0);
}

/// Parse `value` from a file; expect an `Error::Data` naming the file and containing `needle`.
fn expect_hf_err(name: &str, value: &serde_json::Value, needle: &str) {
    let path = write_json(name, value);
    let err = LlamaConfig::from_hf_config_json(&path).expect_err(name);
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data, "{name}: {msg}");
    assert!(msg.contains(path.to_str().unwrap()), "{name}: {msg}");
    assert!(msg.contains(needle), "{name}: expected `{needle}` in {msg}");
}

#[test]
fn bad_hf_configs() {
    let mut v = llama3_json();
    v.as_object_mut().unwrap().remove("hidden_size");
    expect_hf_err("missing.json", &v, "hidden_size");

    let mut v = llama3_json();
    v["num_key_value_heads"] = json!(5);
    expect_hf_err("kv.json", &v, "does not divide the head count");

    let mut v = llama3_json();
    v["num_attention_heads"] = json!(30);
    v["num_key_value_heads"] = json!(30);
    expect_hf_err("heads.json", &v, "does not divide hidden_size");

    let mut v = llama3_json();
    v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
    expect_hf_err("yarn.json", &v, "unsupported rope scaling type `yarn`");

    let mut v = llama3_json();
    v["rope_scaling"]["factor"] = json!("big");
    expect_hf_err("rope-field.json", &v, "rope_scaling");

    let mut v = llama3_json();
    v["model_type"] = json!("gemma3");
    expect_hf_err("gemma.json", &v, "gemma3");

    let mut v = llama3_json();
    v["num_hidden_layers"] = json!(0);
    expect_hf_err("zero-layers.json", &v, "n_layers must be positive");

    let mut v = llama3_json();
    v["eos_token_id"] = json!("x");
    expect_hf_err("eos.json", &v, "eos_token_id");

    let path = tmp("invalid.json");
    std::fs::write(&path, "{\"vocab_size\": 12,").unwrap();
    let err = LlamaConfig::from_hf_config_json(&path).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data);
    assert!(msg.contains(path.to_str().unwrap()) && msg.contains("invalid JSON"), "{msg}");

    let err = LlamaConfig::from_hf_config_json(tmp("absent.json")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
}

/// A tiny GGUF with llama-style metadata, edited by `edit`.
fn tiny_gguf(name: &str, edit: impl FnOnce(&mut Vec<(&'static str, MetaValue)>), output: bool) -> PathBuf {
    let mut meta: Vec<(&'static str, MetaValue)> = vec![
        ("general.architecture", "llama".into()),
        ("llama.block_count", 2u32.into()),
        ("llama.embedding_length", 64u32.into()),
        ("llama.feed_forward_length", 128u32.into()),
        ("llama.attention.head_count", 4u32.into()),
        ("llama.attention.layer_norm_rms_epsilon", 1e-6f32.into()),
        ("llama.context_length", 256u32.into()),
        ("tokenizer.ggml.tokens", MetaValue::string_array(["<s>", "a", "b"])),
    ];
    edit(&mut meta);
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    w.add_tensor("token_embd.weight", GgmlType::F32, &[64, 3], vec![0u8; 64 * 3 * 4]).unwrap();
    if output {
        w.add_tensor("output.weight", GgmlType::F32, &[64, 3], vec![0u8; 64 * 3 * 4]).unwrap();
    }
    let path = tmp(name);
    w.write(&path).unwrap();
    path
}

#[test]
fn gguf_defaults_and_scaling() {
    let c = LlamaConfig::from_gguf(&Gguf::open(tiny_gguf("tiny.gguf", |_| {}, true)).unwrap()).unwrap();
    assert_eq!((c.n_kv_heads, c.head_dim, c.vocab_size), (4, 16, 3));
    assert_eq!(c.rope_theta, 10_000.0);
    assert!(!c.tie_word_embeddings);
    assert!(c.rope_scaling.is_none() && c.bos_token_id.is_none());

    let path = tiny_gguf(
        "tiny-llama3.gguf",
        |m| {
            m.push(("llama.vocab_size", 3u32.into()));
            m.push(("llama.attention.head_count_kv", 2u32.into()));
            m.push(("llama.rope.scaling.type", "llama3".into()));
            m.push(("llama.rope.scaling.factor", 8.0f32.into()));
            m.push(("llama.rope.scaling.original_context_length", 128u32.into()));
        },
        false,
    );
    let c = LlamaConfig::from_gguf(&Gguf::open(path).unwrap()).unwrap();
    assert_eq!(c.n_kv_heads, 2);
    assert!(c.tie_word_embeddings);
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 128 })
    );
}

fn expect_gguf_err(name: &str, edit: impl FnOnce(&mut Vec<(&'static str, MetaValue)>), needle: &str) {
    let path = tiny_gguf(name, edit, false);
    let err = LlamaConfig::from_gguf(&Gguf::open(&path).unwrap()).expect_err(name);
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data, "{name}: {msg}");
    assert!(msg.contains(path.to_str().unwrap()), "{name}: {msg}");
    assert!(msg.contains(needle), "{name}: expected `{needle}` in {msg}");
}

#[test]
fn bad_gguf_configs() {
    expect_gguf_err("qwen.gguf", |m| m[0].1 = "qwen2".into(), "unsupported architecture `qwen2`");
    expect_gguf_err("no-blocks.gguf", |m| m.retain(|(k, _)| *k != "llama.block_count"), "llama.block_count");
    expect_gguf_err("kv3.gguf", |m| m.push(("llama.attention.head_count_kv", 3u32.into())), "does not divide the head count");
    expect_gguf_err("yarn.gguf", |m| m.push(("llama.rope.scaling.type", "yarn".into())), "unsupported rope scaling type `yarn`");
    expect_gguf_err("no-vocab.gguf", |m| m.retain(|(k, _)| *k != "tokenizer.ggml.tokens"), "llama.vocab_size");
}
