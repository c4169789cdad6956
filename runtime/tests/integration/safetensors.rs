//! Safetensors files: write with the `safetensors` crate, read back zero-copy and as f32, and
//! bad input (each an `Error::Data` naming the file, or `Error::Io` for a missing file; never a
//! panic).

use std::path::PathBuf;

use lamina::weights::safetensors::{Dtype, SafeTensors};
use lamina::ErrorKind;
use safetensors::tensor::TensorView as StView;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-safetensors-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const F32_VALUES: [f32; 6] = [0.0, 1.0, -2.5, 3.25, 1e-3, -7e5];
// Exactly representable in f16 and bf16.
const HALF_VALUES: [f32; 4] = [0.5, -1.0, 2.0, 0.0];
const BF16_VALUES: [f32; 3] = [-3.0, 65536.0, 0.15625];

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect()
}
fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()
}

/// A file with an F32 [2, 3], an F16 [4], a BF16 [3] and an I32 [2] tensor.
fn write_sample(name: &str) -> PathBuf {
    let path = tmp(name);
    let a = f32_bytes(&F32_VALUES);
    let b = f16_bytes(&HALF_VALUES);
    let c = bf16_bytes(&BF16_VALUES);
    let d: Vec<u8> = [7i32, -9].iter().flat_map(|x| x.to_le_bytes()).collect();
    let tensors = vec![
        ("model.a.weight", StView::new(Dtype::F32, vec![2, 3], &a).unwrap()),
        ("model.b.weight", StView::new(Dtype::F16, vec![4], &b).unwrap()),
        ("model.c.weight", StView::new(Dtype::BF16, vec![3], &c).unwrap()),
        ("model.d.ids", StView::new(Dtype::I32, vec![2], &d).unwrap()),
    ];
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(meta), &path).unwrap();
    path
}

#[test]
fn reads_back_zero_copy_and_as_f32() {
    let path = write_sample("sample.safetensors");
    let st = SafeTensors::open(&path).unwrap();
    assert_eq!(st.tensors().len(), 4);
    assert_eq!(st.metadata().get("format").map(String::as_str), Some("pt"));
    let mut names: Vec<&str> = st.names().collect();
    names.sort();
    assert_eq!(names, ["model.a.weight", "model.b.weight", "model.c.weight", "model.d.ids"]);

    let a = st.tensor("model.a.weight").unwrap();
    assert_eq!(a.dtype(), Dtype::F32);
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a.n_elements(), 6);
    assert_eq!(a.data(), f32_bytes(&F32_VALUES).as_slice());
    assert_eq!(st.to_f32("model.a.weight").unwrap(), F32_VALUES);

    let b = st.tensor("model.b.weight").unwrap();
    assert_eq!(b.dtype(), Dtype::F16);
    assert_eq!(b.shape(), &[4]);
    assert_eq!(b.data(), f16_bytes(&HALF_VALUES).as_slice());
    assert_eq!(st.to_f32("model.b.weight").unwrap(), HALF_VALUES);

    let c = st.tensor("model.c.weight").unwrap();
    assert_eq!(c.dtype(), Dtype::BF16);
    assert_eq!(c.data(), bf16_bytes(&BF16_VALUES).as_slice());
    assert_eq!(st.to_f32("model.c.weight").unwrap(), BF16_VALUES);

    // Zero copy: the view points into the map, inside the file's extent.
    let file_len = std::fs::metadata(&path).unwrap().len() as usize;
    let info = st.info("model.c.weight").unwrap();
    assert!(info.range.end <= file_len && info.range.len() == 6);
    assert!(info.is_supported());

    // Unsupported dtype: listed and viewable, converting names the tensor and the dtype.
    let d = st.tensor("model.d.ids").unwrap();
    assert_eq!(d.dtype(), Dtype::I32);
    assert!(!d.info().is_supported());
    let err = st.to_f32("model.d.ids").unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data);
    assert!(msg.contains("model.d.ids") && msg.contains("I32"), "{msg}");
    assert!(msg.contains(path.to_str().unwrap()), "{msg}");

    // Absent tensor.
    assert!(st.tensor("nope").is_none());
    let msg = st.to_f32("nope").unwrap_err().to_string();
    assert!(msg.contains("nope") && msg.contains(path.to_str().unwrap()), "{msg}");
}

