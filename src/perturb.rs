//! Perturbations and their constraint sets.
//!
//! A perturbation δ is kept as a waveform; attacks may take their steps in the STFT domain
//! ([`Domain::Stft`]): the waveform gradient is mapped to the coefficients by the adjoint of the
//! ISTFT, the step direction is formed there, and mapped back by the ISTFT. After every step
//! [`Constraints::project`] puts δ back into the constraint set.

use crate::dsp::{hann_periodic, Stft};
use crate::masking::MaskingThreshold;
use crate::{Error, Result};
use std::sync::Arc;

/// Where an attack forms its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Directly on the samples.
    Waveform,
    /// On the complex STFT coefficients of δ (Hann window, `n_fft`, `hop`).
    Stft {
        /// Frame size.
        n_fft: usize,
        /// Hop.
        hop: usize,
    },
    /// On the phases of the input's STFT coefficients alone, magnitudes kept (FGSM and PGD
    /// only; see [`crate::attack::phase`]).
    Phase {
        /// Frame size.
        n_fft: usize,
        /// Hop.
        hop: usize,
    },
}

impl Default for Domain {
    fn default() -> Self {
        Domain::Stft {
            n_fft: 512,
            hop: 128,
        }
    }
}

impl Domain {
    /// Every domain's name, as `--domain` takes it (the STFT ones with 512-sample frames and a
    /// 128-sample hop).
    pub const NAMES: [&'static str; 3] = ["stft", "waveform", "phase"];
}

impl std::str::FromStr for Domain {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stft" => Ok(Domain::default()),
            "waveform" => Ok(Domain::Waveform),
            "phase" => Ok(Domain::Phase {
                n_fft: 512,
                hop: 128,
            }),
            other => Err(crate::error::unknown_name("domain", other, &Self::NAMES)),
        }
    }
}

/// The constraints a perturbation must satisfy; all that are set hold together.
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    /// Largest absolute sample value of δ.
    pub linf: Option<f32>,
    /// Largest Euclidean norm of δ.
    pub l2: Option<f32>,
    /// Smallest signal-to-perturbation ratio in dB.
    pub snr_db: Option<f32>,
    /// Only this frequency band (Hz) may be perturbed.
    pub band_hz: Option<(f32, f32)>,
    /// Only samples marked `true` may be perturbed (e.g. [`speech_mask`]).
    pub time_mask: Option<Vec<bool>>,
    /// Every T-F bin of δ stays a margin under the input's psychoacoustic masking threshold.
    pub masking: Option<MaskingBound>,
}

/// The psychoacoustic constraint: δ's T-F bins (in the threshold's STFT) at least `margin_db`
/// under the masking threshold of the input.
#[derive(Debug, Clone)]
pub struct MaskingBound {
    /// The input's threshold.
    pub threshold: Arc<MaskingThreshold>,
    /// How far under the threshold (dB; may be negative to allow that much over).
    pub margin_db: f32,
}

impl MaskingBound {
    /// Project δ onto the bound, keeping samples marked `false` in `keep` at zero (up to 30
    /// analysis/resynthesis passes; see [`MaskingThreshold::project`]).
    pub fn apply(&self, delta: &mut [f32], keep: Option<&[bool]>) -> Result<()> {
        self.threshold.project(delta, self.margin_db, 30, keep)
    }
}

/// Projects onto a frequency band with an STFT mask (Hann 512 / hop 128, a tight frame).
pub struct BandLimiter {
    stft: Stft,
    keep: Vec<bool>,
}

impl BandLimiter {
    /// A limiter keeping `low_hz..=high_hz` at `sample_rate`.
    pub fn new(low_hz: f32, high_hz: f32, sample_rate: u32) -> Result<Self> {
        if !(low_hz >= 0.0 && high_hz > low_hz) {
            return Err(Error::InvalidArgument(format!(
                "band {low_hz}-{high_hz} Hz is empty"
            )));
        }
        let n_fft = 512;
        let stft = Stft::new(n_fft, 128, hann_periodic(n_fft))?;
        let keep = (0..stft.bins())
            .map(|k| {
                let f = k as f32 * sample_rate as f32 / n_fft as f32;
                f >= low_hz && f <= high_hz
            })
            .collect();
        Ok(BandLimiter { stft, keep })
    }

    /// Remove everything outside the band.
    pub fn apply(&self, delta: &mut [f32]) -> Result<()> {
        let mut spec = self.stft.stft(delta);
        for t in 0..spec.frames {
            for (k, keep) in self.keep.iter().enumerate() {
                if !keep {
                    spec.data[t * spec.bins + k] = Default::default();
                }
            }
        }
        let out = self.stft.istft(&spec, delta.len())?;
        delta.copy_from_slice(&out);
        Ok(())
    }
}

