//! The evaluation report: aggregates of [`ExampleRecord`]s per attack and bound, the settings,
//! and the records themselves (so reports of shards merge).

use super::ExampleRecord;
use crate::attack::AttackKind;
use crate::detect::calibration::{roc_auc, tpr_at_fpr};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format tag of `report.json`.
pub const FORMAT: &str = "advox-eval";

/// The settings a report was made with (shards must agree on them to merge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The manifest.
    pub manifest: String,
    /// Its number of entries (all shards together).
    pub manifest_entries: usize,
    /// Attack names.
    pub attacks: Vec<AttackKind>,
    /// L∞ bounds of FGSM and PGD.
    pub epsilons: Vec<f32>,
    /// Attack steps.
    pub steps: usize,
    /// Defence names.
    pub defenses: Vec<String>,
    /// Detector names.
    pub detectors: Vec<String>,
    /// Model identifiers (the first is attacked).
    pub models: Vec<String>,
    /// Beam size of every transcription.
    pub beam: usize,
    /// Goal of entries that set none.
    pub default_goal: String,
    /// Seed.
    pub seed: u64,
}

/// Mean, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Option<Spread> {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        Some(Spread {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One defence against one attack cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefenseSummary {
    /// Share of adversarial examples whose defended transcript is the clean transcript.
    pub robust_accuracy: f64,
    /// Share where the attack's goal is still met through the defence.
    pub attack_success_rate: f64,
    /// Share where the defence abstained.
    pub abstain_rate: f64,
}

/// One detector against one attack cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSummary {
    /// ROC-AUC of the clean scores (all examples) against those of the successful adversarial
    /// examples.
    pub roc_auc: f64,
    /// Share of successful adversarial examples flagged at the threshold that flags at most 5 %
    /// of the clean ones.
    pub tpr_at_5_fpr: f64,
    /// The ROC curve: (false-positive rate, true-positive rate) points from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
}

/// One attack at one bound over all examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Attack.
    pub attack: String,
    /// L∞ bound (`None` for CW).
    pub eps: Option<f32>,
    /// Examples.
    pub examples: usize,
    /// Share where the goal was met (undefended).
    pub success_rate: f64,
    /// Mean WER of the adversarial transcripts against the clean ones.
    pub adversarial_wer: f64,
    /// Mean CER of the same.
    pub adversarial_cer: f64,
    /// SNR of the perturbations (dB).
    pub snr_db: Option<Spread>,
    /// dBx of the perturbations.
    pub dbx: Option<Spread>,
    /// Seconds per example.
    pub seconds: Option<Spread>,
    /// Per defence.
    pub defenses: BTreeMap<String, DefenseSummary>,
    /// Per detector.
    pub detectors: BTreeMap<String, DetectorSummary>,
}

/// Clean-input numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanSummary {
    /// Mean WER against the manifest's reference transcripts (where given).
    pub wer: Option<f64>,
    /// Mean CER against the same.
    pub cer: Option<f64>,
    /// Per defence: share of clean inputs whose defended transcript is the clean transcript.
    pub defense_accuracy: BTreeMap<String, f64>,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// Settings.
    pub settings: Settings,
    /// `i/n` when this report covers one shard.
    pub shard: Option<String>,
    /// Examples covered.
    pub examples: usize,
    /// Clean inputs.
    pub clean: CleanSummary,
    /// One per attack and bound.
    pub cells: Vec<Cell>,
    /// Every measurement, per example, by manifest position.
    pub records: Vec<ExampleRecord>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = v.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn share(v: impl Iterator<Item = bool>) -> f64 {
    let v: Vec<bool> = v.collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().filter(|b| **b).count() as f64 / v.len() as f64
    }
}

/// ROC points of scores (higher: adversarial) from (0, 0) to (1, 1).
pub fn roc_curve(clean: &[f64], adversarial: &[f64]) -> Vec<(f64, f64)> {
    let mut thresholds: Vec<f64> = clean.iter().chain(adversarial).copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let rate = |v: &[f64], t: f64| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().filter(|s| **s >= t).count() as f64 / v.len() as f64
        }
    };
    let mut points = vec![(0.0, 0.0)];
    for t in thresholds {
        points.push((rate(clean, t), rate(adversarial, t)));
    }
    if points.last() != Some(&(1.0, 1.0)) {
        points.push((1.0, 1.0));
    }
    points
}

