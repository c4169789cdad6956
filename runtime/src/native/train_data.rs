//! Training data of the LoRA trainer: records read from a file, tokenized into [`Example`]s
//! whose target flags say which tokens count in the loss, split into train and validation sets,
//! and optionally packed into longer sequences.
//!
//! The file formats and their errors are [`super::train_records`]. Beyond a record's own
//! errors, tokenization fails for a record with no target token, or one longer than `max_len`
//! tokens (unless [`DataOptions::truncate`], which keeps the first `max_len` tokens and counts
//! the record in [`DatasetStats::truncated`]); these errors name the record's line (JSONL) or
//! index (JSON arrays) too.
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

use super::lora::SplitMix64;
use super::pass::Example;
use super::tokenizer::Tokenizer;
use super::train_records::{data_error, parse_records, Record};
use crate::chat::ChatMessage;
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;

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

impl DataOptions {
    /// Check the options before any file is read; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_len < 2 {
            return Err(Error::invalid("max_len", format!("must be at least 2 tokens, got {}", self.max_len)));
        }
        if !(self.val_fraction.is_finite() && (0.0..1.0).contains(&self.val_fraction)) {
            return Err(Error::invalid("val_fraction", format!("must be in [0, 1), got {}", self.val_fraction)));
        }
        Ok(())
    }
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
        let template = template
            .ok_or_else(|| Error::ChatTemplate("a conversation needs a chat template, and none was given (the model has none?)".into()))?;
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
    options.validate()?;
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
