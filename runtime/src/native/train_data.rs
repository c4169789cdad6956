//! Training data of the LoRA trainer: records read from a file, tokenized into [`Example`]s
//! whose target flags say which tokens count in the loss, split into train and validation sets,
//! and optionally packed into longer sequences.
//!
//! # Files
//!
//! JSONL (one JSON object per line, blank lines skipped) or a JSON array of objects (a file
//! whose first non-blank character is `[`, as llamafactory's `.json` datasets are). Formats may
//! be mixed within a file; each record is one of:
//!
//! - `{"text": str}`: plain language modelling; every token after the first is a target.
//! - `{"prompt": str, "completion": str}`: prompt and completion are tokenized separately and
//!   concatenated, so the boundary is exact whatever the tokenizer would merge across it; only
//!   the completion is a target, followed by EOS (also a target) when the tokenizer has one, so
//!   the model learns where to stop.
//! - `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`: rendered
//!   with the chat template; the targets are each assistant turn's text as the template renders
//!   it, i.e. the content and the end-of-turn marker (for ChatML: `content<|im_end|>\n`, the
//!   newline being part of the turn's rendering). Text after the last assistant turn carries no
//!   targets and is not kept.
//! - `{"instruction": str, "input"?: str, "output": str, "system"?: str}` (alpaca style): the
//!   prompt is `instruction` plus `"\n\n" + input` when `input` is non-empty. With a chat
//!   template it becomes a conversation (optional system message, the prompt as the user turn,
//!   `output` as the assistant turn); without one, a prompt/completion record whose prompt
//!   (after `system + "\n\n"` when given) ends with `"\n\n"` so the answer does not run on from
//!   the question.
//!
//! Other fields (`id`, metadata) are ignored, except `history` (multi-turn alpaca), which is
//! rejected rather than silently dropped. All text is tokenized with special-token parsing on,
//! so `<|im_end|>` written in the data is the special token, exactly as in rendered templates.
//! No BOS is added: the template, or the text, supplies whatever the model expects.
//!
//! # Errors
//!
//! Nothing is dropped or cut silently. A bad record is an [`Error::Data`] naming the file and
//! the 1-based line (JSONL) or the 0-based record index (`record [i]: ...` in the reason, for
//! JSON arrays), with the reason: invalid JSON, not an object, no known fields, fields of
//! several formats, a field of the wrong type, empty text, an unknown role, a conversation with
//! no assistant turn, a record with no target token, or a record longer than `max_len` tokens
//! (unless [`DataOptions::truncate`], which keeps the first `max_len` tokens and counts the
//! record in [`DatasetStats::truncated`]).
//!
//! # Split and packing
//!
//! The records are shuffled with a seeded generator; the last `ceil(val_fraction · N)` (at
//! least one when `val_fraction > 0` and `N >= 2`, at most `N - 1`) form the validation set.
//! With [`DataOptions::pack`], consecutive training examples (in the shuffled order) are
//! concatenated into sequences of at most `max_len` tokens, keeping every target flag; the
//! first token of each example stays a non-target, so no token is predicted from the previous
//! example's end. Attention still spans the example boundaries inside a pack (there is no
//! block-diagonal mask), as in most trainers: fewer, fuller sequences at the price of some
//! cross-example context. Validation examples are never packed, so the validation loss is each
//! example's own loss. No padding is added anywhere: the native engine takes sequences of any
//! length.

use std::path::Path;

use serde_json::{Map, Value};

use super::pass::Example;
use super::lora::SplitMix64;
use super::tokenizer::Tokenizer;
use crate::engine::{ChatMessage, ChatTemplate};
use crate::eval::data::type_name;
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;

/// One training record, as read from the file (before tokenization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Plain text: every token after the first is a target.
    Text(String),
    /// A prompt (context only) and its completion (the targets).
    PromptCompletion { prompt: String, completion: String },
    /// A conversation; the assistant turns are the targets. Roles are system, user or
    /// assistant, and there is at least one assistant turn.
    Messages(Vec<ChatMessage>),
    /// An alpaca-style instruction: `prompt` is already `instruction` (+ `"\n\n" + input`).
    Instruction { system: Option<String>, prompt: String, output: String },
}

