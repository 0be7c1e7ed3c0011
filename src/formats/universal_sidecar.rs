//! The universal perturbation files `advox universal` writes and Cloak reads: a 32-bit float
//! WAV (16 kHz mono) and its JSON sidecar (same name, `.json`), which names the format and
//! describes the perturbation: how it was made and how it fared. Every problem is an error
//! naming the file; nothing panics on hostile input.

pub use crate::attack::universal::UniversalMode;
use crate::attack::universal::{Evaluation, MuteDecoding};
use crate::audio::{read_audio, to_mono};
use crate::objective::Goal;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The sidecar's `format` value.
pub const UNIVERSAL_FORMAT: &str = "advox-universal";
/// The sidecar version this build writes and reads.
pub const UNIVERSAL_VERSION: u32 = 1;
/// Longest perturbation accepted (seconds): a universal perturbation is a short loop, and the
/// plugin keeps it in memory at the host rate.
pub const MAX_UNIVERSAL_SECONDS: u64 = 600;

/// How a perturbation fared on a set, against random noise of the same bound and length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniversalJudgement {
    /// With the perturbation.
    pub perturbation: Evaluation,
    /// With the noise control.
    pub random_noise: Evaluation,
}

/// How a mute segment fared under a decoding after the first it was trained against (the sets'
/// clean transcripts taken again in that decoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodingJudgement {
    /// The decoding.
    pub decoding: MuteDecoding,
    /// On the training set.
    pub train: UniversalJudgement,
    /// On the held-out set, if any.
    #[serde(default)]
    pub eval: Option<UniversalJudgement>,
}

/// How a mute segment trained for several models at once fared on a model after the first,
/// under each decoding it was trained against (the sets' clean transcripts taken by that model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelJudgement {
    /// The model (its id, as the sidecar's `model`).
    pub model: String,
    /// One per decoding trained against, the first first.
    pub decodings: Vec<DecodingJudgement>,
}

/// The sidecar (`X.json` beside `X.wav`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniversalSidecar {
    /// Always [`UNIVERSAL_FORMAT`].
    pub format: String,
    /// Always [`UNIVERSAL_VERSION`].
    pub version: u32,
    /// Sample rate of the WAV (Hz).
    pub sample_rate: u32,
    /// Its length in samples.
    pub length: usize,
    /// How it is combined with an input.
    pub mode: UniversalMode,
    /// The L∞ bound it was trained under.
    pub linf: Option<f32>,
    /// The SNR it is scaled to where applied (dB), if any.
    #[serde(default)]
    pub snr_db: Option<f32>,
    /// The margin under each input's masking threshold (dB), if any.
    #[serde(default)]
    pub masking_margin_db: Option<f32>,
    /// The goal it was trained for.
    #[serde(default)]
    pub goal: Option<Goal>,
    /// The model it was trained against.
    #[serde(default)]
    pub model: Option<String>,
    /// Training steps.
    #[serde(default)]
    pub steps: Option<usize>,
    /// Utterances per minibatch.
    #[serde(default)]
    pub batch: Option<usize>,
    /// Step size.
    #[serde(default)]
    pub step_size: Option<f32>,
    /// `plain` or `timestamps`.
    #[serde(default)]
    pub decoding: Option<String>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Training time (seconds).
    #[serde(default)]
    pub train_seconds: Option<f64>,
    /// The training manifest.
    #[serde(default)]
    pub train_manifest: Option<String>,
    /// The held-out manifest.
    #[serde(default)]
    pub eval_manifest: Option<String>,
    /// Trained through Cloak's shaping at this host rate (`advox universal --through-cloak`);
    /// `masking_margin_db` is then Cloak's margin, and the results were measured through the
    /// plugin's chain against Cloak's masked noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloak_rate: Option<u32>,
    /// The front ends the training took turns over (absent: OpenAI's alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_ends: Option<Vec<crate::mel::FrontEnd>>,
    /// Mute modes: the most digital silence (s) training put before an input (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shift_s: Option<f32>,
    /// Mute modes: the decodings training took turns over (absent: timestamps alone); the
    /// first is `decoding`, in which `train` and `eval` were judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decodings: Option<Vec<MuteDecoding>>,
    /// The results under the other decodings of `decodings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_decodings: Vec<DecodingJudgement>,
    /// Mute modes trained for several models: the models after the first (`model`), judged
    /// under every decoding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_models: Vec<ModelJudgement>,
    /// The perturbation training started from (`--init`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Results on the training set.
    #[serde(default)]
    pub train: Option<UniversalJudgement>,
    /// Results on the held-out set.
    #[serde(default)]
    pub eval: Option<UniversalJudgement>,
}

