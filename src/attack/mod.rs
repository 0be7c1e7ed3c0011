//! Attacks. The white-box ones share one loop state ([`track`]: input checks, cancellation,
//! step count, decoding, the lead gate and the kept point) and differ in their step rule:
//! FGSM/PGD ([`pgd`]), Carlini–Wagner ([`cw`]), DeepFool ([`deepfool`]), JSMA ([`jsma`]),
//! trust-region Newton–CG ([`newton`]) and the imperceptible attack ([`imperceptible`]); the black-box ones ([`ga`], [`nes`]) query a
//! [`crate::recognizer::Recognizer`]. [`Attack`] names them all and runs any of them with its
//! settings; [`plan`] turns a user's options into one, with the library's defaults.

pub mod bounded;
pub mod channel;
pub mod cloak_model;
pub mod cloak_shaping;
pub mod cloak_source;
pub mod cw;
pub mod deepfool;
pub mod eot;
pub mod ga;
pub mod imperceptible;
pub mod jsma;
mod kind;
pub mod nes;
pub mod newton;
pub mod pgd;
pub mod phase;
pub mod plan;
pub mod query;
pub mod query_signal;
pub mod quiet_prior;
pub mod step;
mod track;
pub mod universal;
pub mod universal_plan;
pub mod windowed;

pub use kind::{Attack, AttackDetails, AttackKind, AttackRun, BlackBox};
pub use pgd::{run_attack, run_attack_through, AttackConfig, Method, Schedule};
pub use step::Rule;

use crate::audio::quantize_i16;
use crate::mel::N_SAMPLES;
use crate::{Error, Result};

/// Progress of one step, for progress bars.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// Run (0 for the first, then restarts).
    pub run: usize,
    /// Step within the run (1-based).
    pub step: usize,
    /// Steps per run.
    pub steps: usize,
    /// Loss at this step.
    pub loss: f32,
    /// Transcript, when this step decoded.
    pub transcript: Option<String>,
}

/// The result of an attack.
#[derive(Debug, Clone)]
pub struct AttackOutcome {
    /// The adversarial signal, clipped to [-1, 1] and quantised to 16-bit steps.
    pub adversarial: Vec<f32>,
    /// `adversarial - x`.
    pub perturbation: Vec<f32>,
    /// Whether `adversarial` meets the goal: the verdict of the attack, decided here once
    /// (the CLI, `eval` and `bench` report it as it is).
    pub success: bool,
    /// Transcript of `adversarial` (the attack's decoding).
    pub transcript: String,
    /// Gradient steps taken, over all runs.
    pub steps: usize,
    /// Loss at the kept point.
    pub loss: f32,
    /// Whether the attack stopped because it was cancelled.
    pub cancelled: bool,
}

/// Attacks work on one 30-s window: 1 to 480000 samples at 16 kHz.
pub fn check_input(x: &[f32]) -> Result<()> {
    if x.is_empty() || x.len() > N_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "attacks work on 1 to {N_SAMPLES} samples (30 s at 16 kHz), got {}",
            x.len()
        )));
    }
    Ok(())
}

/// `x + δ`, clipped to [-1, 1] and quantised as a 16-bit WAV stores it.
pub fn quantized_sum(x: &[f32], delta: &[f32]) -> Vec<f32> {
    quantized_sum_within(x, delta, None)
}

/// [`quantized_sum`] that keeps every sample's change within `linf`, if given: where rounding
/// to the nearest 16-bit level would take it past the bound (|δ| at the bound and not on a
/// level, as 0.002 = 65.5 levels is not), the level on `x`'s side is taken instead, so the
/// written example honours the bound the attack was given.
pub fn quantized_sum_within(x: &[f32], delta: &[f32], linf: Option<f32>) -> Vec<f32> {
    x.iter()
        .zip(delta)
        .map(|(a, d)| {
            let q = quantize_i16(a + d);
            let v = q as f32 / 32768.0;
            match linf {
                Some(bound) if (v - a).abs() > bound => {
                    let toward = if v > *a {
                        q.saturating_sub(1)
                    } else {
                        q.saturating_add(1)
                    };
                    toward as f32 / 32768.0
                }
                _ => v,
            }
        })
        .collect()
}
