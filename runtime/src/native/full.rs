//! Full-parameter training: every weight of the model (embeddings, norms, projections, LM head,
//! tied or not) as a trainable f32 tensor, and its gradient from the same pass that LoRA
//! training runs (`pass.rs`).
//!
//! The pass reads these tensors through the same products as mapped weights: an f32 tensor in
//! memory is a weight matrix of type F32 whose "file" is the tensor's own bytes. Memory is
//! four copies of the model in f32 (weights, gradients and AdamW's two moments) plus the
//! activations; [`NativeModel::check_full_training_fits`] refuses a run that would not fit.

use crate::error::{Error, Result};

use super::lora::LoraTarget;
use super::matmul::WeightMatrix;
use super::model::NativeModel;

/// One block's trainable weights.
#[derive(Debug, Clone, PartialEq)]
pub struct FullBlock {
    pub attn_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    /// The seven projections, indexed like [`LoraTarget::ALL`], each `out × in` row-major.
    pub proj: [Vec<f32>; 7],
}

/// Every weight of a model in f32 (or, used as gradients, their gradients).
#[derive(Debug, Clone, PartialEq)]
pub struct FullWeights {
    /// `vocab × d`.
    pub embed: Vec<f32>,
    pub blocks: Vec<FullBlock>,
    pub final_norm: Vec<f32>,
    /// `vocab × d`; None when the LM head is the embedding (tied), whose gradient then
    /// collects both uses.
    pub lm_head: Option<Vec<f32>>,
}

impl FullWeights {
    pub fn zeros_like(&self) -> FullWeights {
        let mut z = self.clone();
        z.tensors_mut().into_iter().for_each(|t| t.fill(0.0));
        z
    }

    /// Every tensor, in a fixed order (embedding, blocks in order, final norm, LM head).
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out: Vec<&mut [f32]> = vec![self.embed.as_mut_slice()];
        for b in &mut self.blocks {
            out.push(b.attn_norm.as_mut_slice());
            out.push(b.ffn_norm.as_mut_slice());
            out.extend(b.proj.iter_mut().map(Vec::as_mut_slice));
        }
        out.push(self.final_norm.as_mut_slice());
        if let Some(h) = &mut self.lm_head {
            out.push(h.as_mut_slice());
        }
        out
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        let block: usize =
            self.blocks.iter().map(|b| b.attn_norm.len() + b.ffn_norm.len() + b.proj.iter().map(Vec::len).sum::<usize>()).sum();
        self.embed.len() + block + self.final_norm.len() + self.lm_head.as_ref().map_or(0, Vec::len)
    }
}

/// An f32 tensor seen as the bytes of an F32 weight matrix (its own "file").
pub(crate) fn as_bytes(t: &[f32]) -> &[u8] {
    // The F32 rows are decoded little-endian; lamina's targets (x86-64, aarch64) are.
    const _: () = assert!(cfg!(target_endian = "little"), "full-parameter training reads f32 tensors as little-endian bytes");
    // SAFETY: any initialised f32 is 4 initialised bytes; u8 has alignment 1; the slice keeps
    // the tensor borrowed.
    unsafe { std::slice::from_raw_parts(t.as_ptr().cast::<u8>(), std::mem::size_of_val(t)) }
}

/// The F32 matrix over a whole in-memory tensor of `rows × cols`.
pub(crate) fn f32_matrix(name: &str, rows: usize, cols: usize) -> WeightMatrix {
    WeightMatrix { name: name.to_string(), ty: crate::weights::GgmlType::F32, rows, cols, range: 0..rows * cols * 4 }
}

impl NativeModel {
    /// f32 copies of every weight (dequantized from the file): the starting point of a full
    /// fine-tune.
    pub fn full_weights(&self) -> FullWeights {
        let file = self.file.bytes();
        let dense = |w: &WeightMatrix| {
            let mut out = vec![0.0f32; w.rows * w.cols];
            for (r, row) in out.chunks_exact_mut(w.cols).enumerate() {
                w.dequantize_row_into(file, r, row);
            }
            out
        };
        let blocks = self
            .blocks
            .iter()
            .map(|b| FullBlock {
                attn_norm: b.attn_norm.clone(),
                ffn_norm: b.ffn_norm.clone(),
                proj: LoraTarget::ALL.map(|t| dense(b.weight(t))),
            })
            .collect();
        let tied = self.lm_head.range == self.embed.range;
        FullWeights {
            embed: dense(&self.embed),
            blocks,
            final_norm: self.final_norm.clone(),
            lm_head: (!tied).then(|| dense(&self.lm_head)),
        }
    }

