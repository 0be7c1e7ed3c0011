//! From a user's options to an attack: [`AttackOptions`] holds what was set (every field that
//! is `None` or `false` was not), [`AttackOptions::check`] refuses an option that does not
//! apply to the chosen attack, and [`AttackOptions::white_box`] / [`AttackOptions::black_box`]
//! fill in the library's defaults. [`attack_signal`] is the whole of `advox attack` on one
//! signal, short of reading and writing files.

use super::cw::CwConfig;
use super::deepfool::DeepFoolConfig;
use super::eot::EotConfig;
use super::ga::GaConfig;
use super::imperceptible::ImperceptibleConfig;
use super::jsma::JsmaConfig;
use super::nes::{Estimator, NesConfig};
use super::newton::NewtonConfig;
use super::phase::phase_bound_for_snr;
use super::query::{QueryPlan, Surrogate, SURROGATE_ROUNDS};
use super::quiet_prior::{QuietPrior, QUIET_ROUNDS};
use super::windowed::{attack_windows, WindowPlan, WindowedAttack};
use super::StepInfo;
use super::{Attack, AttackConfig, AttackKind, AttackRun, BlackBox, Method, Rule, Schedule};
use crate::masking::{MaskingConfig, MaskingStats, MaskingThreshold};
use crate::mel::{FrontEnd, N_SAMPLES};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective, Robustness};
use crate::perturb::{speech_mask, Constraints, Domain, MaskingBound};
use crate::transcribe::{transcribe, Transcript};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Default steps: PGD's per run.
pub const PGD_STEPS: usize = 300;
/// Default steps: CW's per value of c.
pub const CW_STEPS: usize = 40;
/// Default steps: CW's per value of c under a bound (it stops at its first success).
pub const CW_BOUNDED_STEPS: usize = 100;
/// How far CW's κ sits above the margin success needs by default. Before a strict goal's
/// margin loss carried the log-probability floor, κ = margin + 1 left the tokens leading but too
/// unlikely for the floor on real speech, and + 4 was needed; with the floor in the loss, + 1
/// reached the goal on `0880` in 161 steps where + 4 took 225 (pushing tokens that already lead
/// far past the margin takes effort from the ones that do not).
pub const CW_KAPPA_OVER_MARGIN: f32 = 1.0;
/// CW's first c under a bound. At 10 the `|δ|²` term still pulled against the margin term at
/// SNR 35 (δ's samples ~1e-3, so `2δ` is as large as `c·∇f`): `0930` ended 300 steps at a lead
/// of 1.08 and a least mean log-probability of −0.809 (floor −0.8); from 100 it succeeds in
/// 121 steps.
pub const CW_BOUNDED_C: f32 = 100.0;
/// Default steps: DeepFool's most linearisations.
pub const DEEPFOOL_STEPS: usize = 50;
/// Default steps: JSMA's most iterations.
pub const JSMA_STEPS: usize = 100;
/// Default steps: Newton–CG's most trust-region iterations.
pub const NEWTON_STEPS: usize = 50;
/// Default Hessian–vector products per Newton–CG iteration.
pub const NEWTON_CG_ITERATIONS: usize = 6;
/// Stage 1 of the imperceptible attack needs an L∞ ball; without any bound it gets this one
/// (Qin et al.'s is much louder).
pub const IMPERCEPTIBLE_LINF: f32 = 0.02;
/// The L∞ bound of a black-box attack without `--eps`.
pub const BLACK_BOX_LINF: f32 = 0.02;
/// Default beam size of every decode.
pub const BEAM: usize = 5;
/// Default number of steps between decodes (PGD, CW; JSMA decodes every 2 iterations, the
/// imperceptible attack's stage 2 every 10 steps).
pub const CHECK_EVERY: usize = 5;

