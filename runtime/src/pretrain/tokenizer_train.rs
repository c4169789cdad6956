//! Tokenizer training: a byte-level BPE vocabulary learnt from a corpus with the `tokenizers`
//! library's trainer, written as `tokenizer.json` and `tokenizer_config.json`.
//!
//! The tokenizer is built the way SmolLM2's is, because that is a configuration llama.cpp
//! reproduces exactly: no normalizer; the pre-tokenizer `Sequence[Digits(individual_digits),
//! ByteLevel(add_prefix_space = false, use_regex = true)]` (each digit alone, then the GPT-2
//! split), which a GGUF file names `tokenizer.ggml.pre = "smollm"`; a ByteLevel decoder. The
//! vocabulary is, in id order: the special tokens (BOS, EOS, PAD, then the extra ones, such as
//! chat markers), the 256 byte tokens (all of them, seen in the corpus or not, so that any
//! text encodes), then one token per merge. The special tokens are control tokens: matched in
//! text only when special parsing is on, in llama.cpp and in lamina's tokenizer alike.
//!
//! Inputs are read as [`crate::corpus`] reads them: `.jsonl` files of `{"text": ...}` records
//! (what `lamina corpus` writes), `.txt` files (documents separated by blank lines), `.md` files
//! (one document) or directories of them. Each document is one training sequence. The
//! trainer holds the corpus in memory and cannot be interrupted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PostProcessorWrapper, PreTokenizerWrapper};

use crate::chat::ChatMessage;
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::native::tokenizer::Tokenizer;

/// Byte tokens every byte-level vocabulary holds.
pub const BYTE_TOKENS: usize = 256;

/// What [`train`] learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerTrainOptions {
    /// Tokens in the vocabulary, the special tokens and the 256 byte tokens included. At
    /// least 256 + the number of special tokens; the corpus must hold enough distinct pairs
    /// to reach it (an error says how many it supports).
    pub vocab_size: usize,
    /// A pair seen fewer times than this in the corpus is never merged (0 and 1 merge
    /// everything seen).
    pub min_frequency: u64,
    /// The beginning-of-sequence token.
    pub bos_token: String,
    /// The end-of-sequence token (what ends generation). May equal `bos_token`, GPT-2 style.
    pub eos_token: String,
    /// The padding token, if any. May equal `bos_token` or `eos_token`.
    pub pad_token: Option<String>,
    /// More special tokens after BOS, EOS and PAD, such as the chat markers `<|im_start|>` and
    /// `<|im_end|>`. Each must be new: one given twice, or equal to BOS, EOS or PAD, is an
    /// error.
    pub special_tokens: Vec<String>,
    /// A Jinja chat template for `tokenizer_config.json` (and the GGUF's
    /// `tokenizer.chat_template`); it must render a short conversation.
    pub chat_template: Option<String>,
    /// Whether BOS is put before every text (`add_bos_token`; llama.cpp's
    /// `tokenizer.ggml.add_bos_token`). Off, as in GPT-2 and SmolLM2.
    pub add_bos_token: bool,
}

impl Default for TokenizerTrainOptions {
    fn default() -> Self {
        TokenizerTrainOptions {
            vocab_size: 8192,
            min_frequency: 2,
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            pad_token: Some("<pad>".into()),
            special_tokens: Vec::new(),
            chat_template: None,
            add_bos_token: false,
        }
    }
}

impl TokenizerTrainOptions {
    /// The special tokens in id order: BOS, EOS, PAD (each once, where they are the same
    /// token), then the extra ones.
    ///
    /// Errors ([`Error::InvalidArgument`] `special_tokens`): an empty or blank token, a token
    /// with a space, tab or line break at either end, an extra token given twice or equal to
    /// BOS, EOS or PAD.
    pub fn special_token_list(&self) -> Result<Vec<String>> {
        let mut list: Vec<String> = Vec::new();
        for role in [Some(&self.bos_token), Some(&self.eos_token), self.pad_token.as_ref()].into_iter().flatten() {
            check_special(role)?;
            if !list.contains(role) {
                list.push(role.clone());
            }
        }
        let roles = list.len();
        for token in &self.special_tokens {
            check_special(token)?;
            if list[..roles].contains(token) {
                return Err(Error::invalid(
                    "special_tokens",
                    format!("`{token}` is already the BOS, EOS or PAD token: give each special token once"),
                ));
            }
            if list[roles..].contains(token) {
                return Err(Error::invalid("special_tokens", format!("`{token}` is given twice: give each special token once")));
            }
            list.push(token.clone());
        }
        Ok(list)
    }

