//! The JSON report `advox attack` writes beside each example (`OUT.json`), the summary of a
//! manifest run (`summary.json`), and reading reports back (`advox transfer`).

use super::maybe_finite;
use crate::attack::plan::{AppliedConstraints, SignalAttack};
use crate::attack::{AttackDetails, AttackKind, AttackOutcome};
use crate::masking::MaskingStats;
use crate::metrics::{dbx, l2, linf, snr_db};
use crate::objective::{Goal, Robustness};
use crate::verify::{all_succeed, Verification};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a black-box attack adds to its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlackBoxStats {
    /// The recogniser attacked, described.
    pub recognizer: String,
    /// Whether it exposed scores (else transcripts only).
    pub score_based: bool,
    /// Queries made.
    pub queries: usize,
    /// The query budget.
    pub query_budget: usize,
    /// The surrogate prior's rounds, one query each (empty without `--surrogate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub surrogate: Vec<crate::attack::query::SurrogateRound>,
    /// The quiet-frame prior's candidates, one query each (empty without `--quiet-prior`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quiet_prior: Vec<crate::attack::quiet_prior::QuietRound>,
    /// Queries of the search after the priors.
    #[serde(default)]
    pub search_queries: usize,
    /// Queries when the goal was first met (`null`: never).
    #[serde(default)]
    pub first_success_queries: Option<usize>,
    /// SNR of the kept success at its first success and after each query that shrank it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snr_trajectory: Vec<crate::attack::query::SnrPoint>,
}

/// One attack on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    /// The clean input.
    pub input: String,
    /// The adversarial example (16-bit WAV).
    pub output: String,
    /// The perturbation (32-bit float WAV).
    pub perturbation: String,
    /// The attack.
    pub attack: AttackKind,
    /// The goal ([`Goal::describe`]).
    pub goal: Goal,
    /// The target transcript of a targeted goal.
    pub target: Option<String>,
    /// The clean input's transcript.
    pub original_transcript: String,
    /// The example's transcript.
    pub adversarial_transcript: String,
    /// The attack's verdict.
    pub success: bool,
    /// Whether the attack was cancelled (Ctrl-C).
    pub cancelled: bool,
    /// Signal-to-perturbation ratio (dB; `null` for no perturbation).
    #[serde(with = "maybe_finite")]
    pub snr_db: f64,
    /// Peak level of δ relative to that of x (dB; `null` for no perturbation).
    #[serde(with = "maybe_finite")]
    pub dbx: f64,
    /// Largest |δ|.
    pub linf: f64,
    /// Euclidean norm of δ.
    pub l2: f64,
    /// Gradient steps (white-box) or iterations (black-box).
    pub steps: usize,
    /// Loss at the kept point (`null` if none was computed).
    #[serde(with = "maybe_finite", default = "nan")]
    pub final_loss: f64,
    /// Wall time of the attack (seconds).
    pub wall_seconds: f64,
    /// The attacked model (white-box, or the built-in recogniser).
    #[serde(default)]
    pub model: Option<String>,
    /// How δ sits against the input's masking threshold (white-box).
    #[serde(default)]
    pub masking: Option<MaskingStats>,
    /// What the attack measured beyond this.
    #[serde(default = "no_details")]
    pub details: AttackDetails,
    /// Black-box attacks: the recogniser and the queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub black_box: Option<BlackBoxStats>,
    /// White-box attacks: what the success had to survive (the front ends whose decodes all
    /// meet the goal, the logit margin of its tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robustness: Option<Robustness>,
    /// Verdicts of independent recognisers on the written example (`--verify`), one per
    /// recogniser and setting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified_by: Vec<Verification>,
    /// Whether every independent verdict met the goal (`null` without `--verify`).
    #[serde(default)]
    pub verified: Option<bool>,
    /// The seed.
    pub seed: u64,
    /// The constraints the attack applied.
    pub constraints: AppliedConstraints,
}

fn nan() -> f64 {
    f64::NAN
}

fn no_details() -> AttackDetails {
    AttackDetails::None
}

