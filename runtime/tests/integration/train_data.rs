//! Training data on the default model's tokenizer and chat template: the target masks of every
//! record format are exact (decoded targets are precisely the completion, the assistant turns),
//! packing keeps every target within max_len, the split is deterministic and disjoint, and each
//! kind of bad record is its own error naming the line.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lamina::chat::ChatMessage;
use lamina::engine::ChatTemplate;
use lamina::native::train_data::{self, load_dataset, pack, shuffled_order, validation_count, DataOptions, Dataset};
use lamina::native::train_records::{parse_records, Location, Record};
use lamina::native::{Example, Tokenizer};
use lamina::weights::gguf::Gguf;
use lamina::Error;

fn tmp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-train-data-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

struct Fixture {
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let g = Gguf::open(lamina::paths::default_model_path()).expect("the default model is a GGUF file");
        let tokenizer = Tokenizer::from_gguf(&g).expect("the default model's vocabulary builds");
        let template = train_data::chat_template_from_gguf(&g, &tokenizer).expect("the default model has a chat template");
        Fixture { tokenizer, template }
    })
}

fn tok() -> &'static Tokenizer {
    &fixture().tokenizer
}

fn template() -> &'static ChatTemplate {
    &fixture().template
}

fn decode(ids: &[u32]) -> String {
    tok().decode(ids).unwrap()
}

/// The decoded text of each maximal run of target tokens.
fn target_spans(example: &Example) -> Vec<String> {
    let mut spans = Vec::new();
    let mut run = Vec::new();
    for (t, (&id, &target)) in example.tokens.iter().zip(&example.targets).enumerate() {
        if target && t > 0 {
            run.push(id);
        } else if !run.is_empty() {
            spans.push(decode(&std::mem::take(&mut run)));
        }
    }
    if !run.is_empty() {
        spans.push(decode(&run));
    }
    spans
}

fn show(label: &str, example: &Example) {
    println!("--- {label}: {} tokens, {} targets", example.tokens.len(), example.n_targets());
    println!("text:    {:?}", decode(&example.tokens));
    println!("targets: {:?}", target_spans(example));
}

fn load(path: &Path, template: Option<&ChatTemplate>, options: &DataOptions) -> lamina::Result<Dataset> {
    load_dataset(path, tok(), template, options)
}

fn one(path: &Path, template: Option<&ChatTemplate>) -> Example {
    let data = load(path, template, &DataOptions::default()).unwrap();
    assert_eq!(data.stats.records, 1);
    assert_eq!(data.train.len(), 1);
    assert!(data.val.is_empty());
    data.train.into_iter().next().unwrap()
}

/// (line, reason) of a data error; panics on anything else.
fn data_error(result: lamina::Result<Dataset>) -> (Option<usize>, String) {
    match result {
        Err(Error::Data { line, reason, .. }) => (line, reason),
        Err(other) => panic!("expected a data error, got {other:?}"),
        Ok(d) => panic!("expected a data error, got {} records", d.stats.records),
    }
}

fn expect_error(name: &str, contents: &str, line: usize, needle: &str) {
    let path = tmp(name, contents);
    let (got_line, reason) = data_error(load(&path, Some(template()), &DataOptions { max_len: 64, ..DataOptions::default() }));
    println!("{name}: line {got_line:?}: {reason}");
    assert_eq!(got_line, Some(line), "{name}: {reason}");
    assert!(reason.contains(needle), "{name}: `{reason}` does not mention `{needle}`");
}

#[test]
fn text_record_targets_every_token_after_the_first() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let ex = one(&tmp("text.jsonl", &format!("{}\n", serde_json::json!({ "text": text }))), None);
    show("text", &ex);
    assert_eq!(ex.tokens, tok().encode(text, true).unwrap());
    assert!(!ex.targets[0]);
    assert!(ex.targets[1..].iter().all(|&t| t));
    assert_eq!(ex.n_targets(), ex.tokens.len() - 1);
    assert_eq!(decode(&ex.tokens), text);
}

