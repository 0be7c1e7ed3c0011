//! Evaluation: every attack (at every L∞ bound) against every example of a manifest, judged
//! without and with every defence, and scored by every detector. Each defence is also attacked
//! *adaptively* (FGSM and PGD through the defence: [`crate::defend::adaptive`]), so its
//! robustness is measured against an attacker who knows it, next to one who does not. One [`ExampleRecord`] per
//! example holds everything measured; [`report::Report`] aggregates records, so shards of a
//! manifest ([`shard`]) merge into exactly the report of one run.

pub mod adaptive;
pub mod cloak;
pub mod heard;
#[cfg(feature = "plots")]
pub mod html;
pub mod report;
#[cfg(feature = "plots")]
pub mod scorecard;
pub mod shard;
pub mod suite;

pub use adaptive::{AdaptiveRecord, AirRecord, EvasionRecord};

use crate::attack::cw::CwConfig;
use crate::attack::eot::EotConfig;
use crate::attack::newton::NewtonConfig;
use crate::attack::{Attack, AttackConfig, AttackKind, Method};
use crate::defend::Defense;
use crate::detect::{Context, Detector, Input};
use crate::manifest::ManifestEntry;
use crate::metrics::{cer, dbx, linf, snr_db, wer};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::perturb::Constraints;
use crate::transcribe::transcribe;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The attacks the evaluation matrix runs.
pub const EVAL_ATTACKS: [AttackKind; 4] = [
    AttackKind::Fgsm,
    AttackKind::Pgd,
    AttackKind::Cw,
    AttackKind::Newton,
];

/// Newton–CG's iterations in a cell: `--steps` over this, so that its gradient evaluations
/// (about three an iteration, products and trials included) match PGD's budget.
pub const NEWTON_EVALUATIONS_PER_ITERATION: usize = 3;

/// Parse an attack of the evaluation matrix (`fgsm`, `pgd`, `cw` or `newton`).
pub fn parse_eval_attack(s: &str) -> Result<AttackKind> {
    let kind: AttackKind = s.parse()?;
    if !EVAL_ATTACKS.contains(&kind) {
        return Err(Error::InvalidArgument(format!(
            "attack {kind} is not in eval's matrix (fgsm, pgd, cw, newton)"
        )));
    }
    Ok(kind)
}

/// The bounds of the matrix from a user's `--eps` and `--snr-db` lists: each must be a
/// positive ε or a number of dB, and bounds need an attack that takes them; with neither, L∞
/// 0.01 (a suite: SNR 40 and 30 dB). Returns (epsilons, SNR floors).
pub fn matrix_bounds(
    eps: &[f32],
    snr_db: &[f32],
    attacks: &[AttackKind],
    suite: bool,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if let Some(e) = eps.iter().find(|e| !(e.is_finite() && **e > 0.0)) {
        return Err(Error::InvalidArgument(format!(
            "--eps values must be positive, got {e}"
        )));
    }
    if let Some(s) = snr_db.iter().find(|s| !s.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "--snr-db values must be numbers of dB, got {s}"
        )));
    }
    if (!eps.is_empty() || !snr_db.is_empty()) && attacks.iter().all(|a| *a == AttackKind::Cw) {
        return Err(Error::InvalidArgument(
            "--eps and --snr-db bound FGSM, PGD and Newton-CG; CW runs unbounded".into(),
        ));
    }
    Ok(match (eps.is_empty(), snr_db.is_empty()) {
        (true, true) if suite => (Vec::new(), vec![40.0, 30.0]),
        (true, true) => (vec![0.01], Vec::new()),
        _ => (eps.to_vec(), snr_db.to_vec()),
    })
}

/// The detectors of the matrix from their names: none given, the default set; `none`, no
/// detector.
pub fn matrix_detectors(names: &[String]) -> Result<Vec<Detector>> {
    match names {
        [] => Ok(Detector::default_set()),
        [n] if n == "none" => Ok(Vec::new()),
        names => names.iter().map(|n| Detector::parse(n)).collect(),
    }
}

