//! A universal source for Cloak, trained through Cloak itself.
//!
//! Cloak's universal mode loops a source and shapes every frame of it under the input's masking
//! threshold, so what a recogniser hears is not the source but its shaped version. This trains
//! the source through that shaping, exactly as the plugin applies it at the host's rate
//! ([`CloakShaper`] on each input's [`ShapingPlan`]): the 16-kHz source is resampled to the
//! host rate as the plugin loads it, shaped for the input (which was resampled up as the host
//! plays it) from a random loop offset (the stream's start relative to the loop is unknown),
//! resampled back to 16 kHz as the recogniser gets it, added and quantised; the gradient of an
//! untargeted loss flows back the same way (the resamplers' adjoints are the opposite
//! resamplers, scaled by the rate ratio).
//!
//! The loss pushes every token of the clean transcript (plain decoding, teacher forced) under
//! the model's alternatives: the mean over the tokens of `min(CE_i, cap)`, maximised, so tokens
//! already far from being emitted stop taking the steps from those that are not.

use super::cloak_shaping::CloakShaper;
use super::step::{Rule, StepSpace, Stepper};
use super::universal::{Evaluation, UtteranceResult};
use super::StepInfo;
use crate::audio::{quantize_i16, resample, SAMPLE_RATE};
use crate::eval::cloak::cloak_recording;
use crate::gradient::{loss_and_waveform_grad, TargetSequence};
use crate::mel::{MelFrontEnd, N_SAMPLES};
use crate::metrics::wer;
use crate::model::{DecodeOptions, LoadedModel};
use crate::perturb::Domain;
use crate::rng::Rng;
use crate::stream::cloak::{CloakChannel, CloakMode, CloakSettings, ShapingPlan};
use crate::stream::frame_size_for;
use crate::transcribe::transcribe;
use crate::{Error, Result};
use candle_core::{Tensor, D};
use std::sync::atomic::{AtomicBool, Ordering};

/// Settings of the training.
#[derive(Debug, Clone)]
pub struct CloakSourceConfig {
    /// The host rate Cloak runs at in training (the plugin's usual 48 kHz by default).
    pub rate: u32,
    /// Cloak's settings (margin, depth, band) the source is trained under.
    pub settings: CloakSettings,
    /// Length of the source at 16 kHz.
    pub length: usize,
    /// Largest absolute sample value of the source (Cloak's shaping bounds what is added). The
    /// source starts as uniform noise at this bound, loud enough that Cloak scales nearly
    /// every bin down to its allowance: training then shapes what fills the allowance (on one
    /// LibriVox clip at margin 0, a start at a tenth of the bound moved the loss half as far
    /// in 40 steps).
    pub linf: f32,
    /// Minibatch steps.
    pub steps: usize,
    /// Utterances per minibatch.
    pub batch: usize,
    /// Largest sample change of one Adam step.
    pub step_size: f32,
    /// Per-token cross-entropy (nats) past which a token stops being pushed.
    pub cap: f32,
    /// Seed of the start, the minibatches and the offsets.
    pub seed: u64,
    /// Train for a loop that starts with each recording (Cloak's loop restarts with the
    /// stream: a render from the start, a recording made from when Cloak starts) instead of
    /// at any offset.
    pub aligned: bool,
}

impl Default for CloakSourceConfig {
    fn default() -> Self {
        CloakSourceConfig {
            rate: 48_000,
            settings: CloakSettings {
                mode: CloakMode::Universal,
                ..CloakSettings::default()
            },
            length: SAMPLE_RATE as usize,
            linf: 0.5,
            steps: 300,
            batch: 4,
            step_size: 0.1,
            cap: 6.0,
            seed: 0,
            aligned: false,
        }
    }
}

/// One training utterance as Cloak and the recogniser see it.
pub struct CloakUtterance {
    /// A name for reports.
    pub name: String,
    /// The input (16 kHz).
    pub samples: Vec<f32>,
    /// The input at the host rate (as the host plays it).
    pub host: Vec<f32>,
    /// The input through the chain with Cloak bypassed, at 16 kHz.
    pub reference: Vec<f32>,
    /// Cloak's frames and allowances over `host`.
    pub plan: ShapingPlan,
    /// The clean transcript (plain decoding).
    pub clean: String,
    /// Its teacher-forced sequence.
    pub sequence: TargetSequence,
}

/// Resample `x` to `to` Hz and fix its length to `len`.
fn resample_to(x: &[f32], from: u32, to: u32, len: usize) -> Result<Vec<f32>> {
    let mut y = resample(x, from, to)?;
    y.resize(len, 0.0);
    Ok(y)
}