#[test]
fn prompt_completion_boundary_is_exact_and_ends_with_eos() {
    // "answer:" followed by "42" could merge differently when tokenized as one string; the
    // boundary must follow the two fields.
    let (prompt, completion) = ("Question: what is six times seven? Answer:", " 42, of course.");
    let ex = one(&tmp("pc.jsonl", &format!("{}\n", serde_json::json!({ "prompt": prompt, "completion": completion }))), None);
    show("prompt/completion", &ex);
    let p = tok().encode(prompt, true).unwrap();
    let c = tok().encode(completion, true).unwrap();
    let eos = tok().eos_token().expect("the default model has an EOS token");
    let mut expected = p.clone();
    expected.extend(&c);
    expected.push(eos);
    assert_eq!(ex.tokens, expected);
    assert!(ex.targets[..p.len()].iter().all(|&t| !t), "no prompt token is a target");
    assert!(ex.targets[p.len()..].iter().all(|&t| t), "every completion token and EOS is a target");
    assert_eq!(ex.n_targets(), c.len() + 1);
    let eos_text = tok().id_to_token(eos).unwrap();
    assert_eq!(target_spans(&ex), vec![format!("{completion}{eos_text}")]);
}

#[test]
fn chat_template_renders_chatml_turns_with_a_trailing_newline() {
    // The precise shape the masks below rely on: each turn is `<|im_start|>role\ncontent<|im_end|>\n`,
    // the generation prompt is `<|im_start|>assistant\n`, and a default system turn is added
    // when the conversation has none.
    let (text, _) = template().render(&[ChatMessage::user("Hi"), ChatMessage::assistant("Hello")], false).unwrap();
    assert!(text.starts_with("<|im_start|>system\n"), "{text:?}");
    assert!(text.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"), "{text:?}");
    let (prompt, _) = template().render(&[ChatMessage::user("Hi")], true).unwrap();
    assert!(prompt.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), "{prompt:?}");
}

#[test]
fn messages_targets_are_exactly_the_assistant_turns() {
    let record = serde_json::json!({ "messages": [
        { "role": "system", "content": "You are terse." },
        { "role": "user", "content": "What is the capital of France?" },
        { "role": "assistant", "content": "Paris." },
        { "role": "user", "content": "And of Italy?" },
        { "role": "assistant", "content": "Rome, since 1871." },
        { "role": "user", "content": "Thanks! (no answer follows)" },
    ]});
    let ex = one(&tmp("messages.jsonl", &format!("{record}\n")), Some(template()));
    show("messages", &ex);
    // The assistant content, `<|im_end|>` and the newline the template writes inside the turn.
    assert_eq!(target_spans(&ex), vec!["Paris.<|im_end|>\n".to_string(), "Rome, since 1871.<|im_end|>\n".to_string()]);
    // `<|im_end|>` is the special token, not its characters, and it is a target.
    let im_end = tok().token_to_id("<|im_end|>").unwrap();
    let im_start = tok().token_to_id("<|im_start|>").unwrap();
    let target_ids: Vec<u32> = ex.tokens.iter().zip(&ex.targets).filter(|(_, &t)| t).map(|(&id, _)| id).collect();
    assert_eq!(target_ids.iter().filter(|&&id| id == im_end).count(), 2);
    assert!(!target_ids.contains(&im_start), "the assistant header is context, not target");
    // The whole text is the template's rendering through the last assistant turn (the
    // trailing user turn carries no target and is not kept).
    let messages: Vec<ChatMessage> = match &parse_records(&tmp("messages2.jsonl", &format!("{record}\n"))).unwrap()[0].record {
        Record::Messages(m) => m.clone(),
        other => panic!("parsed as {other:?}"),
    };
    let (rendered, _) = template().render(&messages[..5], false).unwrap();
    assert_eq!(decode(&ex.tokens), rendered);
    assert!(!decode(&ex.tokens).contains("no answer follows"));
    // Each target span starts right after the generation prompt.
    let first = ex.targets.iter().position(|&t| t).unwrap();
    assert!(decode(&ex.tokens[..first]).ends_with("<|im_start|>assistant\n"));
    assert_eq!(ex.tokens[0], im_start);
}

