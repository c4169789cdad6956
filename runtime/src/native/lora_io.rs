//! Adapter files for the native engine's [`LoraWeights`]: export as a llama.cpp GGUF LoRA
//! adapter or as a PEFT directory, and import either back.
//!
//! Layouts: a model loaded from GGUF keeps q/k rows in llama.cpp's interleaved RoPE order, one
//! loaded from safetensors in Hugging Face's `rotate_half` order, and its adapter's q/k `B`
//! rows follow the model. GGUF adapters are always interleaved and PEFT adapters always HF, so
//! export and import permute q/k `B` rows (only those: `A` acts on the input side) when the
//! two differ.
//!
//! Scaling: lamina's `s = alpha / r` (or `alpha / sqrt(r)` with rsLoRA) is written to GGUF as
//! `adapter.lora.alpha = s · r`, because llama.cpp always divides by `r`; PEFT keeps `alpha`
//! and `use_rslora` as they are.

use std::path::Path;

use super::layers::rope::RopeLayout;
use super::lora::{LoraConfig, LoraPair, LoraTarget, LoraWeights};
use super::model::NativeModel;
use crate::adapters::{
    read_gguf_adapter, read_peft_adapter, write_gguf_adapter, write_peft_adapter, LoraTensor, LoraTensorRef, PeftSettings,
};
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;
use crate::weights::names::permute_qk_rows_f32;

/// Heads that a target's output rows are grouped in, for the RoPE permutation (None: not q/k).
fn rope_heads(model: &NativeModel, t: LoraTarget) -> Option<usize> {
    match t {
        LoraTarget::Q => Some(model.config().n_heads),
        LoraTarget::K => Some(model.config().n_kv_heads),
        _ => None,
    }
}

/// `b` (out × r) with its rows moved between layouts when the target is q or k.
fn permute_b(b: &[f32], rank: usize, heads: Option<usize>, to_gguf: bool) -> Vec<f32> {
    match heads {
        Some(heads) => permute_qk_rows_f32(b, heads, rank, to_gguf),
        None => b.to_vec(),
    }
}

/// `lora`'s targets as the adapter formats take them: GGUF names, `b` rows in llama.cpp's
/// interleaved RoPE order (a safetensors model keeps Hugging Face's, so its q/k rows move).
fn gguf_layout_tensors(lora: &LoraWeights, model: &NativeModel) -> Vec<LoraTensor> {
    let to_gguf = model.rope_layout() == RopeLayout::Halves;
    let mut owned = Vec::new();
    for (l, layer) in lora.layers.iter().enumerate() {
        for (i, pair) in layer.iter().enumerate() {
            let Some(p) = pair else { continue };
            let t = LoraTarget::ALL[i];
            let b = if to_gguf { permute_b(&p.b, p.rank, rope_heads(model, t), true) } else { p.b.clone() };
            owned.push(LoraTensor {
                name: format!("blk.{l}.{}.weight", t.gguf_name()),
                a: p.a.clone(),
                b,
                rank: p.rank,
                n_in: p.n_in,
                n_out: p.n_out,
            });
        }
    }
    owned
}

/// Write `lora` as a llama.cpp GGUF LoRA adapter for `model`.
pub fn export_gguf(lora: &LoraWeights, model: &NativeModel, path: &Path) -> Result<()> {
    lora.check_fits(model.config())?;
    let owned = gguf_layout_tensors(lora, model);
    let tensors: Vec<LoraTensorRef<'_>> = owned.iter().map(LoraTensor::as_ref).collect();
    write_gguf_adapter(path, "llama", lora.config.scale() * lora.config.rank as f32, &tensors)
}

/// Write `lora` as a PEFT directory (`adapter_model.safetensors` with Hugging Face names and
/// row order, and `adapter_config.json`), through [`write_peft_adapter`].
pub fn export_peft(lora: &LoraWeights, model: &NativeModel, dir: &Path) -> Result<()> {
    lora.check_fits(model.config())?;
    let owned = gguf_layout_tensors(lora, model);
    let tensors: Vec<LoraTensorRef<'_>> = owned.iter().map(LoraTensor::as_ref).collect();
    let c = &lora.config;
    let settings = PeftSettings { rank: c.rank, lora_alpha: c.alpha, dropout: c.dropout, rslora: c.rslora };
    write_peft_adapter(dir, &settings, &tensors, model.config())
}

/// Read an adapter (a GGUF LoRA file or a PEFT directory) into [`LoraWeights`] for `model`,
/// e.g. to evaluate it with the native engine or to continue training it. All targets must
/// share one rank (as adapters lamina and PEFT write do).
pub fn import_adapter(path: &Path, model: &NativeModel) -> Result<LoraWeights> {
    let (tensors, gguf_alpha) = if path.is_dir() {
        let peft = read_peft_adapter(path, model.config())?;
        (peft.tensors, peft.alpha)
    } else {
        read_gguf_lora(path)?
    };
    let data_err = |reason: String| Error::Data { path: path.to_path_buf(), line: None, reason };
    let rank = tensors.first().map(|t| t.rank).ok_or_else(|| data_err("the adapter has no LoRA tensors".into()))?;
    if let Some(t) = tensors.iter().find(|t| t.rank != rank) {
        return Err(data_err(format!("`{}` has rank {}, others {rank}: the native engine needs one rank", t.name, t.rank)));
    }
    // llama.cpp's scale alpha/r, with alpha 0 meaning 1.
    let alpha = if gguf_alpha > 0.0 { gguf_alpha } else { rank as f32 };
    let mut targets = Vec::new();
    let mut layers: Vec<[Option<LoraPair>; 7]> = (0..model.config().n_layers).map(|_| Default::default()).collect();
    let from_gguf = model.rope_layout() == RopeLayout::Halves;
    for t in tensors {
        let parsed = t.name.strip_prefix("blk.").and_then(|rest| rest.split_once('.')).and_then(|(l, stem)| {
            let target = LoraTarget::ALL.into_iter().find(|x| stem == format!("{}.weight", x.gguf_name()))?;
            Some((l.parse::<usize>().ok()?, target))
        });
        let (l, target) = parsed.ok_or_else(|| data_err(format!("`{}` is not a projection the native engine adapts", t.name)))?;
        let (out, inp) = target.shape(model.config());
        if l >= layers.len() || (t.n_out, t.n_in) != (out, inp) {
            return Err(data_err(format!("`{}` does not fit the model (layer {l}, shape {}x{})", t.name, t.n_out, t.n_in)));
        }
        let b = if from_gguf { permute_b(&t.b, rank, rope_heads(model, target), false) } else { t.b };
        layers[l][target.index()] = Some(LoraPair { n_in: inp, n_out: out, rank, a: t.a, b });
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    targets.sort();
    let config = LoraConfig { rank, alpha, dropout: 0.0, rslora: false, targets };
    config.validate()?;
    let weights = LoraWeights { config, layers };
    weights.check_fits(model.config())?;
    Ok(weights)
}

/// The `.lora_a`/`.lora_b` pairs of a GGUF adapter, as f32, and its alpha.
fn read_gguf_lora(path: &Path) -> Result<(Vec<LoraTensor>, f32)> {
    let adapter = read_gguf_adapter(&Gguf::open(path)?)?;
    Ok((adapter.tensors, adapter.alpha))
}
