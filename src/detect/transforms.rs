//! Input transformations that keep speech intelligible but disturb fine-grained adversarial
//! structure (WaveGuard, Hussain et al. 2021). Used by the transform-consistency detector and
//! by purification defences. All work on 16-kHz mono samples and return as many samples.

use crate::audio::{resample, SAMPLE_RATE};
use crate::dsp::filter::{filter_zero_phase, windowed_sinc};
use crate::dsp::{hann_periodic, Stft};
use crate::masking::{MaskingConfig, MaskingThreshold};
use crate::mel::mel_filterbank;
use crate::rng::Rng;
use crate::{Error, Result};
use realfft::num_complex::Complex32;

/// One input transformation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Down-sample to `rate_hz` and back to 16 kHz (drops the band above its Nyquist).
    Resample {
        /// Intermediate sample rate.
        rate_hz: u32,
    },
    /// Quantise to `bits` bits.
    Quantize {
        /// Bits per sample (2..=16).
        bits: u32,
    },
    /// Linear-phase low-pass at `cutoff_hz` (255 taps).
    LowPass {
        /// Cut-off frequency.
        cutoff_hz: f32,
    },
    /// LPC analysis and resynthesis (20-ms blocks) from a residual quantised to `bits` bits:
    /// the spectral envelope survives, fine structure is re-drawn.
    Lpc {
        /// Predictor order.
        order: usize,
        /// Bits of the quantised residual.
        bits: u32,
    },
    /// Whisper-style mel power spectrogram (400/160, `n_mels` bands) inverted by Griffin-Lim.
    MelInversion {
        /// Mel bands.
        n_mels: usize,
        /// Griffin-Lim iterations.
        iterations: usize,
    },
    /// A perceptual codec: STFT bins the psychoacoustic model says are masked are dropped, the
    /// rest re-quantised in `step_db` steps of magnitude (as lossy codecs spend no bits under
    /// the masking threshold).
    Lossy {
        /// Magnitude quantisation step (dB).
        step_db: f32,
    },
}

impl Transform {
    /// The set the transform-consistency detector uses by default.
    pub fn default_set() -> Vec<Transform> {
        vec![
            Transform::Resample { rate_hz: 8_000 },
            Transform::Quantize { bits: 8 },
            Transform::LowPass { cutoff_hz: 4_000.0 },
            Transform::Lpc { order: 16, bits: 4 },
            Transform::MelInversion {
                n_mels: 80,
                iterations: 32,
            },
            Transform::Lossy { step_db: 3.0 },
        ]
    }

    /// Its name on the command line and in reports (`resample-8000`, `quantize-8`,
    /// `lowpass-4000`, `lpc-16`, `mel-80`, `lossy`); [`Transform::parse`] reads it back.
    pub fn name(&self) -> String {
        match self {
            Transform::Resample { rate_hz } => format!("resample-{rate_hz}"),
            Transform::Quantize { bits } => format!("quantize-{bits}"),
            Transform::LowPass { cutoff_hz } => format!("lowpass-{}", cutoff_hz.round()),
            Transform::Lpc { order, .. } => format!("lpc-{order}"),
            Transform::MelInversion { n_mels, .. } => format!("mel-{n_mels}"),
            Transform::Lossy { .. } => "lossy".into(),
        }
    }

