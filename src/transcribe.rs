//! Transcription of whole recordings, window by window (30 s each).

use crate::mel::{log_mel_with, FrontEnd, N_FRAMES, N_SAMPLES};
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
    /// Mean log-probability per decoded token (end-of-text included), over all windows: the
    /// decoder's confidence.
    pub avg_logprob: f32,
    /// With timestamp decoding: the segments, times from the start of the recording.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<TimedText>,
}

/// Text between two timestamps.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimedText {
    /// Start in seconds.
    pub start: f32,
    /// End in seconds.
    pub end: f32,
    /// The text, trimmed.
    pub text: String,
}

/// Shortest trailing window worth decoding (0.1 s); shorter tails are ignored.
const MIN_WINDOW_SAMPLES: usize = 1_600;

/// The 30-s windows Whisper reads a recording in, with their first sample: from the start,
/// [`N_SAMPLES`] each (the last one shorter); a trailing window under 0.1 s is dropped, and an
/// empty input is one empty window.
pub fn windows(samples: &[f32]) -> Vec<(usize, &[f32])> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < samples.len() || start == 0 {
        let end = (start + N_SAMPLES).min(samples.len());
        let window = &samples[start..end];
        if start > 0 && window.len() < MIN_WINDOW_SAMPLES {
            break;
        }
        out.push((start, window));
        start += N_SAMPLES;
    }
    out
}

/// The log-mel input `(1, n_mels, 3000)` of one window (at most 30 s) through `front_end`, on
/// the model's device.
pub fn window_mel(model: &LoadedModel, window: &[f32], front_end: FrontEnd) -> Result<Tensor> {
    let n_mels = model.whisper.config().num_mel_bins;
    let mel = log_mel_with(window, n_mels, front_end);
    Ok(Tensor::from_vec(
        mel,
        (1, n_mels, N_FRAMES),
        model.whisper.device(),
    )?)
}

/// The encoder's features `(1, 1500, D)` of one window (at most 30 s) through `front_end`.
pub fn encode_window(model: &LoadedModel, window: &[f32], front_end: FrontEnd) -> Result<Tensor> {
    model.whisper.encode(&window_mel(model, window, front_end)?)
}

/// Transcribe 16-kHz mono samples.
pub fn transcribe(
    model: &LoadedModel,
    samples: &[f32],
    opts: &DecodeOptions,
) -> Result<Transcript> {
    let mut texts = Vec::new();
    let mut tokens = Vec::new();
    let mut language = None;
    let mut segments = Vec::new();
    let (mut sum_logprob, mut decoded_tokens) = (0.0f32, 0usize);
    for (start, window) in windows(samples) {
        let features = encode_window(model, window, opts.front_end)?;
        let decoded = decode(&model.whisper, &model.tokenizer, &features, opts)?;
        let text = model.tokenizer.decode(&decoded.tokens)?;
        texts.push(text.trim().to_string());
        tokens.extend_from_slice(&decoded.tokens);
        language = language.or(decoded.language);
        sum_logprob += decoded.sum_logprob;
        decoded_tokens += decoded.tokens.len() + 1;
        let offset = start as f32 / crate::audio::SAMPLE_RATE as f32;
        for seg in &decoded.segments {
            segments.push(TimedText {
                start: offset + seg.start,
                end: offset + seg.end,
                text: model.tokenizer.decode(&seg.tokens)?.trim().to_string(),
            });
        }
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
        avg_logprob: sum_logprob / decoded_tokens.max(1) as f32,
        segments,
    })
}