/// A user's attack options, named as `advox attack` takes them. `None` (or `false`) means not
/// set: the attack's default applies, and an option that is set must apply to the attack.
/// Deserialised (the Python package's keyword arguments) by those names with `_` for `-`
/// (`attack`, `snr_db`, `plain_prompt_only`, …; names of rules, schedules and domains as
/// `--rule` etc. take them); an unknown name is an error, and `--rir` is read by the caller.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackOptions {
    /// The attack (default PGD).
    #[serde(rename = "attack", deserialize_with = "named")]
    pub kind: Option<AttackKind>,
    /// `--eps`: L∞ bound (black-box: the bound, default 0.02).
    pub eps: Option<f32>,
    /// `--l2`: L2 bound.
    pub l2: Option<f32>,
    /// `--snr-db`: least signal-to-perturbation ratio.
    pub snr_db: Option<f32>,
    /// `--band`: only perturb this band (Hz).
    pub band: Option<(f32, f32)>,
    /// `--speech-only`: only perturb where there is sound.
    pub speech_only: bool,
    /// `--masking-margin-db`: every T-F bin this far under the masking threshold.
    pub masking_margin_db: Option<f32>,
    /// `--domain`: where steps are formed (default the STFT domain).
    #[serde(deserialize_with = "named")]
    pub domain: Option<Domain>,
    /// `--steps`: PGD's per run, CW's per value of c, DeepFool's and JSMA's most iterations.
    pub steps: Option<usize>,
    /// `--step-size`: default ε/10 (black-box nes/spsa: ε/5), else 0.001.
    pub step_size: Option<f32>,
    /// `--rule` (PGD).
    #[serde(deserialize_with = "named")]
    pub rule: Option<Rule>,
    /// `--schedule` (PGD).
    #[serde(deserialize_with = "named")]
    pub schedule: Option<Schedule>,
    /// `--random-start` (PGD).
    pub random_start: bool,
    /// `--restarts` (PGD).
    pub restarts: Option<usize>,
    /// `--eot`: expectation over transformation (FGSM, PGD).
    pub eot: bool,
    /// `--eot-samples`: transformations per step (default 4).
    pub eot_samples: Option<usize>,
    /// `--rir FILE|DIR`: measured room impulse responses ([`super::eot::load_rirs`]) in
    /// place of EOT's synthetic rooms.
    #[serde(skip)]
    pub rirs: Option<std::sync::Arc<[Vec<f32>]>>,
    /// `--c` (CW): first trade-off constant.
    pub c: Option<f32>,
    /// `--kappa` (CW): confidence margin.
    pub kappa: Option<f32>,
    /// `--search-steps` (CW).
    pub search_steps: Option<usize>,
    /// `--lr` (CW): largest sample change of one Adam step.
    pub lr: Option<f32>,
    /// `--max-bins` (JSMA).
    pub max_bins: Option<f32>,
    /// `--bins-per-iteration` (JSMA).
    pub bins_per_iteration: Option<f32>,
    /// `--bin-amplitude` (JSMA).
    pub bin_amplitude: Option<f32>,
    /// `--overshoot` (DeepFool).
    pub overshoot: Option<f32>,
    /// `--stage2-steps` (imperceptible).
    pub stage2_steps: Option<usize>,
    /// `--stage2-lr` (imperceptible).
    pub stage2_lr: Option<f32>,
    /// `--masked-share` (imperceptible): stage 2 stops at a success with this share of δ's
    /// energy under the masking threshold.
    pub masked_share: Option<f64>,
    /// `--alpha` (imperceptible).
    pub alpha: Option<f32>,
    /// `--cg-iterations` (newton): Hessian–vector products per iteration.
    pub cg_iterations: Option<usize>,
    /// `--trust-radius` (newton): the first trust radius (L2, waveform units).
    pub trust_radius: Option<f32>,
    /// `--queries` (black-box).
    pub queries: Option<usize>,
    /// `--population` (black-box).
    pub population: Option<usize>,
    /// `--sigma` (nes/spsa).
    pub sigma: Option<f32>,
    /// `--tile` (nes/spsa).
    pub tile: Option<usize>,
    /// `--check-every`: steps between decodes.
    pub check_every: Option<usize>,
    /// `--beam`: beam size of every decode (default 5).
    pub beam: Option<usize>,
    /// `--seed` of every random choice (recorded in the report by every attack).
    pub seed: u64,
    /// `--margin`: the logit margin κ a targeted or mute goal's tokens must lead by (white
    /// box; default [`Robustness::DEFAULT_MARGIN`]).
    pub margin: Option<f32>,
    /// `--front-ends`: the front ends whose decodes must all meet the goal (white box;
    /// default both).
    pub front_ends: Option<Vec<FrontEnd>>,
    /// `--plain-prompt-only`: a targeted goal need not also hold under timestamp decoding.
    #[serde(rename = "plain_prompt_only")]
    pub no_timestamp_prompt: bool,
    /// `--surrogate` (black-box): attack advox's model white-box first and send its result
    /// to the target ([`super::query`]).
    pub surrogate: bool,
    /// `--surrogate-rounds` (black-box with `--surrogate`; default
    /// [`super::query::SURROGATE_ROUNDS`]).
    pub surrogate_rounds: Option<usize>,
    /// `--quiet-prior` (black-box): noise in the input's quietest frames, one query per
    /// candidate, before the search ([`super::quiet_prior`]).
    pub quiet_prior: bool,
    /// `--quiet-rounds` (black-box with `--quiet-prior`; default
    /// [`super::quiet_prior::QUIET_ROUNDS`]).
    pub quiet_rounds: Option<usize>,
}

/// An optional name parsed as the library parses it (its errors name the known ones).
fn named<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = Error>,
{
    Option::<String>::deserialize(d)?
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// The constraints an attack applied, as reports record them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedConstraints {
    /// L∞ bound.
    pub eps: Option<f32>,
    /// L2 bound.
    pub l2: Option<f32>,
    /// Least SNR (dB).
    pub snr_db: Option<f32>,
    /// The band (Hz).
    pub band_hz: Option<(f32, f32)>,
    /// Only where there is sound.
    pub speech_only: bool,
    /// Expectation over transformation.
    pub eot: bool,
    /// Margin under the masking threshold (dB).
    pub masking_margin_db: Option<f32>,
}

impl AttackOptions {
    /// The attack chosen (PGD by default).
    pub fn kind(&self) -> AttackKind {
        self.kind.unwrap_or(AttackKind::Pgd)
    }

