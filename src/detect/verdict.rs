//! Every detector's score of one input, with its threshold and verdict: what `advox detect`
//! prints per file and the Python package's `detect` returns.

use super::{Context, Detector, Input};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// The detectors' judgement of one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The input's transcript, where a detector decoded it.
    pub transcript: Option<String>,
    /// Each detector's score (higher: more likely adversarial).
    pub scores: BTreeMap<String, f64>,
    /// Each detector's threshold (from the calibration, else its built-in one; `None` if it
    /// has neither).
    pub thresholds: BTreeMap<String, Option<f64>>,
    /// Each detector's verdict (`None` without a threshold).
    pub verdicts: BTreeMap<String, Option<bool>>,
    /// The detectors whose score passed their threshold.
    pub flagged_by: Vec<String>,
    /// Whether any detector flagged the input.
    pub adversarial: bool,
}

/// Score 16-kHz samples `x` with every detector; thresholds come from `calibration` (by
/// detector name) when given, else from each detector's built-in one. A detector's failure
/// names the detector.
pub fn detect_signal(
    detectors: &[Detector],
    ctx: &Context,
    x: &[f32],
    calibration: Option<&BTreeMap<String, f64>>,
) -> Result<Detection> {
    let input = Input::new(x);
    let mut detection = Detection {
        transcript: None,
        scores: BTreeMap::new(),
        thresholds: BTreeMap::new(),
        verdicts: BTreeMap::new(),
        flagged_by: Vec::new(),
        adversarial: false,
    };
    for d in detectors {
        let name = d.name();
        let score = d.score(ctx, &input).map_err(|e| Error::Context {
            context: format!("detector {name}"),
            source: Box::new(e),
        })?;
        let threshold = match calibration {
            Some(c) => c.get(&name).copied(),
            None => d.default_threshold(),
        };
        let verdict = threshold.map(|t| score > t);
        if verdict == Some(true) {
            detection.flagged_by.push(name.clone());
        }
        detection.scores.insert(name.clone(), score);
        detection.thresholds.insert(name.clone(), threshold);
        detection.verdicts.insert(name, verdict);
    }
    detection.adversarial = !detection.flagged_by.is_empty();
    detection.transcript = input.known_transcript().map(|t| t.text.clone());
    Ok(detection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DecodeOptions;

    #[test]
    fn thresholds_come_from_the_calibration_and_flag_what_passes_them() {
        let ctx = Context {
            model: None,
            decode: DecodeOptions::default(),
        };
        let mut rng = crate::rng::Rng::new(3);
        let noise: Vec<f32> = (0..16_000).map(|_| rng.symmetric(0.1)).collect();
        let detectors = [Detector::parse("high-band").unwrap()];
        let plain = detect_signal(&detectors, &ctx, &noise, None).unwrap();
        let score = plain.scores["high-band"];
        assert_eq!(plain.thresholds["high-band"], None);
        assert!(!plain.adversarial && plain.transcript.is_none());
        let below: BTreeMap<String, f64> = [("high-band".to_string(), score - 1e-3)].into();
        let flagged = detect_signal(&detectors, &ctx, &noise, Some(&below)).unwrap();
        assert_eq!(flagged.flagged_by, vec!["high-band".to_string()]);
        assert!(flagged.adversarial);
        let needs_model = [Detector::parse("entropy").unwrap()];
        let err = detect_signal(&needs_model, &ctx, &noise, None).unwrap_err();
        assert!(err.to_string().starts_with("detector entropy: "), "{err}");
    }
}
