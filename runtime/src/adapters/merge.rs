//! Several adapters at once: llama-cpp-2's context can only activate one adapter, so a set
//! `{(A_i, B_i, scale_i)}` is served as one merged adapter of concatenated rank:
//! `A = [A_1; A_2; ...]`, `B = [f_1·B_1 | f_2·B_2 | ...]` with `f_i = scale_i·alpha_i/r_i`,
//! which gives exactly `Σ f_i·B_i·A_i`. The merged file is written with alpha 0 so that
//! llama.cpp applies it with factor 1 whatever each tensor's rank (targets of only some
//! adapters have a smaller concatenated rank than others).

use std::collections::BTreeMap;

use super::gguf::LoraTensor;

/// Merge adapters `(tensors, alpha, scale)` into one adapter of concatenated rank whose
/// `B·A` is `Σ scale_i·(alpha_i/r_i)·B_i·A_i` (`scale_i` alone when alpha_i is 0), to be
/// written with alpha 0 and applied with scale 1.
pub fn merge_lora(parts: &[(&[LoraTensor], f32, f32)]) -> Vec<LoraTensor> {
    let mut merged: BTreeMap<&str, LoraTensor> = BTreeMap::new();
    for &(tensors, alpha, scale) in parts {
        for t in tensors {
            let factor = if alpha != 0.0 { scale * alpha / t.rank as f32 } else { scale };
            let m = merged.entry(&t.name).or_insert_with(|| LoraTensor {
                name: t.name.clone(),
                a: Vec::new(),
                b: Vec::new(),
                rank: 0,
                n_in: t.n_in,
                n_out: t.n_out,
            });
            // A: stack rows.
            m.a.extend_from_slice(&t.a);
            // B: append columns, row by row.
            let old_rank = m.rank;
            let new_rank = old_rank + t.rank;
            let mut b = Vec::with_capacity(t.n_out * new_rank);
            for row in 0..t.n_out {
                b.extend_from_slice(&m.b[row * old_rank..(row + 1) * old_rank]);
                b.extend(t.b[row * t.rank..(row + 1) * t.rank].iter().map(|v| v * factor));
            }
            m.b = b;
            m.rank = new_rank;
        }
    }
    merged.into_values().collect()
}
