//! Whisper: configuration, weight readers (CTranslate2 and Hugging Face layouts), the
//! differentiable model, tokenizer, decoding and model provisioning.

mod blocks;
pub mod config;
pub mod ct2;
pub mod decode;
pub mod ops;
pub mod provision;
pub mod registry;
pub mod tokenizer;
pub mod weights;
pub mod whisper;

pub use config::WhisperConfig;
pub use decode::{BeamStop, DecodeOptions, Decoded};
pub use tokenizer::{SpecialTokens, WhisperTokenizer};
pub use weights::{load_weights, ModelFormat, Weights};
pub use whisper::{ForwardTape, Whisper};

use crate::Result;
use std::path::{Path, PathBuf};

/// A model directory loaded and ready: weights on a device, tokenizer, and where it came from.
pub struct LoadedModel {
    /// The network.
    pub whisper: Whisper,
    /// Its tokenizer and special tokens.
    pub tokenizer: WhisperTokenizer,
    /// The directory it was loaded from.
    pub dir: PathBuf,
}

impl LoadedModel {
    /// Load a model directory of either layout onto `device`.
    pub fn load(dir: &Path, device: &candle_core::Device) -> Result<Self> {
        let (config, weights) = load_weights(dir, device)?;
        let tokenizer = WhisperTokenizer::load(&dir.join("tokenizer.json"), &config)?;
        let whisper = Whisper::new(config, &weights)?;
        Ok(LoadedModel {
            whisper,
            tokenizer,
            dir: dir.to_path_buf(),
        })
    }

    /// A short identifier of the model: its directory name.
    pub fn id(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}
