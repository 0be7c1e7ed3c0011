//! JSMA on the time–frequency plane: a saliency map over the STFT bins of δ (the magnitude of
//! the loss gradient w.r.t. each complex coefficient); the most salient bins are switched on
//! first, under an L0 budget (a share of all bins) and a per-bin amplitude bound, and only the
//! switched-on bins are ever perturbed.

use super::track::{Keep, LeadGate, Tracker};
use super::{quantized_sum, AttackOutcome, StepInfo};
use crate::dsp::stft::Spectrogram;
use crate::dsp::{hann_periodic, Stft};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::Objective;
use crate::{Error, Result};
use realfft::num_complex::Complex32;
use std::sync::atomic::AtomicBool;

/// Settings of JSMA.
#[derive(Debug, Clone)]
pub struct JsmaConfig {
    /// Largest share of the STFT bins that may be perturbed (the L0 budget).
    pub max_bins_fraction: f32,
    /// Bins switched on per iteration, as a share of all bins.
    pub bins_per_iteration_fraction: f32,
    /// Largest waveform amplitude one bin may contribute (the per-bin bound).
    pub amplitude: f32,
    /// Most iterations.
    pub iterations: usize,
    /// Decode every this many iterations.
    pub check_every: usize,
    /// Decoding of the success tests.
    pub decode: DecodeOptions,
}

impl Default for JsmaConfig {
    fn default() -> Self {
        JsmaConfig {
            max_bins_fraction: 0.10,
            bins_per_iteration_fraction: 0.005,
            amplitude: 0.002,
            iterations: 100,
            check_every: 2,
            decode: DecodeOptions::default(),
        }
    }
}

/// JSMA's outcome: the attack result and the share of bins it touched.
#[derive(Debug, Clone)]
pub struct JsmaOutcome {
    /// The attack result.
    pub attack: AttackOutcome,
    /// Share of the STFT bins that carry perturbation.
    pub bins_fraction: f32,
}

const N_FFT: usize = 512;
const HOP: usize = 128;

/// Run JSMA on 16-kHz samples `x`.
pub fn run_jsma(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &JsmaConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<JsmaOutcome> {
    let mut track = Tracker::new(model, x, objective, &cfg.decode, Keep::Latest)?;
    let valid = |f: f32| f.is_finite() && f > 0.0 && f <= 1.0;
    if !valid(cfg.max_bins_fraction)
        || !valid(cfg.bins_per_iteration_fraction)
        || cfg.amplitude.is_nan()
        || cfg.amplitude <= 0.0
    {
        return Err(Error::InvalidArgument(
            "JSMA needs bin shares in (0, 1] and a positive amplitude".into(),
        ));
    }
    let stft = Stft::new(N_FFT, HOP, hann_periodic(N_FFT))?;
    let frames = stft.frames_for(x.len());
    let bins = stft.bins();
    let total_bins = frames * bins;
    let budget = ((cfg.max_bins_fraction * total_bins as f32) as usize).max(1);
    let per_iteration = ((cfg.bins_per_iteration_fraction * total_bins as f32) as usize).max(1);
    // A bin of magnitude |Z| contributes a windowed sinusoid of peak about 2|Z|/N after the
    // weighted overlap-add; bound |Z| so that stays under `amplitude`.
    let max_magnitude = cfg.amplitude * N_FFT as f32 / 2.0;
    let step = max_magnitude / 3.0;
    let mut z = Spectrogram {
        frames,
        bins,
        data: vec![Complex32::new(0.0, 0.0); total_bins],
    };
    let mut selected = vec![false; total_bins];
    let mut n_selected = 0;
    let mut adversarial = quantized_sum(x, &vec![0.0; x.len()]);
    // As in PGD: a targeted or mute goal under plain decoding needs its tokens to lead, so
    // points are decoded only where they do.
    let gated = track.lead_required();
    let mut gate = LeadGate::new(cfg.check_every);
    for it in 1..=cfg.iterations.max(1) {
        if track.stop_requested(cancel) {
            break;
        }
        let scored = track.score(&adversarial)?;
        let (grad, loss) = (scored.grad, scored.loss);
        if gated && gate.due(it, track.leads(scored.lead)) {
            // The point just scored, where the target leads: decode it as it stands.
            let transcript = track.transcribe(&adversarial)?;
            let success = track.judge(&adversarial, &transcript, scored.lead)?;
            track.offer(adversarial.clone(), success, transcript.clone(), loss, 0.0);
            if success {
                on_step(&StepInfo {
                    run: 0,
                    step: it,
                    steps: cfg.iterations,
                    loss,
                    transcript: Some(transcript),
                });
                break;
            }
        }
        let g = stft.istft_adjoint(&grad, frames);
        if n_selected < budget {
            let mut candidates: Vec<usize> = (0..total_bins).filter(|&i| !selected[i]).collect();
            let take = per_iteration.min(budget - n_selected).min(candidates.len());
            if take > 0 {
                candidates.select_nth_unstable_by(take - 1, |&a, &b| {
                    g.data[b].norm_sqr().total_cmp(&g.data[a].norm_sqr())
                });
                for &i in &candidates[..take] {
                    selected[i] = true;
                }
                n_selected += take;
            }
        }
        for i in (0..total_bins).filter(|&i| selected[i]) {
            let gi = g.data[i];
            let norm = gi.norm();
            if norm > 0.0 {
                let mut zi = z.data[i] - gi * (step / norm);
                let m = zi.norm();
                if m > max_magnitude {
                    zi *= max_magnitude / m;
                }
                z.data[i] = zi;
            }
        }
        let delta = stft.istft(&z, x.len())?;
        adversarial = quantized_sum(x, &delta);
        // The lead of this point is not known until it is scored: a stand-in without one.
        track.stand_by(&adversarial, loss, f32::NAN);
        let mut info = StepInfo {
            run: 0,
            step: it,
            steps: cfg.iterations,
            loss,
            transcript: None,
        };
        let scheduled_check = !gated && it % cfg.check_every.max(1) == 0;
        let mut success = false;
        if scheduled_check || it == cfg.iterations {
            let transcript = track.transcribe(&adversarial)?;
            success = track.succeeds(&adversarial, &transcript)?;
            info.transcript = Some(transcript.clone());
            track.offer(adversarial.clone(), success, transcript, loss, 0.0);
        }
        on_step(&info);
        if success {
            break;
        }
    }
    Ok(JsmaOutcome {
        attack: track.finish()?,
        bins_fraction: n_selected as f32 / total_bins as f32,
    })
}