    /// Parse a name as [`Transform::name`] writes it (the number is optional).
    pub fn parse(s: &str) -> Result<Transform> {
        let s = s.trim().to_ascii_lowercase();
        let (kind, arg) = match s.split_once('-') {
            Some((k, a)) => (k.to_string(), Some(a.to_string())),
            None => (s.clone(), None),
        };
        let num = |default: f64| -> Result<f64> {
            match &arg {
                None => Ok(default),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| Error::InvalidArgument(format!("transform {s:?}: bad number"))),
            }
        };
        let t = match kind.as_str() {
            "resample" => Transform::Resample {
                rate_hz: num(8_000.0)? as u32,
            },
            "quantize" => Transform::Quantize {
                bits: num(8.0)? as u32,
            },
            "lowpass" => Transform::LowPass {
                cutoff_hz: num(4_000.0)? as f32,
            },
            "lpc" => Transform::Lpc {
                order: num(16.0)? as usize,
                bits: 4,
            },
            "mel" => Transform::MelInversion {
                n_mels: num(80.0)? as usize,
                iterations: 32,
            },
            "lossy" => Transform::Lossy {
                step_db: num(3.0)? as f32,
            },
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown transform {s:?} (resample-HZ, quantize-BITS, lowpass-HZ, lpc-ORDER, \
                     mel-BANDS, lossy)"
                )))
            }
        };
        t.validate()?;
        Ok(t)
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(format!("{}: {what}", self.name())));
        match *self {
            Transform::Resample { rate_hz } if !(1_000..SAMPLE_RATE).contains(&rate_hz) => {
                bad("the rate must be in 1000..16000 Hz")
            }
            Transform::Quantize { bits } if !(2..=16).contains(&bits) => {
                bad("bits must be in 2..=16")
            }
            Transform::LowPass { cutoff_hz } if !(cutoff_hz > 0.0 && cutoff_hz < 8_000.0) => {
                bad("the cut-off must be in (0, 8000) Hz")
            }
            Transform::Lpc { order, bits } if !(1..=64).contains(&order) || bits < 2 => {
                bad("the order must be in 1..=64 and the residual at least 2 bits")
            }
            Transform::MelInversion { n_mels, iterations } if n_mels < 8 || iterations == 0 => {
                bad("at least 8 mel bands and one iteration")
            }
            Transform::Lossy { step_db } if !(step_db > 0.0 && step_db.is_finite()) => {
                bad("the step must be positive")
            }
            _ => Ok(()),
        }
    }

    /// Apply to 16-kHz mono samples; the output has the same length.
    pub fn apply(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.validate()?;
        if x.is_empty() {
            return Ok(Vec::new());
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(
                "transform of a signal with NaN or infinite samples".into(),
            ));
        }
        let mut y = match *self {
            Transform::Resample { rate_hz } => {
                let down = resample(x, SAMPLE_RATE, rate_hz)?;
                resample(&down, rate_hz, SAMPLE_RATE)?
            }
            Transform::Quantize { bits } => {
                let levels = (1u32 << (bits - 1)) as f32;
                x.iter()
                    .map(|v| (v * levels).round().clamp(-levels, levels - 1.0) / levels)
                    .collect()
            }
            Transform::LowPass { cutoff_hz } => {
                filter_zero_phase(x, &windowed_sinc(cutoff_hz, SAMPLE_RATE as f32, 255, false))
            }
            Transform::Lpc { order, bits } => lpc_resynthesis(x, order, bits),
            Transform::MelInversion { n_mels, iterations } => mel_inversion(x, n_mels, iterations)?,
            Transform::Lossy { step_db } => perceptual_codec(x, step_db)?,
        };
        y.resize(x.len(), 0.0);
        Ok(y)
    }
}

/// How an adaptive attack passes a gradient back through a [`Transform`] (Athalye et al. 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backward {
    /// The transform is linear: its adjoint (the low-pass, a symmetric FIR, is its own;
    /// resampling's down-up pair is a symmetric low-pass that also advances the signal by a few
    /// samples, so its adjoint is the pair delayed by twice that).
    Exact,
    /// Rounding: the identity (the straight-through estimator).
    StraightThrough,
    /// Not differentiable (LPC resynthesis, mel inversion, the perceptual codec): the forward
    /// pass runs the transform, the backward pass the identity (BPDA, since `T(x) ≈ x`).
    Bpda,
}

impl Backward {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backward::Exact => "exact",
            Backward::StraightThrough => "straight-through",
            Backward::Bpda => "bpda",
        }
    }
}

impl Transform {
    /// How [`Transform::backward`] passes a gradient.
    pub fn backward_kind(&self) -> Backward {
        match self {
            Transform::Resample { .. } | Transform::LowPass { .. } => Backward::Exact,
            Transform::Quantize { .. } => Backward::StraightThrough,
            Transform::Lpc { .. } | Transform::MelInversion { .. } | Transform::Lossy { .. } => {
                Backward::Bpda
            }
        }
    }

