//! The evaluation report: aggregates of [`ExampleRecord`]s per attack and bound, the settings,
//! and the records themselves (so reports of shards merge).

use super::ExampleRecord;
use crate::attack::AttackKind;
use crate::detect::calibration::{roc_auc, threshold_at_fpr, tpr_at_fpr};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format tag of `report.json`.
pub const FORMAT: &str = "advox-eval";

/// Version of `report.json` (2: adaptive attacks, `non_adaptive` / `adaptive` per defence).
pub const VERSION: u32 = 2;

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
    /// SNR floors (dB) of FGSM and PGD (δ kept within each example's L2 ball of that SNR).
    #[serde(default)]
    pub snr_bounds_db: Vec<f32>,
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
    /// Whether each defence was also attacked adaptively (through the defence).
    pub adaptive: bool,
    /// Draws per step of the adaptive attacks on smoothing and votes.
    pub adaptive_samples: usize,
    /// The over-the-air channel (`None` without one): its draws per signal, and its rooms.
    #[serde(default)]
    pub over_the_air: Option<String>,
    /// Whether FGSM and PGD used EOT over that channel.
    #[serde(default)]
    pub eot: bool,
    /// The independent recognisers that judged every written example (`--verify`).
    #[serde(default)]
    pub verifiers: Vec<String>,
    /// The built-in suite the manifest came from (`voice-assistant`), if any.
    #[serde(default)]
    pub suite: Option<String>,
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

/// One defence against the adversarial examples of one attack cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefenseNumbers {
    /// Share of adversarial examples whose defended transcript is the clean transcript.
    pub robust_accuracy: f64,
    /// Share where the attack's goal is met through the defence.
    pub attack_success_rate: f64,
    /// Share where the defence abstained.
    pub abstain_rate: f64,
}

impl DefenseNumbers {
    fn of<'a>(records: impl Iterator<Item = &'a super::DefendedRecord>) -> Self {
        let ds: Vec<&super::DefendedRecord> = records.collect();
        DefenseNumbers {
            robust_accuracy: share(ds.iter().map(|x| x.correct)),
            attack_success_rate: share(ds.iter().map(|x| x.attack_success)),
            abstain_rate: share(ds.iter().map(|x| x.abstained)),
        }
    }
}

/// One defence against one attack cell: the attack made on the undefended model and passed
/// through the defence, and the same attack made through the defence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefenseSummary {
    /// Against the attack that ignores the defence.
    pub non_adaptive: DefenseNumbers,
    /// Against the attack through the defence (`None` where it did not run: CW, or
    /// `--no-adaptive`; for `none` it is the attack itself).
    pub adaptive: Option<DefenseNumbers>,
    /// How the adaptive attack's gradient passed through the defence (first example's).
    pub gradient: Option<String>,
    /// Per example the better of the two attacks (an attacker may try both): success where
    /// either met the goal through the defence, robust where both were answered correctly,
    /// abstained where neither succeeded and one was refused (`None` where the adaptive
    /// attack did not run). An approximate gradient (BPDA) can make the adaptive attack the
    /// weaker one.
    pub worst_case: Option<DefenseNumbers>,
}

/// One detector against the successful adversarial examples of one attack cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Successful adversarial examples scored.
    pub examples: usize,
    /// ROC-AUC of the clean scores (all examples) against those of the successful adversarial
    /// examples.
    pub roc_auc: f64,
    /// Share of successful adversarial examples flagged at the threshold that flags at most 5 %
    /// of the clean ones.
    pub tpr_at_5_fpr: f64,
    /// The ROC curve: (false-positive rate, true-positive rate) points from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
}

impl Detection {
    fn of(clean: &[f64], adversarial: &[f64]) -> Result<Option<Detection>> {
        if clean.is_empty() || adversarial.is_empty() {
            return Ok(None);
        }
        Ok(Some(Detection {
            examples: adversarial.len(),
            roc_auc: roc_auc(clean, adversarial)?,
            tpr_at_5_fpr: tpr_at_fpr(clean, adversarial, 0.05)?,
            roc: roc_curve(clean, adversarial),
        }))
    }
}

/// One detector against one attack cell: the attack that ignores it, and the same attack made
/// to evade it (transcript-comparing detectors only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorSummary {
    /// Against the attack that ignores the detector.
    pub non_adaptive: Detection,
    /// Against the evading attack's successful examples (`None` where it did not run or never
    /// met the goal).
    pub adaptive: Option<Detection>,
    /// Share of the cell's examples where the evading attack met the goal unflagged at the
    /// 5 %-FPR threshold (`None` where it did not run).
    pub evasion_rate: Option<f64>,
}

