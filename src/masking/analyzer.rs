//! The per-frame masking threshold (Qin et al. 2019 after the MPEG-1 psychoacoustic model 1),
//! computed without allocating once constructed, so the plugin can call it in `process()`.

use super::{absolute_threshold_db, bark};
use crate::dsp::hann_periodic;
use crate::{Error, Result};
use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// The loudest component of a normalised spectrum sits at this level (dB).
pub const PSD_NORMALISED_MAX_DB: f32 = 96.0;
/// Added to powers before taking logarithms.
const POWER_FLOOR: f32 = 1e-19;

/// How a frame's power spectrum is put on the model's dB scale (its loudest component at 96 dB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalization {
    /// The loudest bin of the whole utterance is at 96 dB (Qin et al.; whole-file API only; the
    /// frame-by-frame API uses it through [`Normalization::Reference`] with the utterance's
    /// peak).
    Utterance,
    /// The loudest bin of each frame is at 96 dB: needs no look-ahead, but a quiet frame masks
    /// as much (relative to its own level) as a loud one.
    Frame,
    /// This power `z²` (see [`MaskingAnalyzer::power`]) is at 96 dB; [`Normalization::full_scale`]
    /// puts a full-scale sine there, a fixed calibration for streams.
    Reference(f32),
}

impl Normalization {
    /// A full-scale sine (amplitude 1) at 96 dB: its Hann-windowed peak is `z² = 1/6`.
    pub fn full_scale() -> Self {
        Normalization::Reference(1.0 / 6.0)
    }
}

/// Frame-by-frame masking threshold for one sample rate and frame size.
pub struct MaskingAnalyzer {
    n_fft: usize,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    frame: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    /// `z² = |sqrt(8/3) · X / N|²` per bin of the last frame.
    power: Vec<f32>,
    /// The last frame's normalised PSD (dB).
    psd_db: Vec<f32>,
    barks: Vec<f32>,
    ath_db: Vec<f32>,
    /// Maskers as (bin, smoothed level dB); capacity `bins`, so pushing never allocates.
    maskers: Vec<(usize, f32)>,
    theta_power: Vec<f32>,
}