/// The evaluation matrix and its settings.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Attacks.
    pub attacks: Vec<AttackKind>,
    /// L∞ bounds FGSM and PGD run at (success against ε); CW runs once, unbounded.
    pub epsilons: Vec<f32>,
    /// SNR floors (dB) FGSM and PGD also run at: δ is projected onto the L2 ball of that SNR
    /// for each example, steps scaled by [`eps_for_snr`].
    pub snr_bounds_db: Vec<f32>,
    /// Steps of PGD, and of CW per value of c.
    pub steps: usize,
    /// Defences (`none` is always reported as the baseline).
    pub defenses: Vec<Defense>,
    /// Detectors.
    pub detectors: Vec<Detector>,
    /// Decoding of every transcription.
    pub decode: DecodeOptions,
    /// Goal of inputs whose manifest line sets none.
    pub default_goal: Goal,
    /// Seed of the attacks and of the smoothing noise.
    pub seed: u64,
    /// Attack every defence adaptively too (FGSM and PGD; CW only without a defence).
    pub adaptive: bool,
    /// Draws per step of an adaptive attack on smoothing or a vote.
    pub adaptive_samples: usize,
    /// Over the air: every clean and adversarial signal is also transcribed after
    /// `check_transforms` fixed draws of this playback channel (the same draws per example).
    pub over_the_air: Option<EotConfig>,
    /// FGSM and PGD use EOT over the `over_the_air` channel (the attacker knows the room).
    pub eot: bool,
}

impl EvalConfig {
    /// The report's record of these settings, for `entries` inputs of `manifest` against
    /// `models` (identifiers, the first attacked); no over-the-air description, verifier or
    /// suite (set them on the result where they apply).
    pub fn settings(
        &self,
        manifest: String,
        entries: usize,
        models: Vec<String>,
    ) -> report::Settings {
        report::Settings {
            manifest,
            manifest_entries: entries,
            attacks: self.attacks.clone(),
            epsilons: self.epsilons.clone(),
            snr_bounds_db: self.snr_bounds_db.clone(),
            steps: self.steps,
            defenses: self.defenses.iter().map(|d| d.name()).collect(),
            detectors: self.detectors.iter().map(|d| d.name()).collect(),
            models,
            beam: self.decode.beam_size,
            default_goal: self.default_goal.describe(),
            seed: self.seed,
            adaptive: self.adaptive,
            adaptive_samples: self.adaptive_samples,
            over_the_air: None,
            eot: self.eot,
            verifiers: Vec::new(),
            suite: None,
        }
    }
}

/// One attack at one bound on one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackRecord {
    /// Attack name.
    pub attack: String,
    /// Its L∞ bound (`None` for CW, which minimises L2 without one, and SNR-bounded cells).
    pub eps: Option<f32>,
    /// Its SNR floor (dB), in an SNR-bounded cell.
    #[serde(default)]
    pub snr_bound_db: Option<f32>,
    /// Whether the goal was met (undefended).
    pub success: bool,
    /// Transcript of the adversarial example (undefended).
    pub transcript: String,
    /// WER / CER of that transcript against the clean transcript.
    pub wer: f64,
    /// Character error rate against the clean transcript.
    pub cer: f64,
    /// Signal-to-perturbation ratio (dB).
    pub snr_db: f64,
    /// dBx (peak level of δ relative to that of x).
    pub dbx: f64,
    /// Largest |δ|.
    pub linf: f64,
    /// Wall time of the attack.
    pub seconds: f64,
    /// Per defence: the defended transcript of the adversarial example.
    pub defended: BTreeMap<String, DefendedRecord>,
    /// Per defence other than `none`: the adaptive attack through it (empty when not run).
    #[serde(default)]
    pub adaptive: BTreeMap<String, AdaptiveRecord>,
    /// Per detector: its score of the adversarial example.
    pub scores: BTreeMap<String, f64>,
    /// Per transcript-comparing detector: the attack made to evade it (empty when not run).
    #[serde(default)]
    pub evasive: BTreeMap<String, EvasionRecord>,
    /// The adversarial example over the air (with `over_the_air`).
    #[serde(default)]
    pub over_the_air: Option<AirRecord>,
    /// Per independent recogniser and setting (`faster-whisper beam 5`): what it heard in
    /// the written (16-bit) example and whether that meets the goal (empty without verifiers).
    #[serde(default)]
    pub heard: BTreeMap<String, HeardRecord>,
}

/// What an independent recogniser heard in an adversarial example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeardRecord {
    /// Its transcript (`None` when it failed on the file).
    pub transcript: Option<String>,
    /// Whether that meets the goal, judged against the recogniser's own clean transcript.
    pub success: bool,
}

