//! Arbitrary bytes as a PEFT adapter directory: the first two bytes (little-endian) are the
//! length of `adapter_config.json`, which follows; the rest is `adapter_model.safetensors`.
//!
//! Contract: `parse_peft_config` and `peft_tensors` either succeed or return `Error::Data`
//! naming the file. An adapter that is read has consistent shapes, one GGUF name per target,
//! a finite alpha >= 0, and converts to a GGUF adapter that validates against the model.

use std::collections::BTreeSet;

use crate::adapters::{gguf_adapter, parse_peft_config, peft_tensors, validate_gguf_adapter, LoraTensor};
use crate::{assert_data_error, gguf_from_bytes, peft_config_path, safetensors_from_bytes, tiny_base, tiny_config};

pub fn run(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let len = (u16::from_le_bytes(*len) as usize).min(rest.len());
    let (config_bytes, st_bytes) = rest.split_at(len);
    // `read_peft_adapter` turns bytes that are not UTF-8 into an error before this parser.
    let Ok(config_text) = std::str::from_utf8(config_bytes) else { return };
    let peft = match parse_peft_config(&peft_config_path(), config_text) {
        Ok(p) => p,
        Err(e) => return assert_data_error(&e),
    };
    let st = match safetensors_from_bytes(st_bytes) {
        Ok(st) => st,
        Err(e) => return assert_data_error(&e),
    };
    let adapter = match peft_tensors(&st, &peft, tiny_config()) {
        Ok(a) => a,
        Err(e) => return assert_data_error(&e),
    };
    assert!(adapter.alpha.is_finite() && adapter.alpha >= 0.0, "alpha {}", adapter.alpha);
    let names: BTreeSet<&str> = adapter.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), adapter.tensors.len(), "two tensors map to one GGUF name");
    for t in &adapter.tensors {
        assert!(t.rank > 0 && t.n_in > 0 && t.n_out > 0);
        assert_eq!((t.a.len(), t.b.len()), (t.rank * t.n_in, t.n_out * t.rank));
    }
    let refs: Vec<_> = adapter.tensors.iter().map(LoraTensor::as_ref).collect();
    let mut bytes = Vec::new();
    gguf_adapter("llama", adapter.alpha, &refs).expect("a read adapter is writable").write_to(&mut bytes).unwrap();
    let g = gguf_from_bytes(&bytes).expect("the writer's output parses");
    // Shapes are checked against the model only here (as when llama.cpp loads the adapter).
    if let Err(e) = validate_gguf_adapter(&g, tiny_base()) {
        assert_data_error(&e);
    }
}