    /// Whether `weights` has this model's shapes.
    pub(crate) fn check_full_fits(&self, weights: &FullWeights, what: &'static str) -> Result<()> {
        let c = &self.config;
        let d = c.hidden_size;
        let ok = weights.embed.len() == c.vocab_size * d
            && weights.blocks.len() == self.blocks.len()
            && weights.final_norm.len() == d
            && weights.lm_head.as_ref().is_none_or(|h| h.len() == c.vocab_size * d)
            && weights.blocks.iter().all(|b| {
                b.attn_norm.len() == d
                    && b.ffn_norm.len() == d
                    && LoraTarget::ALL.iter().all(|&t| {
                        let (o, i) = t.shape(c);
                        b.proj[t.index()].len() == o * i
                    })
            });
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(what, "does not have this model's shapes (use NativeModel::full_weights, and zeros_like for gradients)"))
        }
    }

    /// Bytes a full-parameter run needs: weights, gradients and AdamW's two moments in f32,
    /// plus `activations` bytes of saved activations and the mapped model file.
    pub fn full_training_bytes(&self, activations: usize) -> u64 {
        let c = &self.config;
        let d = c.hidden_size;
        let per_block: usize = 2 * d + LoraTarget::ALL.iter().map(|t| t.shape(c).0 * t.shape(c).1).sum::<usize>();
        let tied = self.lm_head.range == self.embed.range;
        let params = c.vocab_size * d * if tied { 1 } else { 2 } + per_block * self.blocks.len() + d;
        16 * params as u64 + activations as u64 + self.file.bytes().len() as u64
    }

    /// Refuse a full-parameter run that would not fit in the memory the system reports as
    /// available (`MemAvailable` in /proc/meminfo; where that cannot be read, nothing is
    /// refused), with the estimate in the message.
    pub fn check_full_training_fits(&self, activations: usize) -> Result<()> {
        let need = self.full_training_bytes(activations);
        check_memory_fits("full", need, "full-parameter training of this model", "use LoRA instead, or a smaller activation budget")
    }
}

/// Refuse `need` bytes of full-parameter training (`what`: "full-parameter training of this
/// model") when the system reports less memory available, with the estimate and `remedy` in
/// the message; where the available memory cannot be read, nothing is refused.
pub(crate) fn check_memory_fits(name: &'static str, need: u64, what: &str, remedy: &str) -> Result<()> {
    let Some(available) = available_memory() else { return Ok(()) };
    if need > available {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(Error::invalid(
            name,
            format!(
                "{what} needs about {:.2} GiB (weights, gradients and AdamW state in f32, plus activations), but only {:.2} GiB is available; {remedy}",
                gib(need),
                gib(available)
            ),
        ));
    }
    Ok(())
}

/// Write a fully fine-tuned model as a GGUF file: the base GGUF's metadata and every tensor it
/// has, the trained ones (everything `FullWeights` holds) in F32 in the base file's layout,
/// the others (such as `rope_freqs`) copied as they are. llama.cpp loads the result like any
/// F32 model.
pub fn export_full_gguf(weights: &FullWeights, model: &NativeModel, out: &std::path::Path) -> Result<()> {
    use crate::weights::gguf::GgufWriter;
    use std::borrow::Cow;
    model.check_full_fits(weights, "weights")?;
    let super::model::WeightFile::Gguf(g) = &model.file else {
        return Err(Error::invalid(
            "output",
            "a full fine-tune is written as GGUF, which needs a GGUF base model (convert the checkpoint with `lamina convert` first)",
        ));
    };
    let trained: std::collections::HashMap<String, &[f32]> =
        super::trainable::Trainable::named_tensors(weights).into_iter().map(|(n, t)| (format!("{n}.weight"), t)).collect();
    let mut w = GgufWriter::new();
    for (key, value) in g.metadata() {
        // The file type no longer describes the (now F32) tensors; the writer sets alignment.
        if key == "general.file_type" || key == "general.alignment" {
            continue;
        }
        w.add_metadata(key.clone(), value.clone())?;
    }
    w.add_metadata("general.file_type", crate::weights::gguf::MetaValue::U32(0))?;
    for info in g.tensors() {
        let name = info.name.as_str();
        let t = g.tensor(name).ok_or_else(|| Error::invalid("model", format!("tensor `{name}` vanished from the base file")))?;
        match trained.get(name) {
            Some(values) => w.add_tensor(name, crate::weights::GgmlType::F32, t.dims(), Cow::Borrowed(as_bytes(values)))?,
            None => w.add_tensor(name, t.ggml_type(), t.dims(), Cow::Borrowed(t.data()))?,
        }
    }
    // Write next to the target and rename: a failed write leaves no half file under its name.
    let tmp = out.with_extension("gguf.tmp");
    w.write(&tmp)?;
    std::fs::rename(&tmp, out).map_err(|source| Error::Io { path: out.to_path_buf(), source })
}

/// `MemAvailable` in bytes, where /proc/meminfo gives it.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
