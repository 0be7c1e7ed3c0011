//! Universal perturbations: one δ that works on a whole set of utterances.
//!
//! - [`UniversalMode::Additive`]: δ of a fixed length, tiled over the input from a random offset
//!   (so it works at any alignment), trained by minibatch gradient steps over the set towards
//!   a common goal (untargeted, a fixed target, or mute).
//! - [`UniversalMode::PrefixMute`]: a short segment prepended to the input that makes the model
//!   output nothing (Raina et al. 2024: 0.64 s at amplitude ≤ 0.02).
//! - [`UniversalMode::OverlayMute`]: the same segment added over the input's first samples
//!   instead, so that a real-time effect could play it without delaying the stream (measured
//!   2026-12-07: speech under it wins; it mutes no held-out recording).
//!
//! Every forward pass sees the combined signal clipped and quantised to 16 bits.

use super::step::{Rule, StepSpace, Stepper};
use super::StepInfo;
use crate::audio::quantize_i16;
use crate::masking::{MaskingConfig, MaskingThreshold};
use crate::mel::{FrontEnd, MelFrontEnd, N_SAMPLES};
use crate::metrics::l2;
use crate::metrics::wer;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::perturb::Domain;
use crate::rng::Rng;
use crate::transcribe::transcribe;
use crate::{Error, Result};
use candle_core::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a universal perturbation is combined with an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UniversalMode {
    /// Added to the input, tiled (looped) over its length from an offset.
    Additive,
    /// Prepended to the input; trained to mute the recogniser.
    PrefixMute,
    /// Added over the input's first samples (an input shorter than the segment is padded with
    /// silence to its length); trained to mute the recogniser (measured not to, on held-out
    /// speech that starts at once).
    OverlayMute,
}

impl UniversalMode {
    /// The perturbation combined with `x`: additive from `offset` (tiled), or prepended;
    /// clipped and quantised as a 16-bit WAV stores it.
    pub fn apply(self, delta: &[f32], x: &[f32], offset: usize) -> Vec<f32> {
        let q = |v: f32| quantize_i16(v) as f32 / 32768.0;
        match self {
            UniversalMode::Additive if delta.is_empty() => x.iter().map(|v| q(*v)).collect(),
            UniversalMode::Additive => x
                .iter()
                .enumerate()
                .map(|(i, v)| q(v + delta[(i + offset) % delta.len()]))
                .collect(),
            UniversalMode::PrefixMute => delta.iter().chain(x).map(|v| q(*v)).collect(),
            UniversalMode::OverlayMute => (0..x.len().max(delta.len()))
                .map(|i| q(x.get(i).copied().unwrap_or(0.0) + delta.get(i).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    /// Whether the perturbation is a segment at the start trained to mute (prefix or overlay).
    pub fn is_mute_segment(self) -> bool {
        matches!(self, UniversalMode::PrefixMute | UniversalMode::OverlayMute)
    }
}

/// A decoding a mute segment is trained against: what "nothing" means there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MuteDecoding {
    /// Timestamp decoding (Whisper's default `transcribe`): end-of-text right after the first
    /// timestamp `<|0.00|>`, an empty window.
    Timestamps,
    /// Plain decoding (`<|notimestamps|>`), which may not start with end-of-text: `" ."` and
    /// end-of-text, a transcript that normalises to nothing.
    Plain,
}

impl MuteDecoding {
    /// Both, as the command line names them.
    pub const ALL: [MuteDecoding; 2] = [MuteDecoding::Timestamps, MuteDecoding::Plain];

    /// The command line's name.
    pub fn name(self) -> &'static str {
        match self {
            MuteDecoding::Timestamps => "timestamps",
            MuteDecoding::Plain => "plain",
        }
    }

    /// Decoding options of this kind (beam `beam`).
    pub fn decode(self, beam: usize) -> DecodeOptions {
        DecodeOptions {
            beam_size: beam.max(1),
            timestamps: self == MuteDecoding::Timestamps,
            ..Default::default()
        }
    }
}

impl std::str::FromStr for MuteDecoding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| crate::error::unknown_name("decoding", s, &["timestamps", "plain"]))
    }
}

