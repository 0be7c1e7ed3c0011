//! DeepFool for sequences: repeatedly linearise the margin between the currently decoded token
//! and its best rival at the first position that still matches the original transcript, and
//! take the smallest L2 step that crosses it (times `1 + overshoot`), until the transcript has
//! moved far enough from the original (untargeted goals only).

use super::track::{Keep, Tracker};
use super::{quantized_sum, AttackOutcome, StepInfo};
use crate::gradient::loss_and_waveform_grad;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::transcribe::transcribe;
use crate::{Error, Result};
use candle_core::Tensor;
use std::sync::atomic::AtomicBool;

/// Settings of DeepFool.
#[derive(Debug, Clone)]
pub struct DeepFoolConfig {
    /// Most linearisation steps.
    pub max_iterations: usize,
    /// Relative overshoot of each step past the linearised boundary (larger than image
    /// DeepFool's 0.02: the step must survive 16-bit quantisation and beam search).
    pub overshoot: f32,
    /// Decoding that defines the current tokens and the success test.
    pub decode: DecodeOptions,
}

impl Default for DeepFoolConfig {
    fn default() -> Self {
        DeepFoolConfig {
            max_iterations: 50,
            overshoot: 0.5,
            decode: DecodeOptions::default(),
        }
    }
}

/// Margin `Z[row, token] − max_{j≠token} Z[row, j]` of logits `(1, L, V)` over the tokens
/// decoding can emit (ids up to `last_allowed`, end-of-text), and its gradient.
fn token_margin(
    logits: &Tensor,
    row: usize,
    token: u32,
    last_allowed: u32,
) -> Result<(f32, Tensor)> {
    let (_, l, v) = logits.dims3()?;
    let z = logits.squeeze(0)?.get(row)?.to_vec1::<f32>()?;
    let t = token as usize;
    let (rival, best) = z
        .iter()
        .enumerate()
        .take(last_allowed as usize + 1)
        .filter(|(j, _)| *j != t)
        .fold(
            (0, f32::NEG_INFINITY),
            |acc, (j, &s)| if s > acc.1 { (j, s) } else { acc },
        );
    let mut grad = vec![0.0f32; l * v];
    grad[row * v + t] = 1.0;
    grad[row * v + rival] = -1.0;
    Ok((
        z[t] - best,
        Tensor::from_vec(grad, (1, l, v), logits.device())?,
    ))
}

/// Run DeepFool on 16-kHz samples `x` for an untargeted objective.
pub fn run_deepfool(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &DeepFoolConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<AttackOutcome> {
    if !matches!(objective.goal, Goal::Untargeted { .. }) {
        return Err(Error::InvalidArgument(
            "DeepFool is an untargeted attack: use --untargeted".into(),
        ));
    }
    let mut track = Tracker::new(model, x, objective, &cfg.decode, Keep::Latest)?;
    let seq = objective.sequence();
    let original: Vec<u32> = seq.targets[..seq.targets.len() - 1].to_vec();
    let prompt_len = seq.input.len() - original.len();
    let prompt = seq.input[..prompt_len].to_vec();
    let eot = model.tokenizer.special.eot;
    let greedy = DecodeOptions {
        beam_size: 1,
        ..cfg.decode.clone()
    };
    let mut delta = vec![0.0f32; x.len()];
    let iterations = cfg.max_iterations.max(1);
    let mut last_margin = f32::NAN;
    for it in 0..=iterations {
        let adversarial = quantized_sum(x, &delta);
        // The margins are those of greedy decoding; success is judged with `cfg.decode`.
        let current = transcribe(model, &adversarial, &greedy)?;
        let transcript = if cfg.decode.beam_size <= 1 {
            current.text.clone()
        } else {
            track.transcribe(&adversarial)?
        };
        // Robust goals (other front ends, a margin) are judged in full; DeepFool's own test is
        // the transcript.
        let success = if objective.robustness().is_strict() {
            track.succeeds(&adversarial, &transcript)?
        } else {
            objective.is_met(&transcript)
        };
        track.offer(
            adversarial.clone(),
            success,
            transcript.clone(),
            last_margin,
            0.0,
        );
        if success || it == iterations || track.stop_requested(cancel) {
            break;
        }
        // The first position still decoded as in the original transcript.
        let tokens = current.tokens;
        let position = (0..=tokens.len())
            .find(|&i| {
                tokens.get(i).copied().unwrap_or(eot) == original.get(i).copied().unwrap_or(eot)
            })
            .unwrap_or(0);
        let mut input = prompt.clone();
        input.extend_from_slice(&tokens[..position.min(tokens.len())]);
        let token = tokens.get(position).copied().unwrap_or(eot);
        let row = input.len() - 1;
        let wave = track.wave(&adversarial)?;
        let (margin, grad) =
            loss_and_waveform_grad(&model.whisper, track.front(), &wave, &input, |logits| {
                token_margin(logits, row, token, eot)
            })?;
        let grad = grad.to_vec1::<f32>()?;
        track.count_step();
        last_margin = margin;
        let norm_sq: f32 = grad.iter().map(|g| g * g).sum();
        if norm_sq <= 0.0 || !norm_sq.is_finite() {
            break;
        }
        // Smallest step reaching the linearised boundary, a little past it; at least one
        // 16-bit quantisation step so it survives writing.
        let scale = (1.0 + cfg.overshoot) * (margin.max(0.0) + 1e-3) / norm_sq;
        let scale =
            scale.max(1.0 / 32768.0 / grad.iter().fold(0.0f32, |m, g| m.max(g.abs())).max(1e-12));
        for (d, g) in delta.iter_mut().zip(&grad) {
            *d -= scale * g;
        }
        on_step(&StepInfo {
            run: 0,
            step: it + 1,
            steps: iterations,
            loss: margin,
            transcript: Some(transcript.clone()),
        });
    }
    track.finish()
}
