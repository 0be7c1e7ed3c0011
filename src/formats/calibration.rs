//! The detector calibration `advox detect --calibrate` writes and `advox detect --calibration`
//! reads: each detector's threshold at a false-positive rate on clean speech.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The calibration's `format` value.
pub const CALIBRATION_FORMAT: &str = "advox-detect-calibration";

/// One detector's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorThreshold {
    /// The detector, as `--detectors` names it.
    pub name: String,
    /// Scores above this are flagged.
    pub threshold: f64,
    /// Lowest clean score.
    pub clean_min: f64,
    /// Highest clean score.
    pub clean_max: f64,
}

/// A calibration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Always [`CALIBRATION_FORMAT`].
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// The false-positive rate the thresholds hold on the clean set.
    pub fpr: f64,
    /// The clean manifest.
    pub clean_manifest: String,
    /// Its utterances.
    pub clean_utterances: usize,
    /// The model detectors that listen with one used.
    pub model: Option<String>,
    /// Their beam size.
    pub beam: usize,
    /// Per detector.
    pub detectors: Vec<DetectorThreshold>,
}

impl Calibration {
    /// A calibration of `detectors` at `fpr`.
    pub fn new(
        fpr: f64,
        clean_manifest: &Path,
        clean_utterances: usize,
        model: Option<String>,
        beam: usize,
        detectors: Vec<DetectorThreshold>,
    ) -> Self {
        Calibration {
            format: CALIBRATION_FORMAT.into(),
            version: 1,
            fpr,
            clean_manifest: clean_manifest.display().to_string(),
            clean_utterances,
            model,
            beam,
            detectors,
        }
    }

    /// Read and check a calibration file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let c: Calibration = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not an advox calibration file: {e}")))?;
        if c.format != CALIBRATION_FORMAT || c.version != 1 {
            return Err(Error::bad_file(
                path,
                format!(
                    "format {:?} version {} is not {CALIBRATION_FORMAT} version 1",
                    c.format, c.version
                ),
            ));
        }
        Ok(c)
    }

    /// The thresholds by detector name.
    pub fn thresholds(&self) -> BTreeMap<String, f64> {
        self.detectors
            .iter()
            .map(|d| (d.name.clone(), d.threshold))
            .collect()
    }
}
