//! FGSM and PGD: one signed step of the whole L∞ budget, or iterated sign, L2 or Adam steps
//! (in the waveform or the STFT domain) projected onto the constraint set, with random starts,
//! restarts, a step-size schedule and expectation over transformations (EOT).

use super::channel::{Channel, EotChannel};
use super::eot;
use super::step::{Rule, StepSpace, Stepper};
use super::track::{Keep, LeadGate, Tracker};
use super::{quantized_sum_within, AttackOutcome, StepInfo};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::Objective;
use crate::perturb::{BandLimiter, Constraints, Domain};
use crate::rng::Rng;
use crate::{Error, Result};
use std::sync::atomic::AtomicBool;

/// Which attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Fast gradient sign method: one step of the full L∞ budget.
    Fgsm,
    /// Projected gradient descent.
    Pgd,
}

/// Step-size schedule over the steps of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The same step size throughout.
    Constant,
    /// Cosine decay from the step size to a tenth of it.
    Cosine,
}

impl Schedule {
    /// Every schedule's name, as `--schedule` takes it.
    pub const NAMES: [&'static str; 2] = ["constant", "cosine"];
}

impl std::str::FromStr for Schedule {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(crate::error::unknown_name("schedule", other, &Self::NAMES)),
        }
    }
}

/// Settings of a gradient attack.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    /// The attack.
    pub method: Method,
    /// Where steps are formed.
    pub domain: Domain,
    /// The constraint set.
    pub constraints: Constraints,
    /// Steps per run (PGD).
    pub steps: usize,
    /// Step size in waveform units (L∞ of the step for sign/Adam, L2 for the L2 rule).
    pub step_size: f32,
    /// Step rule (PGD).
    pub rule: Rule,
    /// Step-size schedule (PGD).
    pub schedule: Schedule,
    /// Start from a random point of the L∞ ball (PGD).
    pub random_start: bool,
    /// Further runs from new random starts while no run has succeeded (PGD).
    pub restarts: usize,
    /// Decode every this many steps to test for success; for a targeted or mute goal under
    /// plain decoding (where success also requires its tokens to lead under teacher forcing),
    /// the fewest steps between two decodes of points where they lead.
    pub check_every: usize,
    /// Decoding used for the success tests (as the final check).
    pub decode: DecodeOptions,
    /// Seed of every random choice.
    pub seed: u64,
    /// Expectation over random transformations (over-the-air robustness); `None` for none.
    pub eot: Option<eot::EotConfig>,
}

impl AttackConfig {
    /// Targeted PGD as the README's quick start runs it: |δ|∞ ≤ 0.02 and SNR ≥ 30 dB, Adam
    /// steps of 0.002 in the STFT domain, `steps` of them.
    pub fn quick_start(steps: usize) -> Self {
        AttackConfig {
            constraints: Constraints {
                linf: Some(0.02),
                snr_db: Some(30.0),
                ..Default::default()
            },
            step_size: 0.002,
            steps,
            ..Default::default()
        }
    }
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            method: Method::Pgd,
            domain: Domain::default(),
            constraints: Constraints {
                linf: Some(0.01),
                ..Default::default()
            },
            steps: 300,
            step_size: 0.001,
            rule: Rule::Adam,
            schedule: Schedule::Constant,
            random_start: false,
            restarts: 0,
            check_every: 5,
            decode: DecodeOptions::default(),
            seed: 0,
            eot: None,
        }
    }
}