/// Where a record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSONL file.
    Line(usize),
    /// 0-based index in a JSON array file.
    Item(usize),
}

/// A record and where it came from (for errors raised after parsing, such as length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedRecord {
    pub location: Location,
    pub record: Record,
}

/// How records become training sequences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataOptions {
    /// Longest sequence, in tokens (at least 2). A longer record is an error unless `truncate`.
    pub max_len: usize,
    /// Concatenate consecutive training examples into sequences of at most `max_len` tokens.
    pub pack: bool,
    /// Fraction of the records held out for validation, in [0, 1).
    pub val_fraction: f32,
    /// Seed of the shuffle that decides the order and the split.
    pub seed: u64,
    /// Cut records longer than `max_len` to their first `max_len` tokens instead of failing.
    pub truncate: bool,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions { max_len: 2048, pack: false, val_fraction: 0.0, seed: 0, truncate: false }
    }
}

/// Counts of what was loaded, so that nothing disappears unnoticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatasetStats {
    /// Records read from the file (every one becomes an example).
    pub records: usize,
    pub train_records: usize,
    pub val_records: usize,
    /// Sequences of the training set (fewer than `train_records` when packing).
    pub train_sequences: usize,
    pub val_sequences: usize,
    /// Tokens over all examples, after truncation.
    pub tokens: usize,
    /// Target tokens over all examples (the tokens that count in the loss).
    pub target_tokens: usize,
    pub train_target_tokens: usize,
    pub val_target_tokens: usize,
    /// Records cut to `max_len` (only with `truncate`).
    pub truncated: usize,
    /// Length of the longest example, in tokens, after truncation.
    pub longest: usize,
}

/// A tokenized, split (and possibly packed) dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub stats: DatasetStats,
}

fn data_error(path: &Path, location: Option<Location>, reason: impl Into<String>) -> Error {
    let reason = reason.into();
    match location {
        Some(Location::Line(line)) => Error::Data { path: path.to_path_buf(), line: Some(line), reason },
        Some(Location::Item(index)) => Error::Data { path: path.to_path_buf(), line: None, reason: format!("record [{index}]: {reason}") },
        None => Error::Data { path: path.to_path_buf(), line: None, reason },
    }
}

/// Read the records of a JSONL or JSON-array file. Errors: see the module documentation; a
/// file with no record at all is an error too.
pub fn parse_records(path: &Path) -> Result<Vec<SourcedRecord>> {
    let text = crate::eval::data::read_text(path)?;
    let mut records = Vec::new();
    if text.trim_start().starts_with('[') {
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| data_error(path, Some(Location::Line(e.line().max(1))), format!("invalid JSON: {e}")))?;
        let Value::Array(items) = value else { unreachable!("a JSON text starting with `[` is an array") };
        for (index, item) in items.iter().enumerate() {
            let location = Location::Item(index);
            let record = parse_value(item).map_err(|reason| data_error(path, Some(location), reason))?;
            records.push(SourcedRecord { location, record });
        }
    } else {
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let location = Location::Line(index + 1);
            let value: Value =
                serde_json::from_str(line).map_err(|e| data_error(path, Some(location), format!("invalid JSON: {e}")))?;
            let record = parse_value(&value).map_err(|reason| data_error(path, Some(location), reason))?;
            records.push(SourcedRecord { location, record });
        }
    }
    if records.is_empty() {
        return Err(data_error(path, None, "no records"));
    }
    Ok(records)
}

