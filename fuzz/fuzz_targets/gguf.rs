//! libFuzzer's entry to `lamina_fuzz::checks::gguf`, where the contract is documented.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lamina_fuzz::checks::gguf::run(data));
