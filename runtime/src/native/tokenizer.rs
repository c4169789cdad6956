//! [`Tokenizer`]: text to token ids and back for the native engine, on the `tokenizers` crate.
//!
//! Two sources give the same tokenizer:
//!
//! - a Hugging Face `tokenizer.json` ([`Tokenizer::from_file`]);
//! - the vocabulary inside a GGUF file ([`Tokenizer::from_gguf`]), for byte-level BPE (`gpt2`)
//!   vocabularies. The tokenizer is rebuilt the way llama.cpp reads it: a BPE model from
//!   `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, the pre-tokenizer llama.cpp uses for
//!   the file's `tokenizer.ggml.pre`, a byte-level decoder, and the control tokens
//!   (`tokenizer.ggml.token_type` 3) as special tokens, so the ids equal llama.cpp's.
//!
//! The reverse direction, [`Tokenizer::to_gguf_vocab`], lists the vocabulary the way a GGUF file
//! stores it; the converters use it to write `tokenizer.ggml.*`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::error::{Error, Result};
use crate::weights::gguf::Gguf;

/// GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    /// Special tokens (`<|im_start|>`): matched in text only when special parsing is on.
    pub const CONTROL: i32 = 3;
    /// Added tokens that are always matched in text.
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// A tokenizer: encodes text to token ids and decodes ids to text.
///
/// Cheap to share by reference (`encode` and `decode` take `&self`; it is `Send + Sync`).
pub struct Tokenizer {
    /// Encodes with special-token parsing (`<|im_start|>` becomes its token).
    inner: tokenizers::Tokenizer,
    /// The same tokenizer with special-token parsing off, built on first use.
    plain: OnceLock<tokenizers::Tokenizer>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    /// Where it was read from, for error messages.
    source: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

/// A vocabulary in the form GGUF stores it (`tokenizer.ggml.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.pre`: the pre-tokenizer name llama.cpp knows.
    pub pre: &'static str,
    /// Token strings by id (byte-level encoded, as in `tokenizer.json`).
    pub tokens: Vec<String>,
    /// [`token_type`] of each token.
    pub token_types: Vec<i32>,
    /// Merges in rank order, each `"left right"`.
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
}

