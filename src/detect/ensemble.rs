//! An ensemble detector: logistic regression on the standardised scores of member detectors,
//! fitted on clean and adversarial examples; its score is the probability of "adversarial".

use super::Detector;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format tag of a saved ensemble.
pub const FORMAT: &str = "advox-detect-ensemble";

/// A fitted logistic-regression ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    /// [`FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// Member detector names (parse with [`Detector::parse`]).
    pub detectors: Vec<String>,
    /// Mean of each member's score on the training examples.
    pub mean: Vec<f64>,
    /// Standard deviation of the same (1 where constant).
    pub scale: Vec<f64>,
    /// Weight per standardised member score.
    pub weights: Vec<f64>,
    /// Intercept.
    pub bias: f64,
    /// Members, parsed.
    #[serde(skip)]
    pub members: Vec<Detector>,
    /// Where it was read from.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Ensemble {
    /// Fit on member scores (one row per example, one column per member) of clean and of
    /// adversarial examples: L2-regularised logistic regression by gradient descent on
    /// standardised scores, classes weighted equally.
    pub fn fit(
        members: Vec<Detector>,
        clean: &[Vec<f64>],
        adversarial: &[Vec<f64>],
    ) -> Result<Self> {
        let k = members.len();
        if k == 0 || clean.is_empty() || adversarial.is_empty() {
            return Err(Error::InvalidArgument(
                "an ensemble needs members and clean and adversarial examples".into(),
            ));
        }
        if let Some(r) = clean.iter().chain(adversarial).find(|r| r.len() != k) {
            return Err(Error::Shape(format!(
                "a score row has {} values for {k} detectors",
                r.len()
            )));
        }
        if clean
            .iter()
            .chain(adversarial)
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(Error::InvalidArgument(
                "a member score is not finite".into(),
            ));
        }
        let rows: Vec<&[f64]> = clean
            .iter()
            .chain(adversarial)
            .map(|r| r.as_slice())
            .collect();
        let (mean, scale) = crate::attribute::classifier::column_stats(&rows);
        let z =
            |r: &Vec<f64>| -> Vec<f64> { (0..k).map(|j| (r[j] - mean[j]) / scale[j]).collect() };
        let data: Vec<(Vec<f64>, f64, f64)> = clean
            .iter()
            .map(|r| (z(r), 0.0, 0.5 / clean.len() as f64))
            .chain(
                adversarial
                    .iter()
                    .map(|r| (z(r), 1.0, 0.5 / adversarial.len() as f64)),
            )
            .collect();
        let (mut w, mut b) = (vec![0.0f64; k], 0.0f64);
        let lambda = 1e-2;
        for _ in 0..5_000 {
            let mut gw = vec![0.0f64; k];
            let mut gb = 0.0;
            for (x, y, weight) in &data {
                let p = sigmoid(b + x.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>());
                let e = weight * (p - y);
                for (g, xi) in gw.iter_mut().zip(x) {
                    *g += e * xi;
                }
                gb += e;
            }
            for (wi, g) in w.iter_mut().zip(&gw) {
                *wi -= 0.5 * (g + lambda * *wi);
            }
            b -= 0.5 * gb;
        }
        Ok(Ensemble {
            format: FORMAT.into(),
            version: 1,
            detectors: members.iter().map(|d| d.name()).collect(),
            mean,
            scale,
            weights: w,
            bias: b,
            members,
            path: None,
        })
    }

    /// Probability of "adversarial" from the members' scores (in member order).
    pub fn combine(&self, scores: &[f64]) -> Result<f64> {
        if scores.len() != self.weights.len() {
            return Err(Error::Shape(format!(
                "the ensemble combines {} scores, got {}",
                self.weights.len(),
                scores.len()
            )));
        }
        let z: f64 = scores
            .iter()
            .enumerate()
            .map(|(j, s)| self.weights[j] * (s - self.mean[j]) / self.scale[j])
            .sum();
        Ok(sigmoid(self.bias + z))
    }

    /// Save as JSON (through a temporary file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("ensemble: {e}")))?;
        crate::atomic_file::write_bytes_atomic(path, text.as_bytes())
    }

    /// Read an ensemble saved by [`Ensemble::save`] (its members are parsed, loading any
    /// weights they name).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut e: Ensemble = serde_json::from_str(&text)
            .map_err(|err| Error::bad_file(path, format!("not an advox ensemble: {err}")))?;
        let k = e.detectors.len();
        if e.format != FORMAT
            || e.version != 1
            || k == 0
            || e.mean.len() != k
            || e.scale.len() != k
            || e.weights.len() != k
            || e.scale.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::bad_file(
                path,
                format!("not a valid {FORMAT} version 1 file"),
            ));
        }
        e.members = e
            .detectors
            .iter()
            .map(|d| Detector::parse(d).map_err(|err| Error::bad_file(path, err.to_string())))
            .collect::<Result<_>>()?;
        e.path = Some(path.to_path_buf());
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::calibration::roc_auc;

    #[test]
    fn fits_a_separable_problem_and_round_trips() {
        // Member 0 separates, member 1 is noise, member 2 is constant.
        let clean: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![0.1 * i as f64 / 10.0, (i * 7 % 5) as f64, 3.0])
            .collect();
        let adv: Vec<Vec<f64>> = (0..10)
            .map(|i| vec![0.5 + 0.1 * i as f64 / 10.0, (i * 3 % 5) as f64, 3.0])
            .collect();
        let members = vec![
            Detector::NoiseFloor,
            Detector::HighBand,
            Detector::MaskedEnergy,
        ];
        let e = Ensemble::fit(members, &clean, &adv).unwrap();
        assert!(e.weights[0] > 1.0 && e.weights[0].abs() > 5.0 * e.weights[1].abs());
        let s = |rows: &[Vec<f64>]| -> Vec<f64> {
            rows.iter().map(|r| e.combine(r).unwrap()).collect()
        };
        assert_eq!(roc_auc(&s(&clean), &s(&adv)).unwrap(), 1.0);
        assert!(s(&clean).iter().all(|p| *p < 0.5) && s(&adv).iter().all(|p| *p > 0.5));
        let dir = std::env::temp_dir().join(format!("advox-ens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("e.json");
        e.save(&path).unwrap();
        let back = Ensemble::load(&path).unwrap();
        assert_eq!(back.members, e.members);
        assert_eq!(back.combine(&adv[0]).unwrap(), e.combine(&adv[0]).unwrap());
        std::fs::write(&path, r#"{"format": "other"}"#).unwrap();
        assert!(Ensemble::load(&path).is_err());
        assert!(Ensemble::fit(vec![], &clean, &adv).is_err());
        assert!(e.combine(&[1.0]).is_err());
    }
}