    /// Check the options before any text is read: the special tokens
    /// ([`special_token_list`](Self::special_token_list)), a vocabulary size of at least the
    /// 256 byte tokens plus the special tokens, and a chat template that renders.
    pub fn validate(&self) -> Result<()> {
        let special = self.special_token_list()?;
        let least = BYTE_TOKENS + special.len();
        if self.vocab_size < least {
            return Err(Error::invalid(
                "vocab_size",
                format!(
                    "{} is too small: a byte-level vocabulary holds the {BYTE_TOKENS} byte tokens and the {} special token(s), \
                     so at least {least}",
                    self.vocab_size,
                    special.len()
                ),
            ));
        }
        if u32::try_from(self.vocab_size).is_err() {
            return Err(Error::invalid("vocab_size", format!("{} does not fit token ids of 32 bits", self.vocab_size)));
        }
        if let Some(template) = &self.chat_template {
            if template.trim().is_empty() {
                return Err(Error::invalid("chat_template", "is empty"));
            }
            let template = ChatTemplate::new(Some(template.clone()), self.bos_token.clone(), self.eos_token.clone());
            let conversation = [ChatMessage::new("system", "You are helpful."), ChatMessage::new("user", "Hello!")];
            template.render(&conversation, true).map_err(|e| match e {
                Error::ChatTemplate(reason) => {
                    Error::ChatTemplate(format!("the chat template does not render a system and a user message: {reason}"))
                }
                other => other,
            })?;
        }
        Ok(())
    }
}

fn check_special(token: &str) -> Result<()> {
    if token.trim().is_empty() {
        return Err(Error::invalid("special_tokens", format!("{token:?}: a special token cannot be empty or blank")));
    }
    if token.trim() != token {
        return Err(Error::invalid("special_tokens", format!("{token:?}: a special token cannot begin or end with whitespace")));
    }
    Ok(())
}

/// A trained tokenizer, ready to be saved.
#[derive(Debug)]
pub struct TrainedTokenizer {
    /// The tokenizer, with BOS and EOS set.
    pub tokenizer: Tokenizer,
    /// The `tokenizer_config.json` value: class, special tokens, BOS handling, chat template.
    pub config: Value,
    /// The special tokens in id order (ids 0, 1, ...).
    pub special_tokens: Vec<String>,
    /// Number of merges (rank order), each giving a token.
    pub n_merges: usize,
    /// Documents and bytes of text trained on.
    pub documents: usize,
    pub bytes: u64,
    /// Seconds the trainer took.
    pub seconds: f64,
}

/// The files a saved tokenizer consists of, in a directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

impl TrainedTokenizer {
    /// The vocabulary size (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    /// Write `dir`/tokenizer.json and `dir`/tokenizer_config.json (the directory is created),
    /// each beside its name and renamed into place; returns their paths.
    pub fn save(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        crate::atomic_file::create_dir_all(dir)?;
        let tokenizer = dir.join(TOKENIZER_FILE);
        self.tokenizer.save(&tokenizer)?;
        let config = dir.join(TOKENIZER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&self.config).map_err(|e| Error::Internal(format!("tokenizer_config.json: {e}")))? + "\n";
        crate::atomic_file::write_bytes(&config, text.as_bytes())?;
        Ok(vec![tokenizer, config])
    }
}