/// Per-input shaping of an additive perturbation where it is applied: each input gets the tiled
/// δ projected under its own psychoacoustic masking threshold (minus a margin), then scaled to
/// keep a minimum SNR to that input. Training sees the shaped perturbation (the gradient passes
/// the shaping unchanged: a straight-through estimate).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shaping {
    /// Minimum signal-to-perturbation ratio per input (dB).
    pub snr_db: Option<f32>,
    /// Keep every T-F bin this many dB under the input's masking threshold.
    pub masking_margin_db: Option<f32>,
}

impl Shaping {
    /// Whether anything is shaped.
    pub fn is_active(&self) -> bool {
        self.snr_db.is_some() || self.masking_margin_db.is_some()
    }

    /// The masking threshold `x` needs, if any.
    pub fn threshold_for(&self, x: &[f32]) -> Result<Option<MaskingThreshold>> {
        match self.masking_margin_db {
            Some(_) => Ok(Some(MaskingThreshold::compute(
                x,
                MaskingConfig::default(),
            )?)),
            None => Ok(None),
        }
    }

    /// Shape `perturbation` (as long as `x`) for input `x` in place.
    pub fn shape(
        &self,
        perturbation: &mut [f32],
        x: &[f32],
        threshold: Option<&MaskingThreshold>,
    ) -> Result<()> {
        if let Some(margin) = self.masking_margin_db {
            let t = threshold.ok_or_else(|| {
                Error::Internal("masking shaping needs the input's threshold".into())
            })?;
            t.project(perturbation, margin, 30, None)?;
        }
        if let Some(snr) = self.snr_db {
            let limit = l2(x) * 10f64.powf(-snr as f64 / 20.0);
            let norm = l2(perturbation);
            if norm > limit && norm > 0.0 {
                let k = (limit / norm) as f32;
                perturbation.iter_mut().for_each(|d| *d *= k);
            }
        }
        Ok(())
    }
}

/// δ tiled over `x` from `offset`, shaped for `x`, added, clipped and quantised (additive mode).
pub fn apply_shaped(
    delta: &[f32],
    x: &[f32],
    offset: usize,
    shaping: &Shaping,
    threshold: Option<&MaskingThreshold>,
) -> Result<Vec<f32>> {
    if delta.is_empty() || !shaping.is_active() {
        return Ok(UniversalMode::Additive.apply(delta, x, offset));
    }
    let mut tiled: Vec<f32> = (0..x.len())
        .map(|i| delta[(i + offset) % delta.len()])
        .collect();
    shaping.shape(&mut tiled, x, threshold)?;
    let sum: Vec<f32> = x.iter().zip(&tiled).map(|(a, b)| a + b).collect();
    Ok(UniversalMode::Additive.apply(&[], &sum, 0))
}

/// Settings of universal training.
#[derive(Debug, Clone)]
pub struct UniversalConfig {
    /// Additive or prefix.
    pub mode: UniversalMode,
    /// Length of δ in samples (16 kHz).
    pub length: usize,
    /// Largest absolute sample value of δ.
    pub linf: f32,
    /// Minibatch steps.
    pub steps: usize,
    /// Utterances per minibatch.
    pub batch: usize,
    /// Largest sample change of one (Adam) step.
    pub step_size: f32,
    /// Seed of the minibatches, offsets and the start.
    pub seed: u64,
    /// Per-input shaping (additive mode only).
    pub shaping: Shaping,
    /// The front ends the training takes turns over, draw by draw (OpenAI's padded audio by
    /// default; faster-whisper's padded features so that what is learnt holds where
    /// faster-whisper reads short recordings: see [`FrontEnd`]).
    pub front_ends: Vec<FrontEnd>,
    /// Mute modes: each draw puts up to this many samples of digital silence before the
    /// input, so that the segment need not start exactly where the recogniser's input does
    /// (expectation over alignment; 0: exactly there).
    pub max_shift: usize,
    /// Mute modes: the decodings the draws take turns over (after the front ends), each with
    /// its own idea of nothing (see [`MuteDecoding`]); default timestamps alone.
    pub decodings: Vec<MuteDecoding>,
    /// Where training starts (e.g. an earlier perturbation, to train on with other settings):
    /// `length` samples, clipped to the bound; default uniform noise at a tenth of the bound.
    pub init: Option<Vec<f32>>,
}