    /// Refuse an option that does not apply to the attack, a missing bound and a goal the
    /// attack cannot pursue (`goal`, when known).
    pub fn check(&self, goal: Option<&Goal>) -> Result<()> {
        use AttackKind::*;
        if let Some((lo, hi)) = self.band {
            if !(lo >= 0.0 && hi > lo) {
                return Err(Error::InvalidArgument(format!(
                    "--band: empty band {lo}-{hi}"
                )));
            }
        }
        let kind = self.kind();
        const BOUNDED: &[AttackKind] = &[Fgsm, Pgd, Cw, Imperceptible, Newton];
        const PGD_LIKE: &[AttackKind] = &[Pgd, Imperceptible];
        const STEPPED: &[AttackKind] = &[Fgsm, Pgd, Cw, Imperceptible, Newton];
        const BLACK: &[AttackKind] = &[Ga, Nes, Spsa];
        const ESTIMATED: &[AttackKind] = &[Nes, Spsa];
        const WHITE: &[AttackKind] = &[Fgsm, Pgd, Cw, Deepfool, Jsma, Imperceptible, Newton];
        const QUERY_BOUNDED: &[AttackKind] = &[Fgsm, Pgd, Cw, Imperceptible, Newton, Ga, Nes, Spsa];
        let options: [(&str, bool, &[AttackKind]); 41] = [
            ("--margin", self.margin.is_some(), WHITE),
            ("--plain-prompt-only", self.no_timestamp_prompt, WHITE),
            ("--front-ends", self.front_ends.is_some(), WHITE),
            (
                "--eps",
                self.eps.is_some(),
                &[Fgsm, Pgd, Cw, Imperceptible, Newton, Ga, Nes, Spsa],
            ),
            ("--l2", self.l2.is_some(), BOUNDED),
            ("--snr-db", self.snr_db.is_some(), QUERY_BOUNDED),
            ("--band", self.band.is_some(), BOUNDED),
            ("--speech-only", self.speech_only, BOUNDED),
            (
                "--masking-margin-db",
                self.masking_margin_db.is_some(),
                &[Fgsm, Pgd, Cw, Imperceptible, Newton, Ga, Nes, Spsa],
            ),
            ("--domain", self.domain.is_some(), STEPPED),
            (
                "--steps",
                self.steps.is_some(),
                &[Pgd, Cw, Deepfool, Jsma, Imperceptible, Newton],
            ),
            (
                "--step-size",
                self.step_size.is_some(),
                &[Fgsm, Pgd, Imperceptible, Nes, Spsa],
            ),
            ("--rule", self.rule.is_some(), PGD_LIKE),
            ("--schedule", self.schedule.is_some(), PGD_LIKE),
            ("--random-start", self.random_start, PGD_LIKE),
            ("--restarts", self.restarts.is_some(), PGD_LIKE),
            ("--eot", self.eot, &[Fgsm, Pgd]),
            ("--eot-samples", self.eot_samples.is_some(), &[Fgsm, Pgd]),
            ("--rir", self.rirs.is_some(), &[Fgsm, Pgd]),
            ("--c", self.c.is_some(), &[Cw]),
            ("--kappa", self.kappa.is_some(), &[Cw]),
            ("--search-steps", self.search_steps.is_some(), &[Cw]),
            ("--lr", self.lr.is_some(), &[Cw]),
            ("--max-bins", self.max_bins.is_some(), &[Jsma]),
            (
                "--bins-per-iteration",
                self.bins_per_iteration.is_some(),
                &[Jsma],
            ),
            ("--bin-amplitude", self.bin_amplitude.is_some(), &[Jsma]),
            ("--overshoot", self.overshoot.is_some(), &[Deepfool]),
            (
                "--stage2-steps",
                self.stage2_steps.is_some(),
                &[Imperceptible],
            ),
            ("--stage2-lr", self.stage2_lr.is_some(), &[Imperceptible]),
            (
                "--masked-share",
                self.masked_share.is_some(),
                &[Imperceptible],
            ),
            ("--alpha", self.alpha.is_some(), &[Imperceptible]),
            ("--cg-iterations", self.cg_iterations.is_some(), &[Newton]),
            ("--trust-radius", self.trust_radius.is_some(), &[Newton]),
            ("--queries", self.queries.is_some(), BLACK),
            ("--population", self.population.is_some(), BLACK),
            ("--sigma", self.sigma.is_some(), ESTIMATED),
            ("--tile", self.tile.is_some(), ESTIMATED),
            ("--surrogate", self.surrogate, BLACK),
            ("--surrogate-rounds", self.surrogate_rounds.is_some(), BLACK),
            ("--quiet-prior", self.quiet_prior, BLACK),
            ("--quiet-rounds", self.quiet_rounds.is_some(), BLACK),
        ];
        for (name, set, applies) in options {
            if set && !applies.contains(&kind) {
                let to: Vec<&str> = applies.iter().map(|k| k.name()).collect();
                return Err(Error::InvalidArgument(format!(
                    "{name} does not apply to {kind} (only to {})",
                    to.join(", ")
                )));
            }
        }
        if self.check_every.is_some() && matches!(kind, Fgsm | Deepfool | Ga) {
            return Err(Error::InvalidArgument(format!(
                "--check-every does not apply to {kind} ({})",
                match kind {
                    Fgsm => "one step, decoded once",
                    Deepfool => "it decodes every iteration",
                    _ => "it transcribes every generation's best candidate",
                }
            )));
        }
        if self.surrogate_rounds.is_some() && !self.surrogate {
            return Err(Error::InvalidArgument(
                "--surrogate-rounds needs --surrogate".into(),
            ));
        }
        if self.surrogate_rounds == Some(0) {
            return Err(Error::InvalidArgument(
                "--surrogate-rounds must be at least 1".into(),
            ));
        }
        if let Some(Domain::Phase { .. }) = self.domain {
            if !matches!(kind, Fgsm | Pgd) {
                return Err(Error::InvalidArgument(format!(
                    "--domain phase does not apply to {kind} (only to fgsm, pgd)"
                )));
            }
            let other = [
                ("--eps", self.eps.is_some()),
                ("--l2", self.l2.is_some()),
                ("--masking-margin-db", self.masking_margin_db.is_some()),
                ("--band", self.band.is_some()),
                ("--speech-only", self.speech_only),
                ("--eot", self.eot),
            ];
            if let Some((name, _)) = other.iter().find(|(_, set)| *set) {
                return Err(Error::InvalidArgument(format!(
                    "{name} does not apply to --domain phase: its one bound is --snr-db, which \
                     becomes a bound on the phase offsets"
                )));
            }
            if self.snr_db.is_none() {
                return Err(Error::InvalidArgument(
                    "--domain phase needs --snr-db (its bound)".into(),
                ));
            }
        }
        if self.quiet_rounds.is_some() && !self.quiet_prior {
            return Err(Error::InvalidArgument(
                "--quiet-rounds needs --quiet-prior".into(),
            ));
        }
        if self.quiet_rounds == Some(0) {
            return Err(Error::InvalidArgument(
                "--quiet-rounds must be at least 1".into(),
            ));
        }
        if self.eot_samples.is_some() && !self.eot {
            return Err(Error::InvalidArgument("--eot-samples needs --eot".into()));
        }
        if self.rirs.is_some() && !self.eot {
            return Err(Error::InvalidArgument("--rir needs --eot".into()));
        }
        if self.cg_iterations == Some(0) {
            return Err(Error::InvalidArgument(
                "--cg-iterations must be at least 1".into(),
            ));
        }
        if matches!(kind, Fgsm | Pgd | Newton)
            && self.eps.is_none()
            && self.l2.is_none()
            && self.snr_db.is_none()
            && self.masking_margin_db.is_none()
        {
            return Err(Error::InvalidArgument(
                "set a bound on the perturbation: --eps, --l2, --snr-db or --masking-margin-db"
                    .into(),
            ));
        }
        if self.margin.is_some() && matches!(goal, Some(Goal::Untargeted { .. })) {
            return Err(Error::InvalidArgument(
                "--margin does not apply to an untargeted goal (it is the lead of a target's \
                 tokens; untargeted success is the WER)"
                    .into(),
            ));
        }
        match (kind, goal) {
            (Imperceptible, Some(g)) if !matches!(g, Goal::Targeted(_)) => {
                Err(Error::InvalidArgument(
                    "the imperceptible attack is targeted: give a target transcript".into(),
                ))
            }
            (Deepfool, Some(g)) if !matches!(g, Goal::Untargeted { .. }) => Err(
                Error::InvalidArgument("DeepFool is an untargeted attack: use --untargeted".into()),
            ),
            _ => Ok(()),
        }
    }

