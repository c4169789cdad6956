//! What a [`Trainer`](super::train::Trainer) can train: a LoRA adapter ([`LoraWeights`]) or
//! every weight of the model ([`FullWeights`]). The trainer owns the optimizer, the data order
//! and the checkpoints; a trainable kind brings its parameters' start, their tensors in a fixed
//! order with stable names (for the optimizer and the checkpoint files), which of them are
//! norm weights or embeddings (the tensors weight decay may leave alone), and its pass.

use super::full::FullWeights;
use super::lora::{LoraTarget, LoraWeights};
use super::model::NativeModel;
use super::pass::{BlockDropout, Example, PassLoss, PassOptions};
use super::train::TrainConfig;
use crate::error::{Error, Result};

/// Parameters a trainer can optimise.
pub trait Trainable: Clone + Send + Sync {
    /// The kind's name, the prefix of its tensors in checkpoints (`lora`, `full`).
    const KIND: &'static str;

    /// The parameters a fresh run starts from.
    fn init(model: &NativeModel, config: &TrainConfig) -> Result<Self>;

    /// Same shapes, all zeros (gradients, optimizer moments).
    fn zeros_like(&self) -> Self;

    /// Every tensor with its name, in the order of [`tensors_mut`](Self::tensors_mut).
    fn named_tensors(&self) -> Vec<(String, &[f32])>;

    /// Every tensor, mutably: parameters of the same shapes line up index by index.
    fn tensors_mut(&mut self) -> Vec<&mut [f32]>;

    /// One flag per tensor, in the order of [`tensors_mut`](Self::tensors_mut): whether it is
    /// a norm weight or an embedding, which a run may exempt from weight decay (none by
    /// default).
    fn norms_and_embeddings(&self) -> Vec<bool> {
        vec![false; self.named_tensors().len()]
    }

    /// Summed target NLL of `batch`, without gradients.
    fn loss(&self, model: &NativeModel, batch: &[Example]) -> Result<PassLoss>;

    /// Summed target NLL of `batch`, its gradients added into `grads`, with the blocks'
    /// residual and attention `dropout` (where the kind supports it).
    fn loss_and_grads(
        &self,
        model: &NativeModel,
        batch: &[Example],
        options: PassOptions,
        dropout: BlockDropout,
        grads: &mut Self,
    ) -> Result<PassLoss>;
}

impl Trainable for LoraWeights {
    const KIND: &'static str = "lora";

    fn init(model: &NativeModel, config: &TrainConfig) -> Result<Self> {
        LoraWeights::new(model.config(), &config.lora_config()?, config.seed)
    }

    fn zeros_like(&self) -> Self {
        LoraWeights::zeros_like(self)
    }

    fn named_tensors(&self) -> Vec<(String, &[f32])> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (i, pair) in layer.iter().enumerate() {
                if let Some(p) = pair {
                    let t = LoraTarget::ALL[i].hf_name();
                    out.push((format!("{l}.{t}.a"), p.a.as_slice()));
                    out.push((format!("{l}.{t}.b"), p.b.as_slice()));
                }
            }
        }
        out
    }

    fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        LoraWeights::tensors_mut(self)
    }

    fn loss(&self, model: &NativeModel, batch: &[Example]) -> Result<PassLoss> {
        model.loss(Some(self), batch)
    }

    /// A LoRA adapter has its own dropout ([`LoraConfig::dropout`](super::lora::LoraConfig));
    /// residual and attention dropout are for full-parameter training.
    fn loss_and_grads(
        &self,
        model: &NativeModel,
        batch: &[Example],
        options: PassOptions,
        dropout: BlockDropout,
        grads: &mut Self,
    ) -> Result<PassLoss> {
        if dropout != BlockDropout::default() {
            return Err(Error::invalid(
                "dropout",
                "residual and attention dropout apply to full-parameter training, not to a LoRA adapter",
            ));
        }
        model.loss_and_grads(self, batch, options, grads)
    }
}

impl Trainable for FullWeights {
    const KIND: &'static str = "full";

    /// The model's own weights in f32, after checking that a run fits in memory.
    fn init(model: &NativeModel, config: &TrainConfig) -> Result<Self> {
        model.check_full_training_fits(config.activation_memory_mib << 20)?;
        Ok(model.full_weights())
    }

    fn zeros_like(&self) -> Self {
        FullWeights::zeros_like(self)
    }

    fn named_tensors(&self) -> Vec<(String, &[f32])> {
        let mut out: Vec<(String, &[f32])> = vec![("token_embd".into(), self.embed.as_slice())];
        for (l, b) in self.blocks.iter().enumerate() {
            out.push((format!("blk.{l}.attn_norm"), b.attn_norm.as_slice()));
            out.push((format!("blk.{l}.ffn_norm"), b.ffn_norm.as_slice()));
            for t in LoraTarget::ALL {
                out.push((format!("blk.{l}.{}", t.gguf_name()), b.proj[t.index()].as_slice()));
            }
        }
        out.push(("output_norm".into(), self.final_norm.as_slice()));
        if let Some(h) = &self.lm_head {
            out.push(("output".into(), h.as_slice()));
        }
        out
    }

    fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        FullWeights::tensors_mut(self)
    }

    /// The token embedding (with the LM head when tied) and every RMSNorm weight; an untied
    /// LM head is a projection like the blocks' matrices.
    fn norms_and_embeddings(&self) -> Vec<bool> {
        self.named_tensors().iter().map(|(name, _)| name == "token_embd" || name.ends_with("norm")).collect()
    }

    fn loss(&self, model: &NativeModel, batch: &[Example]) -> Result<PassLoss> {
        model.loss_full(self, batch)
    }

    fn loss_and_grads(
        &self,
        model: &NativeModel,
        batch: &[Example],
        options: PassOptions,
        dropout: BlockDropout,
        grads: &mut Self,
    ) -> Result<PassLoss> {
        model.loss_and_full_grads_with(self, batch, options, dropout, grads)
    }
}