/// Transcribe each clean 16-kHz utterance and plan Cloak's shaping over it at `cfg.rate`.
pub fn prepare_cloak_set(
    model: &LoadedModel,
    set: Vec<(String, Vec<f32>)>,
    cfg: &CloakSourceConfig,
) -> Result<Vec<CloakUtterance>> {
    let decode = DecodeOptions::default();
    let language = model.tokenizer.english()?;
    set.into_iter()
        .map(|(name, samples)| {
            if samples.is_empty() || samples.len() > N_SAMPLES {
                return Err(Error::InvalidArgument(format!(
                    "{name}: Cloak sources train on utterances of 1 to {N_SAMPLES} samples, got {}",
                    samples.len()
                )));
            }
            let clean = transcribe(model, &samples, &decode)?;
            if clean.tokens.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{name}: transcribes as nothing; nothing to keep the recogniser from"
                )));
            }
            let host = resample(&samples, SAMPLE_RATE, cfg.rate)?;
            let reference = resample_to(&host, cfg.rate, SAMPLE_RATE, samples.len())?;
            let mut channel =
                CloakChannel::new(cfg.rate as f32, frame_size_for(cfg.rate as f32), 0)?;
            let plan = channel.plan(&host, &cfg.settings);
            Ok(CloakUtterance {
                name,
                samples,
                host,
                reference,
                plan,
                clean: clean.text,
                sequence: TargetSequence::from_tokens(&model.tokenizer, &clean.tokens, language),
            })
        })
        .collect()
}

/// Mean over the target tokens of `min(CE_i, cap)`, negated (to minimise), and its gradient with
/// respect to the logits.
fn capped_ascent(logits: &Tensor, targets: &[u32], cap: f32) -> Result<(f32, Tensor)> {
    let (_, l, v) = logits.dims3()?;
    let first = l - targets.len();
    let logp = candle_nn::ops::log_softmax(&logits.squeeze(0)?, D::Minus1)?;
    let rows = logp.to_vec2::<f32>()?;
    let n = targets.len() as f32;
    let mut grad = vec![0.0f32; l * v];
    let mut loss = 0.0f32;
    for (i, &t) in targets.iter().enumerate() {
        let row = &rows[first + i];
        let ce = -row[t as usize];
        loss -= ce.min(cap) / n;
        if ce < cap {
            // d(−CE/n)/dz = (onehot − softmax)/n.
            let g = &mut grad[(first + i) * v..(first + i + 1) * v];
            for (gj, &lp) in g.iter_mut().zip(row) {
                *gj = -lp.exp() / n;
            }
            g[t as usize] += 1.0 / n;
        }
    }
    Ok((loss, Tensor::from_vec(grad, (1, l, v), logits.device())?))
}

/// What one utterance contributes: the loss and the gradient with respect to the host-rate
/// source.
fn score(
    model: &LoadedModel,
    front: &MelFrontEnd,
    shaper: &CloakShaper,
    u: &CloakUtterance,
    source: &[f32],
    offset: usize,
    cfg: &CloakSourceConfig,
) -> Result<(f32, Vec<f32>)> {
    let depth = cfg.settings.depth.clamp(0.0, 1.0);
    let added = shaper.forward(&u.plan, source, offset, u.host.len(), depth)?;
    let heard = resample_to(&added, cfg.rate, SAMPLE_RATE, u.reference.len())?;
    let y: Vec<f32> = u
        .reference
        .iter()
        .zip(&heard)
        .map(|(r, d)| quantize_i16(r + d) as f32 / 32768.0)
        .collect();
    let wave = Tensor::from_vec(y, u.reference.len(), model.whisper.device())?;
    let (loss, grad) =
        loss_and_waveform_grad(&model.whisper, front, &wave, &u.sequence.input, |logits| {
            capped_ascent(logits, &u.sequence.targets, cfg.cap)
        })?;
    let grad = grad.to_vec1::<f32>()?;
    // Back through the resampling down (its adjoint: up, over the rate ratio) and the shaping.
    let ratio = cfg.rate as f32 / SAMPLE_RATE as f32;
    let mut grad_host = resample_to(&grad, SAMPLE_RATE, cfg.rate, u.host.len())?;
    grad_host.iter_mut().for_each(|g| *g /= ratio);
    Ok((
        loss,
        shaper.backward(&u.plan, source, offset, depth, &grad_host)?,
    ))
}