impl UniversalConfig {
    /// Raina et al.'s prefix: 0.64 s at amplitude 0.02.
    pub fn prefix_mute() -> Self {
        UniversalConfig {
            mode: UniversalMode::PrefixMute,
            length: 10_240,
            linf: 0.02,
            steps: 100,
            batch: 2,
            step_size: 0.004,
            seed: 0,
            shaping: Shaping::default(),
            front_ends: vec![FrontEnd::Openai],
            max_shift: 0,
            decodings: vec![MuteDecoding::Timestamps],
            init: None,
        }
    }

    /// A 1-s additive perturbation at amplitude 0.02.
    pub fn additive() -> Self {
        UniversalConfig {
            mode: UniversalMode::Additive,
            length: 16_000,
            step_size: 0.002,
            ..Self::prefix_mute()
        }
    }
}

/// One utterance of a training or evaluation set, with its clean transcript.
pub struct Utterance {
    /// A name for reports (e.g. the file).
    pub name: String,
    /// 16-kHz samples.
    pub samples: Vec<f32>,
    /// The goal bound to this utterance.
    pub objective: Objective,
}

/// Transcribe each clean utterance and bind `goal` to it (prefix mode always mutes). A
/// recording longer than Whisper's 30-s window becomes one utterance per window, as long-form
/// transcription without timestamps reads it (consecutive 30-s windows from the start, a short
/// tail dropped as [`crate::transcribe::windows`] does), named `NAME@Ts` by the window's start;
/// a window of digital silence, or one the model hears as nothing, is left out. The perturbation then starts where
/// each window starts.
pub fn prepare(
    model: &LoadedModel,
    set: Vec<(String, Vec<f32>)>,
    goal: &Goal,
    decode: &DecodeOptions,
) -> Result<Vec<Utterance>> {
    let mut out = Vec::new();
    for (name, samples) in set {
        if samples.is_empty() {
            return Err(Error::InvalidArgument(format!("{name}: no samples")));
        }
        let long = samples.len() > N_SAMPLES;
        let pieces: Vec<(String, Vec<f32>)> = if long {
            crate::transcribe::windows(&samples)
                .into_iter()
                .map(|(start, w)| {
                    let at = start / crate::audio::SAMPLE_RATE as usize;
                    (format!("{name}@{at}s"), w.to_vec())
                })
                .collect()
        } else {
            vec![(name, samples)]
        };
        for (name, samples) in pieces {
            // Whisper hallucinates on digital silence ("you"): such a window has no speech to
            // move, nor one heard as nothing.
            if long && samples.iter().all(|v| v.abs() < super::windowed::SILENCE) {
                continue;
            }
            let clean = transcribe(model, &samples, decode)?;
            if long && clean.text.trim().is_empty() {
                continue;
            }
            let objective =
                Objective::for_decoding(model, goal.clone(), &clean.text, &clean.tokens, decode)
                    .map_err(|e| Error::InvalidArgument(format!("{name}: {e}")))?;
            out.push(Utterance {
                name,
                samples,
                objective,
            });
        }
    }
    Ok(out)
}