    /// Map a gradient with respect to the transform's output to one with respect to its input
    /// (as [`Transform::backward_kind`] says). None of them depends on the point: linear ones
    /// are their own adjoints, the rest pass the gradient unchanged.
    pub fn backward(&self, g: &[f32]) -> Result<Vec<f32>> {
        self.validate()?;
        match *self {
            Transform::Resample { rate_hz } => {
                // L = advance(a) ∘ S with S symmetric: Lᵀ = delay(a) ∘ S = delay(2a) ∘ L.
                let a = resample_lead(rate_hz)?;
                let down = resample(g, SAMPLE_RATE, rate_hz)?;
                let mut back = resample(&down, rate_hz, SAMPLE_RATE)?;
                back.resize(g.len(), 0.0);
                Ok(shifted(&back, 2.0 * a))
            }
            Transform::LowPass { cutoff_hz } => Ok(filter_zero_phase(
                g,
                &windowed_sinc(cutoff_hz, SAMPLE_RATE as f32, 255, false),
            )),
            _ => Ok(g.to_vec()),
        }
    }
}

/// Samples by which down-sampling to `rate_hz` and back advances a signal (the centroid of
/// the pair's impulse response; 3 for 8 kHz, fractional for rates that do not divide 16 kHz).
fn resample_lead(rate_hz: u32) -> Result<f64> {
    const N: usize = 4096;
    let mut impulse = vec![0.0f32; N];
    impulse[N / 2] = 1.0;
    let down = resample(&impulse, SAMPLE_RATE, rate_hz)?;
    let h = resample(&down, rate_hz, SAMPLE_RATE)?;
    let (mut moment, mut mass) = (0.0f64, 0.0f64);
    for (i, v) in h.iter().enumerate() {
        moment += i as f64 * *v as f64;
        mass += *v as f64;
    }
    if mass.abs() < 1e-6 {
        return Err(Error::Internal(format!(
            "resampling to {rate_hz} Hz passes no DC"
        )));
    }
    Ok((N / 2) as f64 - moment / mass)
}

/// `x` delayed by `by` samples (advanced when negative; any fraction), band-limited: a linear
/// phase applied to its zero-padded spectrum. The same length.
fn shifted(x: &[f32], by: f64) -> Vec<f32> {
    use realfft::RealFftPlanner;
    let pad = by.abs().ceil() as usize + 64;
    let n = (x.len() + 2 * pad).next_power_of_two();
    let mut planner = RealFftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let mut buf = vec![0.0f32; n];
    buf[pad..pad + x.len()].copy_from_slice(x);
    let mut spec = fwd.make_output_vec();
    // Lengths match the plans: the transforms cannot fail.
    let _ = fwd.process(&mut buf, &mut spec);
    for (k, c) in spec.iter_mut().enumerate() {
        let phase = -2.0 * std::f64::consts::PI * k as f64 * by / n as f64;
        *c *= Complex32::new(phase.cos() as f32, phase.sin() as f32);
    }
    // The Nyquist bin of a real signal stays real.
    if let Some(last) = spec.last_mut() {
        last.im = 0.0;
    }
    let mut out = vec![0.0f32; n];
    let _ = inv.process(&mut spec, &mut out);
    out[pad..pad + x.len()]
        .iter()
        .map(|v| v / n as f32)
        .collect()
}

/// Levinson–Durbin: predictor `a[1..=p]` (a[0] = 1) of `x[n] ≈ −Σ a_k x[n−k]` from the
/// autocorrelation `r[0..=p]`.
fn levinson(r: &[f64], order: usize) -> Vec<f64> {
    let mut a = vec![0.0f64; order + 1];
    a[0] = 1.0;
    let mut err = r[0];
    if err <= 0.0 {
        return a;
    }
    for i in 1..=order {
        let acc: f64 = (1..i).map(|j| a[j] * r[i - j]).sum::<f64>() + r[i];
        let k = -acc / err;
        let prev = a.clone();
        for j in 1..i {
            a[j] = prev[j] + k * prev[i - j];
        }
        a[i] = k;
        err *= 1.0 - k * k;
        if err <= 1e-12 * r[0] {
            break;
        }
    }
    a
}

