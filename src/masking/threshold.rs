//! The masking threshold of a whole file, and what attacks and reports do with it.

use super::analyzer::{db_to_power, MaskingAnalyzer, Normalization, PSD_NORMALISED_MAX_DB};
use crate::dsp::stft::Spectrogram;
use crate::dsp::{hann_periodic, Stft};
use crate::{Error, Result};
use realfft::num_complex::Complex32;

/// Analysis settings of the masking model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskingConfig {
    /// Sample rate of the signal (Hz).
    pub sample_rate: f32,
    /// Frame size (Hann window).
    pub n_fft: usize,
    /// Hop between frames.
    pub hop: usize,
    /// How levels are normalised.
    pub normalization: Normalization,
}

impl Default for MaskingConfig {
    /// Qin et al.: 16 kHz, N = 2048, hop 512, per-utterance normalisation.
    fn default() -> Self {
        MaskingConfig {
            sample_rate: 16_000.0,
            n_fft: 2048,
            hop: 512,
            normalization: Normalization::Utterance,
        }
    }
}

/// How a perturbation sits against a threshold.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskingStats {
    /// Share of the perturbation's energy (normalised PSD, summed over T-F bins) that lies in
    /// bins where it stays under the threshold.
    pub energy_under_threshold: f64,
    /// Share of all T-F bins where the perturbation exceeds the threshold.
    pub bins_over_threshold: f64,
    /// Energy-weighted mean of `θ − p_δ` in dB over the bins the perturbation touches
    /// (positive: under the threshold).
    pub mean_margin_db: f64,
}

/// The masking threshold of one signal, frame by frame (centred frames, zero padding).
pub struct MaskingThreshold {
    config: MaskingConfig,
    stft: Stft,
    len: usize,
    frames: usize,
    bins: usize,
    /// Threshold per frame and bin (dB, normalised scale), frame-major.
    theta_db: Vec<f32>,
    /// The signal's own normalised PSD (dB), frame-major.
    psd_db: Vec<f32>,
    /// Power put at 96 dB, per frame.
    psd_max: Vec<f32>,
}

impl std::fmt::Debug for MaskingThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskingThreshold")
            .field("config", &self.config)
            .field("len", &self.len)
            .field("frames", &self.frames)
            .field("bins", &self.bins)
            .finish()
    }
}

