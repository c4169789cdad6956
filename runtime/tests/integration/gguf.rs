//! The GGUF layer: the real default model's facts, writer/reader round trip, and bad input
//! (each a specific `Error::Data` naming the file and the problem, never a panic).

use std::path::{Path, PathBuf};

use lamina::weights::gguf::{Gguf, GgufWriter, MetaType, MetaValue};
use lamina::weights::GgmlType;
use lamina::{Error, ErrorKind};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// A fresh path in this test binary's temporary folder.
fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-gguf-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write_bytes(name: &str, bytes: &[u8]) -> PathBuf {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Open `bytes` as a file and expect an `Error::Data` whose message names the file and
/// contains `needle`; returns the message.
fn expect_data_err(name: &str, bytes: &[u8], needle: &str) -> String {
    let path = write_bytes(name, bytes);
    let err = Gguf::open(&path).expect_err(&format!("{name}: opening must fail"));
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data, "{name}: {msg}");
    assert!(msg.contains(path.to_str().unwrap()), "{name}: message does not name the file: {msg}");
    assert!(msg.contains(needle), "{name}: expected `{needle}` in: {msg}");
    msg
}

/// Hand-built GGUF bytes, for headers that the writer refuses to produce.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: i64, n_kv: i64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).i64(n_tensors).i64(n_kv);
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
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
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

/// A small valid file: a few kvs and tensors, the last tensor ending exactly at the end of the
/// file (a multiple of 32 bytes), so that any cut makes it invalid.
fn small_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("llama.block_count", 2u32).unwrap();
    w.add_metadata("tokenizer.ggml.tokens", MetaValue::string_array(["<s>", "a", "b"])).unwrap();
    w.add_metadata("llama.rope.freq_base", 10000.0f32).unwrap();
    let q8 = vec![7u8; 2 * 34];
    w.add_tensor("blk.0.q8", GgmlType::Q8_0, &[32, 2], q8).unwrap();
    w.add_tensor("blk.0.f16", GgmlType::F16, &[4, 2], vec![1u8; 16]).unwrap();
    w.add_tensor("blk.0.f32", GgmlType::F32, &[8], vec![2u8; 32]).unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    bytes
}

// ---------------------------------------------------------------------------------------------
// the real model
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_the_default_model() {
    let path = lamina::paths::default_model_path();
    assert!(path.exists(), "the default model is missing at {}: run scripts/fetch-model.sh", path.display());
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.file_size(), 98_362_432);
    assert_eq!(g.tensors().len(), 272);
    let count = |t: GgmlType| g.tensors().iter().filter(|i| i.ggml_type == t).count();
    assert_eq!(count(GgmlType::Q4_1), 210);
    assert_eq!(count(GgmlType::F32), 61);
    assert_eq!(count(GgmlType::Q8_0), 1);
    assert!(g.tensor("output.weight").is_none());

    let emb = g.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(emb.ggml_type(), GgmlType::Q8_0);
    assert_eq!(emb.dims(), &[576, 49152]);
    assert_eq!(emb.data().len() as u64, 576 / 32 * 34 * 49152);
    // Zero-copy: the view points into the map, aligned as the file is.
    assert_eq!(emb.data().as_ptr() as usize % 32, 0);

    assert_eq!(g.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    let template = g.get_str("tokenizer.chat_template").unwrap();
    assert!(template.contains("im_start"), "{template}");

    // Typed getters explain a missing key and a wrong type.
    let missing = g.get_u32("no.such.key").unwrap_err().to_string();
    assert!(missing.contains("missing metadata key `no.such.key`"), "{missing}");
    let wrong = g.get_u32("general.architecture").unwrap_err().to_string();
    assert!(wrong.contains("is a string, expected"), "{wrong}");

    // Every tensor lies in the file, at an aligned offset, with the size its shape implies.
    for t in g.tensors() {
        assert_eq!(t.offset % 32, 0, "{}", t.name);
        assert_eq!(Some(t.size), t.ggml_type.tensor_bytes(&t.dims).ok(), "{}", t.name);
        assert_eq!(g.tensor(&t.name).unwrap().data().len() as u64, t.size);
    }
}

// ---------------------------------------------------------------------------------------------
// round trip
// ---------------------------------------------------------------------------------------------

