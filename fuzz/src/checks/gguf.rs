//! Arbitrary bytes as a GGUF file.
//!
//! Contract: `Gguf::open` either succeeds or returns `Error::Data` naming the file. When it
//! succeeds, everything a caller can then do without further checks must work: read every
//! metadata value, borrow every tensor's bytes (exactly `size` of them), dequantize its first
//! rows, read a `LlamaConfig` (or get `Error::Data`), and write the same content back with
//! `GgufWriter` into a file that parses to the same header.

use crate::weights::dequant::dequantize_row;
use crate::weights::gguf::{GgufWriter, MetaValue};
use crate::{assert_data_error, gguf_from_bytes, Gguf, LlamaConfig};

/// Rows dequantized per tensor: enough to reach every block type's code, few enough to keep
/// the target fast.
const ROWS: u64 = 2;

pub fn run(data: &[u8]) {
    let g = match gguf_from_bytes(data) {
        Ok(g) => g,
        Err(e) => return assert_data_error(&e),
    };
    walk_metadata(&g);
    walk_tensors(&g);
    match LlamaConfig::from_gguf(&g) {
        Ok(config) => {
            // A configuration read from GGUF must survive the trip through config.json.
            let json = serde_json::to_vec(&config.to_hf_config_json()).unwrap();
            let back = crate::hf_config_from_bytes(&json).unwrap();
            assert_eq!(config, back, "LlamaConfig changed through config.json");
        }
        Err(e) => assert_data_error(&e),
    }
    rewrite(&g);
}

fn walk_metadata(g: &Gguf) {
    for (key, value) in g.metadata() {
        assert!(std::ptr::eq(g.get(key).unwrap(), value));
        let _ = (value.as_u32(), value.as_u64(), value.as_i64(), value.as_f32(), value.as_f64());
        let _ = (value.as_bool(), value.as_str(), value.as_array().map(<[MetaValue]>::len));
        let _ = g.get_str_array(key);
    }
}

fn walk_tensors(g: &Gguf) {
    for info in g.tensors() {
        let view = g.tensor(&info.name).expect("every listed tensor has a view");
        assert_eq!(view.data().len() as u64, info.size);
        assert_eq!(Ok(info.size), info.ggml_type.tensor_bytes(&info.dims));
        let ne0 = info.dims[0];
        let row_bytes = info.ggml_type.row_bytes(ne0).expect("ne[0] is a whole number of blocks");
        let rows = (info.n_elements() / ne0).min(ROWS);
        let mut dst = vec![0f32; ne0 as usize];
        for row in 0..rows {
            let start = (row * row_bytes) as usize;
            let src = &view.data()[start..start + row_bytes as usize];
            dequantize_row(info.ggml_type, src, &mut dst).expect("a valid tensor's rows dequantize");
        }
    }
}

/// Writes the parsed content back and checks that it parses to the same header. The writer
/// may refuse what the reader is lenient about (e.g. `general.alignment` stored as a u64).
fn rewrite(g: &Gguf) {
    let mut w = GgufWriter::new();
    for (key, value) in g.metadata() {
        if w.add_metadata(key.clone(), value.clone()).is_err() {
            return;
        }
    }
    for info in g.tensors() {
        let data = g.tensor(&info.name).unwrap().data();
        w.add_tensor(info.name.clone(), info.ggml_type, &info.dims, data).expect("a parsed tensor is writable");
    }
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let back = gguf_from_bytes(&bytes).expect("the writer's output parses");
    // Debug, not PartialEq: a NaN value is equal to itself here.
    assert_eq!(format!("{:?}", g.metadata()), format!("{:?}", back.metadata()));
    assert_eq!(g.tensors().len(), back.tensors().len());
    for (a, b) in g.tensors().iter().zip(back.tensors()) {
        assert_eq!((&a.name, a.ggml_type, &a.dims, a.size), (&b.name, b.ggml_type, &b.dims, b.size));
        assert_eq!(g.tensor(&a.name).unwrap().data(), back.tensor(&b.name).unwrap().data());
    }
}