/// Where an attack's example, perturbation and report go: `OUT.wav`, `OUT.perturbation.wav`
/// and `OUT.json`.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// The clean input.
    pub input: PathBuf,
    /// The example.
    pub output: PathBuf,
    /// The perturbation.
    pub perturbation: PathBuf,
    /// The report.
    pub report: PathBuf,
}

impl ReportFiles {
    /// The files of an attack on `input` written to `output`.
    pub fn new(input: &Path, output: &Path) -> Self {
        let stem = output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let sibling = |suffix: &str| output.with_file_name(format!("{stem}.{suffix}"));
        ReportFiles {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            perturbation: sibling("perturbation.wav"),
            report: sibling("json"),
        }
    }
}

impl AttackReport {
    /// The common part of a report of `outcome` on `x` (the clean samples).
    #[allow(clippy::too_many_arguments)]
    fn of_outcome(
        files: &ReportFiles,
        attack: AttackKind,
        goal: &Goal,
        original: &str,
        x: &[f32],
        outcome: &AttackOutcome,
        seconds: f64,
        seed: u64,
        constraints: AppliedConstraints,
    ) -> Self {
        let delta = &outcome.perturbation;
        AttackReport {
            input: files.input.display().to_string(),
            output: files.output.display().to_string(),
            perturbation: files.perturbation.display().to_string(),
            attack,
            goal: goal.clone(),
            target: match goal {
                Goal::Targeted(t) => Some(t.clone()),
                _ => None,
            },
            original_transcript: original.to_string(),
            adversarial_transcript: outcome.transcript.clone(),
            success: outcome.success,
            cancelled: outcome.cancelled,
            snr_db: snr_db(x, delta),
            dbx: dbx(x, delta),
            linf: linf(delta),
            l2: l2(delta),
            steps: outcome.steps,
            final_loss: outcome.loss as f64,
            wall_seconds: seconds,
            model: None,
            masking: None,
            details: AttackDetails::None,
            black_box: None,
            robustness: None,
            verified_by: Vec::new(),
            verified: None,
            seed,
            constraints,
        }
    }

    /// The report of a white-box attack on `x` against the model `model_id`.
    pub fn white_box(
        files: &ReportFiles,
        x: &[f32],
        done: &SignalAttack,
        model_id: String,
        seed: u64,
        constraints: AppliedConstraints,
    ) -> Self {
        let kind = done.kind;
        AttackReport {
            model: Some(model_id),
            masking: Some(done.masking),
            details: done.run.details.clone(),
            robustness: Some(done.robustness.clone()),
            ..Self::of_outcome(
                files,
                kind,
                &done.goal,
                &done.original.text,
                x,
                &done.run.outcome,
                done.seconds,
                seed,
                constraints,
            )
        }
    }

    /// The report of a black-box attack on `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn black_box(
        files: &ReportFiles,
        x: &[f32],
        kind: AttackKind,
        goal: &Goal,
        original: &str,
        outcome: &AttackOutcome,
        stats: BlackBoxStats,
        seconds: f64,
        seed: u64,
        constraints: AppliedConstraints,
    ) -> Self {
        AttackReport {
            black_box: Some(stats),
            ..Self::of_outcome(
                files,
                kind,
                goal,
                original,
                x,
                outcome,
                seconds,
                seed,
                constraints,
            )
        }
    }

    /// Record independent verdicts on the example.
    pub fn set_verified(&mut self, verdicts: Vec<Verification>) {
        self.verified = Some(all_succeed(&verdicts));
        self.verified_by = verdicts;
    }

    /// Whether the attack met its goal and every independent recogniser asked agrees.
    pub fn succeeded(&self) -> bool {
        self.success && self.verified != Some(false)
    }

    /// Read a report.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| not_a_report(path, e))
    }

    /// Every attack report in `dir`, sorted by name. JSON files that are plainly something
    /// else (no `output` and `goal`, such as a manifest's `summary.json`) are skipped; one
    /// that has them but does not read as a report is an error naming it.
    pub fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, Self)>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if v.get("output").is_some() && v.get("goal").is_some() {
                let report = serde_json::from_value(v).map_err(|e| not_a_report(&p, e))?;
                out.push((p, report));
            }
        }
        Ok(out)
    }
}

