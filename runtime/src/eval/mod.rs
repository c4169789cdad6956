//! Evaluation: metrics that match their reference implementations, and the harness that runs
//! a model over a data set.
//!
//! - [`bleu`] and [`chrf`]: corpus BLEU and chrF equal to sacreBLEU's defaults.
//! - [`squad`]: SQuAD v1.1 exact match and token F1 with the official normalisation.
//! - [`perplexity`]: llama-perplexity's method over any engine that yields logits.
//! - [`choice`]: multiple-choice accuracy by the model's log-likelihood of each option.
//! - [`agreement`]: top-1 agreement and KL divergence between two engines' logits.

pub mod agreement;
pub mod bleu;
pub mod choice;
pub mod chrf;
pub mod data;
pub mod perplexity;
pub mod squad;

pub mod run;
