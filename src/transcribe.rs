//! Transcription of whole recordings, window by window (30 s each).

use crate::mel::{log_mel, N_FRAMES, N_SAMPLES};
use crate::model::{decode::decode, DecodeOptions, LoadedModel};
use crate::Result;
use candle_core::Tensor;
use serde::Serialize;

/// The transcript of one recording.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Transcript {
    /// Text, windows joined by spaces, trimmed.
    pub text: String,
    /// Text tokens of all windows.
    pub tokens: Vec<u32>,
    /// Detected or chosen language (multilingual models).
    pub language: Option<String>,
}

/// Shortest trailing window worth decoding (0.1 s); shorter tails are ignored.
const MIN_WINDOW_SAMPLES: usize = 1_600;

/// Transcribe 16-kHz mono samples.
pub fn transcribe(
    model: &LoadedModel,
    samples: &[f32],
    opts: &DecodeOptions,
) -> Result<Transcript> {
    let n_mels = model.whisper.config().num_mel_bins;
    let mut texts = Vec::new();
    let mut tokens = Vec::new();
    let mut language = None;
    let mut start = 0;
    while start < samples.len() || start == 0 {
        let end = (start + N_SAMPLES).min(samples.len());
        let window = &samples[start..end];
        if start > 0 && window.len() < MIN_WINDOW_SAMPLES {
            break;
        }
        let mel = log_mel(window, n_mels);
        let mel = Tensor::from_vec(mel, (1, n_mels, N_FRAMES), model.whisper.device())?;
        let features = model.whisper.encode(&mel)?;
        let decoded = decode(&model.whisper, &model.tokenizer, &features, opts)?;
        let text = model.tokenizer.decode(&decoded.tokens)?;
        texts.push(text.trim().to_string());
        tokens.extend_from_slice(&decoded.tokens);
        language = language.or(decoded.language);
        start += N_SAMPLES;
    }
    let text = texts
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Transcript {
        text,
        tokens,
        language,
    })
}