fn not_a_report(path: &Path, e: serde_json::Error) -> Error {
    Error::bad_file(path, format!("not an advox attack report: {e}"))
}

/// One line of a manifest run: its report, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SummaryEntry {
    /// The attack ran.
    Report(Box<AttackReport>),
    /// It did not.
    Failed {
        /// The input.
        input: String,
        /// Always false.
        success: bool,
        /// The error.
        error: String,
    },
}

impl SummaryEntry {
    /// Whether the attack ran and succeeded.
    pub fn success(&self) -> bool {
        matches!(self, SummaryEntry::Report(r) if r.succeeded())
    }
}

/// `summary.json` of `advox attack --manifest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackSummary {
    /// The manifest.
    pub manifest: String,
    /// Lines attacked.
    pub inputs: usize,
    /// Attacks that succeeded (and, with `--verify`, were heard so by every verifier).
    pub successes: usize,
    /// Median wall time of those successes (seconds; `null` if none).
    pub median_seconds_to_success: Option<f64>,
    /// Per line.
    pub results: Vec<SummaryEntry>,
}

impl AttackSummary {
    /// The summary of `results`.
    pub fn new(manifest: &Path, results: Vec<SummaryEntry>) -> Self {
        let median_seconds_to_success =
            crate::metrics::median(results.iter().filter_map(|r| match r {
                SummaryEntry::Report(r) if r.succeeded() => Some(r.wall_seconds),
                _ => None,
            }));
        AttackSummary {
            manifest: manifest.display().to_string(),
            inputs: results.len(),
            successes: results.iter().filter(|r| r.success()).count(),
            median_seconds_to_success,
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::AttackOutcome;

    #[test]
    fn a_report_reads_back_with_its_non_finite_numbers_as_nan() {
        let files = ReportFiles::new(Path::new("in.wav"), Path::new("/tmp/out/adv.wav"));
        assert_eq!(files.report, Path::new("/tmp/out/adv.json"));
        assert_eq!(
            files.perturbation,
            Path::new("/tmp/out/adv.perturbation.wav")
        );
        let x = vec![0.25f32; 8];
        // No perturbation: infinite SNR; never scored: NaN loss.
        let outcome = AttackOutcome {
            adversarial: x.clone(),
            perturbation: vec![0.0; 8],
            success: false,
            transcript: "open the door".into(),
            steps: 0,
            loss: f32::NAN,
            cancelled: true,
        };
        let stats = BlackBoxStats {
            recognizer: "built-in tiny.en".into(),
            score_based: true,
            queries: 3,
            query_budget: 10,
            surrogate: Vec::new(),
            quiet_prior: Vec::new(),
            search_queries: 3,
            first_success_queries: None,
            snr_trajectory: Vec::new(),
        };
        let goal = Goal::Targeted("turn off the lights".into());
        let report = AttackReport::black_box(
            &files,
            &x,
            AttackKind::Nes,
            &goal,
            "open the door",
            &outcome,
            stats,
            1.5,
            7,
            AppliedConstraints::default(),
        );
        let text = serde_json::to_string(&report).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["snr_db"].is_null() && v["final_loss"].is_null());
        assert_eq!(v["attack"], "nes");
        assert_eq!(v["goal"], "targeted: \"turn off the lights\"");
        let back: AttackReport = serde_json::from_str(&text).unwrap();
        assert!(back.snr_db.is_nan() && back.final_loss.is_nan());
        assert_eq!(back.goal, goal);
        assert_eq!(back.black_box, report.black_box);
        assert_eq!(back.target.as_deref(), Some("turn off the lights"));
    }

    #[test]
    fn a_json_file_that_is_not_a_report_is_skipped_and_a_broken_report_named() {
        let dir = std::env::temp_dir().join(format!("advox-reports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("summary.json"), r#"{"inputs": 1}"#).unwrap();
        assert!(AttackReport::read_dir(&dir).unwrap().is_empty());
        std::fs::write(dir.join("a.json"), r#"{"output": "a.wav", "goal": "mute"}"#).unwrap();
        let e = AttackReport::read_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains("a.json") && e.contains("not an advox attack report"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