fn all_value_types() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("t.u8", MetaValue::U8(200)),
        ("t.i8", MetaValue::I8(-100)),
        ("t.u16", MetaValue::U16(60000)),
        ("t.i16", MetaValue::I16(-30000)),
        ("t.u32", MetaValue::U32(4_000_000_000)),
        ("t.i32", MetaValue::I32(-2_000_000_000)),
        ("t.f32", MetaValue::F32(1.5e-5)),
        ("t.bool", MetaValue::Bool(true)),
        ("t.string", MetaValue::String("héllo, wörld".into())),
        ("t.u64", MetaValue::U64(u64::MAX)),
        ("t.i64", MetaValue::I64(i64::MIN)),
        ("t.f64", MetaValue::F64(std::f64::consts::PI)),
        ("t.arr_i32", MetaValue::Array { elem: MetaType::I32, items: vec![1.into(), (-2).into(), 3.into()] }),
        ("t.arr_str", MetaValue::string_array(["a", "", "ccc"])),
        ("t.arr_empty", MetaValue::Array { elem: MetaType::F32, items: vec![] }),
        (
            "t.arr_nested",
            MetaValue::Array {
                elem: MetaType::Array,
                items: vec![MetaValue::Array { elem: MetaType::U8, items: vec![1u8.into(), 2u8.into()] }, MetaValue::string_array(["x"])],
            },
        ),
        ("t.arr_bool", MetaValue::Array { elem: MetaType::Bool, items: vec![true.into(), false.into()] }),
    ]
}

#[test]
fn round_trip_all_types() {
    let mut w = GgufWriter::new();
    for (k, v) in all_value_types() {
        w.add_metadata(k, v).unwrap();
    }
    let f32_data: Vec<u8> = (0..6 * 4).map(|i| i as u8).collect();
    let f16_data: Vec<u8> = (0..10 * 2).map(|i| (i * 3) as u8).collect();
    let q8_data: Vec<u8> = (0..3 * 34).map(|i| (i * 7 + 1) as u8).collect();
    w.add_tensor("a.f32", GgmlType::F32, &[3, 2], f32_data.as_slice()).unwrap();
    w.add_tensor("b.f16", GgmlType::F16, &[10], f16_data.clone()).unwrap();
    w.add_tensor("c.q8_0", GgmlType::Q8_0, &[32, 3, 1], q8_data.clone()).unwrap();
    let path = tmp("roundtrip.gguf");
    w.write(&path).unwrap();

    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.path(), path);
    let expected = all_value_types();
    assert_eq!(g.metadata().len(), expected.len());
    for ((k, v), (ek, ev)) in g.metadata().iter().zip(&expected) {
        assert_eq!(k, ek);
        assert_eq!(v, ev, "{k}");
    }
    assert_eq!(g.get_f64("t.f64").unwrap(), std::f64::consts::PI);
    assert_eq!(g.get_i64("t.i64").unwrap(), i64::MIN);
    assert_eq!(g.get_u64("t.u64").unwrap(), u64::MAX);
    assert!(g.get_bool("t.bool").unwrap());
    assert_eq!(g.get_array("t.arr_i32").unwrap().len(), 3);

    let names: Vec<_> = g.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a.f32", "b.f16", "c.q8_0"]);
    let a = g.tensor("a.f32").unwrap();
    assert_eq!((a.ggml_type(), a.dims(), a.data()), (GgmlType::F32, &[3u64, 2][..], &f32_data[..]));
    let b = g.tensor("b.f16").unwrap();
    assert_eq!((b.ggml_type(), b.dims(), b.data()), (GgmlType::F16, &[10u64][..], &f16_data[..]));
    let c = g.tensor("c.q8_0").unwrap();
    assert_eq!((c.ggml_type(), c.dims(), c.data()), (GgmlType::Q8_0, &[32u64, 3, 1][..], &q8_data[..]));
    assert_eq!(c.n_elements(), 96);

    // llama.cpp's layout: offsets are the running sum of aligned sizes; data section aligned.
    let offsets: Vec<_> = g.tensors().iter().map(|t| t.offset).collect();
    assert_eq!(offsets, [0, 32, 64]);
    assert_eq!(g.data_offset() % 32, 0);
    assert_eq!(g.file_size(), g.data_offset() + 64 + 128);
}

