//! Detection of adversarial audio. Every detector gives a score (higher: more likely
//! adversarial); [`calibration`] turns clean-speech scores into a threshold at a chosen false-
//! positive rate.
//!
//! - [`Detector::Consistency`]: WaveGuard (Hussain et al. 2021): the transcript of `x` against
//!   that of a transformed `g(x)`; adversarial perturbations rarely survive `g`.
//! - [`Detector::Temporal`]: temporal dependency (Yang et al. 2019): the transcript of the first
//!   portion of `x` against the same-length prefix of the full transcript.
//! - [`Detector::Confidence`]: the decoder's mean token log-probability (negated).
//! - [`Detector::Activations`]: encoder activations' distance from clean speech's, layer by
//!   layer ([`activations`]).
//! - [`Detector::Entropy`]: the decoder's mean next-token entropy over its steps ([`entropy`]).
//! - [`Detector::NoiseFloor`], [`Detector::HighBand`], [`Detector::MaskedEnergy`]: spectral
//!   statistics ([`statistics`]), no model needed.
//! - [`Detector::Autoencoder`]: log-mel reconstruction error ([`autoencoder`]).
//! - [`Detector::Ensemble`]: logistic regression on other detectors' scores ([`ensemble`]).

pub mod activations;
pub mod adaptive;
pub mod autoencoder;
pub mod calibration;
pub mod ensemble;
pub mod entropy;
pub mod statistics;
pub mod transforms;
pub mod verdict;

use crate::metrics::cer;
use crate::model::{DecodeOptions, LoadedModel};
use crate::text::normalize_transcript;
use crate::transcribe::{transcribe, Transcript};
use crate::{Error, Result};
use activations::ActivationModel;
use autoencoder::MelAutoencoder;
use ensemble::Ensemble;
use std::cell::OnceCell;
use std::path::Path;
use std::sync::Arc;
use transforms::Transform;

/// One detector.
#[derive(Debug, Clone, PartialEq)]
pub enum Detector {
    /// Character edit distance between the transcripts of `x` and of the transformed `x`.
    Consistency(Transform),
    /// Character edit distance between the transcript of the first `portion` of `x` and the
    /// same-length prefix of the full transcript.
    Temporal {
        /// Share of the input transcribed alone (0 < portion < 1).
        portion: f32,
    },
    /// Minus the decoder's mean token log-probability.
    Confidence,
    /// The decoder's mean next-token entropy over the decoded steps (nats).
    Entropy,
    /// Encoder activations' Mahalanobis distance from clean speech's, the largest over layers.
    Activations(Arc<ActivationModel>),
    /// Share of the energy above 4 kHz.
    HighBand,
    /// Level of the quietest frames relative to the loudest (dB).
    NoiseFloor,
    /// Share of the energy under the signal's own masking threshold (dB).
    MaskedEnergy,
    /// Log-mel reconstruction error of an autoencoder trained on clean speech.
    Autoencoder(Arc<MelAutoencoder>),
    /// Logistic regression on other detectors' scores.
    Ensemble(Arc<Ensemble>),
}

impl Detector {
    /// The default set: consistency under every default transform, temporal dependency at
    /// half the input, confidence and the noise floor. (`high-band` and `masked-energy` are
    /// available but barely move under a PGD perturbation at 30 dB SNR.)
    pub fn default_set() -> Vec<Detector> {
        let mut v: Vec<Detector> = Transform::default_set()
            .into_iter()
            .map(Detector::Consistency)
            .collect();
        v.extend([
            Detector::Temporal { portion: 0.5 },
            Detector::Confidence,
            Detector::NoiseFloor,
        ]);
        v
    }

    /// Its name in reports and on the command line: `consistency:TRANSFORM` (see
    /// [`Transform::name`]), `temporal`, `confidence`, `high-band`, `noise-floor`.
    pub fn name(&self) -> String {
        match self {
            Detector::Consistency(t) => format!("consistency:{}", t.name()),
            Detector::Temporal { .. } => "temporal".into(),
            Detector::Confidence => "confidence".into(),
            Detector::Entropy => "entropy".into(),
            Detector::Activations(a) => match &a.path {
                Some(p) => format!("activations:{}", p.display()),
                None => "activations".into(),
            },
            Detector::HighBand => "high-band".into(),
            Detector::NoiseFloor => "noise-floor".into(),
            Detector::MaskedEnergy => "masked-energy".into(),
            Detector::Autoencoder(ae) => match &ae.path {
                Some(p) => format!("autoencoder:{}", p.display()),
                None => "autoencoder".into(),
            },
            Detector::Ensemble(e) => match &e.path {
                Some(p) => format!("ensemble:{}", p.display()),
                None => "ensemble".into(),
            },
        }
    }

