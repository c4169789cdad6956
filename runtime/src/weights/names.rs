//! Tensor names and row layouts shared by every reader and writer of LLaMA weights: the
//! Hugging Face <-> GGUF name table, and the RoPE row permutation between the two layouts.
//!
//! RoPE layout: Hugging Face rotates dimension pairs (i, i + hd/2) of each head, llama.cpp's
//! `llama` architecture rotates (2i, 2i+1). Per head h, GGUF row `h*hd + 2i + half` holds
//! Hugging Face row `h*hd + half*hd/2 + i` (k with the KV head count).

/// Per-layer tensors: (Hugging Face suffix after `model.layers.N.`, GGUF suffix after `blk.N.`).
pub const LAYER_NAMES: [(&str, &str); 9] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Model-level tensors: (Hugging Face name, GGUF name).
pub const GLOBAL_NAMES: [(&str, &str); 3] =
    [("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight")];

/// The Hugging Face name of a GGUF tensor name, if it is a LLaMA weight.
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    if let Some((hf, _)) = GLOBAL_NAMES.iter().find(|(_, g)| *g == name) {
        return Some(hf.to_string());
    }
    let (layer, suffix) = name.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, _) = LAYER_NAMES.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The GGUF name of a Hugging Face tensor name, if it is a LLaMA weight.
pub fn hf_to_gguf_name(name: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL_NAMES.iter().find(|(hf, _)| *hf == name) {
        return Some(g.to_string());
    }
    let (layer, suffix) = name.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = LAYER_NAMES.iter().find(|(hf, _)| *hf == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// Reorder the rows of a q or k matrix (`rows` of `row_bytes` bytes; `n_heads` heads of
/// `rows / n_heads` rows) from the Hugging Face layout to llama.cpp's (`to_gguf`) or back.
/// Works on raw bytes, so on any element type.
pub fn permute_qk_rows(data: &[u8], n_heads: usize, row_bytes: usize, to_gguf: bool) -> Vec<u8> {
    let rows = data.len() / row_bytes.max(1);
    let hd = rows / n_heads.max(1);
    let mut out = vec![0u8; data.len()];
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            for half in 0..2 {
                let gguf_row = h * hd + 2 * i + half;
                let hf_row = h * hd + half * (hd / 2) + i;
                let (src, dst) = if to_gguf { (hf_row, gguf_row) } else { (gguf_row, hf_row) };
                out[dst * row_bytes..(dst + 1) * row_bytes].copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

/// [`permute_qk_rows`] on f32 rows of `row_len` values.
pub fn permute_qk_rows_f32(data: &[f32], n_heads: usize, row_len: usize, to_gguf: bool) -> Vec<f32> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    permute_qk_rows(&bytes, n_heads, row_len * 4, to_gguf).chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