/// Train a universal perturbation on `set`.
pub fn train_universal(
    model: &LoadedModel,
    set: &[Utterance],
    cfg: &UniversalConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<Vec<f32>> {
    train_universal_ensemble(&[model], set, cfg, cancel, on_step)
}

/// Train a mute segment for several models at once (e.g. tiny.en and Whisper base): the draws
/// take turns over the models, then (within a model) its front ends and decodings, each model
/// with its own idea of nothing. `set` is prepared with the first model (a mute goal does not
/// depend on the clean transcript). One model: [`train_universal`], any mode; several: the mute
/// modes only (an additive goal is bound to one model's transcripts), on one device.
pub fn train_universal_ensemble(
    models: &[&LoadedModel],
    set: &[Utterance],
    cfg: &UniversalConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<Vec<f32>> {
    let Some(&model) = models.first() else {
        return Err(Error::InvalidArgument(
            "universal training needs a model".into(),
        ));
    };
    if models.len() > 1 && !cfg.mode.is_mute_segment() {
        return Err(Error::InvalidArgument(
            "training for several models at once applies to the mute modes (an additive goal \
             is bound to one model's transcripts)"
                .into(),
        ));
    }
    if models
        .iter()
        .any(|m| !m.whisper.device().same_device(model.whisper.device()))
    {
        return Err(Error::InvalidArgument(
            "the models of one training must be on one device".into(),
        ));
    }
    if set.is_empty() {
        return Err(Error::InvalidArgument(
            "universal training needs at least one utterance".into(),
        ));
    }
    if cfg.length == 0 || !(cfg.linf > 0.0 && cfg.step_size > 0.0) {
        return Err(Error::InvalidArgument(
            "a universal perturbation needs a length, a positive L∞ bound and step size".into(),
        ));
    }
    if cfg.mode.is_mute_segment() && cfg.shaping.is_active() {
        return Err(Error::InvalidArgument(
            "SNR and masking shaping apply to additive perturbations (a mute segment is trained \
             for any input's start)"
                .into(),
        ));
    }
    let thresholds: Vec<Option<MaskingThreshold>> = set
        .iter()
        .map(|u| cfg.shaping.threshold_for(&u.samples))
        .collect::<Result<_>>()?;
    if cfg.max_shift > 0 && !cfg.mode.is_mute_segment() {
        return Err(Error::InvalidArgument(
            "a shift applies to the mute modes (the additive mode is trained at every offset)"
                .into(),
        ));
    }
    if cfg.mode.is_mute_segment() {
        let prefix = if cfg.mode == UniversalMode::PrefixMute {
            cfg.length
        } else {
            0
        };
        if let Some(u) = set
            .iter()
            .find(|u| u.samples.len().max(cfg.length) + prefix + cfg.max_shift > N_SAMPLES)
        {
            return Err(Error::InvalidArgument(format!(
                "{}: with the segment and its shift it is longer than 30 s",
                u.name
            )));
        }
    }
    if cfg.front_ends.is_empty() {
        return Err(Error::InvalidArgument(
            "universal training needs at least one front end".into(),
        ));
    }
    if cfg.decodings.is_empty()
        || (!cfg.mode.is_mute_segment() && cfg.decodings != [MuteDecoding::Timestamps])
    {
        return Err(Error::InvalidArgument(
            "the decodings to mute apply to the mute modes, at least one of them".into(),
        ));
    }
    // Mute modes: each utterance's goal for every model under every decoding trained against
    // (indexed [model][utterance][decoding]).
    let mutes: Vec<Vec<Vec<Objective>>> = if cfg.mode.is_mute_segment() {
        models
            .iter()
            .map(|&m| {
                set.iter()
                    .map(|u| {
                        cfg.decodings
                            .iter()
                            .map(|d| {
                                Objective::for_decoding(
                                    m,
                                    Goal::Mute,
                                    &u.objective.original,
                                    &[],
                                    &d.decode(1),
                                )
                            })
                            .collect()
                    })
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    // A draw's view: its model, then its front end, then its decoding (one unless a mute mode
    // trains several), taking turns draw by draw.
    let per_model = cfg.front_ends.len() * cfg.decodings.len();
    let views = models.len() * per_model;
    // Each model's front ends (their mel bins may differ).
    let fronts: Vec<Vec<MelFrontEnd>> = models
        .iter()
        .map(|m| {
            let base = MelFrontEnd::new(m.whisper.config().num_mel_bins, m.whisper.device())?;
            Ok(cfg
                .front_ends
                .iter()
                .map(|&k| base.clone().as_kind(k))
                .collect())
        })
        .collect::<Result<_>>()?;
    let device = model.whisper.device().clone();
    let mut rng = Rng::new(cfg.seed);
    let noise: Vec<f32> = (0..cfg.length)
        .map(|_| rng.symmetric(0.1 * cfg.linf))
        .collect();
    let mut delta = match &cfg.init {
        None => noise,
        Some(init) if init.len() != cfg.length || init.iter().any(|v| !v.is_finite()) => {
            return Err(Error::InvalidArgument(format!(
                "the starting perturbation has {} samples (finite ones needed), the training {}",
                init.len(),
                cfg.length
            )))
        }
        Some(init) => init.iter().map(|v| v.clamp(-cfg.linf, cfg.linf)).collect(),
    };
    let mut stepper = Stepper::new(Rule::Adam, StepSpace::new(Domain::Waveform, cfg.length)?);
    let batch = cfg.batch.clamp(1, set.len());
    for step in 1..=cfg.steps {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let mut grad = vec![0.0f32; cfg.length];
        let mut loss = 0.0;
        // The minibatch is drawn first, then scored two utterances at a time (sharing the
        // model's thread pool: one evaluation's less parallel parts leave room for the other),
        // and summed in draw order, so the result does not depend on the timing.
        // The offset: where the tiled additive δ starts, or a mute segment's shift.
        let draws: Vec<(usize, usize, usize)> = (0..batch)
            .map(|i| {
                let view = ((step - 1) * batch + i) % views;
                let offset = match cfg.mode {
                    UniversalMode::Additive => rng.below(cfg.length),
                    _ if cfg.max_shift > 0 => rng.below(cfg.max_shift + 1),
                    _ => 0,
                };
                (rng.below(set.len()), offset, view)
            })
            .collect();
        let score = |&(which, offset, view): &(usize, usize, usize)| -> Result<(f32, Vec<f32>)> {
            let u = &set[which];
            let y = match cfg.mode {
                UniversalMode::Additive => apply_shaped(
                    &delta,
                    &u.samples,
                    offset,
                    &cfg.shaping,
                    thresholds[which].as_ref(),
                )?,
                UniversalMode::PrefixMute | UniversalMode::OverlayMute => {
                    let mut y = vec![0.0; offset];
                    y.extend(cfg.mode.apply(&delta, &u.samples, 0));
                    y
                }
            };
            let len = y.len();
            let wave = Tensor::from_vec(y, len, &device)?;
            let (m, within) = (view / per_model, view % per_model);
            let front_ends = cfg.front_ends.len();
            let front = &fronts[m][within % front_ends];
            match mutes.get(m) {
                Some(goals) => {
                    goals[which][within / front_ends].loss_and_grad(models[m], front, &wave)
                }
                None => u.objective.loss_and_grad(model, front, &wave),
            }
        };
        for pair in draws.chunks(2) {
            let scored: Vec<Result<(f32, Vec<f32>)>> = std::thread::scope(|s| {
                let second = pair.get(1).map(|d| s.spawn(|| score(d)));
                let first = score(&pair[0]);
                let mut out = vec![first];
                if let Some(h) = second {
                    // A panic in the worker is re-raised here, as if it had run inline.
                    out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
                }
                out
            });
            for (&(_, offset, _), r) in pair.iter().zip(scored) {
                let (l, g) = r?;
                loss += l / batch as f32;
                match cfg.mode {
                    UniversalMode::Additive => {
                        for (i, gi) in g.iter().enumerate() {
                            grad[(i + offset) % cfg.length] += gi / batch as f32;
                        }
                    }
                    UniversalMode::PrefixMute | UniversalMode::OverlayMute => {
                        // The segment's samples come first, after the shift.
                        for (acc, gi) in grad.iter_mut().zip(&g[offset.min(g.len())..]) {
                            *acc += gi / batch as f32;
                        }
                    }
                }
            }
        }
        let dir = stepper.direction(&grad)?;
        for (d, s) in delta.iter_mut().zip(&dir) {
            *d = (*d - cfg.step_size * s).clamp(-cfg.linf, cfg.linf);
        }
        on_step(&StepInfo {
            run: 0,
            step,
            steps: cfg.steps,
            loss,
            transcript: None,
        });
    }
    Ok(delta)
}

/// The outcome of a universal perturbation on one utterance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UtteranceResult {
    /// The utterance's name.
    pub name: String,
    /// Transcript of the clean utterance.
    pub clean: String,
    /// Transcript with the perturbation.
    pub adversarial: String,
    /// Whether the goal was met.
    pub success: bool,
    /// WER of the adversarial transcript against the clean one.
    pub wer: f64,
}

/// A universal perturbation evaluated on a set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Per utterance.
    pub results: Vec<UtteranceResult>,
    /// Share of utterances where the goal was met.
    pub success_rate: f64,
    /// Mean WER against the clean transcripts.
    pub mean_wer: f64,
}

impl Evaluation {
    /// The per-utterance results with their success rate and mean WER.
    pub fn from_results(results: Vec<UtteranceResult>) -> Self {
        let n = results.len().max(1) as f64;
        Evaluation {
            success_rate: results.iter().filter(|r| r.success).count() as f64 / n,
            mean_wer: results.iter().map(|r| r.wer).sum::<f64>() / n,
            results,
        }
    }
}

/// Apply δ to every utterance (additive: from a random offset) and judge each.
pub fn evaluate_universal(
    model: &LoadedModel,
    set: &[Utterance],
    mode: UniversalMode,
    delta: &[f32],
    decode: &DecodeOptions,
    seed: u64,
) -> Result<Evaluation> {
    evaluate_universal_shaped(model, set, mode, delta, &Shaping::default(), decode, seed)
}

/// As [`evaluate_universal`], with the additive perturbation shaped for each input.
pub fn evaluate_universal_shaped(
    model: &LoadedModel,
    set: &[Utterance],
    mode: UniversalMode,
    delta: &[f32],
    shaping: &Shaping,
    decode: &DecodeOptions,
    seed: u64,
) -> Result<Evaluation> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut results = Vec::with_capacity(set.len());
    for u in set {
        let offset = if delta.is_empty() {
            0
        } else {
            rng.below(delta.len())
        };
        let y = match mode {
            UniversalMode::Additive if shaping.is_active() => {
                let t = shaping.threshold_for(&u.samples)?;
                apply_shaped(delta, &u.samples, offset, shaping, t.as_ref())?
            }
            _ => mode.apply(delta, &u.samples, offset),
        };
        let text = transcribe(model, &y, decode)?.text;
        results.push(UtteranceResult {
            name: u.name.clone(),
            clean: u.objective.original.clone(),
            success: u.objective.is_met(&text),
            wer: wer(&u.objective.original, &text),
            adversarial: text,
        });
    }
    Ok(Evaluation::from_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::snr_db;

    #[test]
    fn shaped_perturbations_keep_the_snr_and_sit_under_the_masking_threshold() {
        // Speech-like input: tone bursts with pauses.
        let x: Vec<f32> = (0..16_000)
            .map(|i| {
                let on = (i / 2000) % 2 == 0;
                let t = i as f32 / 16_000.0;
                if on {
                    0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                        + 0.1 * (2.0 * std::f32::consts::PI * 1_300.0 * t).sin()
                } else {
                    0.0
                }
            })
            .collect();
        let mut rng = crate::rng::Rng::new(4);
        let delta: Vec<f32> = (0..4_000).map(|_| rng.symmetric(0.02)).collect();
        let shaping = Shaping {
            snr_db: Some(25.0),
            masking_margin_db: Some(0.0),
        };
        let threshold = shaping.threshold_for(&x).unwrap();
        for offset in [0, 1_234] {
            let y = apply_shaped(&delta, &x, offset, &shaping, threshold.as_ref()).unwrap();
            let p: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            assert!(snr_db(&x, &p) >= 25.0 - 0.1, "{}", snr_db(&x, &p));
            let stats = threshold.as_ref().unwrap().stats(&p).unwrap();
            assert!(stats.energy_under_threshold >= 0.95, "{stats:?}");
        }
        // Unshaped, the same δ is neither.
        let raw = UniversalMode::Additive.apply(&delta, &x, 0);
        let p: Vec<f32> = raw.iter().zip(&x).map(|(a, b)| a - b).collect();
        assert!(snr_db(&x, &p) < 25.0);
        // Masking shaping needs the threshold.
        assert!(Shaping::default()
            .shape(&mut [0.0; 4], &[0.0; 4], None)
            .is_ok());
        assert!(Shaping {
            masking_margin_db: Some(0.0),
            ..Default::default()
        }
        .shape(&mut [0.0; 4], &[0.0; 4], None)
        .is_err());
    }

    #[test]
    fn mute_segments_are_prepended_or_added_over_the_start() {
        let delta = [0.25f32, -0.5];
        let x = [0.125f32, 0.125, 0.5];
        assert_eq!(
            UniversalMode::PrefixMute.apply(&delta, &x, 3),
            vec![0.25, -0.5, 0.125, 0.125, 0.5]
        );
        assert_eq!(
            UniversalMode::OverlayMute.apply(&delta, &x, 3),
            vec![0.375, -0.375, 0.5]
        );
        // A recording shorter than the segment is padded with silence to its length.
        assert_eq!(
            UniversalMode::OverlayMute.apply(&delta, &x[..1], 0),
            vec![0.375, -0.5]
        );
        assert!(UniversalMode::OverlayMute.is_mute_segment());
        assert!(!UniversalMode::Additive.is_mute_segment());
    }
}