/// Train a 16-kHz source on `set` (prepared with the same `cfg`).
pub fn train_cloak_source(
    model: &LoadedModel,
    set: &[CloakUtterance],
    cfg: &CloakSourceConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<Vec<f32>> {
    if set.is_empty() {
        return Err(Error::InvalidArgument(
            "training a Cloak source needs at least one utterance".into(),
        ));
    }
    if cfg.length == 0 || !(cfg.linf > 0.0 && cfg.step_size > 0.0 && cfg.cap > 0.0) {
        return Err(Error::InvalidArgument(
            "a Cloak source needs a length, a positive bound, step size and cap".into(),
        ));
    }
    let front = MelFrontEnd::new(model.whisper.config().num_mel_bins, model.whisper.device())?;
    // Every plan was made at `cfg.rate`: one frame size, one set of FFT plans.
    let shaper = CloakShaper::for_plan(&set[0].plan)?;
    let mut rng = Rng::new(cfg.seed);
    let mut source: Vec<f32> = (0..cfg.length).map(|_| rng.symmetric(cfg.linf)).collect();
    let mut stepper = Stepper::new(Rule::Adam, StepSpace::new(Domain::Waveform, cfg.length)?);
    let batch = cfg.batch.clamp(1, set.len());
    let ratio = cfg.rate as f32 / SAMPLE_RATE as f32;
    for step in 1..=cfg.steps {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let host = resample(&source, SAMPLE_RATE, cfg.rate)?;
        let draws: Vec<(usize, usize)> = (0..batch)
            .map(|_| {
                let which = rng.below(set.len());
                (
                    which,
                    if cfg.aligned {
                        0
                    } else {
                        rng.below(host.len())
                    },
                )
            })
            .collect();
        let mut grad_host = vec![0.0f32; host.len()];
        let mut loss = 0.0f32;
        // Two utterances at a time share the model's thread pool (as universal training does),
        // summed in draw order so the result does not depend on the timing.
        for pair in draws.chunks(2) {
            let (front, shaper, host) = (&front, &shaper, &host);
            let scored: Vec<Result<(f32, Vec<f32>)>> = std::thread::scope(|s| {
                let second = pair.get(1).map(|&(w, o)| {
                    s.spawn(move || score(model, front, shaper, &set[w], host, o, cfg))
                });
                let (w, o) = pair[0];
                let mut out = vec![score(model, front, shaper, &set[w], host, o, cfg)];
                if let Some(h) = second {
                    out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
                }
                out
            });
            for r in scored {
                let (l, g) = r?;
                loss += l / batch as f32;
                for (acc, gi) in grad_host.iter_mut().zip(&g) {
                    *acc += gi / batch as f32;
                }
            }
        }
        // Back through the plugin's resampling up (its adjoint: down, times the ratio).
        let mut grad = resample_to(&grad_host, cfg.rate, SAMPLE_RATE, cfg.length)?;
        grad.iter_mut().for_each(|g| *g *= ratio);
        let dir = stepper.direction(&grad)?;
        for (s, d) in source.iter_mut().zip(&dir) {
            *s = (*s - cfg.step_size * d).clamp(-cfg.linf, cfg.linf);
        }
        on_step(&StepInfo {
            run: 0,
            step,
            steps: cfg.steps,
            loss,
            transcript: None,
        });
    }
    Ok(source)
}

/// Each utterance through the plugin's own chain ([`cloak_recording`]: resampled to
/// `cfg.rate`, Cloak in blocks of `block`, resampled back) with `source` (16 kHz) in universal
/// mode, or Cloak's masked noise at the same settings where `source` is `None` (the control),
/// transcribed with `decode` and judged against the clean transcript (success: WER ≥ `min_wer`).
pub fn evaluate_through_cloak(
    model: &LoadedModel,
    set: &[CloakUtterance],
    source: Option<&[f32]>,
    cfg: &CloakSourceConfig,
    block: usize,
    decode: &DecodeOptions,
    min_wer: f64,
) -> Result<Evaluation> {
    let host_source = source
        .map(|s| resample(s, SAMPLE_RATE, cfg.rate))
        .transpose()?;
    let settings = CloakSettings {
        mode: if source.is_some() {
            CloakMode::Universal
        } else {
            CloakMode::MaskedNoise
        },
        ..cfg.settings
    };
    let mut results = Vec::with_capacity(set.len());
    for u in set {
        let cloaked = cloak_recording(
            &u.samples,
            cfg.rate,
            block,
            &settings,
            host_source.as_deref(),
        )?;
        let text = transcribe(model, &cloaked.cloaked, decode)?.text;
        let w = wer(&u.clean, &text);
        results.push(UtteranceResult {
            name: u.name.clone(),
            clean: u.clean.clone(),
            adversarial: text,
            success: w >= min_wer,
            wer: w,
        });
    }
    Ok(Evaluation::from_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capped_loss_stops_pushing_tokens_past_the_cap() {
        // Two target tokens: one likely (small CE), one already far off (CE over the cap).
        let logits = Tensor::from_vec(
            vec![0.0f32, 5.0, 0.0, 0.0, 0.0, -5.0, 5.0, 0.0],
            (1, 2, 4),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let (loss, grad) = capped_ascent(&logits, &[1, 1], 3.0).unwrap();
        let g = grad.to_vec3::<f32>().unwrap();
        // Token 0 (CE ≈ 0.02) is pushed, token 1 (CE ≈ 10) is capped: no gradient, loss −(0.02+3)/2.
        assert!((loss + (0.02 + 3.0) / 2.0).abs() < 0.02, "{loss}");
        assert!(g[0][0][1] > 0.0, "{:?}", g[0][0]);
        assert!(g[0][1].iter().all(|&v| v == 0.0), "{:?}", g[0][1]);
    }
}