/// One attack at one bound over all examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Attack.
    pub attack: String,
    /// L∞ bound (`None` for CW and for SNR-bounded cells).
    pub eps: Option<f32>,
    /// SNR floor (dB) of an SNR-bounded cell.
    #[serde(default)]
    pub snr_bound_db: Option<f32>,
    /// Examples.
    pub examples: usize,
    /// Share where the goal was met (undefended).
    pub success_rate: f64,
    /// Per independent recogniser and setting: share of the written examples in which it
    /// hears the goal met (empty without verifiers).
    #[serde(default)]
    pub heard_success: BTreeMap<String, f64>,
    /// Over the air: mean share of the channel's draws through which the goal was met (`None`
    /// without the channel).
    pub over_the_air_success: Option<f64>,
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
    /// Over the air: mean WER of the clean inputs through the channel's draws against their
    /// clean transcripts (`None` without the channel).
    pub over_the_air_wer: Option<f64>,
    /// Per defence: share of clean inputs whose defended transcript is the clean transcript.
    pub defense_accuracy: BTreeMap<String, f64>,
    /// Per smoothing defence: certified accuracy against L2 radius (Cohen et al.): points
    /// `(r, share of clean inputs answered correctly with a certified radius ≥ r)`.
    pub certified_accuracy: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Certified accuracy at each radius where it changes, from `(correct, radius)` per input:
/// starts at radius 0, one point per distinct radius of a correct answer.
pub fn certified_accuracy_curve(answers: &[(bool, f64)]) -> Vec<(f64, f64)> {
    if answers.is_empty() {
        return Vec::new();
    }
    let mut radii: Vec<f64> = answers
        .iter()
        .filter(|(c, r)| *c && *r > 0.0)
        .map(|(_, r)| *r)
        .collect();
    radii.sort_by(f64::total_cmp);
    radii.dedup();
    radii.insert(0, 0.0);
    radii
        .into_iter()
        .map(|r| {
            let ok = answers.iter().filter(|(c, rr)| *c && *rr >= r).count();
            (r, ok as f64 / answers.len() as f64)
        })
        .collect()
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
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
    /// Per goal (a suite's harmful target): the cells over that goal's examples alone, in
    /// the order goals first appear (empty unless the report comes from a suite).
    #[serde(default)]
    pub by_goal: Vec<GoalCells>,
    /// Every measurement, per example, by manifest position.
    pub records: Vec<ExampleRecord>,
}

/// The cells of one goal's examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalCells {
    /// The goal, as [`crate::objective::Goal::describe`] writes it.
    pub goal: String,
    /// Its examples (carrier recordings).
    pub examples: usize,
    /// One per attack and bound.
    pub cells: Vec<Cell>,
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

/// A cell's key: attack, L∞ bound (shared ones only) and SNR floor.
fn cell_key(a: &super::AttackRecord) -> (String, Option<f32>, Option<f32>) {
    let eps = if a.snr_bound_db.is_some() {
        None
    } else {
        a.eps
    };
    (a.attack.clone(), eps, a.snr_bound_db)
}

