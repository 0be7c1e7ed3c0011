//! Defences: transcribe through something an adversarial perturbation does not survive.
//!
//! - [`Defense::Purify`]: input transformations ([`crate::detect::transforms`], chained) before
//!   transcription (feature squeezing).
//! - [`Defense::Smoothing`]: randomised smoothing with a certificate ([`smoothing`]).
//! - [`Defense::Vote`]: majority vote over the transcripts of `x` and of each transformed `x`,
//!   by every model given (an ensemble across transforms and models).

pub mod adaptive;
pub mod adv_train;
pub mod distill;
pub mod smoothing;

use crate::detect::transforms::Transform;
use crate::model::{DecodeOptions, LoadedModel};
use crate::text::normalize_transcript;
use crate::transcribe::transcribe;
use crate::{Error, Result};
use smoothing::{smoothed_transcribe, SmoothingConfig};

/// One defence.
#[derive(Debug, Clone, PartialEq)]
pub enum Defense {
    /// Transcribe as is (the undefended baseline).
    None,
    /// Apply the transforms in order, then transcribe.
    Purify(Vec<Transform>),
    /// Randomised smoothing.
    Smoothing(SmoothingConfig),
    /// Majority vote over `x` and each transformed `x`, by every model.
    Vote(Vec<Transform>),
}

/// A defended transcription.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Defended {
    /// The transcript (empty when the defence abstains).
    pub text: String,
    /// Whether the defence declined to answer (smoothing without a significant vote).
    pub abstained: bool,
    /// Share of the voters (or noisy copies) that agreed with the answer.
    pub agreement: f64,
    /// Certified L2 radius (smoothing only).
    pub certified_radius: Option<f64>,
}

impl Defense {
    /// Set randomised smoothing's estimation: `samples` noisy copies estimate the answer's
    /// probability at error probability `alpha` (in (0, 1)), the noise drawn from `seed`. An
    /// error for any other defence, or for settings out of range.
    pub fn set_smoothing(&mut self, samples: usize, alpha: f64, seed: u64) -> Result<()> {
        let Defense::Smoothing(cfg) = self else {
            return Err(Error::InvalidArgument(format!(
                "--samples, --alpha and --seed apply to smoothing only, not {}",
                self.name()
            )));
        };
        if samples == 0 || !(alpha > 0.0 && alpha < 1.0) {
            return Err(Error::InvalidArgument(
                "--samples must be positive and --alpha in (0, 1)".into(),
            ));
        }
        cfg.estimation_samples = samples;
        cfg.alpha = alpha;
        cfg.seed = seed;
        Ok(())
    }