impl Constraints {
    /// Whether any of them bounds δ's size (L∞, L2, SNR or the masking threshold), rather
    /// than only where δ may be (band, time mask).
    pub fn bound_size(&self) -> bool {
        self.linf.is_some() || self.l2.is_some() || self.snr_db.is_some() || self.masking.is_some()
    }

    /// Check the settings are meaningful for a signal of `len` samples.
    pub fn validate(&self, len: usize) -> Result<()> {
        let positive = |name: &str, v: Option<f32>| match v {
            Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::InvalidArgument(format!(
                "{name} must be a positive number, got {v}"
            ))),
            _ => Ok(()),
        };
        positive("the L-infinity bound", self.linf)?;
        positive("the L2 bound", self.l2)?;
        if let Some(s) = self.snr_db {
            if !s.is_finite() {
                return Err(Error::InvalidArgument("the SNR must be finite".into()));
            }
        }
        if let Some(bound) = &self.masking {
            if bound.threshold.len() != len || !bound.margin_db.is_finite() {
                return Err(Error::Shape(format!(
                    "masking bound: threshold of {} samples with margin {} dB for a signal of {len}",
                    bound.threshold.len(),
                    bound.margin_db
                )));
            }
        }
        if let Some(mask) = &self.time_mask {
            if mask.len() != len {
                return Err(Error::Shape(format!(
                    "time mask has {} samples, the signal {len}",
                    mask.len()
                )));
            }
        }
        Ok(())
    }

    /// The largest Euclidean norm δ may have on input `x`: the tighter of `l2` and the norm
    /// the `snr_db` floor allows (`None`: neither is set).
    pub fn max_l2(&self, x: &[f32]) -> Option<f64> {
        let from_snr = self
            .snr_db
            .map(|snr| crate::metrics::l2(x) * 10f64.powf(-snr as f64 / 20.0));
        match (self.l2.map(f64::from), from_snr) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Project δ (for signal `x`) onto the constraint set: band, then time mask, then the
    /// masking bound (which keeps the time mask), then the L∞ bound (a clip, or with a masking
    /// bound a scaling, which keeps it), then one scaling for the tightest of the L2 and SNR
    /// bounds. Later steps never undo earlier ones except that the clip and the masking
    /// resynthesis may leak a little energy out of the band; L∞, L2, SNR and the time mask hold
    /// exactly afterwards.
    pub fn project(&self, delta: &mut [f32], x: &[f32], band: Option<&BandLimiter>) -> Result<()> {
        if let Some(limiter) = band {
            limiter.apply(delta)?;
        }
        if let Some(mask) = &self.time_mask {
            for (d, keep) in delta.iter_mut().zip(mask) {
                if !keep {
                    *d = 0.0;
                }
            }
        }
        if let Some(bound) = &self.masking {
            bound.apply(delta, self.time_mask.as_deref())?;
        }
        if let Some(eps) = self.linf {
            if self.masking.is_some() {
                // Clipping would add broadband distortion over the threshold; scaling keeps it.
                let peak = crate::metrics::linf(delta) as f32;
                if peak > eps {
                    let s = eps / peak;
                    delta.iter_mut().for_each(|d| *d *= s);
                }
            } else {
                delta.iter_mut().for_each(|d| *d = d.clamp(-eps, eps));
            }
        }
        let max_l2 = self.max_l2(x).unwrap_or(f64::INFINITY);
        let norm = crate::metrics::l2(delta);
        if norm > max_l2 {
            // A small margin keeps the bound after 16-bit quantisation adds its noise.
            let s = (max_l2 / norm * (1.0 - 1e-3)) as f32;
            delta.iter_mut().for_each(|d| *d *= s);
        }
        Ok(())
    }
}

/// Samples that belong to speech (or any sound): 20-ms frames within 40 dB of the loudest,
/// widened by 100 ms on each side.
pub fn speech_mask(x: &[f32], sample_rate: u32) -> Vec<bool> {
    let frame = (sample_rate as usize / 50).max(1);
    let energies = crate::metrics::frame_energies(x, frame);
    let max = energies.iter().copied().fold(0.0, f64::max);
    let threshold = max * 1e-4;
    let widen = 5;
    let active: Vec<bool> = (0..energies.len())
        .map(|i| {
            let lo = i.saturating_sub(widen);
            let hi = (i + widen + 1).min(energies.len());
            max > 0.0 && energies[lo..hi].iter().any(|&e| e >= threshold)
        })
        .collect();
    (0..x.len()).map(|i| active[i / frame]).collect()
}
