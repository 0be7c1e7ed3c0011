//! Expectation over transformation: the loss is averaged over random transformations of the
//! adversarial signal, so the perturbation survives them (over-the-air playback, devices, codecs).
//! Every transformation is linear in the signal up to additive noise, so its gradient is the
//! adjoint applied to the gradient of the transformed signal.

use crate::dsp::filter::{convolve, fft_convolve, windowed_sinc};
use crate::rng::Rng;
use crate::{Error, Result};
use std::path::Path;
use std::sync::Arc;

/// Which random transformations, and how strong.
#[derive(Debug, Clone)]
pub struct EotConfig {
    /// Transformations averaged per step.
    pub samples: usize,
    /// Random gain range in dB.
    pub gain_db: (f32, f32),
    /// Added white noise at this SNR (dB) w.r.t. the signal; `None` adds none.
    pub noise_snr_db: Option<f32>,
    /// Largest random delay in samples.
    pub max_shift: usize,
    /// Random low-pass cutoff range in Hz; `None` filters nothing.
    pub lowpass_hz: Option<(f32, f32)>,
    /// Random high-pass cutoff range in Hz (with the low-pass: a band-pass); `None` for none.
    pub highpass_hz: Option<(f32, f32)>,
    /// Synthetic room impulse responses with RT60 in this range (s); `None` for none.
    pub rt60_s: Option<(f32, f32)>,
    /// Measured room impulse responses ([`load_rirs`]): when given, each draw convolves with
    /// one of them instead of a synthetic room.
    pub rirs: Arc<[Vec<f32>]>,
    /// Transformed copies that must also meet the goal for a success.
    pub check_transforms: usize,
}

impl Default for EotConfig {
    fn default() -> Self {
        EotConfig {
            samples: 4,
            gain_db: (-6.0, 6.0),
            noise_snr_db: Some(30.0),
            max_shift: 800,
            lowpass_hz: Some((4000.0, 7500.0)),
            highpass_hz: Some((50.0, 200.0)),
            rt60_s: Some((0.1, 0.3)),
            rirs: Arc::from(Vec::new()),
            check_transforms: 2,
        }
    }
}

/// One drawn transformation: `y = h * shift(g · x) + n`.
#[derive(Debug, Clone)]
pub struct Transform {
    gain: f32,
    shift: usize,
    /// Combined FIR (filters and room), causal.
    fir: Vec<f32>,
    noise: Vec<f32>,
}

fn uniform_in(rng: &mut Rng, (lo, hi): (f32, f32)) -> f32 {
    lo + (hi - lo) * rng.uniform()
}

/// Exponentially decaying noise tail after a direct path: a synthetic room.
fn room_impulse(rt60_s: f32, sample_rate: f32, rng: &mut Rng) -> Vec<f32> {
    let len = ((rt60_s * sample_rate) as usize).max(2);
    let decay = 6.9 / (rt60_s * sample_rate);
    let mut h: Vec<f32> = (0..len)
        .map(|n| 0.2 * rng.normal() * (-decay * n as f32).exp())
        .collect();
    h[0] = 1.0;
    let energy = h.iter().map(|v| v * v).sum::<f32>().sqrt();
    h.iter_mut().for_each(|v| *v /= energy);
    h
}