    /// Parse `none`, `purify:T1+T2…` (transform names as in [`Transform::parse`]),
    /// `smoothing[:SIGMA]` or `vote[:T1+T2…]` (default: every default transform).
    pub fn parse(s: &str) -> Result<Defense> {
        let s = s.trim();
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let transforms = |a: Option<&str>| -> Result<Vec<Transform>> {
            match a {
                None => Ok(Transform::default_set()),
                Some(list) => list.split('+').map(Transform::parse).collect(),
            }
        };
        match kind {
            "none" => Ok(Defense::None),
            "purify" => Ok(Defense::Purify(transforms(arg.or(Some("lowpass-4000")))?)),
            "vote" => Ok(Defense::Vote(transforms(arg)?)),
            "smoothing" => {
                let mut cfg = SmoothingConfig::default();
                if let Some(a) = arg {
                    cfg.sigma = a
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!("smoothing: bad sigma {a:?}"))
                        })?;
                }
                Ok(Defense::Smoothing(cfg))
            }
            _ => Err(Error::InvalidArgument(format!(
                "unknown defence {s:?} (none, purify:T1+T2, smoothing[:SIGMA], vote[:T1+T2])"
            ))),
        }
    }

    /// Its name in reports (parses back with [`Defense::parse`]).
    pub fn name(&self) -> String {
        let list = |t: &[Transform]| t.iter().map(|t| t.name()).collect::<Vec<_>>().join("+");
        match self {
            Defense::None => "none".into(),
            Defense::Purify(t) => format!("purify:{}", list(t)),
            Defense::Smoothing(c) => format!("smoothing:{}", c.sigma),
            Defense::Vote(t) => format!("vote:{}", list(t)),
        }
    }

    /// Transcribe 16-kHz samples `x` under this defence. `models` holds at least one model; only
    /// the vote uses more than the first.
    pub fn transcribe(
        &self,
        models: &[&LoadedModel],
        decode: &DecodeOptions,
        x: &[f32],
    ) -> Result<Defended> {
        let first = *models
            .first()
            .ok_or_else(|| Error::Internal("a defence needs a model".into()))?;
        let plain = |text: String| Defended {
            text,
            abstained: false,
            agreement: 1.0,
            certified_radius: None,
        };
        match self {
            Defense::None => Ok(plain(transcribe(first, x, decode)?.text)),
            Defense::Purify(transforms) => Ok(plain(
                transcribe(first, &purify(transforms, x)?, decode)?.text,
            )),
            Defense::Smoothing(cfg) => {
                let s = smoothed_transcribe(first, decode, x, cfg)?;
                Ok(Defended {
                    text: s.text,
                    abstained: s.abstained,
                    agreement: s.agreeing as f64 / s.estimation_samples as f64,
                    certified_radius: Some(s.radius),
                })
            }
            Defense::Vote(transforms) => {
                let mut inputs = vec![x.to_vec()];
                for t in transforms {
                    inputs.push(t.apply(x)?);
                }
                let mut ballots = Vec::new();
                for m in models {
                    for y in &inputs {
                        ballots.push(transcribe(m, y, decode)?.text);
                    }
                }
                let (text, votes) = majority(&ballots);
                Ok(Defended {
                    text,
                    abstained: false,
                    agreement: votes as f64 / ballots.len() as f64,
                    certified_radius: None,
                })
            }
        }
    }
}

/// `x` through `transforms` in order (what [`Defense::Purify`] transcribes).
pub fn purify(transforms: &[Transform], x: &[f32]) -> Result<Vec<f32>> {
    let mut y = x.to_vec();
    for t in transforms {
        y = t.apply(&y)?;
    }
    Ok(y)
}

/// The most frequent transcript after normalisation (ties: the earliest ballot) and its votes.
pub fn majority(ballots: &[String]) -> (String, usize) {
    let keys: Vec<String> = ballots.iter().map(|b| normalize_transcript(b)).collect();
    let mut best = (0usize, 0usize);
    for (i, k) in keys.iter().enumerate() {
        let votes = keys.iter().filter(|o| *o == k).count();
        if votes > best.1 {
            best = (i, votes);
        }
    }
    match ballots.get(best.0) {
        Some(b) => (b.clone(), best.1),
        None => (String::new(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defences_parse_and_name_round_trip() {
        for s in [
            "none",
            "purify:lowpass-4000",
            "purify:quantize-8+resample-8000",
            "smoothing:0.01",
            "vote:lowpass-4000+mel-80",
        ] {
            assert_eq!(Defense::parse(s).unwrap().name(), s);
        }
        assert_eq!(
            Defense::parse("vote").unwrap(),
            Defense::Vote(Transform::default_set())
        );
        assert!(Defense::parse("smoothing:-1").is_err());
        assert!(Defense::parse("pray").is_err());
        assert!(Defense::parse("purify:warp").is_err());
    }

    #[test]
    fn majority_normalises_and_breaks_ties_by_order() {
        let b = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            majority(&b(&["Open the door.", "open the door", "close it"])),
            ("Open the door.".to_string(), 2)
        );
        assert_eq!(majority(&b(&["a", "b"])), ("a".to_string(), 1));
        assert_eq!(majority(&[]), (String::new(), 0));
    }
}
