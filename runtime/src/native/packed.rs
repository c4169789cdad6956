//! Frozen weights kept packed for the bf16 kernel, so that a pass reads its B panels instead
//! of decoding and packing every tile again.
//!
//! Why: with the bf16 path a forward pass packs each weight tile (decode Q4_1/Q8_0 blocks,
//! round to bf16, transpose into `[kp/2][NR][2]` panels) once per call. At 256 tokens that
//! was 7-8% of the default model's forward on an AMD Zen 4, work that gives the same panels
//! on every call. Packed once at load, the panels take 2 bytes per weight (256 MiB for the
//! default model's 134.5 M weights, against its 94 MiB file), and every pass that multiplies
//! through the mapped weights (inference, scoring, the forward half of a LoRA step) reads
//! them. The values are the ones a tile would pack, so results are the same bit for bit.
//!
//! When: [`NativeParams::pack_weights`](super::model::NativeParams::pack_weights) asks for it,
//! the model runs in bf16, and the panels fit in a quarter of the memory the system reports
//! available ([`PackedWeights::fits`]); else the passes pack per tile as before. The backward
//! product through W (`dx += dy · W`) reads W in the other orientation and still packs per
//! tile; trainers load with packing off (see `training_run`), keeping their memory bound.

use rayon::prelude::*;

use super::bf16;
use super::lora::LoraTarget;
use super::matmul::{pack_weight_bf16, WeightMatrix};
use super::model::Block;

/// The bf16 panels of every projection and of the LM head (see [`pack_weight_bf16`]).
pub(crate) struct PackedWeights {
    /// Per block, per [`LoraTarget::index`].
    blocks: Vec<[Vec<u16>; 7]>,
    lm_head: Vec<u16>,
}

impl PackedWeights {
    /// Bytes the panels of these weights take.
    pub fn bytes_for(blocks: &[Block], lm_head: &WeightMatrix) -> u64 {
        let panels = |w: &WeightMatrix| 2 * bf16::packed_b_len(w.cols, w.rows) as u64;
        blocks.iter().flat_map(|b| LoraTarget::ALL.map(|t| panels(b.weight(t)))).sum::<u64>() + panels(lm_head)
    }

    /// Whether `bytes` of panels fit in a quarter of the memory the system reports available
    /// (`MemAvailable`): packing must never be what pushes a host into swap or the OOM
    /// killer. Where the figure cannot be read, they are taken to fit.
    pub fn fits(bytes: u64) -> bool {
        super::full::available_memory().is_none_or(|available| bytes <= available / 4)
    }

    /// Pack every weight, on the current rayon pool.
    pub fn pack(blocks: &[Block], lm_head: &WeightMatrix, file: &[u8]) -> PackedWeights {
        let blocks = blocks.par_iter().map(|b| LoraTarget::ALL.map(|t| pack_weight_bf16(b.weight(t), file))).collect();
        PackedWeights { blocks, lm_head: pack_weight_bf16(lm_head, file) }
    }

    /// The panels of projection `t` of block `l`.
    pub fn proj(&self, l: usize, t: LoraTarget) -> &[u16] {
        &self.blocks[l][t.index()]
    }

    pub fn lm_head(&self) -> &[u16] {
        &self.lm_head
    }

    pub fn bytes(&self) -> u64 {
        2 * (self.blocks.iter().flatten().map(Vec::len).sum::<usize>() + self.lm_head.len()) as u64
    }
}