impl Transform {
    /// Draw a transformation for `signal` (its level sets the noise level).
    pub fn sample(cfg: &EotConfig, signal: &[f32], sample_rate: u32, rng: &mut Rng) -> Self {
        let sr = sample_rate as f32;
        let gain = 10f32.powf(uniform_in(rng, cfg.gain_db) / 20.0);
        let shift = if cfg.max_shift > 0 {
            rng.below(cfg.max_shift + 1)
        } else {
            0
        };
        let mut fir = vec![1.0f32];
        if let Some(range) = cfg.lowpass_hz {
            fir = convolve(
                &fir,
                &windowed_sinc(uniform_in(rng, range).min(0.49 * sr), sr, 101, false),
            );
        }
        if let Some(range) = cfg.highpass_hz {
            fir = convolve(
                &fir,
                &windowed_sinc(uniform_in(rng, range).max(1.0), sr, 101, true),
            );
        }
        if !cfg.rirs.is_empty() {
            fir = fft_convolve(&fir, &cfg.rirs[rng.below(cfg.rirs.len())]);
        } else if let Some(range) = cfg.rt60_s {
            fir = convolve(&fir, &room_impulse(uniform_in(rng, range), sr, rng));
        }
        let noise = match cfg.noise_snr_db {
            Some(snr) => {
                let rms =
                    (signal.iter().map(|v| v * v).sum::<f32>() / signal.len().max(1) as f32).sqrt();
                let sigma = gain * rms * 10f32.powf(-snr / 20.0);
                (0..signal.len()).map(|_| sigma * rng.normal()).collect()
            }
            None => Vec::new(),
        };
        Transform {
            gain,
            shift,
            fir,
            noise,
        }
    }

    /// `y = h * shift(g · x) + n`, same length as `x`.
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len();
        let mut shifted = vec![0.0f32; n];
        for i in self.shift..n {
            shifted[i] = self.gain * x[i - self.shift];
        }
        let mut y = fft_convolve(&shifted, &self.fir);
        y.truncate(n);
        for (o, e) in y.iter_mut().zip(&self.noise) {
            *o += e;
        }
        y
    }

    /// The adjoint of the linear part: maps a gradient w.r.t. `y` to one w.r.t. `x`.
    pub fn adjoint(&self, g: &[f32]) -> Vec<f32> {
        let n = g.len();
        // Correlation with the FIR: convolution with it reversed, from its last tap on.
        let reversed: Vec<f32> = self.fir.iter().rev().copied().collect();
        let full = fft_convolve(g, &reversed);
        let gs: Vec<f32> = (0..n)
            .map(|i| full.get(i + self.fir.len() - 1).copied().unwrap_or(0.0))
            .collect();
        let mut gx = vec![0.0f32; n];
        for i in self.shift..n {
            gx[i - self.shift] = self.gain * gs[i];
        }
        gx
    }
}

/// Longest measured response kept (s): the tail past it is below what a recogniser hears
/// in rooms of RT60 up to about a second.
pub const RIR_MAX_SECONDS: f32 = 1.0;

