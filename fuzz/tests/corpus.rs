//! Every checked-in input through its target's check, without libFuzzer: the seed corpora
//! (`corpus/<target>/`) and the inputs that once broke a target (`regressions/<target>/`).
//! CI runs this (`cargo test --no-default-features` in `fuzz/`), so a fixed crash
//! stays fixed even where no fuzzer is installed.

use std::path::Path;

use lamina_fuzz::checks::ALL;

#[test]
fn every_checked_in_input_keeps_its_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, check) in ALL {
        let mut ran = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target}: {} broke the contract", path.display());
                ran += 1;
            }
        }
        println!("{target}: {ran} inputs");
        assert!(ran > 0, "{target} has no seed inputs: run `cargo run --release --example gen_seeds`");
    }
}

/// The seeds are only useful if they get past the parsers into the deeper checks: each one
/// named here must be accepted.
#[test]
fn the_seeds_are_valid_inputs() {
    use lamina_fuzz::adapters::{parse_peft_config, peft_tensors, validate_gguf_adapter};
    use lamina_fuzz::chat::{ChatMessage, JinjaTemplate};
    use lamina_fuzz::eval::data::{parse_choices, parse_qa, parse_translations};
    use lamina_fuzz::native::train_records::parse_records_text;
    use lamina_fuzz::{gguf_from_bytes, peft_config_path, safetensors_from_bytes, tiny_base, tiny_config, MEMORY_PATH};

    let seed =
        |target: &str, name: &str| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target).join(name)).unwrap();
    let text = |target: &str, name: &str| String::from_utf8(seed(target, name)).unwrap();
    let path = Path::new(MEMORY_PATH);

    for name in ["seed-q-v-f32.gguf", "seed-all-f16.gguf", "seed-layer1-down.gguf"] {
        let g = gguf_from_bytes(&seed("gguf_adapter", name)).unwrap();
        validate_gguf_adapter(&g, tiny_base()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["seed-q-k-down.bin", "seed-rslora-v.bin"] {
        let data = seed("peft_adapter", name);
        let len = u16::from_le_bytes([data[0], data[1]]) as usize;
        let peft = parse_peft_config(&peft_config_path(), std::str::from_utf8(&data[2..2 + len]).unwrap()).unwrap();
        let st = safetensors_from_bytes(&data[2 + len..]).unwrap();
        peft_tensors(&st, &peft, tiny_config()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(parse_records_text(path, &text("train_records", "seed-formats.jsonl")).unwrap().len(), 5);
    assert_eq!(parse_records_text(path, &text("train_records", "seed-array.json")).unwrap().len(), 3);
    assert_eq!(parse_qa(path, &text("eval_records", "seed-qa.jsonl")).unwrap().len(), 2);
    assert_eq!(parse_translations(path, &text("eval_records", "seed-translations.jsonl")).unwrap().len(), 2);
    assert_eq!(parse_choices(path, &text("eval_records", "seed-choices.jsonl")).unwrap().len(), 2);
    for name in ["seed-chatml.bin", "seed-llama3.bin", "seed-macros-filters.bin"] {
        let data = seed("chat_template", name);
        let nul = data.iter().position(|&b| b == 0).unwrap();
        let template = JinjaTemplate::compile(std::str::from_utf8(&data[..nul]).unwrap()).unwrap();
        let messages = [ChatMessage::system("s"), ChatMessage::user("u"), ChatMessage::assistant("a")];
        template.render(&messages, true, "<s>", "</s>").unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}
