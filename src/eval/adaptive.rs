//! The adaptive part of an evaluation: the matrix's PGD/FGSM made through each defence
//! ([`DefenseChannel`]) and to evade each transcript-comparing detector ([`DetectorChannel`]),
//! and every signal heard over the air (fixed draws of a playback channel).

use super::{defended, AdversarialSink, DefendedRecord, EvalConfig, Made};
use crate::attack::channel::Channel;
use crate::attack::{eot, run_attack_through, AttackConfig, AttackOutcome};
use crate::defend::adaptive::DefenseChannel;
use crate::defend::Defense;
use crate::detect::adaptive::DetectorChannel;
use crate::detect::{Context, Input};
use crate::metrics::{linf, snr_db, wer};
use crate::model::LoadedModel;
use crate::objective::{Goal, Objective};
use crate::transcribe::{transcribe, Transcript};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The same attack and bound run through one defence (it knows the defence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveRecord {
    /// How the gradient passed through the defence ([`DefenseChannel::gradient`]).
    pub gradient: String,
    /// The adaptive example, defended and judged.
    pub defended: DefendedRecord,
    /// Undefended transcript of the adaptive example.
    pub transcript: String,
    /// Signal-to-perturbation ratio (dB).
    pub snr_db: f64,
    /// Largest |δ|.
    pub linf: f64,
    /// Gradient steps taken.
    pub steps: usize,
    /// Wall time.
    pub seconds: f64,
}

/// The same attack and bound made to evade one detector
/// ([`crate::detect::adaptive::DetectorChannel`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvasionRecord {
    /// What each view was driven to (the plain signal first).
    pub targets: Vec<String>,
    /// Whether every view was heard as its target (the goal met, the detector comparing equal
    /// transcripts).
    pub consistent: bool,
    /// Whether the goal was met (undefended).
    pub success: bool,
    /// Transcript of the evasive example.
    pub transcript: String,
    /// The detector's score of it.
    pub score: f64,
    /// Signal-to-perturbation ratio (dB).
    pub snr_db: f64,
    /// Gradient steps taken.
    pub steps: usize,
    /// Wall time.
    pub seconds: f64,
}

/// A signal heard over the air: through each fixed draw of the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirRecord {
    /// The transcript of each draw.
    pub transcripts: Vec<String>,
    /// Mean WER of those against the clean transcript.
    pub wer: f64,
    /// Share of the draws whose transcript meets the goal.
    pub goal_met: f64,
}

/// One example as the adaptive attacks see it.
pub(crate) struct Example<'a> {
    /// The models (the first attacked; a vote uses them all).
    pub models: &'a [&'a LoadedModel],
    /// The clean input.
    pub x: &'a [f32],
    /// Its position in the manifest (seeds its over-the-air draws).
    pub index: usize,
    /// The goal.
    pub goal: &'a Goal,
    /// The clean transcript by the attacked model.
    pub clean: &'a Transcript,
    /// The attack's objective on the attacked model.
    pub objective: &'a Objective,
    /// The evaluation's settings.
    pub cfg: &'a EvalConfig,
    /// The detectors' recogniser.
    pub ctx: &'a Context<'a>,
}

/// One cell of the matrix on one example: the attack, its bound and its settings.
pub(crate) struct Run<'a> {
    /// The example.
    pub example: &'a Example<'a>,
    /// The cell (attack and bound).
    pub made: Made<'a>,
    /// Its settings.
    pub pgd: &'a AttackConfig,
}