/// A defended transcription, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefendedRecord {
    /// The transcript (empty when abstaining).
    pub transcript: String,
    /// Whether the defence abstained.
    pub abstained: bool,
    /// Whether it equals the clean (undefended) transcript after normalisation.
    pub correct: bool,
    /// Whether the attack's goal is still met through the defence.
    pub attack_success: bool,
    /// Certified L2 radius of the answer (smoothing only).
    #[serde(default)]
    pub certified_radius: Option<f64>,
}

/// Everything measured on one example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleRecord {
    /// Position in the manifest (0-based).
    pub index: usize,
    /// The audio file.
    pub input: String,
    /// The goal, as [`Goal::describe`] writes it.
    pub goal: String,
    /// Reference transcript from the manifest, if any.
    pub reference: Option<String>,
    /// Clean transcript (undefended).
    pub clean_transcript: String,
    /// WER / CER of the clean transcript against the reference.
    pub clean_wer: Option<f64>,
    /// CER of the clean transcript against the reference.
    pub clean_cer: Option<f64>,
    /// Per defence: the defended transcript of the clean input.
    pub clean_defended: BTreeMap<String, DefendedRecord>,
    /// Per detector: its score of the clean input.
    pub clean_scores: BTreeMap<String, f64>,
    /// The clean input over the air (with `over_the_air`).
    #[serde(default)]
    pub clean_over_the_air: Option<AirRecord>,
    /// Per independent recogniser and setting: its transcript of the clean input (where it
    /// gave one).
    #[serde(default)]
    pub clean_heard: BTreeMap<String, String>,
    /// The attacks.
    pub attacks: Vec<AttackRecord>,
}

/// Which cell of the matrix made an adversarial example, and what it adapted to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Made<'a> {
    /// The attack.
    pub attack: AttackKind,
    /// Its L∞ bound (`None` for CW and SNR-bounded cells).
    pub eps: Option<f32>,
    /// Its SNR floor (dB), in an SNR-bounded cell.
    pub snr_bound_db: Option<f32>,
    /// For an adaptive attack: `adaptive:DEFENCE` or `evasive:DETECTOR`.
    pub adapted: Option<&'a str>,
}

/// Receives each adversarial example with the cell that made it, e.g. to save it.
pub type AdversarialSink<'a> = dyn FnMut(&Made, &[f32]) -> Result<()> + 'a;

/// The RMS of a perturbation of `x` at `snr_db`: the scale of an SNR-bounded cell's steps (and
/// an L∞ bound that would keep that SNR, a perturbation within ±ε having an RMS of at most ε).
pub fn eps_for_snr(x: &[f32], snr_db: f32) -> f32 {
    let power = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    (power.sqrt() * 10f64.powf(-snr_db as f64 / 20.0)) as f32
}

/// Name of a cell's bound for tables: `L∞ 0.01`, `SNR ≥ 30 dB`, or `–` (CW).
pub fn bound_name(eps: Option<f32>, snr_bound_db: Option<f32>) -> String {
    match (snr_bound_db, eps) {
        (Some(s), _) => format!("SNR ≥ {s} dB"),
        (None, Some(e)) => format!("L∞ {e}"),
        (None, None) => "–".into(),
    }
}