/// Run a gradient attack on 16-kHz samples `x` (at most 30 s).
///
/// `cancel` stops the attack at the next step, keeping the best point so far; `on_step`
/// reports progress.
pub fn run_attack(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &AttackConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<AttackOutcome> {
    match &cfg.eot {
        None => run_attack_through(model, x, objective, cfg, None, cancel, on_step),
        Some(e) => {
            let channel = EotChannel {
                model,
                objective,
                config: e,
                decode: &cfg.decode,
                seed: cfg.seed,
            };
            run_attack_through(model, x, objective, cfg, Some(&channel), cancel, on_step)
        }
    }
}

/// [`run_attack`] with every gradient taken through `channel` (when given; `cfg.eot` is then
/// ignored) and every decoded point judged by it: an attack that knows what stands between its
/// signal and the recogniser (EOT, a defence). The outcome's transcript is the plain one; its
/// success is the channel's verdict.
pub fn run_attack_through(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &AttackConfig,
    channel: Option<&dyn Channel>,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<AttackOutcome> {
    if let Domain::Phase { .. } = cfg.domain {
        if channel.is_some() {
            return Err(Error::InvalidArgument(
                "the phase domain attacks the plain model (no EOT, no defence)".into(),
            ));
        }
        return super::phase::run_phase_attack(model, x, objective, cfg, cancel, on_step);
    }
    let mut track = Tracker::new(model, x, objective, &cfg.decode, Keep::LowestLoss)?;
    if !(cfg.step_size.is_finite() && cfg.step_size > 0.0) {
        return Err(Error::InvalidArgument(
            "the step size must be positive".into(),
        ));
    }
    cfg.constraints.validate(x.len())?;
    let band = match cfg.constraints.band_hz {
        Some((lo, hi)) => Some(BandLimiter::new(lo, hi, crate::audio::SAMPLE_RATE)?),
        None => None,
    };
    let mut rng = Rng::new(cfg.seed);
    let (runs, steps) = match cfg.method {
        Method::Fgsm => (1, 1),
        Method::Pgd => (1 + cfg.restarts, cfg.steps.max(1)),
    };
    let check_every = cfg.check_every.max(1);
    // A targeted or mute goal under plain decoding needs its tokens to lead under teacher
    // forcing (see `Objective::lead_is_required`): the loss evaluation gives the lead for
    // free, so the point is decoded only where it holds (then at most every `check_every`
    // steps while the beam still disagrees). EOT's loss is an average over transformations,
    // whose lead says nothing about the plain signal; neither does a defence's.
    let gated = channel.is_none() && track.lead_required();
    'runs: for run in 0..runs {
        let mut delta = vec![0.0f32; x.len()];
        if cfg.method == Method::Pgd && (cfg.random_start || run > 0) {
            let a = cfg.constraints.linf.unwrap_or(cfg.step_size);
            delta.iter_mut().for_each(|d| *d = rng.symmetric(a));
            cfg.constraints.project(&mut delta, x, band.as_ref())?;
        }
        let rule = if cfg.method == Method::Fgsm {
            Rule::Sign
        } else {
            cfg.rule
        };
        let mut stepper = Stepper::new(rule, StepSpace::new(cfg.domain, x.len())?);
        let mut gate = LeadGate::new(check_every);
        for step in 1..=steps {
            if track.stop_requested(cancel) {
                break 'runs;
            }
            let adv = quantized_sum_within(x, &delta, cfg.constraints.linf);
            let (loss, grad, lead) = match channel {
                None => {
                    let e = track.score(&adv)?;
                    (e.loss, e.grad, e.lead)
                }
                Some(c) => {
                    let (l, g) = c.loss_and_grad(track.front(), &adv, &mut rng)?;
                    track.count_step();
                    (l, g, f32::NAN)
                }
            };
            let mut info = StepInfo {
                run,
                step,
                steps,
                loss,
                transcript: None,
            };
            // Gated runs decode rarely: the lowest-loss point scored so far stands in for a
            // decoded one if the attack fails or is cancelled.
            if gated {
                track.stand_by(&adv, loss, lead);
            }
            if gated && gate.due(step, track.leads(lead)) {
                // The point just scored: decode it as it stands.
                let transcript = track.transcribe(&adv)?;
                let success = track.judge(&adv, &transcript, lead)?;
                info.transcript = Some(transcript.clone());
                track.offer(adv, success, transcript, loss, loss);
                if success {
                    on_step(&info);
                    break 'runs;
                }
            }
            let size = match cfg.method {
                Method::Fgsm => cfg.constraints.linf.unwrap_or(cfg.step_size),
                Method::Pgd => scheduled(cfg.step_size, cfg.schedule, step, steps),
            };
            let dir = stepper.direction(&grad)?;
            for (d, s) in delta.iter_mut().zip(&dir) {
                *d -= size * s;
            }
            cfg.constraints.project(&mut delta, x, band.as_ref())?;
            let scheduled_check = !gated && step % check_every == 0;
            if scheduled_check || step == steps {
                let adv = quantized_sum_within(x, &delta, cfg.constraints.linf);
                let transcript = track.transcribe(&adv)?;
                let plain = track.succeeds(&adv, &transcript)?;
                let success = match channel {
                    None => plain,
                    Some(c) => c.judge(&adv, &transcript, plain)?,
                };
                info.transcript = Some(transcript.clone());
                track.offer(adv, success, transcript, loss, loss);
                on_step(&info);
                if success {
                    break 'runs;
                }
            } else {
                on_step(&info);
            }
        }
    }
    track.finish()
}

pub(crate) fn scheduled(size: f32, schedule: Schedule, step: usize, steps: usize) -> f32 {
    match schedule {
        Schedule::Constant => size,
        Schedule::Cosine => {
            let progress = (step - 1) as f32 / steps.max(2).saturating_sub(1) as f32;
            let min = 0.1 * size;
            min + 0.5 * (size - min) * (1.0 + (std::f32::consts::PI * progress).cos())
        }
    }
}