    /// The decoding of every transcription and verdict.
    pub fn decode(&self) -> DecodeOptions {
        DecodeOptions {
            beam_size: self.beam.unwrap_or(BEAM).max(1),
            ..Default::default()
        }
    }

    /// What a white-box success must survive for `goal`: both front ends (or `--front-ends`)
    /// and, for a targeted or mute goal, the margin (`--margin`, default
    /// [`Robustness::DEFAULT_MARGIN`]); `None` for a black-box attack.
    pub fn robustness(&self, goal: &Goal) -> Option<Robustness> {
        if self.kind().is_black_box() {
            return None;
        }
        let margin = match goal {
            Goal::Untargeted { .. } => 0.0,
            _ => self.margin.unwrap_or(Robustness::DEFAULT_MARGIN),
        };
        Some(Robustness {
            front_ends: self
                .front_ends
                .clone()
                .unwrap_or_else(|| FrontEnd::ALL.to_vec()),
            margin,
            timestamps: !self.no_timestamp_prompt,
            no_repeat: true,
        })
    }

    /// The constraints the attack applies, as reports record them.
    pub fn applied_constraints(&self) -> AppliedConstraints {
        let imperceptible_ball = self.kind() == AttackKind::Imperceptible
            && self.eps.is_none()
            && self.l2.is_none()
            && self.snr_db.is_none();
        AppliedConstraints {
            eps: match self.kind() {
                k if k.is_black_box() => Some(self.eps.unwrap_or(BLACK_BOX_LINF)),
                _ if imperceptible_ball => Some(IMPERCEPTIBLE_LINF),
                _ => self.eps,
            },
            l2: self.l2,
            snr_db: self.snr_db,
            band_hz: self.band,
            speech_only: self.speech_only,
            eot: self.eot,
            masking_margin_db: self.masking_margin_db,
        }
    }

