//! Whisper's byte-level BPE tokenizer (from `tokenizer.json`) and its special tokens.

use super::config::WhisperConfig;
use crate::{Error, Result};
use std::path::Path;

/// Ids of the special tokens decoding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|transcribe|>`.
    pub transcribe: u32,
    /// `<|translate|>`.
    pub translate: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|en|>` … : language tokens in vocabulary order, with their codes.
    pub languages: Vec<(String, u32)>,
}

/// The tokenizer of a Whisper model.
pub struct WhisperTokenizer {
    inner: tokenizers::Tokenizer,
    /// Special tokens.
    pub special: SpecialTokens,
    multilingual: bool,
}

impl WhisperTokenizer {
    /// Load `tokenizer.json` and look up the special tokens.
    pub fn load(path: &Path, config: &WhisperConfig) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::bad_model(path, "tokenizer.json is missing"));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::bad_model(path, format!("unreadable tokenizer: {e}")))?;
        let id = |tok: &str| {
            inner
                .token_to_id(tok)
                .ok_or_else(|| Error::bad_model(path, format!("the tokenizer lacks {tok}")))
        };
        let mut languages = Vec::new();
        if config.is_multilingual() {
            let sot = id("<|startoftranscript|>")?;
            let translate = id("<|translate|>")?;
            for tid in sot + 1..translate {
                if let Some(tok) = inner.id_to_token(tid) {
                    let code = tok
                        .trim_start_matches("<|")
                        .trim_end_matches("|>")
                        .to_string();
                    if code != "transcribe" {
                        languages.push((code, tid));
                    }
                }
            }
        }
        let special = SpecialTokens {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            no_timestamps: id("<|notimestamps|>")?,
            languages,
        };
        Ok(WhisperTokenizer {
            inner,
            special,
            multilingual: config.is_multilingual(),
        })
    }

    /// Whether the model is multilingual.
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// The first timestamp token `<|0.00|>`: the timestamps (20 ms apart) follow
    /// `<|notimestamps|>` in the vocabulary.
    pub fn first_timestamp(&self) -> u32 {
        self.special.no_timestamps + 1
    }

    /// The English language token of a multilingual model (`None` for an English-only one):
    /// what advox's teacher-forced targets put in the prompt.
    pub fn english(&self) -> Result<Option<u32>> {
        if self.is_multilingual() {
            Ok(Some(self.language_token("en")?))
        } else {
            Ok(None)
        }
    }

    /// The id of a language token by code (`"en"`, `"de"` …).
    pub fn language_token(&self, code: &str) -> Result<u32> {
        self.special
            .languages
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown language code {code:?}")))
    }

    /// The decoder prompt: `<|sot|> [<|lang|> <|transcribe|>] <|notimestamps|>`.
    pub fn prompt(&self, language: Option<u32>) -> Vec<u32> {
        let s = &self.special;
        match (self.multilingual, language) {
            (true, Some(lang)) => vec![s.sot, lang, s.transcribe, s.no_timestamps],
            _ => vec![s.sot, s.no_timestamps],
        }
    }

    /// Text tokens of `text` (no special tokens). A leading space is added when missing, as
    /// Whisper transcripts start with one.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text = if text.starts_with(' ') {
            text.to_string()
        } else {
            format!(" {text}")
        };
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text_ids: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&t| t < self.special.eot)
            .collect();
        self.inner
            .decode(&text_ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }
}