#[test]
fn round_trip_custom_alignment() {
    let mut w = GgufWriter::new();
    w.set_alignment(64).unwrap();
    w.add_tensor("x", GgmlType::F32, &[3], vec![1u8; 12]).unwrap();
    w.add_tensor("y", GgmlType::BF16, &[5], vec![2u8; 10]).unwrap();
    let path = tmp("align64.gguf");
    w.write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.data_offset() % 64, 0);
    assert_eq!(g.tensors()[1].offset, 64);
    assert_eq!(g.tensor("y").unwrap().data(), &[2u8; 10]);
    assert_eq!(g.tensor("y").unwrap().data().as_ptr() as usize % 64, 0);
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    let e = w.add_tensor("q", GgmlType::Q8_0, &[32, 2], vec![0u8; 67]).unwrap_err().to_string();
    assert!(e.contains("needs 68 bytes, got 67"), "{e}");
    let e = w.add_tensor("q", GgmlType::Q4_0, &[33], vec![0u8; 18]).unwrap_err().to_string();
    assert!(e.contains("not a multiple of the q4_0 block size 32"), "{e}");
    assert!(w.add_tensor("z", GgmlType::F32, &[], vec![]).is_err());
    assert!(w.add_tensor("z", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0u8; 4]).is_err());
    assert!(w.add_tensor("z", GgmlType::F32, &[0], vec![]).is_err());
    w.add_tensor("ok", GgmlType::F32, &[1], vec![0u8; 4]).unwrap();
    assert!(w.add_tensor("ok", GgmlType::F32, &[1], vec![0u8; 4]).unwrap_err().to_string().contains("duplicate"));
    w.add_metadata("k", 1u8).unwrap();
    assert!(w.add_metadata("k", 2u8).unwrap_err().to_string().contains("duplicate"));
    let mixed = MetaValue::Array { elem: MetaType::U8, items: vec![1u8.into(), 2u16.into()] };
    assert!(w.add_metadata("mixed", mixed).unwrap_err().to_string().contains("index 1"));
    let mut w2 = GgufWriter::new();
    assert!(w2.set_alignment(0).is_err());
    assert!(w2.set_alignment(3).is_err());
}

// ---------------------------------------------------------------------------------------------
// bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_file_directory_and_missing_file() {
    expect_data_err("empty.gguf", &[], "empty");
    let dir = tmp("a-directory.gguf");
    std::fs::create_dir_all(&dir).unwrap();
    let e = Gguf::open(&dir).unwrap_err();
    assert!(matches!(e, Error::Data { .. }) && e.to_string().contains("directory"), "{e}");
    let e = Gguf::open(tmp("does-not-exist.gguf")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
}

#[test]
fn bad_magic_and_versions() {
    let mut bytes = small_file();
    bytes[..4].copy_from_slice(b"GGML");
    expect_data_err("magic.gguf", &bytes, "bad magic");
    expect_data_err("short.gguf", b"GG", "not a GGUF file");
    expect_data_err("v1.gguf", &Raw::header(1, 0, 0).0, "unsupported GGUF version 1");
    expect_data_err("v99.gguf", &Raw::header(99, 0, 0).0, "unsupported GGUF version 99");
    expect_data_err("bigendian.gguf", &Raw::header(3u32.swap_bytes(), 0, 0).0, "big-endian");
    // Version 2 is still read.
    let g = Gguf::open(write_bytes("v2.gguf", &Raw::header(2, 0, 0).0)).unwrap();
    assert_eq!((g.version(), g.tensors().len(), g.metadata().len()), (2, 0, 0));
}

#[test]
fn truncated_everywhere() {
    let bytes = small_file();
    let header_end = Gguf::open(write_bytes("small.gguf", &bytes)).unwrap().data_offset() as usize;
    let mut cuts: Vec<usize> = (0..bytes.len().min(4096)).step_by(7).collect();
    cuts.extend([header_end - 1, header_end, header_end + 1, header_end + 40, bytes.len() - 1]);
    for cut in cuts {
        let path = write_bytes("cut.gguf", &bytes[..cut]);
        let err = Gguf::open(&path).expect_err(&format!("cut at {cut} must fail"));
        let msg = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Data, "cut {cut}: {msg}");
        let explained = ["truncated", "past the end", "empty", "not a GGUF file"];
        assert!(explained.iter().any(|s| msg.contains(s)), "cut {cut}: {msg}");
    }
}

#[test]
fn absurd_counts() {
    expect_data_err("ntensors.gguf", &Raw::header(3, 1 << 62, 0).0, "tensor count (n_tensors) is 4611686018427387904");
    expect_data_err("nkv.gguf", &Raw::header(3, 0, 1 << 62).0, "metadata count (n_kv) is 4611686018427387904");
    expect_data_err("nkv-neg.gguf", &Raw::header(3, 0, -1).0, "negative");

    let mut r = Raw::header(3, 0, 1);
    r.u64(1 << 40).0.extend_from_slice(b"key");
    expect_data_err("strlen.gguf", &r.0, "truncated");

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(4).u64(u64::MAX).u32(1);
    expect_data_err("arrcount.gguf", &r.0, "element count of array `k` is 18446744073709551615");

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(u64::MAX - 3);
    expect_data_err("strval.gguf", &r.0, "value of metadata `k`");
}