/// One record from its JSON value; the error is the reason.
pub fn parse_value(value: &Value) -> std::result::Result<Record, String> {
    let Value::Object(o) = value else { return Err(format!("expected a JSON object, got {}", type_name(value))) };
    let has = |k: &str| o.contains_key(k);
    let formats: Vec<&str> = [
        ("`text`", has("text")),
        ("`prompt`/`completion`", has("prompt") || has("completion")),
        ("`messages`", has("messages")),
        ("`instruction`/`output`", has("instruction") || has("output")),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    match formats.as_slice() {
        [] => {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            Err(format!(
                "no known fields (expected `text`, `prompt` and `completion`, `messages`, or `instruction` and `output`); found {}",
                if keys.is_empty() { "none".to_string() } else { keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ") }
            ))
        }
        [_] => {
            if has("text") {
                Ok(Record::Text(string_field(o, "text")?))
            } else if has("messages") {
                parse_messages(&o["messages"])
            } else if has("prompt") || has("completion") {
                Ok(Record::PromptCompletion { prompt: string_field(o, "prompt")?, completion: string_field(o, "completion")? })
            } else {
                if has("history") {
                    return Err("`history` (earlier turns) is not supported; write the record as `messages`".into());
                }
                let instruction = string_field(o, "instruction")?;
                let input = optional_string(o, "input")?.unwrap_or_default();
                let output = string_field(o, "output")?;
                let system = optional_string(o, "system")?.filter(|s| !s.trim().is_empty());
                let prompt = if input.trim().is_empty() { instruction } else { format!("{instruction}\n\n{input}") };
                Ok(Record::Instruction { system, prompt, output })
            }
        }
        several => Err(format!("fields of several formats in one record: {}", several.join(", "))),
    }
}

fn string_field(o: &Map<String, Value>, key: &str) -> std::result::Result<String, String> {
    match o.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("`{key}` is empty")),
        Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
        None => Err(format!("missing `{key}`")),
    }
}

fn optional_string(o: &Map<String, Value>, key: &str) -> std::result::Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("`{key}` must be a string, got {}", type_name(other))),
    }
}

fn parse_messages(value: &Value) -> std::result::Result<Record, String> {
    let Value::Array(items) = value else { return Err(format!("`messages` must be a list, got {}", type_name(value))) };
    if items.is_empty() {
        return Err("`messages` is an empty list".into());
    }
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else { return Err(format!("`messages[{i}]` must be an object, got {}", type_name(item))) };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.as_str(),
            Some(other) => return Err(format!("`messages[{i}].role` must be a string, got {}", type_name(other))),
            None => return Err(format!("missing `messages[{i}].role`")),
        };
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(format!("`messages[{i}]`: unknown role `{role}` (expected system, user or assistant)"));
        }
        let content = match m.get("content") {
            Some(Value::String(c)) => c.clone(),
            Some(other) => return Err(format!("`messages[{i}].content` must be a string, got {}", type_name(other))),
            None => return Err(format!("missing `messages[{i}].content`")),
        };
        // An empty system prompt is a legitimate choice; an empty user or assistant turn is
        // almost certainly a broken record.
        if role != "system" && content.trim().is_empty() {
            return Err(format!("`messages[{i}].content` is empty ({role} turn)"));
        }
        messages.push(ChatMessage::new(role, content));
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err("`messages` has no assistant turn (nothing to train on)".into());
    }
    Ok(Record::Messages(messages))
}

/// The chat template of a GGUF model (`tokenizer.chat_template`), with the BOS/EOS texts of
/// `tokenizer`; None when the model has no template.
pub fn chat_template_from_gguf(gguf: &Gguf, tokenizer: &Tokenizer) -> Option<ChatTemplate> {
    gguf.get("tokenizer.chat_template")?;
    let source = gguf.get_str("tokenizer.chat_template").ok()?.to_string();
    let text = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id)).unwrap_or_default();
    Some(ChatTemplate::new(Some(source), text(tokenizer.bos_token()), text(tokenizer.eos_token())))
}

/// Tokenize consecutive `(text, is_target)` segments separately and concatenate them, so that
/// each segment's boundary is a token boundary. The first token is never a target.
fn encode_segments(tokenizer: &Tokenizer, segments: &[(&str, bool)]) -> Result<Example> {
    let mut tokens = Vec::new();
    let mut targets = Vec::new();
    for &(text, target) in segments {
        if text.is_empty() {
            continue;
        }
        let ids = tokenizer.encode(text, true)?;
        targets.extend(std::iter::repeat_n(target, ids.len()));
        tokens.extend(ids);
    }
    if let Some(first) = targets.first_mut() {
        *first = false;
    }
    Ok(Example { tokens, targets })
}