/// Measured room impulse responses from a WAV (any format advox reads) or a directory of
/// them: each at 16 kHz, from just before its direct path (the strongest sample), at most
/// [`RIR_MAX_SECONDS`], scaled to unit energy (the room shapes, the gain draw sets the level).
pub fn load_rirs(path: &Path) -> Result<Arc<[Vec<f32>]>> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["wav", "flac", "ogg", "mp3"].contains(&e.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(Error::bad_file(
                path,
                "holds no impulse response (WAV, FLAC, OGG or MP3 files)",
            ));
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut rirs = Vec::new();
    for f in files {
        let h = crate::audio::read_audio_16k_mono(&f)?;
        let (peak_at, peak) =
            h.iter().enumerate().fold(
                (0, 0.0f32),
                |(i, m), (j, v)| if v.abs() > m { (j, v.abs()) } else { (i, m) },
            );
        if peak == 0.0 || !peak.is_finite() {
            return Err(Error::bad_file(
                &f,
                "the impulse response is silent or not finite",
            ));
        }
        // From 1 ms before the direct path.
        let start = peak_at.saturating_sub(16);
        let end =
            (start + (RIR_MAX_SECONDS * crate::audio::SAMPLE_RATE as f32) as usize).min(h.len());
        let mut h = h[start..end].to_vec();
        let energy = h.iter().map(|v| v * v).sum::<f32>().sqrt();
        h.iter_mut().for_each(|v| *v /= energy);
        rirs.push(h);
    }
    Ok(Arc::from(rirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjoint_matches_the_linear_part() {
        let mut rng = Rng::new(5);
        let n = 4000;
        let x: Vec<f32> = (0..n).map(|_| rng.symmetric(0.5)).collect();
        let g: Vec<f32> = (0..n).map(|_| rng.symmetric(1.0)).collect();
        let cfg = EotConfig {
            noise_snr_db: None,
            ..Default::default()
        };
        for _ in 0..5 {
            let t = Transform::sample(&cfg, &x, 16_000, &mut rng);
            let lhs: f64 = t
                .apply(&x)
                .iter()
                .zip(&g)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let rhs: f64 = x
                .iter()
                .zip(t.adjoint(&g))
                .map(|(a, b)| (*a as f64) * (b as f64))
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn measured_rooms_are_trimmed_normalised_and_drawn() {
        let dir = std::env::temp_dir().join(format!("advox-rir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A 0.2-s lead-in of silence, a direct path, a decaying tail of 2 s.
        let mut rng = Rng::new(2);
        let mut h = vec![0.0f32; 3200];
        h.push(0.8);
        h.extend((1..32_000).map(|n| 0.3 * rng.normal() * (-(n as f32) / 3000.0).exp()));
        crate::audio::write_wav(
            &dir.join("room.wav"),
            &h,
            16_000,
            crate::audio::WavFormat::Float32,
            &[],
        )
        .unwrap();
        let rirs = load_rirs(&dir).unwrap();
        assert_eq!(rirs.len(), 1);
        let r = &rirs[0];
        assert_eq!(r.len(), 16_000);
        assert_eq!(
            r.iter()
                .map(|v| v.abs())
                .enumerate()
                .fold((0, 0.0), |a, (i, v)| if v > a.1 { (i, v) } else { a })
                .0,
            16
        );
        assert!((r.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
        // Drawn transformations use it (and their adjoint still matches).
        let cfg = EotConfig {
            noise_snr_db: None,
            rirs: rirs.clone(),
            ..Default::default()
        };
        let x: Vec<f32> = (0..8000).map(|_| rng.symmetric(0.5)).collect();
        let g: Vec<f32> = (0..8000).map(|_| rng.symmetric(1.0)).collect();
        let t = Transform::sample(&cfg, &x, 16_000, &mut rng);
        assert!(t.fir.len() >= 16_000, "{}", t.fir.len());
        let lhs: f64 = t
            .apply(&x)
            .iter()
            .zip(&g)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(t.adjoint(&g))
            .map(|(a, b)| *a as f64 * b as f64)
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // An empty directory and a silent response are errors naming the path.
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(load_rirs(&empty).unwrap_err().to_string().contains("empty"));
        crate::audio::write_wav(
            &dir.join("silent.wav"),
            &[0.0; 100],
            16_000,
            crate::audio::WavFormat::Float32,
            &[],
        )
        .unwrap();
        let e = load_rirs(&dir.join("silent.wav")).unwrap_err().to_string();
        assert!(e.contains("silent.wav") && e.contains("silent"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn plain_gain_and_delay() {
        let cfg = EotConfig {
            gain_db: (6.0, 6.0),
            noise_snr_db: None,
            max_shift: 0,
            lowpass_hz: None,
            highpass_hz: None,
            rt60_s: None,
            ..Default::default()
        };
        let t = Transform::sample(&cfg, &[0.0; 4], 16_000, &mut Rng::new(1));
        let y = t.apply(&[0.1, -0.2, 0.3, 0.0]);
        assert!((y[0] - 0.1 * 10f32.powf(0.3)).abs() < 1e-6);
        let filtered = EotConfig {
            lowpass_hz: Some((1000.0, 1000.0)),
            ..cfg
        };
        let tone: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 6000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let t = Transform::sample(&filtered, &tone, 16_000, &mut Rng::new(1));
        let out = t.apply(&tone);
        let rms = (out[500..].iter().map(|v| v * v).sum::<f32>() / 7500.0).sqrt();
        assert!(rms < 0.01, "6 kHz through a 1 kHz low-pass: rms {rms}");
    }
}