/// The cell's attack with its gradient through `channel`, timed; its example goes to `sink`
/// under `label`.
fn attack_through(
    run: &Run,
    channel: &dyn Channel,
    label: &str,
    cancel: &AtomicBool,
    sink: &mut AdversarialSink,
) -> Result<(AttackOutcome, f64)> {
    let ex = run.example;
    let start = Instant::now();
    let a = run_attack_through(
        ex.models[0],
        ex.x,
        ex.objective,
        run.pgd,
        Some(channel),
        cancel,
        &mut |_| {},
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let made = Made {
        adapted: Some(label),
        ..run.made
    };
    sink(&made, &a.adversarial)?;
    Ok((a, seconds))
}

/// The cell's attack through each defence but `none`.
pub(crate) fn through_defenses(
    run: &Run,
    cancel: &AtomicBool,
    sink: &mut AdversarialSink,
) -> Result<BTreeMap<String, AdaptiveRecord>> {
    let ex = run.example;
    let cfg = ex.cfg;
    let mut records = BTreeMap::new();
    for defense in cfg.defenses.iter().filter(|d| **d != Defense::None) {
        let channel = DefenseChannel::new(
            defense,
            ex.models,
            ex.x,
            ex.goal,
            ex.clean,
            &cfg.decode,
            cfg.adaptive_samples,
        )?;
        let label = format!("adaptive:{}", defense.name());
        let (a, seconds) = attack_through(run, &channel, &label, cancel, sink)?;
        let heard = defended(
            defense,
            ex.models,
            cfg,
            &a.adversarial,
            &ex.clean.text,
            ex.goal,
        )?;
        records.insert(
            defense.name(),
            AdaptiveRecord {
                gradient: channel.gradient(),
                defended: heard,
                transcript: a.transcript,
                snr_db: snr_db(ex.x, &a.perturbation),
                linf: linf(&a.perturbation),
                steps: a.steps,
                seconds,
            },
        );
    }
    Ok(records)
}

/// The cell's attack made to evade each transcript-comparing detector; `success` is the
/// transcript of the plain attack's success, if it succeeded.
pub(crate) fn evading_detectors(
    run: &Run,
    success: Option<&str>,
    cancel: &AtomicBool,
    sink: &mut AdversarialSink,
) -> Result<BTreeMap<String, EvasionRecord>> {
    let ex = run.example;
    let model = ex.models[0];
    let mut records = BTreeMap::new();
    for detector in &ex.cfg.detectors {
        let Some(channel) = DetectorChannel::new(
            detector,
            model,
            ex.x,
            ex.goal,
            ex.clean,
            success,
            &ex.cfg.decode,
        )?
        else {
            continue;
        };
        let label = format!("evasive:{}", detector.name());
        let (a, seconds) = attack_through(run, &channel, &label, cancel, sink)?;
        let input = Input::new(&a.adversarial);
        records.insert(
            detector.name(),
            EvasionRecord {
                targets: channel.targets(),
                consistent: a.success,
                success: ex.goal.is_met(&ex.clean.text, &a.transcript),
                score: detector.score(ex.ctx, &input)?,
                transcript: a.transcript,
                snr_db: snr_db(ex.x, &a.perturbation),
                steps: a.steps,
                seconds,
            },
        );
    }
    Ok(records)
}

/// `y` heard over the air (with the evaluation's channel): through the example's fixed draws,
/// the same for every signal of the example.
pub(crate) fn over_the_air(ex: &Example, y: &[f32]) -> Result<Option<AirRecord>> {
    let Some(channel) = &ex.cfg.over_the_air else {
        return Ok(None);
    };
    let mut rng = crate::rng::Rng::new(ex.cfg.seed ^ 0xA1B ^ ((ex.index as u64) << 16));
    let mut transcripts = Vec::new();
    for _ in 0..channel.check_transforms.max(1) {
        // Drawn for the clean input's level: the same room and noise for every signal.
        let t = eot::Transform::sample(channel, ex.x, crate::audio::SAMPLE_RATE, &mut rng);
        transcripts.push(transcribe(ex.models[0], &t.apply(y), &ex.cfg.decode)?.text);
    }
    let n = transcripts.len() as f64;
    Ok(Some(AirRecord {
        wer: transcripts
            .iter()
            .map(|t| wer(&ex.clean.text, t))
            .sum::<f64>()
            / n,
        goal_met: transcripts
            .iter()
            .filter(|t| ex.goal.is_met(&ex.clean.text, t))
            .count() as f64
            / n,
        transcripts,
    }))
}