/// Render a conversation and locate its assistant turns by rendering incrementally: the text
/// before assistant turn `i` is the rendering of `messages[..i]` with the generation prompt,
/// and the text through it is the rendering of `messages[..=i]`; the difference is the target
/// span. Returns the `(text, is_target)` segments up to the end of the last assistant turn.
/// Errors when the template does not render the conversation as a sequence of extensions
/// (then the spans cannot be located exactly).
pub fn conversation_segments(template: &ChatTemplate, messages: &[ChatMessage]) -> Result<Vec<(String, bool)>> {
    let last = messages
        .iter()
        .rposition(|m| m.role == "assistant")
        .ok_or_else(|| Error::ChatTemplate("the conversation has no assistant turn".into()))?;
    let (text, _) = template.render(&messages[..=last], false)?;
    let mut segments = Vec::new();
    let mut pos = 0;
    for (i, m) in messages[..=last].iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let (prefix, _) = template.render(&messages[..i], true)?;
        let through = if i == last { text.clone() } else { template.render(&messages[..=i], false)?.0 };
        if !text.starts_with(&prefix) || !text.starts_with(&through) || prefix.len() < pos || through.len() <= prefix.len() {
            return Err(Error::ChatTemplate(format!(
                "the chat template does not render this conversation incrementally, so assistant turn {i} cannot be located"
            )));
        }
        segments.push((text[pos..prefix.len()].to_string(), false));
        segments.push((text[prefix.len()..through.len()].to_string(), true));
        pos = through.len();
    }
    Ok(segments)
}

/// Tokenize one record into an example (untruncated). `template` is needed by `messages`
/// records, and turns instruction records into conversations.
pub fn tokenize_record(record: &Record, tokenizer: &Tokenizer, template: Option<&ChatTemplate>) -> Result<Example> {
    let eos: Vec<u32> = tokenizer.eos_token().into_iter().collect();
    let prompt_completion = |prompt: &str, completion: &str| -> Result<Example> {
        let mut example = encode_segments(tokenizer, &[(prompt, false), (completion, true)])?;
        example.tokens.extend(&eos);
        example.targets.extend(eos.iter().map(|_| true));
        Ok(example)
    };
    let conversation = |messages: &[ChatMessage]| -> Result<Example> {
        let template = template.ok_or_else(|| {
            Error::ChatTemplate("a conversation needs a chat template, and none was given (the model has none?)".into())
        })?;
        let segments = conversation_segments(template, messages)?;
        let borrowed: Vec<(&str, bool)> = segments.iter().map(|(s, t)| (s.as_str(), *t)).collect();
        encode_segments(tokenizer, &borrowed)
    };
    match record {
        Record::Text(text) => {
            let tokens = tokenizer.encode(text, true)?;
            let mut targets = vec![true; tokens.len()];
            if let Some(first) = targets.first_mut() {
                *first = false;
            }
            Ok(Example { tokens, targets })
        }
        Record::PromptCompletion { prompt, completion } => prompt_completion(prompt, completion),
        Record::Messages(messages) => conversation(messages),
        Record::Instruction { system, prompt, output } => match template {
            Some(_) => {
                let mut messages = Vec::with_capacity(3);
                if let Some(system) = system {
                    messages.push(ChatMessage::system(system.clone()));
                }
                messages.push(ChatMessage::user(prompt.clone()));
                messages.push(ChatMessage::assistant(output.clone()));
                conversation(&messages)
            }
            None => {
                let prompt = match system {
                    Some(system) => format!("{system}\n\n{prompt}\n\n"),
                    None => format!("{prompt}\n\n"),
                };
                prompt_completion(&prompt, output)
            }
        },
    }
}

/// Concatenate consecutive examples into sequences of at most `max_len` tokens (greedily, in
/// order), keeping every token and target flag. An example longer than `max_len` gets a
/// sequence of its own (callers enforce the limit before packing).
pub fn pack(examples: &[Example], max_len: usize) -> Vec<Example> {
    let mut packed = Vec::new();
    let mut current = Example { tokens: Vec::new(), targets: Vec::new() };
    for example in examples {
        if !current.tokens.is_empty() && current.tokens.len() + example.tokens.len() > max_len {
            packed.push(std::mem::replace(&mut current, Example { tokens: Vec::new(), targets: Vec::new() }));
        }
        current.tokens.extend(&example.tokens);
        current.targets.extend(&example.targets);
        // The example's first token is not predicted from the previous example's end.
        let start = current.targets.len() - example.targets.len();
        if let Some(first) = current.targets.get_mut(start) {
            *first = false;
        }
    }
    if !current.tokens.is_empty() {
        packed.push(current);
    }
    packed
}