    /// The white-box attack on `x`, whose masking threshold is `threshold` (the masking bound
    /// and `--speech-only` depend on the input). Checks the options first.
    pub fn white_box(
        &self,
        goal: &Goal,
        x: &[f32],
        threshold: &Arc<MaskingThreshold>,
    ) -> Result<Attack> {
        self.check(Some(goal))?;
        let kind = self.kind();
        let decode = self.decode();
        let masking = self.masking_margin_db.map(|margin_db| MaskingBound {
            threshold: threshold.clone(),
            margin_db,
        });
        let domain = self.domain.unwrap_or_default();
        let check_every = self.check_every.unwrap_or(CHECK_EVERY);
        let pgd = AttackConfig {
            method: if kind == AttackKind::Fgsm {
                Method::Fgsm
            } else {
                Method::Pgd
            },
            domain,
            constraints: self.constraints(x, masking.clone()),
            steps: self.steps.unwrap_or(PGD_STEPS),
            step_size: self.step_size.unwrap_or(match (domain, self.snr_db) {
                // Radians: a tenth of the phase bound the SNR floor allows.
                (Domain::Phase { .. }, Some(snr)) => phase_bound_for_snr(snr) / 10.0,
                _ => self.eps.map_or(0.001, |e| e / 10.0),
            }),
            rule: self.rule.unwrap_or(Rule::Adam),
            schedule: self.schedule.unwrap_or(Schedule::Constant),
            random_start: self.random_start,
            restarts: self.restarts.unwrap_or(0),
            check_every,
            decode: decode.clone(),
            seed: self.seed,
            eot: self.eot.then(|| EotConfig {
                samples: self.eot_samples.unwrap_or(EotConfig::default().samples),
                rirs: self
                    .rirs
                    .clone()
                    .unwrap_or_else(|| EotConfig::default().rirs),
                ..Default::default()
            }),
        };
        Ok(match kind {
            AttackKind::Fgsm | AttackKind::Pgd => Attack::Pgd(pgd),
            AttackKind::Cw => {
                let d = CwConfig::default();
                // The margin loss stops pushing a token once it leads by κ: κ must exceed the
                // margin success needs.
                let margin = self.robustness(goal).map_or(0.0, |r| r.margin);
                if let Some(k) = self.kappa.filter(|&k| k <= margin && margin > 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "--kappa {k} is not above the margin {margin} that success needs \
                         (--margin): CW's loss stops pushing a token once it leads by κ"
                    )));
                }
                // Under a bound δ's size is the bound's business: the margin term leads (c
                // starts at CW_BOUNDED_C) and steps are PGD's size, which the projection keeps.
                let bounded = pgd.constraints.bound_size();
                let (c, lr) = if bounded {
                    (CW_BOUNDED_C, self.eps.map_or(0.001, |e| e / 10.0))
                } else {
                    (d.initial_c, d.learning_rate)
                };
                Attack::Cw(CwConfig {
                    steps: self
                        .steps
                        .unwrap_or(if bounded { CW_BOUNDED_STEPS } else { CW_STEPS }),
                    search_steps: self.search_steps.unwrap_or(d.search_steps),
                    initial_c: self.c.unwrap_or(c),
                    kappa: self
                        .kappa
                        .unwrap_or(d.kappa.max(margin + CW_KAPPA_OVER_MARGIN)),
                    learning_rate: self.lr.unwrap_or(lr),
                    domain,
                    check_every,
                    decode,
                    constraints: pgd.constraints.clone(),
                })
            }
            AttackKind::Deepfool => Attack::DeepFool(DeepFoolConfig {
                max_iterations: self.steps.unwrap_or(DEEPFOOL_STEPS),
                overshoot: self
                    .overshoot
                    .unwrap_or(DeepFoolConfig::default().overshoot),
                decode,
            }),
            AttackKind::Jsma => {
                let d = JsmaConfig::default();
                Attack::Jsma(JsmaConfig {
                    max_bins_fraction: self.max_bins.unwrap_or(d.max_bins_fraction),
                    bins_per_iteration_fraction: self
                        .bins_per_iteration
                        .unwrap_or(d.bins_per_iteration_fraction),
                    amplitude: self.bin_amplitude.unwrap_or(d.amplitude),
                    iterations: self.steps.unwrap_or(JSMA_STEPS),
                    check_every: self.check_every.unwrap_or(d.check_every),
                    decode,
                })
            }
            AttackKind::Imperceptible => {
                let d = ImperceptibleConfig::default();
                Attack::Imperceptible(ImperceptibleConfig {
                    steps: self.stage2_steps.unwrap_or(d.steps),
                    learning_rate: self.stage2_lr.unwrap_or(d.learning_rate),
                    alpha: self.alpha,
                    masked_share: self.masked_share.unwrap_or(d.masked_share),
                    check_every: check_every.max(1) * 2,
                    stage1: pgd,
                    ..d
                })
            }
            AttackKind::Newton => Attack::Newton(NewtonConfig {
                iterations: self.steps.unwrap_or(NEWTON_STEPS),
                cg_iterations: self.cg_iterations.unwrap_or(NEWTON_CG_ITERATIONS),
                initial_radius: self.trust_radius,
                domain,
                check_every: self
                    .check_every
                    .unwrap_or(NewtonConfig::default().check_every),
                decode,
                constraints: pgd.constraints.clone(),
            }),
            k => {
                return Err(Error::InvalidArgument(format!(
                    "{k} is a black-box attack (--blackbox {k})"
                )))
            }
        })
    }

    /// The bounds of the options on input `x`, with the masking bound already made.
    fn constraints(&self, x: &[f32], masking: Option<MaskingBound>) -> Constraints {
        Constraints {
            linf: self.applied_constraints().eps,
            l2: self.l2,
            snr_db: self.snr_db,
            band_hz: self.band,
            time_mask: self
                .speech_only
                .then(|| speech_mask(x, crate::audio::SAMPLE_RATE)),
            masking,
        }
    }

    /// The query-based attack on 16-kHz input `x`: the search ([`AttackOptions::black_box`]),
    /// the bounds every heard candidate is projected onto, and with `--surrogate` the
    /// surrogate prior on `surrogate` (PGD under the same bounds). Checks the options first.
    pub fn query_plan<'m>(
        &self,
        goal: &Goal,
        x: &[f32],
        surrogate: Option<&'m LoadedModel>,
    ) -> Result<QueryPlan<'m>> {
        let search = self.black_box(goal)?;
        let masking = match self.masking_margin_db {
            Some(margin_db) => Some(MaskingBound {
                threshold: Arc::new(MaskingThreshold::compute(x, MaskingConfig::default())?),
                margin_db,
            }),
            None => None,
        };
        let surrogate = match (self.surrogate, surrogate) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::InvalidArgument(
                    "--surrogate needs a surrogate model".into(),
                ))
            }
            (true, Some(model)) => Some(Surrogate {
                model,
                options: AttackOptions {
                    kind: Some(AttackKind::Pgd),
                    eps: self.applied_constraints().eps,
                    l2: self.l2,
                    snr_db: self.snr_db,
                    band: self.band,
                    speech_only: self.speech_only,
                    masking_margin_db: self.masking_margin_db,
                    beam: self.beam,
                    seed: self.seed,
                    ..Default::default()
                },
                rounds: self.surrogate_rounds.unwrap_or(SURROGATE_ROUNDS),
            }),
        };
        Ok(QueryPlan {
            search,
            constraints: self.constraints(x, masking),
            surrogate,
            quiet: self.quiet_prior.then(|| QuietPrior {
                rounds: self.quiet_rounds.unwrap_or(QUIET_ROUNDS),
                seed: self.seed,
            }),
            shrink: true,
        })
    }

    /// The black-box attack. Checks the options first.
    pub fn black_box(&self, goal: &Goal) -> Result<BlackBox> {
        self.check(Some(goal))?;
        let linf = self.eps.unwrap_or(BLACK_BOX_LINF);
        let queries = self.queries.unwrap_or(GaConfig::default().query_budget);
        let population = self.population.unwrap_or(GaConfig::default().population);
        Ok(match self.kind() {
            AttackKind::Ga => BlackBox::Ga(GaConfig {
                population,
                linf,
                query_budget: queries,
                seed: self.seed,
                ..Default::default()
            }),
            k @ (AttackKind::Nes | AttackKind::Spsa) => BlackBox::Nes(NesConfig {
                estimator: if k == AttackKind::Spsa {
                    Estimator::Spsa
                } else {
                    Estimator::Nes
                },
                linf,
                directions: population,
                sigma: self.sigma.unwrap_or(linf / 4.0),
                step_size: self.step_size.unwrap_or(linf / 5.0),
                tile: self.tile.unwrap_or(NesConfig::default().tile),
                check_every: self.check_every.unwrap_or(CHECK_EVERY),
                query_budget: queries,
                seed: self.seed,
            }),
            k => {
                return Err(Error::InvalidArgument(format!(
                    "{k} is a white-box attack (--attack {k})"
                )))
            }
        })
    }
}