fn lpc_resynthesis(x: &[f32], order: usize, bits: u32) -> Vec<f32> {
    const BLOCK: usize = 320;
    const SPAN: usize = 640;
    let window = hann_periodic(SPAN);
    let levels = (1u32 << (bits - 1)) as f32;
    let mut y = vec![0.0f32; x.len()];
    let mut start = 0;
    while start < x.len() {
        let end = (start + BLOCK).min(x.len());
        // Analysis over a Hann window centred on the block.
        let centre = (start + end) / 2;
        let seg: Vec<f64> = (0..SPAN)
            .map(|i| {
                let n = centre as isize - (SPAN / 2) as isize + i as isize;
                let v = if n >= 0 && (n as usize) < x.len() {
                    x[n as usize]
                } else {
                    0.0
                };
                (v * window[i]) as f64
            })
            .collect();
        let mut r: Vec<f64> = (0..=order)
            .map(|lag| (lag..SPAN).map(|i| seg[i] * seg[i - lag]).sum())
            .collect();
        r[0] *= 1.0 + 1e-9; // white-noise correction keeps the filter well conditioned
        r[0] += 1e-12;
        let a = levinson(&r, order);
        // Residual of the block, quantised relative to its peak.
        let residual: Vec<f32> = (start..end)
            .map(|n| {
                let mut e = x[n] as f64;
                for (k, ak) in a.iter().enumerate().skip(1) {
                    if n >= k {
                        e += ak * x[n - k] as f64;
                    }
                }
                e as f32
            })
            .collect();
        let peak = residual.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, n) in (start..end).enumerate() {
            let e = if peak > 0.0 {
                (residual[i] / peak * levels).round().clamp(-levels, levels) / levels * peak
            } else {
                0.0
            };
            let mut v = e as f64;
            for (k, ak) in a.iter().enumerate().skip(1) {
                if n >= k {
                    v -= ak * y[n - k] as f64;
                }
            }
            y[n] = (v as f32).clamp(-4.0, 4.0);
        }
        start = end;
    }
    y
}

fn mel_inversion(x: &[f32], n_mels: usize, iterations: usize) -> Result<Vec<f32>> {
    const N_FFT: usize = 400;
    const HOP: usize = 160;
    let stft = Stft::new(N_FFT, HOP, hann_periodic(N_FFT))?;
    let spec = stft.stft(x);
    let bins = spec.bins;
    let w = mel_filterbank(SAMPLE_RATE as usize, N_FFT, n_mels);
    // Each band's power spread evenly over its filter, then averaged across the filters
    // covering a bin: a smooth power estimate from the mel spectrogram.
    let band_sum: Vec<f32> = (0..n_mels)
        .map(|m| w[m * bins..(m + 1) * bins].iter().sum())
        .collect();
    let cover: Vec<f32> = (0..bins)
        .map(|k| (0..n_mels).map(|m| w[m * bins + k]).sum())
        .collect();
    let mut magnitude = vec![0.0f32; spec.frames * bins];
    for t in 0..spec.frames {
        let frame = spec.frame(t);
        for m in 0..n_mels {
            let row = &w[m * bins..(m + 1) * bins];
            let mel: f32 = row.iter().zip(frame).map(|(wk, c)| wk * c.norm_sqr()).sum();
            let per_bin = if band_sum[m] > 0.0 {
                mel / band_sum[m]
            } else {
                0.0
            };
            for k in 0..bins {
                magnitude[t * bins + k] += row[k] * per_bin;
            }
        }
        for k in 0..bins {
            let p = &mut magnitude[t * bins + k];
            *p = if cover[k] > 0.0 {
                (*p / cover[k]).max(0.0).sqrt()
            } else {
                0.0
            };
        }
    }
    // Griffin-Lim from a seeded random phase.
    let mut rng = Rng::new(0x6C1F);
    let mut est = spec.clone();
    for (c, m) in est.data.iter_mut().zip(&magnitude) {
        let phase = 2.0 * std::f32::consts::PI * rng.uniform();
        *c = Complex32::from_polar(*m, phase);
    }
    let mut y = stft.istft(&est, x.len())?;
    for _ in 1..iterations {
        let s = stft.stft(&y);
        for ((c, m), sc) in est.data.iter_mut().zip(&magnitude).zip(&s.data) {
            let n = sc.norm();
            *c = if n > 0.0 {
                sc * (*m / n)
            } else {
                Complex32::new(*m, 0.0)
            };
        }
        y = stft.istft(&est, x.len())?;
    }
    Ok(y)
}