impl MaskingThreshold {
    /// The threshold of `x` (samples at `config.sample_rate`).
    pub fn compute(x: &[f32], config: MaskingConfig) -> Result<Self> {
        if x.is_empty() {
            return Err(Error::InvalidArgument(
                "masking threshold of an empty signal".into(),
            ));
        }
        if config.hop == 0 || config.hop > config.n_fft / 2 {
            return Err(Error::InvalidArgument(format!(
                "masking model: hop must be in 1..={}, got {}",
                config.n_fft / 2,
                config.hop
            )));
        }
        let mut analyzer = MaskingAnalyzer::new(config.sample_rate, config.n_fft)?;
        let stft = Stft::new(config.n_fft, config.hop, hann_periodic(config.n_fft))?;
        let frames = stft.frames_for(x.len());
        let bins = stft.bins();
        let n = config.n_fft;
        let mut power = vec![0.0f32; frames * bins];
        let mut frame_max = vec![0.0f32; frames];
        let mut frame = vec![0.0f32; n];
        for t in 0..frames {
            centred_frame(x, t * config.hop, &mut frame);
            frame_max[t] = analyzer.analyze_power(&frame)?;
            power[t * bins..(t + 1) * bins].copy_from_slice(analyzer.power());
        }
        let utterance_max = frame_max.iter().copied().fold(0.0, f32::max);
        let psd_max: Vec<f32> = match config.normalization {
            Normalization::Utterance => vec![utterance_max; frames],
            Normalization::Frame => frame_max,
            Normalization::Reference(p) => {
                if !(p.is_finite() && p > 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "masking model: reference power {p} is not positive"
                    )));
                }
                vec![p; frames]
            }
        };
        let mut theta_db = vec![0.0f32; frames * bins];
        let mut psd_db = vec![0.0f32; frames * bins];
        for t in 0..frames {
            analyzer.load_power(&power[t * bins..(t + 1) * bins])?;
            analyzer.threshold_from_power(psd_max[t], &mut theta_db[t * bins..(t + 1) * bins])?;
            psd_db[t * bins..(t + 1) * bins].copy_from_slice(analyzer.psd_db());
        }
        Ok(MaskingThreshold {
            config,
            stft,
            len: x.len(),
            frames,
            bins,
            theta_db,
            psd_db,
            psd_max,
        })
    }

    /// The analysis settings.
    pub fn config(&self) -> &MaskingConfig {
        &self.config
    }
    /// Samples of the analysed signal.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the analysed signal was empty (never: [`MaskingThreshold::compute`] refuses).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frames
    }
    /// Bins per frame.
    pub fn bins(&self) -> usize {
        self.bins
    }
    /// Threshold (dB, normalised scale), frame-major `frames × bins`.
    pub fn theta_db(&self) -> &[f32] {
        &self.theta_db
    }
    /// The signal's normalised PSD (dB), frame-major.
    pub fn signal_psd_db(&self) -> &[f32] {
        &self.psd_db
    }
    /// Power put at 96 dB in frame `t`.
    pub fn psd_max(&self, t: usize) -> f32 {
        self.psd_max[t]
    }

    /// `p_δ` per coefficient equals `scale(t) · |X_δ|²`.
    fn scale(&self, t: usize) -> f32 {
        let n = self.config.n_fft as f32;
        db_to_power(PSD_NORMALISED_MAX_DB) / self.psd_max[t].max(1e-30) * (8.0 / 3.0) / (n * n)
    }

    fn check_len(&self, delta: &[f32]) -> Result<()> {
        if delta.len() != self.len {
            return Err(Error::Shape(format!(
                "perturbation has {} samples, the masking threshold was computed for {}",
                delta.len(),
                self.len
            )));
        }
        Ok(())
    }

    /// The perturbation's PSD `p_δ` (linear, normalised scale), frame-major.
    pub fn perturbation_power(&self, delta: &[f32]) -> Result<Vec<f32>> {
        self.check_len(delta)?;
        let spec = self.stft.stft(delta);
        Ok(spec
            .data
            .iter()
            .enumerate()
            .map(|(i, c)| self.scale(i / self.bins) * c.norm_sqr())
            .collect())
    }

    /// The masking loss `ℓ_θ = mean over frames and bins of ReLU(p_δ − 10^{θ/10})` and its
    /// gradient w.r.t. δ.
    pub fn loss_and_grad(&self, delta: &[f32]) -> Result<(f32, Vec<f32>)> {
        self.check_len(delta)?;
        let mut spec = self.stft.stft(delta);
        let count = (self.frames * self.bins) as f64;
        let mut loss = 0.0f64;
        for (i, c) in spec.data.iter_mut().enumerate() {
            let s = self.scale(i / self.bins);
            let p = s * c.norm_sqr();
            let allowed = db_to_power(self.theta_db[i]);
            if p > allowed {
                loss += (p - allowed) as f64;
                *c *= (2.0 * s as f64 / count) as f32;
            } else {
                *c = Complex32::new(0.0, 0.0);
            }
        }
        let grad = self.stft.stft_adjoint(&spec, self.len)?;
        Ok(((loss / count) as f32, grad))
    }

    /// Scale every T-F bin of δ that exceeds `θ − margin_db` down onto it, and resynthesise;
    /// with `keep`, samples marked `false` are zeroed after each resynthesis. Resynthesis
    /// spreads a little energy into neighbouring bins and frames, so this alternates (at most
    /// `passes` times) until no bin is more than 0.1 dB over; the result only ever has less
    /// energy per bin than δ where δ was over.
    pub fn project(
        &self,
        delta: &mut [f32],
        margin_db: f32,
        passes: usize,
        keep: Option<&[bool]>,
    ) -> Result<()> {
        self.check_len(delta)?;
        if let Some(k) = keep {
            if k.len() != delta.len() {
                return Err(Error::Shape(format!(
                    "time mask has {} samples, the perturbation {}",
                    k.len(),
                    delta.len()
                )));
            }
        }
        for _ in 0..passes.max(1) {
            let mut spec = self.stft.stft(delta);
            let over = self.clip_spectrum(&mut spec, margin_db);
            if !over {
                break;
            }
            let out = self.stft.istft(&spec, self.len)?;
            delta.copy_from_slice(&out);
            if let Some(k) = keep {
                for (d, keep) in delta.iter_mut().zip(k) {
                    if !keep {
                        *d = 0.0;
                    }
                }
            }
        }
        Ok(())
    }

    /// Clip the coefficients of `spec` to `θ − margin_db`; whether any was > 0.1 dB over.
    fn clip_spectrum(&self, spec: &mut Spectrogram, margin_db: f32) -> bool {
        let mut over = false;
        let tolerance = db_to_power(0.1);
        for (i, c) in spec.data.iter_mut().enumerate() {
            let p = self.scale(i / self.bins) * c.norm_sqr();
            let allowed = db_to_power(self.theta_db[i] - margin_db);
            if p > allowed {
                over |= p > allowed * tolerance;
                *c *= (allowed / p).sqrt();
            }
        }
        over
    }

    /// How δ sits against the threshold.
    pub fn stats(&self, delta: &[f32]) -> Result<MaskingStats> {
        let power = self.perturbation_power(delta)?;
        let (mut total, mut under, mut over_bins, mut margin_sum) = (0.0f64, 0.0f64, 0usize, 0.0);
        for (p, theta) in power.iter().zip(&self.theta_db) {
            let p = *p as f64;
            let allowed = db_to_power(*theta) as f64;
            total += p;
            if p <= allowed {
                under += p;
            } else {
                over_bins += 1;
            }
            if p > 0.0 {
                let margin = (*theta as f64 - 10.0 * p.log10()).clamp(-200.0, 200.0);
                margin_sum += p * margin;
            }
        }
        Ok(MaskingStats {
            energy_under_threshold: if total > 0.0 { under / total } else { 1.0 },
            bins_over_threshold: over_bins as f64 / power.len() as f64,
            mean_margin_db: if total > 0.0 {
                margin_sum / total
            } else {
                f64::INFINITY
            },
        })
    }
}

/// The `frame.len()` samples of `x` centred on `centre` (zero outside `x`).
pub(crate) fn centred_frame(x: &[f32], centre: usize, frame: &mut [f32]) {
    let start = centre as isize - (frame.len() / 2) as isize;
    for (i, f) in frame.iter_mut().enumerate() {
        let idx = start + i as isize;
        *f = if idx >= 0 && (idx as usize) < x.len() {
            x[idx as usize]
        } else {
            0.0
        };
    }
}