/// The seeded permutation of `0..n` (Fisher-Yates), the order that decides split and packing.
pub fn shuffled_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// How many of `n` records go to validation: `ceil(fraction · n)`, at least 1 when
/// `fraction > 0` and `n >= 2`, and at most `n - 1` so the training set is never empty.
pub fn validation_count(n: usize, fraction: f32) -> usize {
    if fraction <= 0.0 || n < 2 {
        return 0;
    }
    // The fraction as the decimal the caller wrote (0.1, not 0.100000001490116), and a product
    // within rounding error of an integer counts as that integer: ceil(0.1 · 30) is 3, not 4.
    let fraction: f64 = fraction.to_string().parse().unwrap_or(f64::from(fraction));
    let exact = fraction * n as f64;
    let nearest = exact.round();
    let count = if (exact - nearest).abs() <= 1e-9 * exact.max(1.0) { nearest } else { exact.ceil() };
    (count as usize).clamp(1, n - 1)
}

/// Read, tokenize, check, split and (optionally) pack the dataset at `path`. See the module
/// documentation for the formats, the errors and the split.
pub fn load_dataset(path: &Path, tokenizer: &Tokenizer, template: Option<&ChatTemplate>, options: &DataOptions) -> Result<Dataset> {
    if options.max_len < 2 {
        return Err(Error::invalid("max_len", format!("must be at least 2 tokens, got {}", options.max_len)));
    }
    if !(options.val_fraction.is_finite() && (0.0..1.0).contains(&options.val_fraction)) {
        return Err(Error::invalid("val_fraction", format!("must be in [0, 1), got {}", options.val_fraction)));
    }
    let records = parse_records(path)?;
    let mut stats = DatasetStats { records: records.len(), ..DatasetStats::default() };
    let mut examples = Vec::with_capacity(records.len());
    for sourced in &records {
        let at = |reason: String| data_error(path, Some(sourced.location), reason);
        let mut example = tokenize_record(&sourced.record, tokenizer, template).map_err(|e| at(e.to_string()))?;
        if example.tokens.len() > options.max_len {
            if !options.truncate {
                return Err(at(format!(
                    "the record is {} tokens long, more than max_len = {} (raise max_len, or enable truncation)",
                    example.tokens.len(),
                    options.max_len
                )));
            }
            example.tokens.truncate(options.max_len);
            example.targets.truncate(options.max_len);
            stats.truncated += 1;
        }
        if example.n_targets() == 0 {
            return Err(at(if example.tokens.len() < 2 && matches!(sourced.record, Record::Text(_)) {
                "the text is a single token: nothing to predict".to_string()
            } else {
                format!("no target token within the first {} tokens", example.tokens.len())
            }));
        }
        stats.tokens += example.tokens.len();
        stats.target_tokens += example.n_targets();
        stats.longest = stats.longest.max(example.tokens.len());
        examples.push(example);
    }

    let n = examples.len();
    let n_val = validation_count(n, options.val_fraction);
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    let mut ordered: Vec<Example> = shuffled_order(n, options.seed).into_iter().map(|i| slots[i].take().expect("a permutation")).collect();
    let val = ordered.split_off(n - n_val);
    let train_records = ordered;
    stats.train_records = train_records.len();
    stats.val_records = val.len();
    stats.train_target_tokens = train_records.iter().map(Example::n_targets).sum();
    stats.val_target_tokens = val.iter().map(Example::n_targets).sum();
    let train = if options.pack { pack(&train_records, options.max_len) } else { train_records };
    stats.train_sequences = train.len();
    stats.val_sequences = val.len();
    Ok(Dataset { train, val, stats })
}
