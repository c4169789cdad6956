//! Malformed weight files: inputs that failed a fuzz target in `fuzz/` (kept here as
//! regression tests, each with the bytes that once failed, see `fuzz/README.md`), and
//! hand-written corner cases that `gguf.rs`, `safetensors.rs` and `llama_config.rs` do not
//! already cover.
//!
//! The contract under test: a malformed GGUF, safetensors or `config.json` file gives an
//! `Error::Data` naming the file and the problem; never a panic, an out-of-bounds read, a huge
//! allocation or a hang.

use std::path::PathBuf;

use lamina::native::LlamaConfig;
use lamina::weights::gguf::{Gguf, GgufWriter, MetaValue};
use lamina::weights::safetensors::SafeTensors;
use lamina::weights::GgmlType;
use lamina::{Error, ErrorKind};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// A fresh path in this test binary's temporary folder.
fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-malformed-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_bytes(name: &str, bytes: &[u8]) -> PathBuf {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Checks that `result` is an `Error::Data` naming `path` and containing `needle`.
fn check_data_err<T: std::fmt::Debug>(name: &str, path: &std::path::Path, result: Result<T, Error>, needle: &str) {
    let err = result.expect_err(&format!("{name}: must fail"));
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data, "{name}: {msg}");
    assert!(msg.contains(path.to_str().unwrap()), "{name}: message does not name the file: {msg}");
    assert!(msg.contains(needle), "{name}: expected `{needle}` in: {msg}");
}

fn expect_gguf_err(name: &str, bytes: &[u8], needle: &str) {
    let path = write_bytes(name, bytes);
    check_data_err(name, &path, Gguf::open(&path), needle);
}

fn expect_safetensors_err(name: &str, bytes: &[u8], needle: &str) {
    let path = write_bytes(name, bytes);
    check_data_err(name, &path, SafeTensors::open(&path), needle);
}

fn expect_hf_err(name: &str, bytes: &[u8], needle: &str) {
    let path = write_bytes(name, bytes);
    check_data_err(name, &path, LlamaConfig::from_hf_config_json(&path), needle);
}

/// Hand-built GGUF bytes, for headers that the writer refuses to produce.
struct Raw(Vec<u8>);