    /// Parse a name as [`Detector::name`] writes it.
    pub fn parse(s: &str) -> Result<Detector> {
        let s = s.trim();
        if let Some(t) = s.strip_prefix("consistency:") {
            return Ok(Detector::Consistency(Transform::parse(t)?));
        }
        if let Some(p) = s.strip_prefix("autoencoder:") {
            let ae = MelAutoencoder::load(Path::new(p), &candle_core::Device::Cpu)?;
            return Ok(Detector::Autoencoder(Arc::new(ae)));
        }
        if let Some(p) = s.strip_prefix("activations:") {
            return Ok(Detector::Activations(Arc::new(ActivationModel::load(
                Path::new(p),
            )?)));
        }
        if let Some(p) = s.strip_prefix("ensemble:") {
            return Ok(Detector::Ensemble(Arc::new(Ensemble::load(Path::new(p))?)));
        }
        match s {
            "temporal" => Ok(Detector::Temporal { portion: 0.5 }),
            "confidence" => Ok(Detector::Confidence),
            "entropy" => Ok(Detector::Entropy),
            "high-band" => Ok(Detector::HighBand),
            "noise-floor" => Ok(Detector::NoiseFloor),
            "masked-energy" => Ok(Detector::MaskedEnergy),
            _ => Err(Error::InvalidArgument(format!(
                "unknown detector {s:?} (consistency:TRANSFORM, temporal, confidence, entropy, noise-floor, \
                 high-band, masked-energy, autoencoder:WEIGHTS, activations:FILE, ensemble:FILE)"
            ))),
        }
    }

    /// Whether it compares two transcripts of the input (consistency, temporal): what a
    /// detector-aware attack ([`adaptive`]) keeps equal.
    pub fn compares_transcripts(&self) -> bool {
        matches!(self, Detector::Consistency(_) | Detector::Temporal { .. })
    }

    /// Whether scoring needs the recogniser.
    pub fn needs_model(&self) -> bool {
        match self {
            Detector::HighBand
            | Detector::NoiseFloor
            | Detector::MaskedEnergy
            | Detector::Autoencoder(_) => false,
            Detector::Ensemble(e) => e.members.iter().any(Detector::needs_model),
            _ => true,
        }
    }

    /// A threshold that works without calibration where one is known (the transcript-distance
    /// detectors: a character error rate); `None` for the others, which need
    /// [`calibration`] on clean speech from the deployment.
    pub fn default_threshold(&self) -> Option<f64> {
        match self {
            Detector::Consistency(_) | Detector::Temporal { .. } => Some(0.3),
            Detector::Ensemble(_) => Some(0.5),
            _ => None,
        }
    }

    /// Score one input (higher: more likely adversarial).
    pub fn score(&self, ctx: &Context, input: &Input) -> Result<f64> {
        let x = input.samples;
        if x.is_empty() {
            return Err(Error::InvalidArgument(
                "detection on an empty signal".into(),
            ));
        }
        Ok(match self {
            Detector::Consistency(t) => {
                let reference = input.transcript(ctx)?;
                let transformed = ctx.transcribe(&t.apply(x)?)?;
                cer(&reference.text, &transformed.text).min(1.0)
            }
            Detector::Temporal { portion } => {
                if !(*portion > 0.0 && *portion < 1.0) {
                    return Err(Error::InvalidArgument(format!(
                        "temporal dependency: the portion must be in (0, 1), got {portion}"
                    )));
                }
                let full = normalize_transcript(&input.transcript(ctx)?.text);
                let n = ((x.len() as f32 * portion).round() as usize).max(1);
                let part = normalize_transcript(&ctx.transcribe(&x[..n])?.text);
                let prefix: String = full.chars().take(part.chars().count()).collect();
                cer(&prefix, &part).min(1.0)
            }
            Detector::Confidence => -input.transcript(ctx)?.avg_logprob as f64,
            Detector::Entropy => entropy::decoding_entropy(ctx.model()?, x, &ctx.decode)?,
            Detector::Activations(a) => a.score(ctx.model()?, x)?,
            Detector::HighBand => statistics::high_band_share(x)?,
            Detector::NoiseFloor => statistics::noise_floor_db(x)?,
            Detector::MaskedEnergy => statistics::masked_energy_db(x)?,
            Detector::Autoencoder(ae) => ae.score(x)?,
            Detector::Ensemble(e) => {
                let scores = score_all(&e.members, ctx, input)?;
                e.combine(&scores)?
            }
        })
    }
}

/// What the detectors that listen share: the recogniser and how it decodes.
pub struct Context<'a> {
    /// The recogniser (`None` when only spectral statistics are scored).
    pub model: Option<&'a LoadedModel>,
    /// Its decoding settings.
    pub decode: DecodeOptions,
}

impl Context<'_> {
    fn model(&self) -> Result<&LoadedModel> {
        self.model
            .ok_or_else(|| Error::InvalidArgument("this detector needs a recogniser model".into()))
    }

    fn transcribe(&self, x: &[f32]) -> Result<Transcript> {
        transcribe(self.model()?, x, &self.decode)
    }
}

/// One input to score, with its transcript computed once for all detectors.
pub struct Input<'a> {
    /// 16-kHz mono samples.
    pub samples: &'a [f32],
    transcript: OnceCell<Transcript>,
}

impl<'a> Input<'a> {
    /// An input.
    pub fn new(samples: &'a [f32]) -> Self {
        Input {
            samples,
            transcript: OnceCell::new(),
        }
    }

    /// Its transcript (decoded on first use).
    pub fn transcript(&self, ctx: &Context) -> Result<&Transcript> {
        if let Some(t) = self.transcript.get() {
            return Ok(t);
        }
        let t = ctx.transcribe(self.samples)?;
        Ok(self.transcript.get_or_init(|| t))
    }

    /// The transcript if a detector has decoded it.
    pub fn known_transcript(&self) -> Option<&Transcript> {
        self.transcript.get()
    }
}

/// Scores of every detector on one input, in the detectors' order.
pub fn score_all(detectors: &[Detector], ctx: &Context, input: &Input) -> Result<Vec<f64>> {
    detectors.iter().map(|d| d.score(ctx, input)).collect()
}