impl Tokenizer {
    /// Read a Hugging Face `tokenizer.json`. BOS, EOS and UNK come from a `tokenizer_config.json`
    /// next to it when there is one (`bos_token`, `eos_token`, `unk_token`), else they are unset.
    ///
    /// Errors: [`Error::Io`] when a file cannot be read, [`Error::Data`] naming the file when
    /// it is not a valid tokenizer (or tokenizer config).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let inner: tokenizers::Tokenizer = text.parse().map_err(|e| data_error(path, format!("not a valid tokenizer.json: {e}")))?;
        let mut tokenizer = Tokenizer::new(inner, path);
        let config = path.with_file_name("tokenizer_config.json");
        if config.is_file() {
            let special = SpecialTokens::from_config(&config)?;
            let id = |name: &Option<String>| name.as_deref().and_then(|t| tokenizer.inner.token_to_id(t));
            tokenizer.bos = id(&special.bos);
            tokenizer.eos = id(&special.eos);
            tokenizer.unk = id(&special.unk);
        }
        Ok(tokenizer)
    }

    /// Parse a `tokenizer.json` held in memory; `source` names it in errors. BOS/EOS/UNK are unset.
    pub fn from_json_str(json: &str, source: impl AsRef<Path>) -> Result<Tokenizer> {
        let source = source.as_ref();
        let inner: tokenizers::Tokenizer = json.parse().map_err(|e| data_error(source, format!("not a valid tokenizer.json: {e}")))?;
        Ok(Tokenizer::new(inner, source))
    }

    /// Build the tokenizer of a GGUF file's byte-level BPE vocabulary (`tokenizer.ggml.model` =
    /// `gpt2`), equal to llama.cpp's on the same file.
    ///
    /// Errors ([`Error::Data`] naming the file): another vocabulary type, a missing or
    /// mistyped `tokenizer.ggml.*` key, lists of different lengths, a malformed merge, or a
    /// pre-tokenizer (`tokenizer.ggml.pre`) this tokenizer cannot reproduce.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let path = g.path();
        let err = |reason: String| data_error(path, reason);
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(err(format!(
                "unsupported tokenizer type `{model}` (tokenizer.ggml.model): only `gpt2` (byte-level BPE) is supported"
            )));
        }
        let pre = match g.get("tokenizer.ggml.pre") {
            Some(_) => g.get_str("tokenizer.ggml.pre")?,
            None => "default",
        };
        let individual_digits = match pre {
            "smollm" | "codeshell" | "exaone" | "minerva" | "mellum2" => true,
            "gpt-2" | "gpt2" | "default" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => false,
            other => {
                return Err(err(format!(
                    "unsupported pre-tokenizer `{other}` (tokenizer.ggml.pre): only the GPT-2 regex, \
                     optionally with individual digits (`smollm`), is supported"
                )))
            }
        };
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let merges = g.get_str_array("tokenizer.ggml.merges")?;
        let types = g
            .get_array("tokenizer.ggml.token_type")?
            .iter()
            .map(|v| v.as_i64())
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| err("metadata key `tokenizer.ggml.token_type` is not an array of integers".into()))?;
        if types.len() != tokens.len() {
            return Err(err(format!(
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                types.len(),
                tokens.len()
            )));
        }
        let n = u32::try_from(tokens.len()).map_err(|_| err("the vocabulary has more than 2^32 tokens".into()))?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| err(format!("tokenizer.ggml.merges[{i}] = {m:?} is not two tokens separated by a space")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| err(format!("invalid BPE vocabulary: {e}")))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, false, true);
        let pre_tokenizer: PreTokenizerWrapper =
            if individual_digits { Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into() } else { byte_level.into() };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter_map(|(t, &ty)| match ty as i32 {
                token_type::CONTROL => Some(AddedToken::from(*t, true)),
                token_type::USER_DEFINED => Some(AddedToken::from(*t, false).normalized(false)),
                _ => None,
            })
            .collect();
        inner.add_special_tokens(&added);

        let id = |key: &str| -> Result<Option<u32>> {
            match g.get(key) {
                None => Ok(None),
                Some(_) => {
                    let id = g.get_u32(key)?;
                    if id >= n {
                        return Err(err(format!("`{key}` = {id} is outside the vocabulary (0..{n})")));
                    }
                    Ok(Some(id))
                }
            }
        };
        let mut tokenizer = Tokenizer::new(inner, path);
        tokenizer.bos = id("tokenizer.ggml.bos_token_id")?;
        tokenizer.eos = id("tokenizer.ggml.eos_token_id")?;
        tokenizer.unk = id("tokenizer.ggml.unknown_token_id")?;
        Ok(tokenizer)
    }

    fn new(inner: tokenizers::Tokenizer, source: &Path) -> Tokenizer {
        Tokenizer { inner, plain: OnceLock::new(), bos: None, eos: None, unk: None, source: source.to_path_buf() }
    }

    /// Set BOS/EOS/UNK by id (None unsets). Ids outside the vocabulary are an error.
    pub fn set_special_ids(&mut self, bos: Option<u32>, eos: Option<u32>, unk: Option<u32>) -> Result<()> {
        let n = self.vocab_size();
        for (name, id) in [("bos", bos), ("eos", eos), ("unk", unk)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(Error::invalid("id", format!("{name} token id {id} is outside the vocabulary (0..{n})")));
            }
        }
        (self.bos, self.eos, self.unk) = (bos, eos, unk);
        Ok(())
    }

    /// Token ids of `text`. With `parse_special`, the text of a special token (`<|im_start|>`)
    /// becomes that token; without it, it is tokenized as ordinary text. No BOS/EOS is added.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tokenizer = if parse_special { &self.inner } else { self.plain() };
        let encoding = tokenizer.encode_fast(text, false).map_err(|e| Error::invalid("text", format!("tokenization failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included as their text. Pieces that are not valid
    /// UTF-8 on their own (part of a character) are replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let n = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= n) {
            return Err(Error::invalid("ids", format!("token id {bad} is outside the vocabulary (0..{n})")));
        }
        self.inner.decode(ids, false).map_err(|e| Error::invalid("ids", format!("decoding failed: {e}")))
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The string of token `id`, if it exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of the token string `token`, if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn bos_token(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos_token(&self) -> Option<u32> {
        self.eos
    }
    pub fn unk_token(&self) -> Option<u32> {
        self.unk
    }

    /// The `tokenizer.json` text of this tokenizer (pretty-printed).
    pub fn to_json_string(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| data_error(&self.source, format!("cannot serialize the tokenizer: {e}")))
    }

    /// Write `tokenizer.json` to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.to_json_string()?;
        crate::atomic_file::write_bytes(path, json.as_bytes())
    }

    /// The vocabulary as GGUF stores it. Ids must be contiguous from 0; tokens the BPE model
    /// lacks but added tokens cover are included; `tokenizer.ggml.pre` is derived from the
    /// pre-tokenizer. Errors ([`Error::Data`] naming the source) for a model other than BPE or a
    /// pre-tokenizer llama.cpp has no name for.
    pub fn to_gguf_vocab(&self) -> Result<GgufVocab> {
        let err = |reason: String| data_error(&self.source, reason);
        let json: Value = serde_json::to_value(&*self.inner).map_err(|e| err(format!("cannot serialize the tokenizer: {e}")))?;
        let model = &json["model"];
        if model["type"].as_str() != Some("BPE") {
            return Err(err(format!("unsupported tokenizer model {}: only byte-level BPE converts to GGUF", model["type"])));
        }
        let pre = gguf_pre_name(&json["pre_tokenizer"]).ok_or_else(|| {
            err(format!(
                "unsupported pre-tokenizer {}: only ByteLevel (GPT-2 regex), optionally after \
                 Digits(individual_digits), converts to GGUF",
                json["pre_tokenizer"]
            ))
        })?;

        let n = self.vocab_size();
        let mut tokens: Vec<Option<String>> = vec![None; n];
        let mut token_types = vec![token_type::NORMAL; n];
        let vocab = model["vocab"].as_object().ok_or_else(|| err("the BPE model has no vocab".into()))?;
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .filter(|&id| (id as usize) < n)
                .ok_or_else(|| err(format!("vocab entry {token:?} has id {id}, outside 0..{n}")))? as usize;
            tokens[id] = Some(token.clone());
        }
        for added in json["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else { continue };
            let Some(slot) = tokens.get_mut(id as usize) else { continue };
            *slot = Some(content.to_string());
            token_types[id as usize] =
                if added["special"].as_bool() == Some(true) { token_type::CONTROL } else { token_type::USER_DEFINED };
        }
        let tokens = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.ok_or_else(|| err(format!("token id {i} has no token (ids must be contiguous)"))))
            .collect::<Result<Vec<_>>>()?;

        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| err("the BPE model has no merges".into()))?
            .iter()
            .map(|m| match m {
                Value::String(s) => Some(s.clone()),
                Value::Array(pair) => match pair.as_slice() {
                    [Value::String(a), Value::String(b)] => Some(format!("{a} {b}")),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| err("a BPE merge is neither \"a b\" nor [\"a\", \"b\"]".into()))?;
        // An unknown token that is not an added token is marked as such (added ones stay control).
        if let Some(unk) = self.unk.filter(|&u| token_types[u as usize] == token_type::NORMAL) {
            token_types[unk as usize] = token_type::UNKNOWN;
        }
        Ok(GgufVocab { pre, tokens, token_types, merges, bos: self.bos, eos: self.eos, unk: self.unk })
    }

    fn plain(&self) -> &tokenizers::Tokenizer {
        self.plain.get_or_init(|| {
            let mut plain = self.inner.clone();
            let mut added = plain.get_added_vocabulary().clone();
            added.set_encode_special_tokens(true);
            plain.with_added_vocabulary(added);
            plain
        })
    }
}

