//! The layers of the LLaMA decoder, each a forward function and the backward function that
//! goes with it, side by side, with the shapes they take in their module docs:
//!
//! - `embedding`: token ids to rows of the embedding table;
//! - `linear`: a frozen projection with an optional LoRA branch (and its dropout);
//! - `norm`: RMSNorm;
//! - `rope`: rotary position embeddings;
//! - `attention`: causal grouped-query attention, with optional dropout on its probabilities
//!   (`attention_bf16`: its products on the bf16 path);
//! - `dropout`: counter-based dropout masks (residual and attention dropout);
//! - `swiglu`: the MLP's gate;
//! - `head`: final norm, LM head and the next-token loss.
//!
//! `pass.rs` chains them into the one model pass that inference, scoring and training share.

pub mod attention;
mod attention_bf16;
pub mod dropout;
pub mod embedding;
pub(crate) mod head;
pub(crate) mod linear;
pub mod norm;
pub mod rope;
pub mod swiglu;
