//! Arbitrary bytes as a Hugging Face `config.json`.
//!
//! Contract: `LlamaConfig::from_hf_config_json` either succeeds or returns `Error::Data`
//! naming the file; a configuration it accepts survives `to_hf_config_json` unchanged.

use crate::{assert_data_error, hf_config_from_bytes};

pub fn run(data: &[u8]) {
    match hf_config_from_bytes(data) {
        Ok(config) => {
            config.validate().expect("an accepted configuration is valid");
            let json = serde_json::to_vec(&config.to_hf_config_json()).unwrap();
            let back = hf_config_from_bytes(&json).expect("to_hf_config_json output reads back");
            assert_eq!(config, back, "LlamaConfig changed through config.json");
        }
        Err(e) => assert_data_error(&e),
    }
}