/// The `tokenizer.ggml.pre` name of a serialized pre-tokenizer, if llama.cpp has one for it.
fn gguf_pre_name(pre: &Value) -> Option<&'static str> {
    let is_byte_level = |v: &Value| {
        v["type"].as_str() == Some("ByteLevel") && v["use_regex"].as_bool().unwrap_or(true) && v["add_prefix_space"].as_bool() != Some(true)
    };
    if is_byte_level(pre) {
        return Some("gpt-2");
    }
    if pre["type"].as_str() == Some("Sequence") {
        if let Some([digits, byte_level]) = pre["pretokenizers"].as_array().map(Vec::as_slice) {
            if digits["type"].as_str() == Some("Digits") && digits["individual_digits"].as_bool() == Some(true) && is_byte_level(byte_level)
            {
                return Some("smollm");
            }
        }
    }
    None
}

/// The special token strings of a `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub chat_template: Option<String>,
    pub add_bos_token: Option<bool>,
}

impl SpecialTokens {
    /// Read `bos_token`, `eos_token`, `unk_token` (strings or `{"content": ...}` objects),
    /// `chat_template` (a string) and `add_bos_token` from a `tokenizer_config.json`.
    pub fn from_config(path: &Path) -> Result<SpecialTokens> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| data_error(path, format!("invalid JSON: {e}")))?;
        let token = |key: &str| match &v[key] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        Ok(SpecialTokens {
            bos: token("bos_token"),
            eos: token("eos_token"),
            unk: token("unk_token"),
            chat_template: v["chat_template"].as_str().map(str::to_string),
            add_bos_token: v["add_bos_token"].as_bool(),
        })
    }
}

fn data_error(path: &Path, reason: String) -> Error {
    Error::Data { path: path.to_path_buf(), line: None, reason }
}