#[test]
fn bad_metadata() {
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    expect_data_err("valtype.gguf", &r.0, "unknown value type 13");

    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(77).u64(1).u32(0);
    expect_data_err("elemtype.gguf", &r.0, "unknown element type 77");

    // Arrays nested deeper than the limit are refused (no stack overflow).
    let mut r = Raw::header(3, 0, 1);
    r.str("deep").u32(9);
    for _ in 0..100 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    expect_data_err("deep.gguf", &r.0, "nests arrays");

    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    expect_data_err("dupkey.gguf", &r.0, "duplicate metadata key `k`");

    let mut r = Raw::header(3, 0, 1);
    r.u64(2).0.extend_from_slice(&[0xff, 0xfe]);
    r.u32(0).0.push(0);
    expect_data_err("utf8.gguf", &r.0, "not valid UTF-8");

    for a in [0u32, 3] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        expect_data_err("alignment.gguf", &r.0, &format!("`general.alignment` is {a}, but it must be a nonzero power of two"));
    }
}

/// A file with one tensor described by the arguments, and 64 bytes of data.
fn one_tensor(dims: &[i64], ty: u32, offset: u64) -> Vec<u8> {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", dims, ty, offset).data(64);
    r.0
}

#[test]
fn bad_tensor_infos() {
    // A valid baseline, so that each failure below is the one change it makes.
    let g = Gguf::open(write_bytes("t-ok.gguf", &one_tensor(&[16], 0, 0))).unwrap();
    assert_eq!(g.tensor("w").unwrap().data(), &[0xAB; 64]);

    expect_data_err("t-type.gguf", &one_tensor(&[16], 4, 0), "tensor `w` has unknown or unsupported ggml type id 4");
    expect_data_err("t-dims0.gguf", &one_tensor(&[], 0, 0), "tensor `w` has 0 dimensions");
    expect_data_err("t-dims5.gguf", &one_tensor(&[1, 1, 1, 1, 1], 0, 0), "tensor `w` has 5 dimensions");
    expect_data_err("t-ne0.gguf", &one_tensor(&[4, 0], 0, 0), "tensor `w` has ne[1] = 0");
    expect_data_err("t-neneg.gguf", &one_tensor(&[-4], 0, 0), "ne[0] = -4");
    expect_data_err("t-overflow.gguf", &one_tensor(&[1 << 32, 1 << 32], 0, 0), "element count that overflows");
    expect_data_err("t-bytes.gguf", &one_tensor(&[1 << 62, 1], 0, 0), "overflows");
    expect_data_err("t-block.gguf", &one_tensor(&[48], 8, 0), "ne[0] = 48 is not a multiple of the q8_0 block size 32");
    expect_data_err("t-misaligned.gguf", &one_tensor(&[4], 0, 4), "offset 4, not a multiple of the alignment 32");
    expect_data_err("t-eof.gguf", &one_tensor(&[32], 0, 0), "runs past the end of the file");
    expect_data_err("t-offset.gguf", &one_tensor(&[4], 0, 1024), "runs past the end of the file");
    expect_data_err("t-offmax.gguf", &one_tensor(&[4], 0, u64::MAX - 31), "runs past the end of the file");

    let mut r = Raw::header(3, 1, 0);
    r.u64(2000).0.extend_from_slice(&[b'x'; 2000]);
    expect_data_err("t-name.gguf", &r.0, "more than the limit of 1024");

    let mut r = Raw::header(3, 2, 0);
    r.tensor("w", &[4], 0, 0).tensor("w", &[4], 0, 0).data(64);
    expect_data_err("t-dup.gguf", &r.0, "duplicate tensor name `w`");
}

// ---------------------------------------------------------------------------------------------
// robustness
// ---------------------------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_mutations_never_panic() {
    let original = small_file();
    let path = tmp("fuzz.gguf");
    let (mut ok, mut failed) = (0, 0);
    for seed in 1..=3000u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = rng.next() as u8,
                2 => bytes[at] = 0xFF,
                _ => bytes.truncate(at.max(1)),
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            // Reading every view must be safe too when the open succeeds.
            Gguf::open(&path).map(|g| g.tensors().iter().map(|t| g.tensor(&t.name).unwrap().data().len()).sum::<usize>())
        });
        match outcome {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(e.to_string().contains(path.to_str().unwrap()), "seed {seed}: {e}");
                failed += 1;
            }
            Err(_) => panic!("Gguf::open panicked on mutation seed {seed}"),
        }
    }
    assert_eq!(ok + failed, 3000);
    assert!(failed > 0, "mutations must break some files");
}

#[test]
fn typed_getters_on_small_file() {
    let p: &Path = &tmp("nested-ok.gguf");
    std::fs::write(p, small_file()).unwrap();
    let g = Gguf::open(p).unwrap();
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap(), ["<s>", "a", "b"]);
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
}
