//! CLIP's byte-level BPE tokenizer, built from `tokenizer/vocab.json` and `merges.txt` the way
//! transformers' `CLIPTokenizer` builds it, with the `tokenizers` crate.

use std::path::Path;

use serde::Deserialize;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use crate::error::{Error, Result};

/// CLIP's pre-tokenization pattern (contractions, letter runs, single digits, other runs).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Debug, Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    pad_token: Option<TokenSpec>,
    #[serde(default)]
    bos_token: Option<TokenSpec>,
    #[serde(default)]
    eos_token: Option<TokenSpec>,
}

/// transformers writes special tokens either as a string or as an `AddedToken` object.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum TokenSpec {
    Text(String),
    Added { content: String },
}

impl TokenSpec {
    fn text(&self) -> &str {
        match self {
            Self::Text(s) => s,
            Self::Added { content } => content,
        }
    }
}

/// A CLIP tokenizer that produces fixed windows: start token, the prompt's tokens, end token,
/// then padding.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_len: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Loads `dir/vocab.json` + `dir/merges.txt` (+ `tokenizer_config.json` and
    /// `special_tokens_map.json` for the padding token and window length).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        for f in [&vocab, &merges] {
            if !f.is_file() {
                return Err(Error::Config(format!(
                    "the tokenizer folder has no {}; a diffusers model needs tokenizer/vocab.json and tokenizer/merges.txt: {}",
                    f.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
                    dir.display()
                )));
            }
        }
        let mut config: TokenizerConfig = {
            let p = dir.join("tokenizer_config.json");
            if p.is_file() {
                crate::config::read_json(&p, "tokenizer config")?
            } else {
                TokenizerConfig::default()
            }
        };
        let special = dir.join("special_tokens_map.json");
        if special.is_file() {
            let map: TokenizerConfig = crate::config::read_json(&special, "special tokens map")?;
            config.pad_token = config.pad_token.or(map.pad_token);
            config.bos_token = config.bos_token.or(map.bos_token);
            config.eos_token = config.eos_token.or(map.eos_token);
        }
        let tok_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer(e.to_string());
        let vocab_s = vocab.to_string_lossy().into_owned();
        let merges_s = merges.to_string_lossy().into_owned();
        let bpe = BPE::from_file(&vocab_s, &merges_s)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".to_string())
            .unk_token("<|endoftext|>".to_string())
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        let whitespace = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(tok_err)?;
        inner.with_normalizer(Some(NormalizerWrapper::Sequence(NormSequence::new(vec![
            NormalizerWrapper::NFC(NFC),
            NormalizerWrapper::Replace(whitespace),
            NormalizerWrapper::Lowercase(Lowercase),
        ]))));
        let split = Split::new(
            SplitPattern::Regex(CLIP_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(tok_err)?;
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));

        // transformers registers the special tokens as added tokens, so e.g. SD 2's `!` padding
        // token also wins over the byte-level `!</w>` inside a prompt.
        let mut specials: Vec<String> = vec!["<|startoftext|>".into(), "<|endoftext|>".into()];
        for spec in [&config.bos_token, &config.eos_token, &config.pad_token]
            .into_iter()
            .flatten()
        {
            if !specials.iter().any(|s| s == spec.text()) {
                specials.push(spec.text().to_string());
            }
        }
        let added: Vec<AddedToken> = specials
            .iter()
            .map(|s| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(&added);

        let id = |spec: &Option<TokenSpec>, default: &str| -> Result<u32> {
            let text = spec.as_ref().map_or(default, TokenSpec::text);
            inner.token_to_id(text).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "the vocabulary has no `{text}` token: {}",
                    vocab.display()
                ))
            })
        };
        let bos = id(&config.bos_token, "<|startoftext|>")?;
        let eos = id(&config.eos_token, "<|endoftext|>")?;
        let pad = id(&config.pad_token, "<|endoftext|>")?;
        let max_len = config
            .model_max_length
            .filter(|m| *m >= 2.0 && *m < 1e6)
            .map_or(77, |m| m as usize);
        Ok(Self {
            inner,
            bos,
            eos,
            pad,
            max_len,
        })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The prompt's tokens without start/end tokens.
    pub fn tokens(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One padded window of `max_len` ids; a prompt that does not fit is an error, not cut.
    pub fn encode_window(&self, text: &str) -> Result<Vec<i64>> {
        let tokens = self.tokens(text)?;
        let needed = tokens.len() + 2;
        if needed > self.max_len {
            return Err(Error::PromptTooLong {
                tokens: needed,
                max: self.max_len,
            });
        }
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(i64::from(self.bos));
        ids.extend(tokens.iter().map(|&t| i64::from(t)));
        ids.push(i64::from(self.eos));
        ids.resize(self.max_len, i64::from(self.pad));
        Ok(ids)
    }
}