impl UniversalSidecar {
    /// A sidecar of `length` samples at `sample_rate` in `mode`, bound `linf`; the rest unset.
    pub fn new(sample_rate: u32, length: usize, mode: UniversalMode, linf: Option<f32>) -> Self {
        UniversalSidecar {
            format: UNIVERSAL_FORMAT.into(),
            version: UNIVERSAL_VERSION,
            sample_rate,
            length,
            mode,
            linf,
            snr_db: None,
            masking_margin_db: None,
            goal: None,
            model: None,
            steps: None,
            batch: None,
            step_size: None,
            decoding: None,
            seed: None,
            train_seconds: None,
            train_manifest: None,
            eval_manifest: None,
            cloak_rate: None,
            front_ends: None,
            max_shift_s: None,
            decodings: None,
            other_decodings: Vec::new(),
            other_models: Vec::new(),
            init: None,
            train: None,
            eval: None,
        }
    }

    /// Read a sidecar's text and check it against the WAV's sample count.
    pub fn parse(text: &str, samples: usize) -> std::result::Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if v["format"] != UNIVERSAL_FORMAT {
            return Err(format!("format is not {UNIVERSAL_FORMAT:?}"));
        }
        if v["version"] != UNIVERSAL_VERSION {
            return Err(format!("unsupported version {}", v["version"]));
        }
        let s: UniversalSidecar = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if s.length != samples {
            return Err(format!(
                "says {} samples but the WAV has {samples}",
                s.length
            ));
        }
        if s.linf.is_some_and(|l| !(l.is_finite() && l > 0.0)) {
            return Err("`linf` is not a positive number".into());
        }
        Ok(s)
    }
}

/// A universal perturbation and what its sidecar says about it.
#[derive(Debug, Clone)]
pub struct UniversalFile {
    /// Perturbation samples at `sample_rate`.
    pub samples: Vec<f32>,
    /// Sample rate (Hz) of `samples`.
    pub sample_rate: u32,

    /// What its sidecar says.
    pub meta: UniversalSidecar,
    /// The sidecar it was described by.
    pub sidecar: PathBuf,
}

/// The sidecar of a perturbation WAV (`X.wav` → `X.json`).
pub fn sidecar_path(wav: &Path) -> PathBuf {
    wav.with_extension("json")
}

impl UniversalFile {
    /// Read `wav` and its sidecar; the samples must be finite, non-empty and at most
    /// [`MAX_UNIVERSAL_SECONDS`] long.
    pub fn read(wav: &Path) -> Result<Self> {
        let audio = read_audio(wav)?;
        let samples = to_mono(&audio);
        let seconds = samples.len() as f64 / audio.sample_rate.max(1) as f64;
        if samples.is_empty() || seconds > MAX_UNIVERSAL_SECONDS as f64 {
            return Err(Error::bad_audio(
                wav,
                format!(
                    "a universal perturbation must be non-empty and at most \
                     {MAX_UNIVERSAL_SECONDS} s long, this is {seconds:.1} s"
                ),
            ));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(Error::bad_audio(
                wav,
                "the perturbation has non-finite samples",
            ));
        }
        let sidecar = sidecar_path(wav);
        let text = std::fs::read_to_string(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
        let meta = UniversalSidecar::parse(&text, samples.len()).map_err(|reason| {
            Error::bad_audio(
                &sidecar,
                format!("not a universal perturbation sidecar: {reason}"),
            )
        })?;
        Ok(UniversalFile {
            samples,
            sample_rate: audio.sample_rate,
            meta,
            sidecar,
        })
    }

    /// The samples resampled to `rate` Hz.
    pub fn at_rate(&self, rate: u32) -> Result<Vec<f32>> {
        crate::audio::resample(&self.samples, self.sample_rate, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_checked() {
        let good = r#"{"format":"advox-universal","version":1,"sample_rate":16000,"length":4,"mode":"additive","linf":0.01}"#;
        let s = UniversalSidecar::parse(good, 4).unwrap();
        assert_eq!((s.mode, s.linf), (UniversalMode::Additive, Some(0.01)));
        assert!(UniversalSidecar::parse(good, 5)
            .unwrap_err()
            .contains("4 samples"));
        assert!(UniversalSidecar::parse("{", 4).is_err());
        assert!(UniversalSidecar::parse(r#"{"format":"x"}"#, 4).is_err());
        let bad_mode = good.replace("additive", "loud");
        assert!(UniversalSidecar::parse(&bad_mode, 4).is_err());
        let bad_linf = good.replace("0.01", "-1");
        assert!(UniversalSidecar::parse(&bad_linf, 4).is_err());
    }

    #[test]
    fn a_written_sidecar_reads_back() {
        let mut s = UniversalSidecar::new(16_000, 8, UniversalMode::PrefixMute, Some(0.02));
        s.goal = Some(Goal::Targeted("turn off the lights".into()));
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(UniversalSidecar::parse(&text, 8).unwrap(), s);
    }
}