impl MaskingAnalyzer {
    /// An analyzer for frames of `n_fft` samples at `sample_rate` Hz (Hann window).
    pub fn new(sample_rate: f32, n_fft: usize) -> Result<Self> {
        if !(sample_rate.is_finite() && sample_rate > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "masking model: sample rate {sample_rate} is not positive"
            )));
        }
        if n_fft < 16 || !n_fft.is_multiple_of(2) {
            return Err(Error::InvalidArgument(format!(
                "masking model: frame size must be even and >= 16, got {n_fft}"
            )));
        }
        let bins = n_fft / 2 + 1;
        let freqs: Vec<f32> = (0..bins)
            .map(|k| k as f32 * sample_rate / n_fft as f32)
            .collect();
        let barks: Vec<f32> = freqs.iter().map(|&f| bark(f)).collect();
        // As Qin et al.: no threshold in quiet below 1 Bark (it diverges towards 0 Hz), so those
        // bins get no allowance from the threshold in quiet.
        let ath_db = freqs
            .iter()
            .zip(&barks)
            .map(|(&f, &b)| {
                if b > 1.0 {
                    absolute_threshold_db(f)
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
        Ok(MaskingAnalyzer {
            n_fft,
            window: hann_periodic(n_fft),
            scratch: fft.make_scratch_vec(),
            frame: vec![0.0; n_fft],
            spectrum: vec![Complex32::new(0.0, 0.0); bins],
            fft,
            power: vec![0.0; bins],
            psd_db: vec![0.0; bins],
            barks,
            ath_db,
            maskers: Vec::with_capacity(bins),
            theta_power: vec![0.0; bins],
        })
    }

    /// Frame size.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Bins per frame (`n_fft / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Threshold in quiet per bin (dB; −∞ below 1 Bark).
    pub fn absolute_threshold(&self) -> &[f32] {
        &self.ath_db
    }

    /// `z²` per bin of the last analysed frame.
    pub fn power(&self) -> &[f32] {
        &self.power
    }

    /// The last frame's normalised PSD in dB.
    pub fn psd_db(&self) -> &[f32] {
        &self.psd_db
    }

    /// Window `frame` (`n_fft` raw samples) and compute its `z²` per bin; returns the largest.
    pub fn analyze_power(&mut self, frame: &[f32]) -> Result<f32> {
        if frame.len() != self.n_fft {
            return Err(Error::Shape(format!(
                "masking model: frame has {} samples, expected {}",
                frame.len(),
                self.n_fft
            )));
        }
        for ((f, s), w) in self.frame.iter_mut().zip(frame).zip(&self.window) {
            *f = s * w;
        }
        self.fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .map_err(|e| Error::Internal(format!("masking model FFT: {e}")))?;
        let scale = 8.0 / 3.0 / (self.n_fft as f32 * self.n_fft as f32);
        let mut max = 0.0f32;
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr() * scale;
            max = max.max(*p);
        }
        Ok(max)
    }

    /// Set the spectrum (`z²` per bin) directly, e.g. from a stored spectrogram.
    pub fn load_power(&mut self, power: &[f32]) -> Result<()> {
        if power.len() != self.power.len() {
            return Err(Error::InvalidArgument(format!(
                "masking model: spectrum has {} bins, expected {}",
                power.len(),
                self.power.len()
            )));
        }
        self.power.copy_from_slice(power);
        Ok(())
    }

    /// The threshold (dB, on the normalised scale) of the spectrum last set by
    /// [`MaskingAnalyzer::analyze_power`] or [`MaskingAnalyzer::load_power`], with `psd_max`
    /// the power put at 96 dB.
    pub fn threshold_from_power(&mut self, psd_max: f32, theta_db: &mut [f32]) -> Result<()> {
        let bins = self.bins();
        if theta_db.len() != bins {
            return Err(Error::InvalidArgument(format!(
                "masking model: threshold buffer has {} bins, expected {bins}",
                theta_db.len()
            )));
        }
        let offset = PSD_NORMALISED_MAX_DB - 10.0 * (psd_max + POWER_FLOOR).log10();
        for (d, p) in self.psd_db.iter_mut().zip(&self.power) {
            *d = 10.0 * (p + POWER_FLOOR).log10() + offset;
        }
        self.find_maskers();
        self.spread(theta_db);
        Ok(())
    }

    /// Analyse one frame and write its threshold (dB, normalised scale) into `theta_db`
    /// (`bins` values). Returns the power put at 96 dB, which relates the threshold to a
    /// perturbation's spectrum (see [`super::MaskingThreshold`]). Never allocates.
    pub fn frame_threshold(
        &mut self,
        frame: &[f32],
        normalization: Normalization,
        theta_db: &mut [f32],
    ) -> Result<f32> {
        let frame_max = self.analyze_power(frame)?;
        let psd_max = match normalization {
            Normalization::Frame => frame_max,
            Normalization::Reference(p) => p,
            Normalization::Utterance => {
                return Err(Error::InvalidArgument(
                    "per-utterance normalisation needs the whole file: use MaskingThreshold, \
                     or Normalization::Reference with the utterance's peak power"
                        .into(),
                ))
            }
        };
        self.threshold_from_power(psd_max, theta_db)?;
        Ok(psd_max)
    }

    /// Tonal maskers: smoothed local maxima of the PSD above the threshold in quiet, the
    /// strongest of any kept within 0.5 Bark of each other.
    fn find_maskers(&mut self) {
        self.maskers.clear();
        let psd = &self.psd_db;
        for k in 1..psd.len() - 1 {
            if psd[k] > psd[k - 1] && psd[k] > psd[k + 1] {
                let sum = db_to_power(psd[k - 1]) + db_to_power(psd[k]) + db_to_power(psd[k + 1]);
                let level = 10.0 * sum.log10();
                if level < self.ath_db[k] {
                    continue;
                }
                match self.maskers.last_mut() {
                    Some(last) if self.barks[k] - self.barks[last.0] < 0.5 => {
                        if level > last.1 {
                            *last = (k, level);
                        }
                    }
                    _ => self.maskers.push((k, level)),
                }
            }
        }
    }

    /// Global threshold: power sum of every masker's spread threshold and the threshold in
    /// quiet.
    fn spread(&mut self, theta_db: &mut [f32]) {
        for (t, a) in self.theta_power.iter_mut().zip(&self.ath_db) {
            *t = db_to_power(*a);
        }
        for &(bin, level) in &self.maskers {
            let b_m = self.barks[bin];
            let offset = level - 6.025 - 0.275 * b_m;
            let upper_slope = -27.0 + 0.37 * (level - 40.0).max(0.0);
            for (t, &b) in self.theta_power.iter_mut().zip(&self.barks) {
                let dz = b - b_m;
                let sf = if dz <= 0.0 {
                    27.0 * dz
                } else {
                    upper_slope * dz
                };
                let individual = offset + sf;
                // Contributions 100 dB under the masker are below f32 resolution of the sum.
                if individual > level - 100.0 {
                    *t += db_to_power(individual);
                }
            }
        }
        for (out, t) in theta_db.iter_mut().zip(&self.theta_power) {
            *out = 10.0 * t.log10();
        }
    }
}

/// `10^(db / 10)`.
pub fn db_to_power(db: f32) -> f32 {
    (db * (std::f32::consts::LN_10 / 10.0)).exp()
}
