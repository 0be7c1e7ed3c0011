//! Whisper hyper-parameters, from a Hugging Face `config.json` or derived from CT2 tensors.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Dimensions and decoding constants of a Whisper model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhisperConfig {
    /// Mel bands of the input (80, or 128 for large-v3).
    pub num_mel_bins: usize,
    /// Encoder positions (1500).
    pub max_source_positions: usize,
    /// Decoder positions (448).
    pub max_target_positions: usize,
    /// Model width.
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Encoder attention heads.
    pub encoder_attention_heads: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Decoder attention heads.
    pub decoder_attention_heads: usize,
    /// Vocabulary size (51864 for English-only models, 51865+ for multilingual ones).
    pub vocab_size: usize,
    /// Tokens never emitted.
    #[serde(default)]
    pub suppress_tokens: Vec<u32>,
    /// Tokens never emitted as the first token.
    #[serde(default)]
    pub begin_suppress_tokens: Vec<u32>,
}

impl WhisperConfig {
    /// Whether the model is multilingual (has language tokens).
    pub fn is_multilingual(&self) -> bool {
        self.vocab_size >= 51865
    }

    /// Read a Hugging Face `config.json` (and `generation_config.json` beside it, if present,
    /// for the suppress lists).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut cfg: WhisperConfig = serde_json::from_str(&text)
            .map_err(|e| Error::bad_model(&path, format!("not a Whisper config: {e}")))?;
        let gen = dir.join("generation_config.json");
        if let Ok(text) = std::fs::read_to_string(&gen) {
            #[derive(Deserialize)]
            struct Gen {
                #[serde(default)]
                suppress_tokens: Vec<u32>,
                #[serde(default)]
                begin_suppress_tokens: Vec<u32>,
            }
            if let Ok(g) = serde_json::from_str::<Gen>(&text) {
                if cfg.suppress_tokens.is_empty() {
                    cfg.suppress_tokens = g.suppress_tokens;
                }
                if cfg.begin_suppress_tokens.is_empty() {
                    cfg.begin_suppress_tokens = g.begin_suppress_tokens;
                }
            }
        }
        cfg.validate(&path)?;
        Ok(cfg)
    }

    /// Check the dimensions are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |r: String| Err(Error::bad_model(path, r));
        if self.d_model == 0
            || self.encoder_attention_heads == 0
            || self.decoder_attention_heads == 0
        {
            return bad("zero model width or head count".into());
        }
        if !self.d_model.is_multiple_of(self.encoder_attention_heads)
            || !self.d_model.is_multiple_of(self.decoder_attention_heads)
        {
            return bad(format!(
                "d_model {} not divisible by the head count",
                self.d_model
            ));
        }
        if self.max_source_positions * 2 != crate::mel::N_FRAMES {
            return bad(format!(
                "{} encoder positions; advox supports 30-s windows (1500)",
                self.max_source_positions
            ));
        }
        if self.num_mel_bins == 0 || self.vocab_size == 0 || self.max_target_positions == 0 {
            return bad("zero mel bins, vocabulary or decoder positions".into());
        }
        Ok(())
    }
}
