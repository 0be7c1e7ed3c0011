//! Carlini–Wagner L2 attack: minimise `|δ|² + c · f(x + δ)` with Adam, where `f` is the margin
//! loss of the goal's tokens with confidence κ; a binary search on `c` finds the smallest
//! perturbation that still succeeds. As in PGD, the Adam steps are formed in the STFT domain by
//! default (spectrally shaped steps reach far lower distortion than per-sample ones), and the
//! signal is clipped and quantised as a 16-bit WAV stores it. Bounds the user sets (L∞, L2,
//! SNR, band, time mask, masking threshold) are projections after every step, as in PGD, so
//! the kept point is always inside them; with any bound set the attack stops at its first
//! success (the bound already says how small δ must be), without one it runs the whole search
//! for the least L2 norm.

use super::pgd::{scheduled, Schedule};
use super::step::{Rule, StepSpace, Stepper};
use super::track::{Keep, LeadGate, Tracker};
use super::{quantized_sum_within, AttackOutcome, StepInfo};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::Objective;
use crate::perturb::{BandLimiter, Constraints, Domain};
use crate::{Error, Result};
use std::sync::atomic::AtomicBool;

/// Settings of the Carlini–Wagner attack.
#[derive(Debug, Clone)]
pub struct CwConfig {
    /// Adam steps per value of `c`.
    pub steps: usize,
    /// Values of `c` tried by the binary search.
    pub search_steps: usize,
    /// First `c`.
    pub initial_c: f32,
    /// Confidence margin κ of the tokens (logit units).
    pub kappa: f32,
    /// Largest sample change of one Adam step.
    pub learning_rate: f32,
    /// Where the Adam steps are formed.
    pub domain: Domain,
    /// Decode every this many steps.
    pub check_every: usize,
    /// Decoding of the success tests.
    pub decode: DecodeOptions,
    /// Bounds projected onto after every step (none by default: CW's own L2 term).
    pub constraints: Constraints,
}

impl Default for CwConfig {
    fn default() -> Self {
        CwConfig {
            steps: 40,
            search_steps: 3,
            initial_c: 0.1,
            kappa: 1.0,
            learning_rate: 0.002,
            domain: Domain::default(),
            check_every: 5,
            decode: DecodeOptions::default(),
            constraints: Constraints::default(),
        }
    }
}

/// Run the attack on 16-kHz samples `x`. Keeps the successful point of least L2 norm (or, when
/// nothing succeeded, the last point of the run with the largest `c`).
pub fn run_cw(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &CwConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<AttackOutcome> {
    let mut track = Tracker::new(model, x, objective, &cfg.decode, Keep::Latest)?;
    if !(cfg.initial_c > 0.0 && cfg.learning_rate > 0.0 && cfg.kappa >= 0.0) {
        return Err(Error::InvalidArgument(
            "CW needs c > 0, a positive learning rate and κ >= 0".into(),
        ));
    }
    cfg.constraints.validate(x.len())?;
    let band = match cfg.constraints.band_hz {
        Some((lo, hi)) => Some(BandLimiter::new(lo, hi, crate::audio::SAMPLE_RATE)?),
        None => None,
    };
    let bounded = cfg.constraints.bound_size();
    let (mut lo, mut hi, mut c) = (0.0f32, f32::INFINITY, cfg.initial_c);
    let steps = cfg.steps.max(1);
    let gated = track.lead_required();
    // Each value of c starts from where the previous one ended (a warm start): after a failure
    // the larger c pushes on from there, after a success the smaller c shrinks that δ.
    let mut delta = vec![0.0f32; x.len()];
    let mut led = false;
    'search: for round in 0..cfg.search_steps.max(1) {
        let mut stepper = Stepper::new(Rule::Adam, StepSpace::new(cfg.domain, x.len())?);
        let mut gate = LeadGate::new(cfg.check_every);
        let mut round_success = false;
        for step in 1..=steps {
            if track.stop_requested(cancel) {
                break 'search;
            }
            let quantized = quantized_sum_within(x, &delta, cfg.constraints.linf);
            // Until the goal's tokens first lead, the cross-entropy (PGD's loss) pulls every
            // token at once; the margin loss, whose gradient passes only through each token's
            // best rival, stalls far from the goal on hard inputs (`0890`: 300 steps and the
            // transcript still the original's, where PGD succeeds in 168).
            let scored = track.score_by(&quantized, |front, prompt, wave| {
                if led {
                    objective.evaluate_margin_as(model, front, wave, cfg.kappa, prompt)
                } else {
                    objective.evaluate_as(model, front, wave, prompt)
                }
            })?;
            led |= track.leads(scored.lead);
            let (margin, g) = (scored.loss, scored.grad);
            let l2sq: f32 = delta.iter().map(|d| d * d).sum();
            let loss = l2sq + c * margin;
            track.stand_by(&quantized, loss, scored.lead);
            let mut info = StepInfo {
                run: round,
                step,
                steps,
                loss,
                transcript: None,
            };
            // The point just scored is judged as it stands; where success needs the target to
            // lead under teacher forcing it is decoded as soon as it leads (then not again for
            // `check_every` steps, as PGD does: the views take turns, and a lead that holds in
            // all of them at once can be brief), and fails without a decode where it does not
            // (the last step of a round always decodes, for the fallback).
            let leads = track.leads(scored.lead);
            let due = if gated {
                gate.due(step, leads) || step == steps
            } else {
                step % cfg.check_every.max(1) == 0 || step == steps
            };
            if due {
                let transcript = track.transcribe(&quantized)?;
                let success =
                    (leads || !gated) && track.judge(&quantized, &transcript, scored.lead)?;
                round_success |= success;
                // Among successes the least L2 norm is kept.
                let effective: Vec<f32> = quantized.iter().zip(x).map(|(a, b)| a - b).collect();
                let norm = crate::metrics::l2(&effective) as f32;
                info.transcript = Some(transcript.clone());
                track.offer(quantized, success, transcript, loss, norm);
                if success && bounded {
                    on_step(&info);
                    break 'search;
                }
            }
            let grad: Vec<f32> = delta
                .iter()
                .zip(&g)
                .map(|(d, gi)| 2.0 * d + c * gi)
                .collect();
            let dir = stepper.direction(&grad)?;
            // Cosine decay: coarse steps to find success, fine ones to shrink δ afterwards.
            // Under a bound the first success ends the attack: nothing is left to shrink, and
            // decayed steps only slow the search (the schedule stays constant).
            let schedule = if bounded {
                Schedule::Constant
            } else {
                Schedule::Cosine
            };
            let lr = scheduled(cfg.learning_rate, schedule, step, steps);
            for (d, s) in delta.iter_mut().zip(&dir) {
                *d -= lr * s;
            }
            cfg.constraints.project(&mut delta, x, band.as_ref())?;
            on_step(&info);
        }
        if round_success {
            hi = hi.min(c);
            c = 0.5 * (lo + hi);
        } else {
            lo = lo.max(c);
            c = if hi.is_finite() {
                0.5 * (lo + hi)
            } else {
                c * 10.0
            };
        }
    }
    track.finish()
}
