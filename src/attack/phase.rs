//! The phase-only attack (`--domain phase`): PGD on per-bin phase offsets θ of the input's
//! STFT, the magnitudes left as they are.
//!
//! The example is `x'(θ) = ISTFT(|X|·e^{i(∠X + θ)})` for the input's STFT `X` (Hann, `n_fft`,
//! `hop`: a tight frame, so `x'(0) = x`); DC and Nyquist bins keep their phase (a real
//! signal's are real). The gradient of the loss `L(x')` with respect to θ is
//! `Re(conj(G)·iY)` per bin, where `Y` is the rotated spectrum and `G` the waveform gradient
//! mapped back by the ISTFT's adjoint. Steps follow the attack's rule in θ and are clipped to
//! `|θ| ≤ θ_max`.
//!
//! The bound: rotating a bin by θ changes it by `2|X|·sin(θ/2)`, and the tight frame carries
//! energy over, so `|θ| ≤ θ_max` keeps `‖δ‖ ≤ 2·sin(θ_max/2)·‖x‖`: an SNR floor `s` is the
//! phase bound `θ_max = 2·asin(10^(−s/20)/2)` ([`phase_bound_for_snr`]). The STFT of the
//! written example is not exactly `|X|·e^{i(∠X+θ)}` (a modified spectrogram is not consistent;
//! resynthesis projects it), so its magnitudes move a little: [`PhaseSpace::magnitude_change`]
//! measures by how much.

use super::pgd::{scheduled, AttackConfig, Method};
use super::step::{Rule, StepSpace, Stepper};
use super::track::{Keep, Tracker};
use super::{AttackOutcome, StepInfo};
use crate::dsp::stft::Spectrogram;
use crate::dsp::{hann_periodic, Stft};
use crate::model::LoadedModel;
use crate::objective::Objective;
use crate::perturb::Domain;
use crate::{Error, Result};
use realfft::num_complex::Complex32;
use std::sync::atomic::AtomicBool;

/// The phase bound (radians) that keeps the SNR at or above `snr_db` (see the module doc).
pub fn phase_bound_for_snr(snr_db: f32) -> f32 {
    let ratio = 10f32.powf(-snr_db / 20.0);
    2.0 * (ratio / 2.0).min(1.0).asin()
}

/// The input's STFT, and the map from phase offsets to waveforms and back.
pub struct PhaseSpace {
    stft: Stft,
    spec: Spectrogram,
    len: usize,
}

impl PhaseSpace {
    /// The phase space of `x` (16 kHz) with a Hann STFT of `n_fft` and `hop`.
    pub fn new(x: &[f32], n_fft: usize, hop: usize) -> Result<Self> {
        let stft = Stft::new(n_fft, hop, hann_periodic(n_fft))?;
        let spec = stft.stft(x);
        Ok(PhaseSpace {
            stft,
            spec,
            len: x.len(),
        })
    }

    /// Number of offsets (one per STFT coefficient).
    pub fn dim(&self) -> usize {
        self.spec.data.len()
    }

    /// Whether coefficient `k` may rotate (not a DC or Nyquist bin).
    fn rotates(&self, k: usize) -> bool {
        let b = k % self.spec.bins;
        b != 0 && b + 1 != self.spec.bins
    }

    /// The rotated spectrum `Y = X·e^{iθ}`.
    fn rotated(&self, theta: &[f32]) -> Spectrogram {
        let data = self
            .spec
            .data
            .iter()
            .zip(theta)
            .enumerate()
            .map(|(k, (c, t))| {
                if self.rotates(k) {
                    c * Complex32::from_polar(1.0, *t)
                } else {
                    *c
                }
            })
            .collect();
        Spectrogram {
            frames: self.spec.frames,
            bins: self.spec.bins,
            data,
        }
    }

    /// The signal with phase offsets `theta`.
    pub fn signal(&self, theta: &[f32]) -> Result<Vec<f32>> {
        self.stft.istft(&self.rotated(theta), self.len)
    }