/// The attack `kind` on `x` at a bound as the matrix runs it: FGSM and PGD under L∞ ε with
/// steps of ε/10, or under an SNR floor (δ projected onto the L2 ball of that SNR) with steps
/// of half [`eps_for_snr`] (FGSM: one step of it; smaller steps left most of the ball unused:
/// 59.5 dB reached under a 45-dB floor in 20 steps of a tenth); CW unbounded.
fn matrix_attack(
    kind: AttackKind,
    eps: Option<f32>,
    snr_bound_db: Option<f32>,
    x: &[f32],
    cfg: &EvalConfig,
) -> Result<Attack> {
    let eot = match (&cfg.over_the_air, cfg.eot) {
        (Some(channel), true) => Some(channel.clone()),
        (None, true) => {
            return Err(Error::InvalidArgument(
                "EOT in eval needs the over-the-air channel".into(),
            ))
        }
        (_, false) => None,
    };
    let pgd = |constraints: Constraints, step_size: f32| {
        Ok(Attack::Pgd(AttackConfig {
            method: if kind == AttackKind::Fgsm {
                Method::Fgsm
            } else {
                Method::Pgd
            },
            constraints,
            steps: cfg.steps,
            step_size,
            decode: cfg.decode.clone(),
            seed: cfg.seed,
            eot: eot.clone(),
            ..Default::default()
        }))
    };
    match (kind, eps) {
        (AttackKind::Fgsm | AttackKind::Pgd, _) if snr_bound_db.is_some() => {
            let floor = snr_bound_db.unwrap_or_default();
            let scale = eps_for_snr(x, floor);
            let constraints = Constraints {
                snr_db: Some(floor),
                ..Default::default()
            };
            let step = if kind == AttackKind::Fgsm {
                scale
            } else {
                scale / 2.0
            };
            pgd(constraints, step)
        }
        (AttackKind::Fgsm | AttackKind::Pgd, Some(eps)) => {
            let constraints = Constraints {
                linf: Some(eps),
                ..Default::default()
            };
            pgd(constraints, eps / 10.0)
        }
        (AttackKind::Fgsm | AttackKind::Pgd, None) => Err(Error::InvalidArgument(
            "FGSM and PGD need an L∞ bound".into(),
        )),
        (AttackKind::Cw, _) if eot.is_some() => Err(Error::InvalidArgument(
            "CW has no EOT: run eval's EOT with fgsm and pgd".into(),
        )),
        (AttackKind::Cw, _) => Ok(Attack::Cw(CwConfig {
            steps: cfg.steps,
            decode: cfg.decode.clone(),
            ..Default::default()
        })),
        (AttackKind::Newton, _) if eot.is_some() => Err(Error::InvalidArgument(
            "Newton-CG has no EOT: run eval's EOT with fgsm and pgd".into(),
        )),
        (AttackKind::Newton, _) => {
            let constraints = match (snr_bound_db, eps) {
                (Some(floor), _) => Constraints {
                    snr_db: Some(floor),
                    ..Default::default()
                },
                (None, Some(eps)) => Constraints {
                    linf: Some(eps),
                    ..Default::default()
                },
                (None, None) => {
                    return Err(Error::InvalidArgument(
                        "Newton-CG needs an L∞ or SNR bound".into(),
                    ))
                }
            };
            Ok(Attack::Newton(NewtonConfig {
                iterations: (cfg.steps / NEWTON_EVALUATIONS_PER_ITERATION).max(1),
                constraints,
                decode: cfg.decode.clone(),
                ..Default::default()
            }))
        }
        (k, _) => Err(Error::InvalidArgument(format!(
            "attack {k} is not in eval's matrix (fgsm, pgd, cw, newton)"
        ))),
    }
}

pub(crate) fn defended(
    defense: &Defense,
    models: &[&LoadedModel],
    cfg: &EvalConfig,
    y: &[f32],
    clean: &str,
    goal: &Goal,
) -> Result<DefendedRecord> {
    let d = defense.transcribe(models, &cfg.decode, y)?;
    Ok(DefendedRecord {
        correct: !d.abstained && wer(clean, &d.text) == 0.0 && cer(clean, &d.text) == 0.0,
        attack_success: !d.abstained && goal.is_met(clean, &d.text),
        abstained: d.abstained,
        transcript: d.text,
        certified_radius: d.certified_radius,
    })
}

