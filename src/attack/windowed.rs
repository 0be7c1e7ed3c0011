//! An attack on a recording of any length, window by window.
//!
//! Whisper reads at most 30 s at a time, so a longer recording is attacked as consecutive
//! windows of at most [`N_SAMPLES`] samples, each with its own clean transcript and goal, and
//! the perturbations are laid end to end. The windows start at multiples of the window length
//! from the recording's start: that is where OpenAI's and faster-whisper's long-form
//! transcription start reading without timestamps, and where they start the first window with
//! them (later windows with timestamps start where the previous one's last complete segment
//! ended, so a window's perturbation is then heard partly in the next window: an assumption
//! reports state). A window of digital silence, or one that transcribes as nothing, is left
//! untouched.

use super::plan::{attack_signal, AttackOptions};
use super::StepInfo;
use crate::masking::MaskingStats;
use crate::mel::N_SAMPLES;
use crate::metrics::snr_db;
use crate::model::LoadedModel;
use crate::objective::Goal;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;

/// What happened in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowOutcome {
    /// First sample of the window (16 kHz).
    pub start: usize,
    /// Its length in samples.
    pub len: usize,
    /// Its clean transcript.
    pub original: String,
    /// The transcript of the attacked window (the attack's own decoding).
    pub transcript: String,
    /// The attack's verdict; `false` for a window left untouched.
    pub success: bool,
    /// Why the window was left untouched (it transcribes as nothing), if it was.
    pub skipped: Option<String>,
    /// Steps the attack took.
    pub steps: usize,
    /// Wall time of the attack (seconds).
    pub seconds: f64,
    /// Signal-to-perturbation ratio of the window (dB; infinite when untouched).
    pub snr_db: f64,
    /// How the window's perturbation sits against its masking threshold (all of it under,
    /// none of the bins over, when untouched); its fields appear at this level in JSON.
    #[serde(flatten)]
    pub masking: MaskingStats,
}

/// The perturbation of a whole recording and each window's outcome.
#[derive(Debug, Clone)]
pub struct WindowedAttack {
    /// Added to the recording (16 kHz, same length; quantised as the attack wrote each window).
    pub perturbation: Vec<f32>,
    /// One per window, in order.
    pub windows: Vec<WindowOutcome>,
}

impl WindowedAttack {
    /// Windows the attack was run on (not skipped).
    pub fn attacked(&self) -> usize {
        self.windows.iter().filter(|w| w.skipped.is_none()).count()
    }

    /// Attack steps over all windows.
    pub fn steps(&self) -> usize {
        self.windows.iter().map(|w| w.steps).sum()
    }

    /// Windows whose attack succeeded.
    pub fn succeeded(&self) -> usize {
        self.windows.iter().filter(|w| w.success).count()
    }
}

/// What every window gets.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    /// The goal, set against each window's own clean transcript.
    pub goal: Goal,
    /// The attack and its bounds.
    pub options: AttackOptions,
    /// Samples per window at 16 kHz (1..=[`N_SAMPLES`]).
    pub window: usize,
}

/// A window whose every sample is under this is digital silence and is left alone.
pub(crate) const SILENCE: f32 = 1e-4;

/// Refuse a window length outside 1..=[`N_SAMPLES`].
pub fn check_window(window: usize) -> Result<()> {
    if window == 0 || window > N_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "a window holds 1 to {N_SAMPLES} samples (30 s at 16 kHz), got {window}"
        )));
    }
    Ok(())
}

/// Attack 16-kHz samples `x` of any length as `plan` says, window by window (see the module
/// documentation). `on_window` sees each
/// window's outcome as it is done, `on_step` every attack step. Cancelling ends the current
/// window's attack (keeping its point as it stands) and leaves the later windows untouched.
pub fn attack_windows(
    model: &LoadedModel,
    x: &[f32],
    plan: &WindowPlan,
    cancel: &AtomicBool,
    on_window: &mut dyn FnMut(&WindowOutcome),
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<WindowedAttack> {
    let (goal, options, window) = (&plan.goal, &plan.options, plan.window);
    if x.is_empty() {
        return Err(Error::InvalidArgument("the recording is empty".into()));
    }
    check_window(window)?;
    options.check(Some(goal))?;
    let mut perturbation = vec![0.0f32; x.len()];
    let mut windows = Vec::new();
    for (i, piece) in x.chunks(window).enumerate() {
        let start = i * window;
        let untouched = |original: String, why: String| WindowOutcome {
            start,
            len: piece.len(),
            transcript: original.clone(),
            original,
            success: false,
            skipped: Some(why),
            steps: 0,
            seconds: 0.0,
            snr_db: f64::INFINITY,
            masking: MaskingStats {
                energy_under_threshold: 1.0,
                bins_over_threshold: 0.0,
                mean_margin_db: 0.0,
            },
        };
        let outcome = if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            untouched(String::new(), "cancelled before this window".into())
        } else if piece.iter().all(|v| v.abs() < SILENCE) {
            // Whisper hallucinates on digital silence ("you"), and the masking threshold
            // there allows nothing: an attack would run all its steps for nothing.
            untouched(String::new(), "digital silence".into())
        } else {
            match attack_signal(
                model,
                piece,
                goal.clone(),
                options,
                cancel,
                &mut |_, _| {},
                on_step,
            ) {
                Ok(run) => {
                    let delta = &run.run.outcome.perturbation;
                    perturbation[start..start + piece.len()].copy_from_slice(delta);
                    WindowOutcome {
                        start,
                        len: piece.len(),
                        original: run.original.text,
                        transcript: run.run.outcome.transcript.clone(),
                        success: run.run.outcome.success,
                        skipped: None,
                        steps: run.run.outcome.steps,
                        seconds: run.seconds,
                        snr_db: snr_db(piece, delta),
                        masking: run.masking,
                    }
                }
                // Nothing to move away from (an untargeted goal on silence): the window stays
                // as it is.
                Err(Error::NothingToAttack(why)) => untouched(String::new(), why),
                Err(e) => return Err(e),
            }
        };
        on_window(&outcome);
        windows.push(outcome);
    }
    Ok(WindowedAttack {
        perturbation,
        windows,
    })
}