impl Report {
    /// Aggregate `records` (any order; sorted by manifest position here).
    pub fn from_records(
        settings: Settings,
        shard: Option<String>,
        mut records: Vec<ExampleRecord>,
    ) -> Result<Report> {
        records.sort_by_key(|r| r.index);
        if let Some(w) = records.windows(2).find(|w| w[0].index == w[1].index) {
            return Err(Error::InvalidArgument(format!(
                "example {} ({}) appears twice",
                w[0].index, w[0].input
            )));
        }
        let clean = CleanSummary {
            wer: mean(records.iter().filter_map(|r| r.clean_wer)),
            cer: mean(records.iter().filter_map(|r| r.clean_cer)),
            defense_accuracy: settings
                .defenses
                .iter()
                .map(|d| {
                    let acc = share(
                        records
                            .iter()
                            .filter_map(|r| r.clean_defended.get(d))
                            .map(|x| x.correct),
                    );
                    (d.clone(), acc)
                })
                .collect(),
        };
        // Cells in the order attacks and bounds first appear.
        let mut keys: Vec<(String, Option<f32>)> = Vec::new();
        for r in &records {
            for a in &r.attacks {
                let k = (a.attack.clone(), a.eps);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let mut cells = Vec::new();
        for (attack, eps) in keys {
            let runs: Vec<(&ExampleRecord, &super::AttackRecord)> = records
                .iter()
                .flat_map(|r| r.attacks.iter().map(move |a| (r, a)))
                .filter(|(_, a)| a.attack == attack && a.eps == eps)
                .collect();
            let defenses = settings
                .defenses
                .iter()
                .map(|d| {
                    let ds: Vec<&super::DefendedRecord> =
                        runs.iter().filter_map(|(_, a)| a.defended.get(d)).collect();
                    (
                        d.clone(),
                        DefenseSummary {
                            robust_accuracy: share(ds.iter().map(|x| x.correct)),
                            attack_success_rate: share(ds.iter().map(|x| x.attack_success)),
                            abstain_rate: share(ds.iter().map(|x| x.abstained)),
                        },
                    )
                })
                .collect();
            let mut detectors = BTreeMap::new();
            for d in &settings.detectors {
                let clean: Vec<f64> = records
                    .iter()
                    .filter_map(|r| r.clean_scores.get(d).copied())
                    .collect();
                // Detection is measured on the examples that fool the model.
                let adv: Vec<f64> = runs
                    .iter()
                    .filter(|(_, a)| a.success)
                    .filter_map(|(_, a)| a.scores.get(d).copied())
                    .collect();
                if clean.is_empty() || adv.is_empty() {
                    continue;
                }
                detectors.insert(
                    d.clone(),
                    DetectorSummary {
                        roc_auc: roc_auc(&clean, &adv)?,
                        tpr_at_5_fpr: tpr_at_fpr(&clean, &adv, 0.05)?,
                        roc: roc_curve(&clean, &adv),
                    },
                );
            }
            let col = |f: fn(&super::AttackRecord) -> f64| -> Vec<f64> {
                runs.iter().map(|(_, a)| f(a)).collect()
            };
            cells.push(Cell {
                examples: runs.len(),
                success_rate: share(runs.iter().map(|(_, a)| a.success)),
                adversarial_wer: mean(col(|a| a.wer).into_iter()).unwrap_or(0.0),
                adversarial_cer: mean(col(|a| a.cer).into_iter()).unwrap_or(0.0),
                snr_db: Spread::of(&col(|a| a.snr_db)),
                dbx: Spread::of(&col(|a| a.dbx)),
                seconds: Spread::of(&col(|a| a.seconds)),
                defenses,
                detectors,
                attack,
                eps,
            });
        }
        Ok(Report {
            format: FORMAT.into(),
            version: 1,
            settings,
            shard,
            examples: records.len(),
            clean,
            cells,
            records,
        })
    }

    /// Read a `report.json`.
    pub fn read(path: &std::path::Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not an advox eval report: {e}")))?;
        if report.format != FORMAT || report.version != 1 {
            return Err(Error::bad_file(
                path,
                format!(
                    "format {:?} version {} is not {FORMAT} version 1",
                    report.format, report.version
                ),
            ));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_curve_runs_from_origin_to_one_and_matches_the_auc() {
        let clean = [0.1, 0.2, 0.3];
        let adv = [0.25, 0.9];
        let roc = roc_curve(&clean, &adv);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        // Trapezoid area equals the Mann–Whitney AUC.
        let area: f64 = roc
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!((area - roc_auc(&clean, &adv).unwrap()).abs() < 1e-12);
    }
}