/// Measure one manifest entry (`index` is its position): clean transcription, defences and
/// detectors on the clean input, then every attack at every bound with the same measurements
/// on the adversarial example. `models[0]` is attacked; defences that vote use them all.
/// `on_adversarial` sees each adversarial example (e.g. to save it).
pub fn evaluate_example(
    models: &[&LoadedModel],
    index: usize,
    entry: &ManifestEntry,
    x: &[f32],
    cfg: &EvalConfig,
    cancel: &AtomicBool,
    on_adversarial: &mut AdversarialSink,
) -> Result<ExampleRecord> {
    let model = *models
        .first()
        .ok_or_else(|| Error::InvalidArgument("evaluation needs a model".into()))?;
    let min_wer = match cfg.default_goal {
        Goal::Untargeted { min_wer } => min_wer,
        _ => Goal::DEFAULT_MIN_WER,
    };
    let goal = entry.goal(Some(&cfg.default_goal), min_wer)?;
    let clean = transcribe(model, x, &cfg.decode)?;
    let objective = Objective::new(model, goal.clone(), &clean.text, &clean.tokens)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", entry.input.display())))?;
    let ctx = Context {
        model: Some(model),
        decode: cfg.decode.clone(),
    };
    let scores = |y: &[f32]| -> Result<BTreeMap<String, f64>> {
        let input = Input::new(y);
        cfg.detectors
            .iter()
            .map(|d| Ok((d.name(), d.score(&ctx, &input)?)))
            .collect()
    };
    let example = adaptive::Example {
        models,
        x,
        index,
        goal: &goal,
        clean: &clean,
        objective: &objective,
        cfg,
        ctx: &ctx,
    };
    let air = |y: &[f32]| adaptive::over_the_air(&example, y);
    let defended_all = |y: &[f32]| -> Result<BTreeMap<String, DefendedRecord>> {
        cfg.defenses
            .iter()
            .map(|d| Ok((d.name(), defended(d, models, cfg, y, &clean.text, &goal)?)))
            .collect()
    };
    let mut attacks = Vec::new();
    for &attack in &cfg.attacks {
        let bounds: Vec<(Option<f32>, Option<f32>)> = match attack {
            AttackKind::Cw => vec![(None, None)],
            _ => cfg
                .epsilons
                .iter()
                .map(|e| (Some(*e), None))
                .chain(cfg.snr_bounds_db.iter().map(|s| (None, Some(*s))))
                .collect(),
        };
        for (eps, snr_bound_db) in bounds {
            let start = Instant::now();
            let plan = matrix_attack(attack, eps, snr_bound_db, x, cfg)?;
            let out = plan.run(model, x, &objective, cancel, &mut |_| {})?.outcome;
            let seconds = start.elapsed().as_secs_f64();
            let made = Made {
                attack,
                eps,
                snr_bound_db,
                adapted: None,
            };
            on_adversarial(&made, &out.adversarial)?;
            let (mut adaptive, mut evasive) = (BTreeMap::new(), BTreeMap::new());
            if let (true, Attack::Pgd(pgd)) = (cfg.adaptive, &plan) {
                let run = adaptive::Run {
                    example: &example,
                    made,
                    pgd,
                };
                let success = out.success.then_some(out.transcript.as_str());
                evasive = adaptive::evading_detectors(&run, success, cancel, on_adversarial)?;
                adaptive = adaptive::through_defenses(&run, cancel, on_adversarial)?;
            }
            let transcript = out.transcript;
            let delta = out.perturbation;
            attacks.push(AttackRecord {
                attack: attack.name().into(),
                eps,
                snr_bound_db,
                success: out.success,
                wer: wer(&clean.text, &transcript),
                cer: cer(&clean.text, &transcript),
                transcript,
                snr_db: snr_db(x, &delta),
                dbx: dbx(x, &delta),
                linf: linf(&delta),
                seconds,
                defended: defended_all(&out.adversarial)?,
                adaptive,
                scores: scores(&out.adversarial)?,
                evasive,
                over_the_air: air(&out.adversarial)?,
                heard: BTreeMap::new(),
            });
        }
    }
    Ok(ExampleRecord {
        index,
        input: entry.input.display().to_string(),
        goal: goal.describe(),
        clean_wer: entry.transcript.as_ref().map(|r| wer(r, &clean.text)),
        clean_cer: entry.transcript.as_ref().map(|r| cer(r, &clean.text)),
        reference: entry.transcript.clone(),
        clean_defended: defended_all(x)?,
        clean_scores: scores(x)?,
        clean_over_the_air: air(x)?,
        clean_heard: BTreeMap::new(),
        clean_transcript: clean.text.clone(),
        attacks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_bounds_default_check_and_refuse_what_does_not_apply() {
        let pgd = [AttackKind::Pgd];
        assert_eq!(
            matrix_bounds(&[], &[], &pgd, false).unwrap(),
            (vec![0.01], vec![])
        );
        assert_eq!(
            matrix_bounds(&[], &[], &pgd, true).unwrap(),
            (vec![], vec![40.0, 30.0])
        );
        assert_eq!(
            matrix_bounds(&[0.02], &[35.0], &pgd, false).unwrap(),
            (vec![0.02], vec![35.0])
        );
        assert!(matrix_bounds(&[0.0], &[], &pgd, false).is_err());
        assert!(matrix_bounds(&[], &[f32::NAN], &pgd, false).is_err());
        let cw = [AttackKind::Cw];
        assert!(matrix_bounds(&[0.01], &[], &cw, false)
            .unwrap_err()
            .to_string()
            .contains("CW runs unbounded"));
        assert_eq!(matrix_detectors(&["none".into()]).unwrap(), vec![]);
        assert_eq!(matrix_detectors(&[]).unwrap(), Detector::default_set());
        assert!(matrix_detectors(&["psychic".into()]).is_err());
    }
}