    /// The gradient with respect to θ of a loss whose waveform gradient at `signal(θ)` is
    /// `grad`.
    pub fn gradient(&self, theta: &[f32], grad: &[f32]) -> Vec<f32> {
        let g = self.stft.istft_adjoint(grad, self.spec.frames);
        let y = self.rotated(theta);
        g.data
            .iter()
            .zip(&y.data)
            .enumerate()
            .map(|(k, (g, y))| {
                if self.rotates(k) {
                    // d(Re Y)/dθ = −Im Y, d(Im Y)/dθ = Re Y.
                    -g.re * y.im + g.im * y.re
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// How far the STFT magnitudes of `signal` are from the input's: `‖|S| − |X|‖ / ‖X‖`.
    pub fn magnitude_change(&self, signal: &[f32]) -> f64 {
        let s = self.stft.stft(signal);
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (a, b) in s.data.iter().zip(&self.spec.data) {
            diff += (a.norm() as f64 - b.norm() as f64).powi(2);
            norm += (b.norm() as f64).powi(2);
        }
        (diff / norm.max(1e-30)).sqrt()
    }
}

/// `signal` as a 16-bit file stores it.
fn written(x: &[f32], signal: &[f32]) -> Vec<f32> {
    let delta: Vec<f32> = signal.iter().zip(x).map(|(s, x)| s - x).collect();
    super::quantized_sum(x, &delta)
}

/// PGD in the phase domain on 16-kHz samples `x`: `cfg.constraints.snr_db` sets the phase bound
/// (the only constraint it takes), `cfg.step_size` is in radians, `cfg.rule` forms the steps.
pub fn run_phase_attack(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &AttackConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<AttackOutcome> {
    let Domain::Phase { n_fft, hop } = cfg.domain else {
        return Err(Error::Internal(
            "the phase attack needs the phase domain".into(),
        ));
    };
    let c = &cfg.constraints;
    let snr = match c.snr_db {
        Some(s)
            if c.linf.is_none()
                && c.l2.is_none()
                && c.band_hz.is_none()
                && c.time_mask.is_none()
                && c.masking.is_none() =>
        {
            s
        }
        _ => {
            return Err(Error::InvalidArgument(
                "the phase domain takes one bound, an SNR floor (--snr-db), which it turns \
                 into a bound on the phase offsets"
                    .into(),
            ))
        }
    };
    if !(cfg.step_size.is_finite() && cfg.step_size > 0.0) {
        return Err(Error::InvalidArgument(
            "the step size must be positive".into(),
        ));
    }
    let bound = phase_bound_for_snr(snr);
    let space = PhaseSpace::new(x, n_fft, hop)?;
    let mut track = Tracker::new(model, x, objective, &cfg.decode, Keep::LowestLoss)?;
    let (rule, steps) = match cfg.method {
        Method::Fgsm => (Rule::Sign, 1),
        Method::Pgd => (cfg.rule, cfg.steps.max(1)),
    };
    let mut stepper = Stepper::new(rule, StepSpace::new(Domain::Waveform, space.dim())?);
    let mut theta = vec![0.0f32; space.dim()];
    let check_every = cfg.check_every.max(1);
    for step in 1..=steps {
        if track.stop_requested(cancel) {
            break;
        }
        let adv = written(x, &space.signal(&theta)?);
        let e = track.score(&adv)?;
        let size = match cfg.method {
            Method::Fgsm => bound,
            Method::Pgd => scheduled(cfg.step_size, cfg.schedule, step, steps),
        };
        let dir = stepper.direction(&space.gradient(&theta, &e.grad))?;
        for (t, d) in theta.iter_mut().zip(&dir) {
            *t = (*t - size * d).clamp(-bound, bound);
        }
        let mut info = StepInfo {
            run: 0,
            step,
            steps,
            loss: e.loss,
            transcript: None,
        };
        if step % check_every == 0 || step == steps {
            let adv = written(x, &space.signal(&theta)?);
            let transcript = track.transcribe(&adv)?;
            let success = track.succeeds(&adv, &transcript)?;
            info.transcript = Some(transcript.clone());
            track.offer(adv, success, transcript, e.loss, e.loss);
            on_step(&info);
            if success {
                break;
            }
        } else {
            on_step(&info);
        }
    }
    track.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speechy() -> Vec<f32> {
        (0..4000)
            .map(|i| {
                let t = i as f32 / 16000.0;
                0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                    + 0.1 * (2.0 * std::f32::consts::PI * 1330.0 * t).sin() * (t * 9.0).cos()
            })
            .collect()
    }

    #[test]
    fn zero_offsets_give_the_input_back_and_the_bound_holds_the_snr() {
        let x = speechy();
        let space = PhaseSpace::new(&x, 512, 128).unwrap();
        let back = space.signal(&vec![0.0; space.dim()]).unwrap();
        let err = crate::metrics::l2(&back.iter().zip(&x).map(|(a, b)| a - b).collect::<Vec<_>>());
        assert!(err < 1e-4, "{err}");
        for snr in [20.0f32, 30.0] {
            let bound = phase_bound_for_snr(snr);
            // Every offset at ±bound, signs alternating: the worst case for the energy.
            let theta: Vec<f32> = (0..space.dim())
                .map(|k| if k % 3 == 0 { bound } else { -bound })
                .collect();
            let y = space.signal(&theta).unwrap();
            let d: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            let got = crate::metrics::snr_db(&x, &d);
            assert!(got >= snr as f64 - 0.01, "SNR {got} under the floor {snr}");
            // The magnitudes move far less than the waveform does.
            let rel = crate::metrics::l2(&d) / crate::metrics::l2(&x);
            assert!(space.magnitude_change(&y) < 0.5 * rel, "{rel}");
        }
    }

    #[test]
    fn the_phase_gradient_matches_finite_differences() {
        // L(y) = Σ w·y² for fixed weights: ∂L/∂y = 2·w·y.
        let x = speechy();
        let space = PhaseSpace::new(&x, 256, 64).unwrap();
        let w: Vec<f32> = (0..x.len()).map(|i| 1.0 + (i % 7) as f32 / 7.0).collect();
        let loss = |y: &[f32]| -> f64 {
            y.iter()
                .zip(&w)
                .map(|(a, b)| (*b as f64) * (*a as f64).powi(2))
                .sum()
        };
        let mut rng = crate::rng::Rng::new(2);
        let theta: Vec<f32> = (0..space.dim()).map(|_| rng.symmetric(0.3)).collect();
        let y = space.signal(&theta).unwrap();
        let grad: Vec<f32> = y.iter().zip(&w).map(|(a, b)| 2.0 * a * b).collect();
        let g = space.gradient(&theta, &grad);
        let bins = 256 / 2 + 1;
        for k in [bins * 3 + 5, bins * 10 + 40, bins * 20 + 100] {
            let h = 1e-2f32;
            let mut plus = theta.clone();
            plus[k] += h;
            let mut minus = theta.clone();
            minus[k] -= h;
            let fd = (loss(&space.signal(&plus).unwrap()) - loss(&space.signal(&minus).unwrap()))
                / (2.0 * h as f64);
            let rel = (fd - g[k] as f64).abs() / fd.abs().max(1e-3);
            assert!(
                rel < 0.05,
                "bin {k}: analytic {} vs finite difference {fd}",
                g[k]
            );
        }
        // DC and Nyquist bins never rotate.
        assert_eq!(g[bins * 4], 0.0);
        assert_eq!(g[bins * 4 + bins - 1], 0.0);
    }
}