impl Raw {
    fn header(n_tensors: i64, n_kv: i64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(3).i64(n_tensors).i64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn tensor(&mut self, name: &str, dims: &[i64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.i64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero padding to 32, then `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        let padded = self.0.len().div_ceil(32) * 32;
        self.0.resize(padded + n, 0xAB);
        self
    }
}

/// Safetensors bytes: the 8-byte header length, the JSON header, the data.
fn with_header(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

// ---------------------------------------------------------------------------------------------
// GGUF, hand-written
// ---------------------------------------------------------------------------------------------

#[test]
fn gguf_absurd_n_dims() {
    // n_dims is read before any dimension: u32::MAX must be refused, not used to size a Vec.
    let mut r = Raw::header(1, 0);
    r.str("w").u32(u32::MAX);
    r.data(64);
    expect_gguf_err("n-dims-max.gguf", &r.0, "tensor `w` has 4294967295 dimensions (must be 1 to 4)");
}

#[test]
fn gguf_tensor_offset_plus_size_overflows() {
    // data_offset + offset fits in u64; adding the size does not. The check must not wrap
    // around to a small end that passes.
    let mut r = Raw::header(1, 0);
    let offset = (u64::MAX - 64) / 32 * 32 - 64;
    r.tensor("w", &[1 << 20], 0, offset).data(64);
    expect_gguf_err("offset-size-overflow.gguf", &r.0, "tensor `w` data");
    expect_gguf_err("offset-size-overflow.gguf", &r.0, "runs past the end of the file");
}

#[test]
fn gguf_alignment_of_the_wrong_type_or_too_large() {
    let mut r = Raw::header(0, 1);
    r.str("general.alignment").u32(8).str("32");
    expect_gguf_err("alignment-string.gguf", &r.0, "`general.alignment` must be an unsigned 32-bit integer");

    let mut r = Raw::header(0, 1);
    r.str("general.alignment").u32(10).u64(1 << 40);
    expect_gguf_err("alignment-huge.gguf", &r.0, "`general.alignment` must be an unsigned 32-bit integer");

    let mut r = Raw::header(0, 1);
    r.str("general.alignment").u32(5).u32(-32i32 as u32);
    expect_gguf_err("alignment-negative.gguf", &r.0, "`general.alignment` must be an unsigned 32-bit integer");

    // A power of two, but one that would pad a tiny file's header to 2 GiB when rewritten.
    let mut r = Raw::header(0, 1);
    r.str("general.alignment").u32(4).u32(1 << 31);
    expect_gguf_err("alignment-2gib.gguf", &r.0, "`general.alignment` is 2147483648, more than the 65536 bytes lamina accepts");
}

#[test]
fn gguf_string_length_absurd_in_value_and_name() {
    // A u64::MAX length must be refused before anything is allocated or sliced.
    let mut r = Raw::header(0, 1);
    r.str("k").u32(8).u64(u64::MAX);
    expect_gguf_err("value-len-max.gguf", &r.0, "value of metadata `k`");

    let mut r = Raw::header(1, 0);
    r.u64(u64::MAX).data(64);
    expect_gguf_err("name-len-max.gguf", &r.0, "name of tensor 0");
}

#[test]
fn gguf_array_of_arrays_count_is_bounded_by_the_file() {
    // Each nested array needs at least 12 bytes of file: a count of 2^40 empty arrays in a
    // tiny file must be refused up front.
    let mut r = Raw::header(0, 1);
    r.str("k").u32(9).u32(9).u64(1 << 40);
    r.u32(0).u64(0);
    expect_gguf_err("array-of-arrays.gguf", &r.0, "element count of array `k` is 1099511627776");
}

#[test]
fn gguf_truncated_tensor_data_of_each_block_type() {
    for ty in GgmlType::ALL {
        let dims = [ty.block_size() as u64, 2];
        let size = ty.tensor_bytes(&dims).unwrap() as usize;
        let mut w = GgufWriter::new();
        w.add_tensor("w", ty, &dims, vec![0u8; size]).unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();
        // The writer pads the last tensor to the alignment; drop the padding and one byte more.
        let data_end = bytes.len() - (size.div_ceil(32) * 32 - size);
        expect_gguf_err(&format!("short-{}.gguf", ty.name()), &bytes[..data_end - 1], "runs past the end of the file");
        // Exactly the data, without the trailing padding, is complete.
        let path = write_bytes(&format!("exact-{}.gguf", ty.name()), &bytes[..data_end]);
        assert_eq!(Gguf::open(&path).unwrap().tensor("w").unwrap().data().len(), size);
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors, hand-written
// ---------------------------------------------------------------------------------------------

#[test]
fn safetensors_overlapping_offsets() {
    // Two tensors over the same bytes: each range is in the file and of the right size, so
    // only the crate's contiguity check catches it.
    let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    expect_safetensors_err("overlap-same.safetensors", &with_header(json, &[0; 4]), "invalid safetensors file");
    let json = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    expect_safetensors_err("overlap-half.safetensors", &with_header(json, &[0; 12]), "invalid safetensors file");
}

#[test]
fn safetensors_shape_product_overflows() {
    let json = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#;
    expect_safetensors_err("shape-overflow.safetensors", &with_header(json, &[0; 4]), "invalid safetensors file");
    let json = r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#;
    expect_safetensors_err("shape-negative.safetensors", &with_header(json, &[0; 4]), "invalid safetensors file");
}

#[test]
fn safetensors_sub_byte_dtype_with_odd_count() {
    // F4 is half a byte per element: 3 elements do not fill whole bytes.
    let json = r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
    expect_safetensors_err("f4-odd.safetensors", &with_header(json, &[0; 2]), "invalid safetensors file");
}

#[test]
fn safetensors_metadata_must_be_strings() {
    let json = r#"{"__metadata__":{"format":7},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    expect_safetensors_err("metadata-int.safetensors", &with_header(json, &[0; 4]), "invalid safetensors file");
}

#[test]
fn safetensors_duplicate_tensor_names() {
    // JSON objects keep the last of duplicate keys: the first tensor's bytes are then a gap
    // that the offsets check refuses, rather than an unreachable tensor.
    let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    expect_safetensors_err("dup-names.safetensors", &with_header(json, &[0; 8]), "invalid safetensors file");
}

// ---------------------------------------------------------------------------------------------
// LlamaConfig (config.json and GGUF metadata)
// ---------------------------------------------------------------------------------------------

#[test]
fn hf_config_that_is_not_utf8_is_a_data_error() {
    // A binary file passed as config.json is malformed content, not an I/O failure.
    expect_hf_err("binary.json", b"{\"vocab_size\": \xff\xfe}", "invalid JSON");
}

#[test]
fn gguf_config_with_wrong_metadata_types() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("llama.embedding_length", MetaValue::string_array(["64"])).unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let path = write_bytes("config-types.gguf", &bytes);
    let g = Gguf::open(&path).unwrap();
    check_data_err("config-types.gguf", &path, LlamaConfig::from_gguf(&g), "metadata key `llama.embedding_length`");
}

/// The llama metadata `LlamaConfig::from_gguf` reads, with `edit` applied, as a GGUF file.
fn llama_gguf(name: &str, edit: impl FnOnce(&mut Vec<(&'static str, MetaValue)>)) -> PathBuf {
    let mut meta: Vec<(&'static str, MetaValue)> = vec![
        ("general.architecture", "llama".into()),
        ("llama.context_length", 64u32.into()),
        ("llama.embedding_length", 32u32.into()),
        ("llama.feed_forward_length", 64u32.into()),
        ("llama.block_count", 1u32.into()),
        ("llama.attention.head_count", 4u32.into()),
        ("llama.attention.layer_norm_rms_epsilon", 1e-5f32.into()),
        ("llama.vocab_size", 16u32.into()),
        ("llama.rope.scaling.type", "llama3".into()),
        ("llama.rope.scaling.factor", 8f32.into()),
    ];
    edit(&mut meta);
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    w.add_tensor("token_embd.weight", GgmlType::F32, &[32, 16], vec![0u8; 32 * 16 * 4]).unwrap();
    let path = tmp(name);
    w.write(&path).unwrap();
    path
}

/// Failed the `hf_config` fuzz target (an accepted configuration must read back from its own
/// `to_hf_config_json`); the `gguf` target checks the same through `LlamaConfig::from_gguf`.
#[test]
fn rope_scaling_factors_must_be_finite() {
    // An infinite factor passes `factor > 0` and `high > low`, but it is no scaling at all, and
    // JSON has no infinity: `to_hf_config_json` would write `null`, which no longer reads back.
    let ok = llama_gguf("rope-ok.gguf", |_| {});
    assert!(LlamaConfig::from_gguf(&Gguf::open(&ok).unwrap()).unwrap().rope_scaling.is_some());
    for (key, name) in
        [("llama.rope.scaling.factor", "rope-inf-factor.gguf"), ("llama.rope.scaling.high_freq_factor", "rope-inf-high.gguf")]
    {
        let path = llama_gguf(name, |m| {
            m.retain(|(k, _)| *k != key);
            m.push((key, f32::INFINITY.into()));
        });
        let g = Gguf::open(&path).unwrap();
        check_data_err(name, &path, LlamaConfig::from_gguf(&g), "rope_scaling needs finite factors");
    }

    // In config.json the infinity comes from an f64 too large for f32.
    let json = br#"{"vocab_size": 16, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 4, "rms_norm_eps": 1e-5, "max_position_embeddings": 64,
        "rope_scaling": {"rope_type": "llama3", "factor": 1e300, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}"#;
    expect_hf_err("rope-inf.json", json, "rope_scaling needs finite factors");
}