/// One cell per attack and bound over `records`, in the order they first appear.
fn cells_of(settings: &Settings, records: &[ExampleRecord]) -> Result<Vec<Cell>> {
    let mut keys: Vec<(String, Option<f32>, Option<f32>)> = Vec::new();
    for r in records {
        for a in &r.attacks {
            let k = cell_key(a);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut cells = Vec::new();
    for key in keys {
        let (attack, eps, snr_bound_db) = key.clone();
        let runs: Vec<(&ExampleRecord, &super::AttackRecord)> = records
            .iter()
            .flat_map(|r| r.attacks.iter().map(move |a| (r, a)))
            .filter(|(_, a)| cell_key(a) == key)
            .collect();
        let defenses = settings
            .defenses
            .iter()
            .map(|d| {
                let non_adaptive =
                    DefenseNumbers::of(runs.iter().filter_map(|(_, a)| a.defended.get(d)));
                let adaptive_runs: Vec<&super::AdaptiveRecord> =
                    runs.iter().filter_map(|(_, a)| a.adaptive.get(d)).collect();
                let adaptive = if d == "none" {
                    (settings.adaptive && attack != "cw").then(|| non_adaptive.clone())
                } else {
                    (!runs.is_empty() && adaptive_runs.len() == runs.len())
                        .then(|| DefenseNumbers::of(adaptive_runs.iter().map(|a| &a.defended)))
                };
                let pairs: Vec<(&super::DefendedRecord, &super::DefendedRecord)> = runs
                    .iter()
                    .filter_map(|(_, a)| {
                        let plain = a.defended.get(d)?;
                        let adaptive = if d == "none" {
                            plain
                        } else {
                            &a.adaptive.get(d)?.defended
                        };
                        Some((plain, adaptive))
                    })
                    .collect();
                let worst_case = (adaptive.is_some() && pairs.len() == runs.len()).then(|| {
                    let success = |(p, a): &(&super::DefendedRecord, &super::DefendedRecord)| {
                        p.attack_success || a.attack_success
                    };
                    DefenseNumbers {
                        robust_accuracy: share(pairs.iter().map(|(p, a)| p.correct && a.correct)),
                        attack_success_rate: share(pairs.iter().map(success)),
                        abstain_rate: share(
                            pairs
                                .iter()
                                .map(|pa| !success(pa) && (pa.0.abstained || pa.1.abstained)),
                        ),
                    }
                });
                (
                    d.clone(),
                    DefenseSummary {
                        non_adaptive,
                        adaptive,
                        gradient: adaptive_runs.first().map(|a| a.gradient.clone()),
                        worst_case,
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
            let Some(non_adaptive) = Detection::of(&clean, &adv)? else {
                continue;
            };
            let evading: Vec<&super::EvasionRecord> =
                runs.iter().filter_map(|(_, a)| a.evasive.get(d)).collect();
            let evaded: Vec<f64> = evading
                .iter()
                .filter(|e| e.success)
                .map(|e| e.score)
                .collect();
            let adaptive = Detection::of(&clean, &evaded)?;
            let evasion_rate = if evading.is_empty() {
                None
            } else {
                let t = threshold_at_fpr(&clean, 0.05)?;
                let unflagged = evading.iter().filter(|e| e.success && e.score <= t).count();
                Some(unflagged as f64 / runs.len() as f64)
            };
            detectors.insert(
                d.clone(),
                DetectorSummary {
                    non_adaptive,
                    adaptive,
                    evasion_rate,
                },
            );
        }
        let col = |f: fn(&super::AttackRecord) -> f64| -> Vec<f64> {
            runs.iter().map(|(_, a)| f(a)).collect()
        };
        let mut heard_success = BTreeMap::new();
        for setting in runs.iter().flat_map(|(_, a)| a.heard.keys()) {
            if !heard_success.contains_key(setting) {
                let got = share(
                    runs.iter()
                        .map(|(_, a)| a.heard.get(setting).is_some_and(|h| h.success)),
                );
                heard_success.insert(setting.clone(), got);
            }
        }
        cells.push(Cell {
            examples: runs.len(),
            success_rate: share(runs.iter().map(|(_, a)| a.success)),
            heard_success,
            over_the_air_success: mean(
                runs.iter()
                    .filter_map(|(_, a)| a.over_the_air.as_ref().map(|o| o.goal_met)),
            ),
            adversarial_wer: mean(col(|a| a.wer).into_iter()).unwrap_or(0.0),
            adversarial_cer: mean(col(|a| a.cer).into_iter()).unwrap_or(0.0),
            snr_db: Spread::of(&col(|a| a.snr_db)),
            dbx: Spread::of(&col(|a| a.dbx)),
            seconds: Spread::of(&col(|a| a.seconds)),
            defenses,
            detectors,
            attack,
            eps,
            snr_bound_db,
        });
    }
    Ok(cells)
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
            over_the_air_wer: mean(
                records
                    .iter()
                    .filter_map(|r| r.clean_over_the_air.as_ref().map(|o| o.wer)),
            ),
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
            certified_accuracy: settings
                .defenses
                .iter()
                .filter(|d| d.starts_with("smoothing"))
                .map(|d| {
                    let answers: Vec<(bool, f64)> = records
                        .iter()
                        .filter_map(|r| r.clean_defended.get(d))
                        .map(|x| (x.correct, x.certified_radius.unwrap_or(0.0)))
                        .collect();
                    (d.clone(), certified_accuracy_curve(&answers))
                })
                .collect(),
        };
        let cells = cells_of(&settings, &records)?;
        let mut by_goal = Vec::new();
        if settings.suite.is_some() {
            let mut goals: Vec<&str> = Vec::new();
            for r in &records {
                if !goals.contains(&r.goal.as_str()) {
                    goals.push(&r.goal);
                }
            }
            for g in goals {
                let mine: Vec<ExampleRecord> =
                    records.iter().filter(|r| r.goal == g).cloned().collect();
                by_goal.push(GoalCells {
                    goal: g.to_string(),
                    examples: mine.len(),
                    cells: cells_of(&settings, &mine)?,
                });
            }
        }
        Ok(Report {
            format: FORMAT.into(),
            version: VERSION,
            settings,
            shard,
            examples: records.len(),
            clean,
            cells,
            by_goal,
            records,
        })
    }

    /// Read a `report.json`.
    pub fn read(path: &std::path::Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not an advox eval report: {e}")))?;
        if report.format != FORMAT || report.version != VERSION {
            return Err(Error::bad_file(
                path,
                format!(
                    "format {:?} version {} is not {FORMAT} version {VERSION} (version 1 \
                     reports, without adaptive attacks, cannot be merged: run eval again)",
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
    fn certified_accuracy_falls_with_the_radius() {
        let curve =
            certified_accuracy_curve(&[(true, 0.02), (true, 0.0), (false, 0.05), (true, 0.01)]);
        assert_eq!(curve, vec![(0.0, 0.75), (0.01, 0.5), (0.02, 0.25)]);
        assert!(certified_accuracy_curve(&[]).is_empty());
    }

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
