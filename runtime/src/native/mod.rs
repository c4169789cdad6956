//! The native engine (forward and backward passes in Rust): model configuration first.

pub mod config;

pub use config::{LlamaConfig, RopeScaling};