/// `advox attack` on one signal: what it found and measured.
#[derive(Debug, Clone)]
pub struct SignalAttack {
    /// The attack.
    pub kind: AttackKind,
    /// The clean signal's transcript.
    pub original: Transcript,
    /// The goal, as set against that transcript.
    pub goal: Goal,
    /// The attack's result (its verdict is `run.outcome.success`).
    pub run: AttackRun,
    /// How the kept perturbation sits against the input's masking threshold.
    pub masking: MaskingStats,
    /// Wall time of the attack itself (seconds).
    pub seconds: f64,
    /// What its success had to survive.
    pub robustness: Robustness,
}

/// Transcribe 16-kHz samples `x`, set `goal` against that transcript, build the attack from
/// `options` and run it. `on_original` sees the clean transcript before the attack starts.
/// A recording longer than one 30-s window is attacked window by window
/// ([`super::windowed`]): untargeted or mute goals only (each window moves away from its own
/// transcript, or is muted); the outcome joins the windows and its
/// [`super::AttackDetails::Windows`] lists them.
pub fn attack_signal(
    model: &LoadedModel,
    x: &[f32],
    goal: Goal,
    options: &AttackOptions,
    cancel: &AtomicBool,
    on_original: &mut dyn FnMut(&str, &Attack),
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<SignalAttack> {
    options.check(Some(&goal))?;
    if x.len() > N_SAMPLES {
        return attack_long(model, x, goal, options, cancel, on_original, on_step);
    }
    super::check_input(x)?;
    let original = transcribe(model, x, &options.decode())?;
    let robustness = options.robustness(&goal).unwrap_or_default();
    let objective = Objective::new(model, goal.clone(), &original.text, &original.tokens)?
        .with_robustness(model, robustness.clone(), x.len())?;
    let robustness = objective.robustness().clone();
    let threshold = Arc::new(MaskingThreshold::compute(x, MaskingConfig::default())?);
    let attack = options.white_box(&goal, x, &threshold)?;
    on_original(&original.text, &attack);
    let start = std::time::Instant::now();
    let run = attack.run(model, x, &objective, cancel, on_step)?;
    let seconds = start.elapsed().as_secs_f64();
    let masking = threshold.stats(&run.outcome.perturbation)?;
    Ok(SignalAttack {
        kind: attack.kind(),
        original,
        goal,
        run,
        masking,
        seconds,
        robustness,
    })
}

/// [`attack_signal`] on a recording longer than one window.
fn attack_long(
    model: &LoadedModel,
    x: &[f32],
    goal: Goal,
    options: &AttackOptions,
    cancel: &AtomicBool,
    on_original: &mut dyn FnMut(&str, &Attack),
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<SignalAttack> {
    let seconds = x.len() as f64 / crate::audio::SAMPLE_RATE as f64;
    if matches!(goal, Goal::Targeted(_)) {
        return Err(Error::InvalidArgument(format!(
            "a targeted goal is one transcript for one 30-s window, and this recording is \
             {seconds:.1} s: cut it to the window to attack, or use --untargeted or --mute \
             (window by window)"
        )));
    }
    let original = transcribe(model, x, &options.decode())?;
    let first = &x[..N_SAMPLES];
    let threshold = Arc::new(MaskingThreshold::compute(first, MaskingConfig::default())?);
    let attack = options.white_box(&goal, first, &threshold)?;
    on_original(&original.text, &attack);
    let start = std::time::Instant::now();
    let plan = WindowPlan {
        goal: goal.clone(),
        options: options.clone(),
        window: N_SAMPLES,
    };
    let windowed = attack_windows(model, x, &plan, cancel, &mut |_| {}, on_step)?;
    let seconds = start.elapsed().as_secs_f64();
    if windowed.attacked() == 0 {
        return Err(Error::NothingToAttack(
            "every window is digital silence or transcribes as nothing".into(),
        ));
    }
    let adversarial = super::quantized_sum(x, &windowed.perturbation);
    let perturbation: Vec<f32> = adversarial.iter().zip(x).map(|(a, b)| a - b).collect();
    let masking = windowed_masking(&windowed, &perturbation);
    let transcript = windowed
        .windows
        .iter()
        .map(|w| w.transcript.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let outcome = super::AttackOutcome {
        success: windowed.succeeded() == windowed.attacked(),
        adversarial,
        perturbation,
        transcript,
        steps: windowed.steps(),
        loss: f32::NAN,
        cancelled: cancel.load(std::sync::atomic::Ordering::Relaxed),
    };
    Ok(SignalAttack {
        kind: attack.kind(),
        original,
        robustness: options.robustness(&goal).unwrap_or_default(),
        goal,
        run: AttackRun {
            outcome,
            details: super::AttackDetails::Windows {
                outcomes: windowed.windows,
            },
        },
        masking,
        seconds,
    })
}

/// Masking statistics of δ over a long recording from each window's own (measured against
/// that window's threshold, as each was attacked), weighted by δ's energy in the window and
/// by the windows' lengths.
fn windowed_masking(windowed: &WindowedAttack, delta: &[f32]) -> MaskingStats {
    let (mut energy, mut under, mut margin, mut bins, mut over) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for w in &windowed.windows {
        let d = &delta[w.start..w.start + w.len];
        let e: f64 = d.iter().map(|v| (*v as f64).powi(2)).sum();
        let stats = w.masking;
        energy += e;
        under += e * stats.energy_under_threshold;
        margin += e * stats.mean_margin_db;
        bins += w.len as f64;
        over += w.len as f64 * stats.bins_over_threshold;
    }
    let weighted = |v: f64| if energy > 0.0 { v / energy } else { 1.0 };
    MaskingStats {
        energy_under_threshold: weighted(under),
        bins_over_threshold: over / bins.max(1.0),
        mean_margin_db: if energy > 0.0 { margin / energy } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targeted() -> Goal {
        Goal::Targeted("turn off the lights".into())
    }

    #[test]
    fn an_option_that_does_not_apply_is_an_error_naming_it() {
        let cw = AttackOptions {
            kind: Some(AttackKind::Cw),
            snr_db: Some(35.0),
            eot: true,
            ..Default::default()
        };
        let e = cw.check(Some(&targeted())).unwrap_err().to_string();
        assert!(e.contains("--eot") && e.contains("cw"), "{e}");
        let cw_bounded = AttackOptions { eot: false, ..cw };
        cw_bounded.check(Some(&targeted())).unwrap();
        let ga_margin = AttackOptions {
            kind: Some(AttackKind::Ga),
            margin: Some(2.0),
            ..Default::default()
        };
        assert!(ga_margin
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--margin"));
        let untargeted_margin = AttackOptions {
            eps: Some(0.01),
            margin: Some(2.0),
            ..Default::default()
        };
        let e = untargeted_margin
            .check(Some(&Goal::Untargeted { min_wer: 0.5 }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--margin"), "{e}");
        let ga = AttackOptions {
            kind: Some(AttackKind::Ga),
            tile: Some(4),
            ..Default::default()
        };
        assert!(ga.check(None).unwrap_err().to_string().contains("--tile"));
        let fgsm = AttackOptions {
            kind: Some(AttackKind::Fgsm),
            eps: Some(0.01),
            check_every: Some(2),
            ..Default::default()
        };
        assert!(fgsm
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--check-every"));
        let samples = AttackOptions {
            eps: Some(0.01),
            eot_samples: Some(2),
            ..Default::default()
        };
        assert!(samples
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--eot"));
        let rooms = AttackOptions {
            eps: Some(0.01),
            rirs: Some(std::sync::Arc::from(vec![vec![1.0f32]])),
            ..Default::default()
        };
        assert!(rooms
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--rir needs --eot"));
        let ga = Some(AttackKind::Ga);
        let rounds = AttackOptions {
            kind: ga,
            quiet_rounds: Some(5),
            ..Default::default()
        };
        assert!(rounds
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--quiet-rounds needs --quiet-prior"));
        let zero = AttackOptions {
            kind: ga,
            quiet_prior: true,
            quiet_rounds: Some(0),
            ..Default::default()
        };
        assert!(zero
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        let phase = Some(Domain::Phase {
            n_fft: 512,
            hop: 128,
        });
        for (opts, says) in [
            (
                AttackOptions {
                    domain: phase,
                    eps: Some(0.01),
                    snr_db: Some(30.0),
                    ..Default::default()
                },
                "--eps does not apply to --domain phase",
            ),
            (
                AttackOptions {
                    domain: phase,
                    ..Default::default()
                },
                "needs --snr-db",
            ),
            (
                AttackOptions {
                    kind: Some(AttackKind::Cw),
                    domain: phase,
                    snr_db: Some(30.0),
                    ..Default::default()
                },
                "does not apply to cw",
            ),
        ] {
            let e = opts.check(None).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        AttackOptions {
            domain: phase,
            snr_db: Some(30.0),
            ..Default::default()
        }
        .check(Some(&targeted()))
        .unwrap();
        let white = AttackOptions {
            eps: Some(0.01),
            quiet_prior: true,
            ..Default::default()
        };
        assert!(white
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--quiet-prior does not apply"));
        // What applies passes.
        let pgd = AttackOptions {
            eps: Some(0.02),
            snr_db: Some(30.0),
            restarts: Some(1),
            eot: true,
            ..Default::default()
        };
        pgd.check(Some(&targeted())).unwrap();
    }

    #[test]
    fn bounds_and_goals_are_checked() {
        let unbounded = AttackOptions::default();
        assert!(unbounded
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--eps"));
        let imperceptible = AttackOptions {
            kind: Some(AttackKind::Imperceptible),
            ..Default::default()
        };
        imperceptible.check(Some(&targeted())).unwrap();
        assert!(imperceptible.check(Some(&Goal::Mute)).is_err());
        let deepfool = AttackOptions {
            kind: Some(AttackKind::Deepfool),
            ..Default::default()
        };
        assert!(deepfool.check(Some(&targeted())).is_err());
        deepfool
            .check(Some(&Goal::Untargeted { min_wer: 0.5 }))
            .unwrap();
        // Newton-CG: needs a bound, takes its own options, refuses PGD's step rule and none
        // products.
        let newton = |o: AttackOptions| AttackOptions {
            kind: Some(AttackKind::Newton),
            ..o
        };
        let bounded = AttackOptions {
            snr_db: Some(30.0),
            ..Default::default()
        };
        assert!(newton(AttackOptions::default())
            .check(None)
            .unwrap_err()
            .to_string()
            .contains("--eps"));
        newton(AttackOptions {
            cg_iterations: Some(4),
            trust_radius: Some(0.1),
            domain: Some(Domain::Waveform),
            ..bounded.clone()
        })
        .check(Some(&targeted()))
        .unwrap();
        for (bad, says) in [
            (
                AttackOptions {
                    rule: Some(Rule::Sign),
                    ..bounded.clone()
                },
                "--rule does not apply to newton",
            ),
            (
                AttackOptions {
                    cg_iterations: Some(0),
                    ..bounded.clone()
                },
                "--cg-iterations must be at least 1",
            ),
        ] {
            let e = newton(bad).check(None).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let e = AttackOptions {
            cg_iterations: Some(4),
            ..bounded
        }
        .check(None)
        .unwrap_err()
        .to_string();
        assert!(e.contains("--cg-iterations does not apply to pgd"), "{e}");
    }

    #[test]
    fn defaults_are_filled_in_and_recorded() {
        let x = vec![0.1f32; 16_000];
        let threshold = Arc::new(MaskingThreshold::compute(&x, MaskingConfig::default()).unwrap());
        let pgd = AttackOptions {
            eps: Some(0.02),
            ..Default::default()
        };
        match pgd.white_box(&targeted(), &x, &threshold).unwrap() {
            Attack::Pgd(c) => {
                assert_eq!(c.step_size, 0.02 / 10.0);
                assert_eq!(c.steps, PGD_STEPS);
                assert_eq!(c.decode.beam_size, BEAM);
            }
            other => panic!("{other:?}"),
        }
        // The imperceptible attack without a bound gets its L∞ ball, and the report says so.
        let imperceptible = AttackOptions {
            kind: Some(AttackKind::Imperceptible),
            ..Default::default()
        };
        assert_eq!(
            imperceptible.applied_constraints().eps,
            Some(IMPERCEPTIBLE_LINF)
        );
        match imperceptible
            .white_box(&targeted(), &x, &threshold)
            .unwrap()
        {
            Attack::Imperceptible(c) => {
                assert_eq!(c.stage1.constraints.linf, Some(IMPERCEPTIBLE_LINF));
                assert_eq!(c.check_every, 2 * CHECK_EVERY);
            }
            other => panic!("{other:?}"),
        }
        let nes = AttackOptions {
            kind: Some(AttackKind::Nes),
            eps: Some(0.01),
            ..Default::default()
        };
        match nes.black_box(&targeted()).unwrap() {
            BlackBox::Nes(c) => {
                assert_eq!((c.sigma, c.step_size), (0.01 / 4.0, 0.01 / 5.0));
                assert_eq!(c.estimator, Estimator::Nes);
            }
            other => panic!("{other:?}"),
        }
        assert!(nes.white_box(&targeted(), &x, &threshold).is_err());
        let newton = AttackOptions {
            kind: Some(AttackKind::Newton),
            snr_db: Some(30.0),
            ..Default::default()
        };
        match newton.white_box(&targeted(), &x, &threshold).unwrap() {
            Attack::Newton(c) => {
                assert_eq!(c.iterations, NEWTON_STEPS);
                assert_eq!(c.cg_iterations, NEWTON_CG_ITERATIONS);
                assert_eq!(c.constraints.snr_db, Some(30.0));
                assert_eq!(c.initial_radius, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