/// Train a tokenizer on `documents` (each one training sequence).
///
/// Errors: the options ([`TokenizerTrainOptions::validate`]); no document with text
/// ([`Error::InvalidArgument`] `input`); a corpus too small for the vocabulary size
/// ([`Error::InvalidArgument`] `vocab_size`, saying how many tokens it supports at this minimum
/// frequency).
pub fn train<S: AsRef<str> + Sync>(documents: &[S], options: &TokenizerTrainOptions) -> Result<TrainedTokenizer> {
    options.validate()?;
    let special = options.special_token_list()?;
    let texts: Vec<&str> = documents.iter().map(AsRef::as_ref).filter(|t| !t.trim().is_empty()).collect();
    if texts.is_empty() {
        return Err(Error::invalid("input", "the corpus is empty: no document holds any text to train a tokenizer on"));
    }
    let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let started = Instant::now();

    let mut inner = tokenizers::Tokenizer::new(BPE::default());
    inner.with_pre_tokenizer(Some(pre_tokenizer()));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    // Added before training, so that their text in the corpus is split out and never merged;
    // the model is empty, so they take ids 0, 1, ... in this order, the ids the trainer gives
    // them in the vocabulary.
    let added: Vec<AddedToken> = special.iter().map(|t| AddedToken::from(t.as_str(), true)).collect();
    inner.add_special_tokens(&added);
    let mut trainer: tokenizers::models::TrainerWrapper = BpeTrainer::builder()
        .vocab_size(options.vocab_size)
        .min_frequency(options.min_frequency)
        .special_tokens(added)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    inner.train(&mut trainer, texts.iter()).map_err(|e| Error::Internal(format!("the BPE trainer failed: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();

    let got = inner.get_vocab_size(true);
    if got < options.vocab_size {
        return Err(Error::invalid(
            "vocab_size",
            format!(
                "the corpus ({} document(s), {bytes} bytes) supports only {got} tokens at a minimum pair frequency of {}, \
                 fewer than the {} asked for: ask for at most {got}, lower the minimum frequency, or add text",
                texts.len(),
                options.min_frequency,
                options.vocab_size
            ),
        ));
    }
    if let Some(bos) = options.add_bos_token.then_some(&options.bos_token) {
        inner.with_post_processor(Some(bos_processor(bos, 0)?));
    }

    // Through JSON, so that the tokenizer is exactly the one tokenizer.json holds.
    let json = inner.to_string(true).map_err(|e| Error::Internal(format!("cannot serialize the trained tokenizer: {e}")))?;
    let mut tokenizer = Tokenizer::from_json_str(&json, TOKENIZER_FILE)?;
    for (id, token) in special.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(Error::Internal(format!("special token `{token}` did not get id {id}")));
        }
    }
    let id = |token: &str| tokenizer.token_to_id(token);
    tokenizer.set_special_ids(id(&options.bos_token), id(&options.eos_token), None)?;
    // The GGUF form must exist and name llama.cpp's pre-tokenizer for this configuration.
    let vocab = tokenizer.to_gguf_vocab()?;
    if vocab.pre != "smollm" {
        return Err(Error::Internal(format!("the trained tokenizer's pre-tokenizer converts to `{}`, not `smollm`", vocab.pre)));
    }

    let mut config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": options.add_bos_token,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "bos_token": options.bos_token,
        "eos_token": options.eos_token,
        "unk_token": Value::Null,
    });
    if let Some(pad) = &options.pad_token {
        config["pad_token"] = json!(pad);
    }
    if !options.special_tokens.is_empty() {
        config["additional_special_tokens"] = json!(options.special_tokens);
    }
    if let Some(template) = &options.chat_template {
        config["chat_template"] = json!(template);
    }
    Ok(TrainedTokenizer {
        tokenizer,
        config,
        special_tokens: special,
        n_merges: vocab.merges.len(),
        documents: texts.len(),
        bytes,
        seconds,
    })
}

/// The pre-tokenizer of SmolLM2's tokenizer (llama.cpp's `smollm`).
fn pre_tokenizer() -> PreTokenizerWrapper {
    Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, false, true).into()]).into()
}

/// A post-processor that puts `bos` (id `id`) before each sequence, as Hugging Face's
/// `add_bos_token` does; built from its JSON form, which takes any token text.
fn bos_processor(bos: &str, id: u32) -> Result<PostProcessorWrapper> {
    let special = |type_id: u32| json!({"SpecialToken": {"id": bos, "type_id": type_id}});
    let sequence = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
    let value = json!({
        "type": "TemplateProcessing",
        "single": [special(0), sequence("A", 0)],
        "pair": [special(0), sequence("A", 0), special(1), sequence("B", 1)],
        "special_tokens": {bos: {"id": bos, "ids": [id], "tokens": [bos]}},
    });
    serde_json::from_value(value).map_err(|e| Error::Internal(format!("the BOS post-processor: {e}")))
}

/// What [`train_files`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenizerTrainReport {
    /// The inputs as given.
    pub inputs: Vec<PathBuf>,
    pub documents: usize,
    pub bytes: u64,
    pub vocab_size: usize,
    pub n_merges: usize,
    /// The special tokens in id order.
    pub special_tokens: Vec<String>,
    /// Seconds the trainer took (reading the inputs not included).
    pub seconds: f64,
    /// tokenizer.json and tokenizer_config.json.
    pub files: Vec<PathBuf>,
}

/// Read `inputs` (files or directories, see the module documentation), [`train`] a tokenizer
/// and save it into `dir`.
///
/// Errors: those of [`train`]; no inputs, a missing or unreadable input, invalid UTF-8 or a bad
/// JSONL record (naming the file and line); writing fails.
pub fn train_files<P: AsRef<Path>>(inputs: &[P], dir: &Path, options: &TokenizerTrainOptions) -> Result<TokenizerTrainReport> {
    options.validate()?;
    let paths: Vec<&Path> = inputs.iter().map(AsRef::as_ref).collect();
    let documents = crate::corpus::read_documents(&paths)?;
    if documents.is_empty() {
        let list = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(Error::invalid("input", format!("the corpus is empty: {list} hold(s) no text to train a tokenizer on")));
    }
    let trained = train(&documents, options)?;
    let files = trained.save(dir)?;
    Ok(TokenizerTrainReport {
        inputs: paths.iter().map(|p| p.to_path_buf()).collect(),
        documents: trained.documents,
        bytes: trained.bytes,
        vocab_size: trained.vocab_size(),
        n_merges: trained.n_merges,
        special_tokens: trained.special_tokens,
        seconds: trained.seconds,
        files,
    })
}