fn perceptual_codec(x: &[f32], step_db: f32) -> Result<Vec<f32>> {
    let config = MaskingConfig::default();
    let threshold = MaskingThreshold::compute(x, config)?;
    let stft = Stft::new(config.n_fft, config.hop, hann_periodic(config.n_fft))?;
    let mut spec = stft.stft(x);
    let (theta, psd) = (threshold.theta_db(), threshold.signal_psd_db());
    for (i, c) in spec.data.iter_mut().enumerate() {
        if psd[i] < theta[i] {
            *c = Complex32::new(0.0, 0.0);
            continue;
        }
        let m = c.norm();
        if m > 0.0 {
            let db = 20.0 * m.log10();
            let q = (db / step_db).round() * step_db;
            *c *= 10f32.powf(q / 20.0) / m;
        }
    }
    stft.istft(&spec, x.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, n: usize, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0).sin())
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        rms(&d) / rms(b)
    }

    #[test]
    fn every_transform_keeps_a_low_tone_and_the_length() {
        let x = tone(440.0, 16_000, 0.3);
        for t in Transform::default_set() {
            let y = t.apply(&x).unwrap();
            assert_eq!(y.len(), x.len(), "{}", t.name());
            assert!(y.iter().all(|v| v.is_finite()), "{}", t.name());
            // Away from the edges the tone's level survives.
            let ratio = rms(&y[2000..14000]) / rms(&x[2000..14000]);
            assert!(
                (0.7..1.3).contains(&ratio),
                "{}: level ratio {ratio}",
                t.name()
            );
            assert_eq!(Transform::parse(&t.name()).unwrap().name(), t.name());
        }
    }

    #[test]
    fn band_limiting_transforms_remove_high_frequencies() {
        let x = tone(6_000.0, 8_000, 0.3);
        for t in [
            Transform::Resample { rate_hz: 8_000 },
            Transform::LowPass { cutoff_hz: 4_000.0 },
        ] {
            let y = t.apply(&x).unwrap();
            assert!(rms(&y[1000..7000]) < 0.01 * rms(&x), "{}", t.name());
        }
    }

    #[test]
    fn quantisation_and_lpc_are_close_but_not_exact() {
        let x: Vec<f32> = tone(300.0, 8_000, 0.2)
            .iter()
            .zip(tone(1_250.0, 8_000, 0.1))
            .map(|(a, b)| a + b)
            .collect();
        let q = Transform::Quantize { bits: 8 }.apply(&x).unwrap();
        assert!(q
            .iter()
            .zip(&x)
            .all(|(a, b)| (a - b).abs() <= 0.5 / 128.0 + 1e-6));
        let l = Transform::Lpc { order: 16, bits: 4 }.apply(&x).unwrap();
        let e = rel_err(&l[800..7200], &x[800..7200]);
        assert!(e > 1e-4 && e < 0.5, "LPC relative error {e}");
    }

    /// Amplitude of the `hz` component of `x` (projection on sine and cosine).
    fn component(x: &[f32], hz: f32) -> f32 {
        let (mut s, mut c) = (0.0f32, 0.0f32);
        for (i, v) in x.iter().enumerate() {
            let w = 2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0;
            s += v * w.sin();
            c += v * w.cos();
        }
        2.0 * (s * s + c * c).sqrt() / x.len() as f32
    }

    #[test]
    fn perceptual_codec_drops_a_masked_component() {
        // A loud 1 kHz tone masks a quiet 1.1 kHz one 50 dB down: the codec drops the quiet
        // one and keeps the loud one (to within its magnitude quantisation).
        let loud = tone(1_000.0, 16_000, 0.5);
        let quiet = tone(1_100.0, 16_000, 0.5 * 10f32.powf(-50.0 / 20.0));
        let x: Vec<f32> = loud.iter().zip(&quiet).map(|(a, b)| a + b).collect();
        let y = Transform::Lossy { step_db: 1.0 }.apply(&x).unwrap();
        let (mid_x, mid_y) = (&x[4000..12000], &y[4000..12000]);
        assert!(component(mid_y, 1_100.0) < 0.1 * component(mid_x, 1_100.0));
        let kept = component(mid_y, 1_000.0) / component(mid_x, 1_000.0);
        assert!((0.9..1.1).contains(&kept), "{kept}");
        // An audible second tone (10 dB down, an octave up) is kept.
        let second = tone(2_000.0, 16_000, 0.15);
        let x2: Vec<f32> = loud.iter().zip(&second).map(|(a, b)| a + b).collect();
        let y2 = Transform::Lossy { step_db: 1.0 }.apply(&x2).unwrap();
        let kept = component(&y2[4000..12000], 2_000.0) / component(&x2[4000..12000], 2_000.0);
        assert!((0.9..1.1).contains(&kept), "{kept}");
    }

    #[test]
    fn bad_settings_and_signals_are_errors() {
        assert!(Transform::parse("resample-20000").is_err());
        assert!(Transform::parse("warp").is_err());
        assert!(Transform::parse("quantize-x").is_err());
        assert!(Transform::Quantize { bits: 8 }
            .apply(&[0.0, f32::NAN])
            .is_err());
        assert!(Transform::Quantize { bits: 8 }
            .apply(&[])
            .unwrap()
            .is_empty());
    }

    /// `<T x, T x>` against `<x, Tᵀ T x>` for a random signal `x`, relative to the first. (With
    /// independent random `g` both sides of `<T x, g> = <x, Tᵀ g>` are near zero whatever `Tᵀ`
    /// is; with `g = T x` a wrong adjoint, e.g. one off by a few samples, shows.)
    fn adjoint_error(t: Transform) -> f64 {
        let mut rng = Rng::new(3);
        let n = 16_000;
        let x: Vec<f32> = (0..n).map(|_| rng.symmetric(0.5)).collect();
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(u, v)| *u as f64 * *v as f64).sum()
        };
        let tx = t.apply(&x).unwrap();
        let lhs = dot(&tx, &tx);
        let rhs = dot(&x, &t.backward(&tx).unwrap());
        (lhs - rhs).abs() / lhs
    }

    #[test]
    fn linear_transforms_pass_gradients_back_through_their_adjoints() {
        let lowpass = adjoint_error(Transform::LowPass { cutoff_hz: 4_000.0 });
        assert!(lowpass < 1e-5, "low-pass: {lowpass}");
        let lead = resample_lead(8_000).unwrap();
        assert!((lead - 3.0).abs() < 0.05, "{lead}");
        let mut resample = 0.0f64;
        for rate_hz in [8_000, 11_025, 4_000] {
            let e = adjoint_error(Transform::Resample { rate_hz });
            resample = resample.max(e);
        }
        assert!(resample < 1e-2, "resampling: {resample}");
        // The rest pass the gradient unchanged, and say so.
        let g = [0.5, -1.0, 2.0];
        for t in [
            Transform::Quantize { bits: 8 },
            Transform::Lpc { order: 16, bits: 4 },
            Transform::Lossy { step_db: 3.0 },
        ] {
            assert_eq!(t.backward(&g).unwrap(), g);
            assert_ne!(t.backward_kind(), Backward::Exact);
        }
        eprintln!("adjoint errors: low-pass {lowpass:.2e}, resampling {resample:.2e}");
    }
}
