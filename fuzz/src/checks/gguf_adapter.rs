//! Arbitrary bytes as a GGUF LoRA adapter, checked against a tiny base model.
//!
//! Contract: `validate_gguf_adapter` and `read_gguf_adapter` either succeed or return
//! `Error::Data` naming the file. An adapter that validates must be readable with shapes that
//! match its summary, must merge with itself, and must survive being written back with
//! `gguf_adapter` (same summary, bit-identical tensors).

use crate::adapters::{gguf_adapter, merge_lora, read_gguf_adapter, read_lora_tensors, validate_gguf_adapter, LoraTensor};
use crate::{assert_data_error, gguf_from_bytes, tiny_base};

pub fn run(data: &[u8]) {
    let g = match gguf_from_bytes(data) {
        Ok(g) => g,
        Err(e) => return assert_data_error(&e),
    };
    let read = read_gguf_adapter(&g);
    if let Err(e) = &read {
        assert_data_error(e);
    }
    let summary = match validate_gguf_adapter(&g, tiny_base()) {
        Ok(s) => s,
        Err(e) => return assert_data_error(&e),
    };
    let read = read.expect("an adapter that validates against a model is readable without one");
    let tensors = read_lora_tensors(&g, &summary).expect("a validated adapter's tensors read");
    assert_eq!(bits(&tensors), bits(&read.tensors));
    assert_eq!(read.alpha.to_bits(), summary.alpha.to_bits());
    for (t, (name, rank)) in tensors.iter().zip(&summary.targets) {
        assert_eq!((&t.name, t.rank), (name, *rank));
        assert_eq!((t.a.len(), t.b.len()), (t.rank * t.n_in, t.n_out * t.rank));
    }

    let merged = merge_lora(&[(&tensors, summary.alpha, 1.0), (&tensors, summary.alpha, 0.5)]);
    assert_eq!(merged.len(), tensors.len());
    for (m, t) in merged.iter().zip(&tensors) {
        assert_eq!((m.rank, m.n_in, m.n_out), (2 * t.rank, t.n_in, t.n_out));
        assert_eq!((m.a.len(), m.b.len()), (m.rank * m.n_in, m.n_out * m.rank));
    }

    let refs: Vec<_> = tensors.iter().map(LoraTensor::as_ref).collect();
    let mut bytes = Vec::new();
    gguf_adapter("llama", summary.alpha, &refs).expect("a validated adapter is writable").write_to(&mut bytes).unwrap();
    let back = gguf_from_bytes(&bytes).expect("the writer's output parses");
    assert_eq!(validate_gguf_adapter(&back, tiny_base()).expect("the written adapter validates"), summary);
    assert_eq!(bits(&read_lora_tensors(&back, &summary).unwrap()), bits(&tensors));
}

/// Tensors with their values as bits, so that NaNs compare equal to themselves.
fn bits(tensors: &[LoraTensor]) -> Vec<(String, Vec<u32>, Vec<u32>)> {
    tensors.iter().map(|t| (t.name.clone(), t.a.iter().map(|v| v.to_bits()).collect(), t.b.iter().map(|v| v.to_bits()).collect())).collect()
}