#[test]
fn messages_without_a_system_turn_get_the_templates_default_and_no_target_there() {
    let record = serde_json::json!({ "messages": [
        { "role": "user", "content": "Say hi." },
        { "role": "assistant", "content": "Hi!" },
    ]});
    let ex = one(&tmp("messages-nosys.jsonl", &format!("{record}\n")), Some(template()));
    show("messages (default system)", &ex);
    assert_eq!(target_spans(&ex), vec!["Hi!<|im_end|>\n".to_string()]);
    assert!(decode(&ex.tokens).starts_with("<|im_start|>system\n"));
}

#[test]
fn instruction_records_in_a_json_array() {
    let records = serde_json::json!([
        { "instruction": "Who are you?", "input": "", "output": "I am a small assistant." },
        { "instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour" },
        { "instruction": "Be brief.", "input": null, "output": "OK", "system": "You are helpful." },
    ]);
    let path = tmp("alpaca.json", &serde_json::to_string_pretty(&records).unwrap());
    let parsed = parse_records(&path).unwrap();
    assert_eq!(parsed.iter().map(|r| r.location).collect::<Vec<_>>(), vec![Location::Item(0), Location::Item(1), Location::Item(2)]);
    assert_eq!(
        parsed[1].record,
        Record::Instruction { system: None, prompt: "Translate to French.\n\nGood morning".into(), output: "Bonjour".into() }
    );
    assert_eq!(
        parsed[2].record,
        Record::Instruction { system: Some("You are helpful.".into()), prompt: "Be brief.".into(), output: "OK".into() }
    );

    // With the chat template: a conversation whose targets are the output and the end of turn.
    for sourced in &parsed {
        let ex = train_data::tokenize_record(&sourced.record, tok(), Some(template())).unwrap();
        show("instruction (chat)", &ex);
        let Record::Instruction { prompt, output, system } = &sourced.record else { unreachable!() };
        assert_eq!(target_spans(&ex), vec![format!("{output}<|im_end|>\n")]);
        let text = decode(&ex.tokens);
        assert!(text.contains(&format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")), "{text:?}");
        if let Some(system) = system {
            assert!(text.starts_with(&format!("<|im_start|>system\n{system}<|im_end|>\n")), "{text:?}");
        }
    }

    // Without a template: prompt (ending with a blank line) and completion, then EOS.
    let ex = train_data::tokenize_record(&parsed[1].record, tok(), None).unwrap();
    show("instruction (plain)", &ex);
    let eos_text = tok().id_to_token(tok().eos_token().unwrap()).unwrap();
    assert_eq!(target_spans(&ex), vec![format!("Bonjour{eos_text}")]);
    assert_eq!(decode(&ex.tokens), format!("Translate to French.\n\nGood morning\n\nBonjour{eos_text}"));

    let data = load(&path, Some(template()), &DataOptions::default()).unwrap();
    assert_eq!(data.stats.records, 3);
}

#[test]
fn mixed_formats_and_blank_lines() {
    let contents = [
        serde_json::json!({ "text": "Plain text for language modelling." }).to_string(),
        String::new(),
        serde_json::json!({ "prompt": "2+2=", "completion": "4", "id": 7 }).to_string(),
        "   ".to_string(),
        serde_json::json!({ "messages": [{ "role": "user", "content": "Hi" }, { "role": "assistant", "content": "Hello" }] }).to_string(),
        serde_json::json!({ "instruction": "Count to three.", "output": "1, 2, 3" }).to_string(),
    ]
    .join("\n");
    let path = tmp("mixed.jsonl", &contents);
    let parsed = parse_records(&path).unwrap();
    let lines: Vec<Location> = parsed.iter().map(|r| r.location).collect();
    assert_eq!(lines, vec![Location::Line(1), Location::Line(3), Location::Line(5), Location::Line(6)]);
    assert!(matches!(parsed[0].record, Record::Text(_)));
    assert!(matches!(parsed[1].record, Record::PromptCompletion { .. }));
    assert!(matches!(parsed[2].record, Record::Messages(_)));
    assert!(matches!(parsed[3].record, Record::Instruction { .. }));

    let data = load(&path, Some(template()), &DataOptions::default()).unwrap();
    let s = data.stats;
    println!("{s:?}");
    assert_eq!((s.records, s.train_records, s.val_records, s.train_sequences, s.val_sequences, s.truncated), (4, 4, 0, 4, 0, 0));
    let examples: Vec<Example> = parsed.iter().map(|r| train_data::tokenize_record(&r.record, tok(), Some(template())).unwrap()).collect();
    assert_eq!(s.tokens, examples.iter().map(|e| e.tokens.len()).sum::<usize>());
    assert_eq!(s.target_tokens, examples.iter().map(Example::n_targets).sum::<usize>());
    assert_eq!(s.train_target_tokens, s.target_tokens);
    assert_eq!(s.longest, examples.iter().map(|e| e.tokens.len()).max().unwrap());
    for (label, ex) in ["text", "prompt/completion", "messages", "instruction"].iter().zip(&examples) {
        show(label, ex);
    }
}

fn numbered_texts(n: usize) -> String {
    (0..n).map(|i| serde_json::json!({ "text": format!("Record number {i} says something about item {i}.") }).to_string() + "\n").collect()
}

/// The record index of an example made by `numbered_texts`.
fn record_number(ex: &Example) -> usize {
    let text = decode(&ex.tokens);
    text.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn split_is_deterministic_disjoint_and_sized() {
    let path = tmp("split.jsonl", &numbered_texts(10));
    let options = DataOptions { val_fraction: 0.25, seed: 42, ..DataOptions::default() };
    let a = load(&path, None, &options).unwrap();
    let b = load(&path, None, &options).unwrap();
    let ids = |d: &Dataset| (d.train.iter().map(record_number).collect::<Vec<_>>(), d.val.iter().map(record_number).collect::<Vec<_>>());
    let (train, val) = ids(&a);
    println!("seed 42: train {train:?} val {val:?}");
    assert_eq!(ids(&a), ids(&b), "same seed, same split and order");
    assert_eq!(val.len(), 3, "ceil(0.25 * 10)");
    assert_eq!(train.len(), 7);
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "disjoint and complete");
    assert_eq!((a.stats.train_records, a.stats.val_records, a.stats.val_sequences), (7, 3, 3));
    assert_eq!(a.stats.train_target_tokens + a.stats.val_target_tokens, a.stats.target_tokens);
    assert_eq!(a.stats.val_target_tokens, a.val.iter().map(Example::n_targets).sum::<usize>());

    // The order is the seeded shuffle; another seed gives another one.
    let order = shuffled_order(10, 42);
    assert_eq!(train, order[..7].to_vec());
    assert_eq!(val, order[7..].to_vec());
    let c = load(&path, None, &DataOptions { seed: 43, ..options }).unwrap();
    assert_ne!(ids(&c), ids(&a));

    // Sizes: at least one held out when asked and possible, never the whole set.
    assert_eq!(validation_count(10, 0.0), 0);
    assert_eq!(validation_count(10, 0.01), 1);
    assert_eq!(validation_count(10, 0.1), 1);
    assert_eq!(validation_count(10, 0.11), 2);
    assert_eq!(validation_count(30, 0.1), 3, "no rounding error pushes an exact product up");
    assert_eq!(validation_count(20, 0.2), 4);
    assert_eq!(validation_count(2, 0.9), 1);
    assert_eq!(validation_count(1, 0.5), 0);
    let single = load(&tmp("single.jsonl", &numbered_texts(1)), None, &options).unwrap();
    assert_eq!((single.train.len(), single.val.len()), (1, 0));

    // Bad options are errors.
    for bad in
        [DataOptions { val_fraction: 1.0, ..options }, DataOptions { val_fraction: -0.1, ..options }, DataOptions { max_len: 1, ..options }]
    {
        assert!(matches!(load(&path, None, &bad), Err(Error::InvalidArgument { .. })), "{bad:?}");
    }
}

#[test]
fn packing_respects_max_len_and_keeps_every_target() {
    let path = tmp("pack.jsonl", &numbered_texts(20));
    let plain = DataOptions { max_len: 40, val_fraction: 0.2, seed: 7, ..DataOptions::default() };
    let packed = DataOptions { pack: true, ..plain };
    let a = load(&path, None, &plain).unwrap();
    let b = load(&path, None, &packed).unwrap();
    println!("unpacked {:?}\npacked   {:?}", a.stats, b.stats);
    assert!(b.train.len() < a.train.len(), "packing makes fewer sequences");
    assert!(b.train.iter().all(|s| s.tokens.len() <= 40 && s.tokens.len() == s.targets.len()));
    // Same examples in the same order, every token and target kept, boundaries not targets.
    let concat = |d: &Dataset| -> (Vec<u32>, Vec<bool>) {
        (d.train.iter().flat_map(|s| s.tokens.clone()).collect(), d.train.iter().flat_map(|s| s.targets.clone()).collect())
    };
    assert_eq!(concat(&a), concat(&b));
    let targets = |d: &Dataset| d.train.iter().map(Example::n_targets).sum::<usize>();
    assert_eq!(targets(&a), targets(&b));
    assert_eq!(targets(&b), b.stats.train_target_tokens);
    assert_eq!(b.stats.train_sequences, b.train.len());
    assert_eq!(b.stats.train_records, 16);
    // Validation is never packed.
    assert_eq!(b.val.len(), 4);
    assert_eq!(a.val.iter().map(|e| e.tokens.clone()).collect::<Vec<_>>(), b.val.iter().map(|e| e.tokens.clone()).collect::<Vec<_>>());
    // Greedy: no two neighbouring packs would fit together in one.
    for w in b.train.windows(2) {
        let first_of_next = a.train.iter().find(|e| w[1].tokens.starts_with(&e.tokens)).unwrap();
        assert!(w[0].tokens.len() + first_of_next.tokens.len() > 40);
    }
    show("pack 0", &b.train[0]);

    // `pack` clears the first flag of each example, even if a caller left it set.
    let x = Example { tokens: vec![1, 2, 3], targets: vec![true, true, true] };
    let packs = pack(&[x.clone(), x.clone(), x], 6);
    assert_eq!(packs.len(), 2);
    assert_eq!(packs[0].targets, vec![false, true, true, false, true, true]);
    assert_eq!(packs[1].targets, vec![false, true, true]);
}

#[test]
fn too_long_records_fail_unless_truncation_is_on() {
    let long = "word ".repeat(100);
    let contents = format!("{}\n{}\n", serde_json::json!({ "text": "short text here" }), serde_json::json!({ "text": long }));
    let path = tmp("long.jsonl", &contents);
    let options = DataOptions { max_len: 32, ..DataOptions::default() };
    let (line, reason) = data_error(load(&path, None, &options));
    println!("line {line:?}: {reason}");
    assert_eq!(line, Some(2));
    assert!(reason.contains("more than max_len = 32"), "{reason}");

    let data = load(&path, None, &DataOptions { truncate: true, ..options }).unwrap();
    assert_eq!(data.stats.truncated, 1);
    assert_eq!(data.stats.longest, 32);
    assert!(data.train.iter().all(|e| e.tokens.len() <= 32));
    let full = tok().encode("short text here", true).unwrap().len();
    assert_eq!(data.stats.tokens, 32 + full);
    assert_eq!(data.stats.target_tokens, 31 + full - 1);

    // Truncation that leaves no target is still an error, not a silent drop.
    let pc = serde_json::json!({ "prompt": long, "completion": "the end" });
    let (line, reason) = data_error(load(&tmp("long-pc.jsonl", &format!("{pc}\n")), None, &DataOptions { truncate: true, ..options }));
    assert_eq!(line, Some(1));
    assert!(reason.contains("no target token"), "{reason}");
}

#[test]
fn bad_records_name_their_line_and_reason() {
    let ok = serde_json::json!({ "text": "a fine line of text" }).to_string();
    let cases: &[(&str, &str, &str)] = &[
        ("invalid-json", "{\"text\": \"unterminated}", "invalid JSON"),
        ("not-object", "[1, 2]", "expected a JSON object, got a list"),
        ("string-line", "\"just a string\"", "expected a JSON object, got a string"),
        ("no-known-fields", "{\"question\": \"q\", \"answer\": \"a\"}", "no known fields"),
        ("empty-object", "{}", "found none"),
        ("several-formats", "{\"text\": \"t\", \"prompt\": \"p\", \"completion\": \"c\"}", "several formats"),
        ("text-type", "{\"text\": 5}", "`text` must be a string, got a number"),
        ("text-empty", "{\"text\": \"   \"}", "`text` is empty"),
        ("completion-missing", "{\"prompt\": \"p\"}", "missing `completion`"),
        ("prompt-empty", "{\"prompt\": \"\", \"completion\": \"c\"}", "`prompt` is empty"),
        ("messages-type", "{\"messages\": \"hi\"}", "`messages` must be a list"),
        ("messages-empty", "{\"messages\": []}", "empty list"),
        ("message-type", "{\"messages\": [\"hi\"]}", "`messages[0]` must be an object"),
        ("role-missing", "{\"messages\": [{\"content\": \"hi\"}]}", "missing `messages[0].role`"),
        (
            "unknown-role",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"tool\", \"content\": \"x\"}]}",
            "unknown role `tool`",
        ),
        ("content-type", "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}", "`messages[0].content` must be a string"),
        (
            "content-empty",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"\"}]}",
            "`messages[1].content` is empty",
        ),
        ("no-assistant", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "no assistant turn"),
        ("output-missing", "{\"instruction\": \"do it\"}", "missing `output`"),
        ("input-type", "{\"instruction\": \"do it\", \"input\": 3, \"output\": \"ok\"}", "`input` must be a string"),
        ("history", "{\"instruction\": \"i\", \"output\": \"o\", \"history\": [[\"a\", \"b\"]]}", "`history`"),
        ("single-token", "{\"text\": \"a\"}", "single token"),
        ("too-long", &format!("{{\"text\": \"{}\"}}", "many words ".repeat(50)), "more than max_len = 64"),
    ];
    for (name, bad, needle) in cases {
        // Two good lines and a blank one first, so the line number is not trivially 1.
        expect_error(&format!("{name}.jsonl"), &format!("{ok}\n\n{ok}\n{bad}\n{ok}\n"), 4, needle);
    }
}

#[test]
fn other_file_level_errors() {
    // JSON arrays name the record index.
    let path = tmp("bad-array.json", "[\n  {\"text\": \"fine\"},\n  {\"text\": \"\"}\n]\n");
    let (line, reason) = data_error(load(&path, None, &DataOptions::default()));
    println!("{reason}");
    assert_eq!(line, None);
    assert!(reason.starts_with("record [1]: `text` is empty"), "{reason}");
    let path = tmp("bad-array2.json", "[\n  {\"text\": \"fine\"},\n  42\n]\n");
    let (_, reason) = data_error(load(&path, None, &DataOptions::default()));
    assert!(reason.starts_with("record [1]: expected a JSON object"), "{reason}");
    // A broken array names the line of the syntax error.
    let path = tmp("broken-array.json", "[\n  {\"text\": \"fine\"},\n  {\"text\": }\n]\n");
    let (line, reason) = data_error(load(&path, None, &DataOptions::default()));
    assert_eq!(line, Some(3), "{reason}");
    assert!(reason.contains("invalid JSON"));
    // Empty files and files of blank lines.
    let (line, reason) = data_error(load(&tmp("empty.jsonl", ""), None, &DataOptions::default()));
    assert_eq!(line, None);
    assert!(reason.contains("empty"), "{reason}");
    let (_, reason) = data_error(load(&tmp("empty-array.json", "[]"), None, &DataOptions::default()));
    assert!(reason.contains("no records"), "{reason}");
    // A conversation without a template is an error on its line.
    let convo = serde_json::json!({ "messages": [{ "role": "user", "content": "Hi" }, { "role": "assistant", "content": "Hello" }] });
    let path = tmp("no-template.jsonl", &format!("{}\n{convo}\n", serde_json::json!({ "text": "fine text" })));
    let (line, reason) = data_error(load(&path, None, &DataOptions::default()));
    assert_eq!(line, Some(2));
    assert!(reason.contains("chat template"), "{reason}");
    // A missing file.
    let missing = std::env::temp_dir().join("lamina-train-data-tests-no-such-file.jsonl");
    assert!(load(&missing, None, &DataOptions::default()).is_err());
}