#[test]
fn empty_tensor_list_is_valid() {
    let path = tmp("empty-list.safetensors");
    safetensors::serialize_to_file(Vec::<(&str, StView<'_>)>::new(), None, &path).unwrap();
    let st = SafeTensors::open(&path).unwrap();
    assert!(st.tensors().is_empty());
}

/// Open `bytes` as a file; expect an `Error::Data` naming the file and containing `needle`.
fn expect_data_err(name: &str, bytes: &[u8], needle: &str) -> String {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    let err = SafeTensors::open(&path).expect_err(&format!("{name}: opening must fail"));
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Data, "{name}: {msg}");
    assert!(msg.contains(path.to_str().unwrap()), "{name}: message does not name the file: {msg}");
    assert!(msg.contains(needle), "{name}: expected `{needle}` in: {msg}");
    msg
}

fn with_header(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn empty_and_short_files() {
    expect_data_err("empty.safetensors", b"", "empty");
    expect_data_err("short.safetensors", b"\x05\x00\x00", "too short");
}

#[test]
fn missing_file_is_io_error() {
    let path = tmp("does-not-exist.safetensors");
    let err = SafeTensors::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
}

#[test]
fn truncated_files() {
    let good = std::fs::read(write_sample("for-truncation.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    // Inside the length, inside the header, right after the header, inside the data, one short.
    for cut in [4, 8, 9, 8 + header_len / 2, 8 + header_len, 8 + header_len + 5, good.len() - 1] {
        let msg = expect_data_err(&format!("cut-{cut}.safetensors"), &good[..cut], "");
        let expected = if cut < 8 {
            "too short"
        } else if cut < 8 + header_len {
            "past the end of the file"
        } else {
            "data offsets"
        };
        assert!(msg.contains(expected), "cut at {cut}: expected `{expected}` in {msg}");
    }
    // Trailing bytes are not a valid file either.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    expect_data_err("trailing.safetensors", &long, "data offsets");
}

#[test]
fn huge_header_length() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    expect_data_err("huge-max.safetensors", &bytes, "past the end of the file");
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[b' '; 64]);
    expect_data_err("huge-2.safetensors", &bytes, "header length");
}

#[test]
fn garbage_headers() {
    expect_data_err("garbage.safetensors", &with_header("{not json at all", &[]), "invalid JSON");
    expect_data_err("not-object.safetensors", &with_header("[1, 2, 3]", &[]), "invalid JSON");
    expect_data_err("bad-utf8.safetensors", &[3, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0xfd], "UTF-8");
    expect_data_err(
        "bad-dtype.safetensors",
        &with_header(r#"{"x":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
        "invalid JSON",
    );
}

#[test]
fn offsets_out_of_range() {
    // Declares 16 bytes of data, only 4 present.
    expect_data_err(
        "offsets-beyond.safetensors",
        &with_header(r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 4]),
        "invalid safetensors file",
    );
    // Offsets that do not match shape x dtype.
    expect_data_err(
        "offsets-mismatch.safetensors",
        &with_header(r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]),
        "invalid safetensors file",
    );
    // A gap between tensors.
    expect_data_err(
        "offsets-gap.safetensors",
        &with_header(
            r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            &[0; 12],
        ),
        "invalid safetensors file",
    );
    // Inverted range.
    expect_data_err(
        "offsets-inverted.safetensors",
        &with_header(r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, &[0; 4]),
        "invalid safetensors file",
    );
}

#[test]
fn directory_is_rejected() {
    let dir = tmp("a-directory.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    let err = SafeTensors::open(&dir).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}
