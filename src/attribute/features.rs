//! What attribution looks at: features of a (possibly adversarial) recording that tell the
//! algorithms apart without the clean original. The perturbation is estimated where speech
//! hides it least — in the quietest frames, in the noise floor of each band, and in the
//! high-passed signal — and the model's loss landscape around the input is probed:
//!
//! - sign attacks (FGSM, PGD) fill pauses with samples near ±ε: a flat, high floor, low
//!   sample kurtosis in quiet frames, and a high-passed signal that agrees in sign with the
//!   loss gradient;
//! - L2 attacks (CW, DeepFool) leave a low, coloured floor and inputs near the decision
//!   boundary (a small teacher-forced lead that moves under slight noise);
//! - JSMA touches few time–frequency bins: spectrally peaky quiet frames;
//! - the imperceptible attack hides under the masking threshold: energy that follows speech;
//! - a universal perturbation repeats with its period; GA mutates single samples (spiky);
//!   NES moves tiles of samples with linear steps between them (a low-passed floor).

use crate::detect::statistics::{high_band_share, masked_energy_db, noise_floor_db};
use crate::detect::transforms::Transform;
use crate::dsp::{hann_periodic, Stft};
use crate::mel::MelFrontEnd;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::rng::Rng;
use crate::transcribe::transcribe;
use crate::{Error, Result};
use candle_core::Tensor;

/// Frame of the spectral features (32 ms at 16 kHz).
const N_FFT: usize = 512;
/// Hop (16 ms).
const HOP: usize = 256;
/// Band edges (Hz) of the per-band floor.
const BANDS: [f32; 9] = [
    0.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0,
];
/// Share of frames counted as quiet.
const QUIET_SHARE: f64 = 0.2;
/// The small noise the loss landscape is probed with, relative to the signal's RMS.
const PROBE_RELATIVE: f32 = 0.03;

/// Names of the first features [`features`] returns (all of them: [`names`]).
pub const NAMES: [&str; 33] = [
    "floor_0_250",
    "floor_250_500",
    "floor_500_1k",
    "floor_1k_2k",
    "floor_2k_3k",
    "floor_3k_4k",
    "floor_4k_6k",
    "floor_6k_8k",
    "floor_flatness_db",
    "noise_floor_db",
    "high_band_share",
    "masked_energy_db",
    "high_band_follows_speech",
    "quiet_kurtosis_log",
    "quiet_crest_db",
    "quiet_spectral_peakiness_db",
    "hp_energy_db",
    "hp_kurtosis_log",
    "hp_lag1_correlation",
    "diff_lag8_correlation",
    "period_strength",
    "level_db",
    "avg_logprob",
    "lead",
    "grad_norm_log",
    "hp_grad_cosine",
    "hp_grad_sign_agreement",
    "probe_lead_change",
    "tokens_per_second",
    "lowpass_lead_change",
    "lowpass_transcript_change",
    "quantize_lead_change",
    "quantize_transcript_change",
];

/// Equal-width bands (of the 257 bins) of the band-contrast features.
const FINE_BANDS: usize = 16;

/// Names of the features, in the order [`features`] returns them: [`NAMES`], then the
/// band-contrast features of [`band_contrast`].
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    for band in BANDS.windows(2) {
        v.push(format!("contrast_{}_{}", band[0], band[1]));
        v.push(format!("dip_{}_{}", band[0], band[1]));
    }
    v.extend(
        [
            "high_floor_spread_db",
            "floor_slope_db",
            "quiet_sparsity",
            "high_kurtosis_log",
        ]
        .map(String::from),
    );
    for i in 0..FINE_BANDS {
        v.push(format!("low_share_{i}"));
        v.push(format!("quiet_loud_{i}"));
    }
    v
}

/// Number of features.
pub const COUNT: usize = NAMES.len() + 2 * (BANDS.len() - 1) + 4 + 2 * FINE_BANDS;

/// The features of 16-kHz samples `x` (at least 0.1 s, at most 30 s), in [`NAMES`] order;
/// `decode` is how the model transcribes it (greedy by default). Deterministic.
pub fn features(model: &LoadedModel, x: &[f32], decode: &DecodeOptions) -> Result<Vec<f32>> {
    if x.len() < 1_600 || x.len() > crate::mel::N_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "attribution needs 0.1 to 30 s of audio at 16 kHz, got {} samples",
            x.len()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(
            "attribution of a signal with NaN or infinite samples".into(),
        ));
    }
    let mut f = signal_features(x)?;
    f.extend(model_features(model, x, decode)?);
    debug_assert_eq!(f.len(), COUNT);
    Ok(f.into_iter()
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect())
}

fn db(p: f64) -> f32 {
    (10.0 * p.max(1e-14).log10()) as f32
}

fn kurtosis(v: &[f32]) -> f64 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let m2 = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
    let m4 = v.iter().map(|x| (*x as f64 - mean).powi(4)).sum::<f64>() / n;
    if m2 <= 0.0 {
        0.0
    } else {
        m4 / (m2 * m2)
    }
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    pearson(|| a[..n].iter().copied(), || b[..n].iter().copied(), n)
}

/// Pearson correlation of two sequences of `n` values, each given as a way to walk it (walked
/// twice: means, then deviations); 0 where either is constant or `n < 2`.
fn pearson<A, B>(a: impl Fn() -> A, b: impl Fn() -> B, n: usize) -> f64
where
    A: Iterator<Item = f64>,
    B: Iterator<Item = f64>,
{
    if n < 2 {
        return 0.0;
    }
    let (ma, mb) = (a().sum::<f64>() / n as f64, b().sum::<f64>() / n as f64);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a().zip(b()) {
        let (da, db) = (x - ma, y - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Lag-`k` autocorrelation of `v` (0 for a constant signal), without copying it.
fn autocorrelation(v: &[f32], k: usize) -> f64 {
    if v.len() <= k + 1 {
        return 0.0;
    }
    let n = v.len() - k;
    pearson(
        || v[..n].iter().map(|x| *x as f64),
        || v[k..].iter().map(|x| *x as f64),
        n,
    )
}

/// The second difference `x[n] − (x[n−1] + x[n+1]) / 2`: speech (mostly low) cancels, a
/// sample-level perturbation stays.
fn high_pass(x: &[f32]) -> Vec<f32> {
    x.windows(3).map(|w| w[1] - 0.5 * (w[0] + w[2])).collect()
}

/// Strength of a repetition with a period of 0.25–2 s in the high-passed quiet floor: the best
/// normalised autocorrelation of the high-passed signal over those lags, at a coarse step.
fn period_strength(hp: &[f32]) -> f64 {
    let mut best = 0.0f64;
    let mut lag = 4_000;
    while lag <= 32_000 && lag + 1_600 < hp.len() {
        // Whole multiples of 1000 samples: the lengths `advox universal` uses are round.
        best = best.max(autocorrelation(hp, lag));
        lag += 1_000;
    }
    best
}

fn signal_features(x: &[f32]) -> Result<Vec<f32>> {
    let stft = Stft::new(N_FFT, HOP, hann_periodic(N_FFT))?;
    let spec = stft.stft(x);
    let bins = spec.bins;
    let power: Vec<Vec<f64>> = (0..spec.frames)
        .map(|t| spec.frame(t).iter().map(|c| c.norm_sqr() as f64).collect())
        .collect();
    let frame_energy: Vec<f64> = power.iter().map(|p| p.iter().sum::<f64>()).collect();
    let mean_energy = frame_energy.iter().sum::<f64>() / frame_energy.len().max(1) as f64;
    let mut order: Vec<usize> = (0..frame_energy.len()).collect();
    order.sort_by(|a, b| frame_energy[*a].total_cmp(&frame_energy[*b]));
    let quiet: Vec<usize> = order[..((order.len() as f64 * QUIET_SHARE) as usize).max(1)].to_vec();

    // Per-band floor: the quiet frames' band power relative to the mean frame power.
    let hz_per_bin = 8_000.0 / (bins - 1) as f32;
    let mut floors = Vec::with_capacity(BANDS.len() - 1);
    for band in BANDS.windows(2) {
        let (lo, hi) = (
            (band[0] / hz_per_bin) as usize,
            (band[1] / hz_per_bin) as usize,
        );
        let hi = hi.min(bins - 1).max(lo + 1);
        let p = quiet
            .iter()
            .map(|&t| power[t][lo..hi].iter().sum::<f64>())
            .sum::<f64>()
            / quiet.len() as f64;
        floors.push(db(p / mean_energy.max(1e-20)));
    }
    // Flatness of the floor per bin (geometric over arithmetic mean, dB).
    let floor_bins: Vec<f64> = (1..bins)
        .map(|k| quiet.iter().map(|&t| power[t][k]).sum::<f64>() / quiet.len() as f64 + 1e-20)
        .collect();
    let geo = (floor_bins.iter().map(|p| p.ln()).sum::<f64>() / floor_bins.len() as f64).exp();
    let arith = floor_bins.iter().sum::<f64>() / floor_bins.len() as f64;
    let flatness = db(geo / arith);
    // Does the energy above 6 kHz follow speech's level (masked perturbations) or not?
    let split = (6_000.0 / hz_per_bin) as usize;
    let level: Vec<f64> = frame_energy.iter().map(|e| db(*e) as f64).collect();
    let high: Vec<f64> = power
        .iter()
        .map(|p| db(p[split..].iter().sum::<f64>()) as f64)
        .collect();
    let follows = correlation(&level, &high);
    // Quiet frames' samples (hop-sized pieces at each quiet frame's centre).
    let mut quiet_samples = Vec::new();
    for &t in &quiet {
        let start = t * HOP;
        let end = (start + HOP).min(x.len());
        quiet_samples.extend_from_slice(&x[start.min(end)..end]);
    }
    let quiet_kurtosis = kurtosis(&quiet_samples).max(1e-6).ln() as f32;
    let quiet_rms = (quiet_samples
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        / quiet_samples.len().max(1) as f64)
        .sqrt();
    let quiet_peak = quiet_samples
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let crest = if quiet_rms > 0.0 {
        db((quiet_peak / quiet_rms).powi(2))
    } else {
        0.0
    };
    // Peakiness of the quiet frames' spectra: max over mean bin power, averaged.
    let peaky = quiet
        .iter()
        .map(|&t| {
            let p = &power[t][1..];
            let mean = p.iter().sum::<f64>() / p.len() as f64;
            let max = p.iter().fold(0.0f64, |m, v| m.max(*v));
            if mean > 0.0 {
                db(max / mean) as f64
            } else {
                0.0
            }
        })
        .sum::<f64>()
        / quiet.len() as f64;
    // The high-passed signal.
    let hp = high_pass(x);
    let energy = |v: &[f32]| v.iter().map(|s| (*s as f64).powi(2)).sum::<f64>();
    let total = energy(x);
    let hp_db = db(energy(&hp) / total.max(1e-20));
    let hp_kurtosis = kurtosis(&hp).max(1e-6).ln() as f32;
    let hp_lag1 = autocorrelation(&hp, 1) as f32;
    let diff: Vec<f32> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let diff_lag8 = autocorrelation(&diff, 8) as f32;
    let period = period_strength(&hp) as f32;
    let level_db = db(total / x.len() as f64);
    let contrast = band_contrast(&power, &order, hz_per_bin);
    let mut f = floors;
    f.extend([
        flatness,
        noise_floor_db(x)? as f32,
        high_band_share(x)? as f32,
        masked_energy_db(x)? as f32,
        follows as f32,
        quiet_kurtosis,
        crest,
        peaky as f32,
        hp_db,
        hp_kurtosis,
        hp_lag1,
        diff_lag8,
        period,
        level_db,
    ]);
    f.extend(contrast);
    Ok(f)
}

/// The `q`-quantile (0..=1) of `v`, interpolating linearly between order statistics.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let at = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (i, frac) = (at.floor() as usize, at.fract());
    s[i] + frac * (s[(i + 1).min(s.len() - 1)] - s[i])
}

/// How each band's quietest moments compare with its own typical level — what a perturbation
/// that fills the band's pauses changes whatever the speaker's spectrum — and how the floor's
/// shape and sparsity and the high band's level behave over time. `power[t][k]` is frame `t`'s
/// power spectrum, `order` the frames from quietest to loudest.
fn band_contrast(power: &[Vec<f64>], order: &[usize], hz_per_bin: f32) -> Vec<f32> {
    let bins = power.first().map_or(0, Vec::len);
    let fifth = (order.len() / 5).max(1);
    let (quiet, loud) = (&order[..fifth], &order[order.len() - fifth..]);
    let band_power = |lo: usize, hi: usize| -> Vec<f64> {
        power
            .iter()
            .map(|p| p[lo..hi].iter().sum::<f64>() + 1e-20)
            .collect()
    };
    let ratio_db = |a: f64, b: f64| db(a / b.max(1e-30));
    let mut f = Vec::with_capacity(COUNT - NAMES.len());
    for band in BANDS.windows(2) {
        let lo = (band[0] / hz_per_bin) as usize;
        let hi = ((band[1] / hz_per_bin) as usize).min(bins).max(lo + 1);
        let e = band_power(lo, hi);
        let (p10, median) = (quantile(&e, 0.1), quantile(&e, 0.5));
        let min = e.iter().cloned().fold(f64::INFINITY, f64::min);
        f.push(ratio_db(p10, median));
        f.push(ratio_db(min, p10));
    }
    // Above 4 kHz: the spread (dB) of the quiet frames' level, and the kurtosis over all.
    let split = ((4_000.0 / hz_per_bin) as usize).min(bins.saturating_sub(1));
    let high = band_power(split, bins);
    let quiet_high: Vec<f64> = quiet.iter().map(|&t| db(high[t]) as f64).collect();
    let mean = quiet_high.iter().sum::<f64>() / quiet_high.len() as f64;
    let spread = (quiet_high.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
        / quiet_high.len() as f64)
        .sqrt();
    let high32: Vec<f32> = high.iter().map(|v| *v as f32).collect();
    // The quiet floor's slope over the bins above 250 Hz (dB per bin), least squares.
    let floor: Vec<f64> = (0..bins)
        .map(|k| db(quiet.iter().map(|&t| power[t][k]).sum::<f64>() / quiet.len() as f64) as f64)
        .collect();
    let ks: Vec<f64> = (4..bins).map(|k| k as f64).collect();
    let slope = {
        let ys = &floor[4..];
        let (mk, my) = (
            ks.iter().sum::<f64>() / ks.len() as f64,
            ys.iter().sum::<f64>() / ys.len() as f64,
        );
        let cov: f64 = ks.iter().zip(ys).map(|(k, y)| (k - mk) * (y - my)).sum();
        let var: f64 = ks.iter().map(|k| (k - mk).powi(2)).sum();
        if var > 0.0 {
            cov / var
        } else {
            0.0
        }
    };
    // Share of the quiet frames' bins standing 10 dB over their frame's median bin.
    let mut sparse = 0usize;
    for &t in quiet {
        let levels: Vec<f64> = power[t].iter().map(|p| db(*p) as f64).collect();
        let median = quantile(&levels, 0.5);
        sparse += levels.iter().filter(|l| **l > median + 10.0).count();
    }
    f.extend([
        spread as f32,
        slope as f32,
        sparse as f32 / (quiet.len() * bins).max(1) as f32,
        kurtosis(&high32).max(1e-9).ln() as f32,
    ]);
    for i in 0..FINE_BANDS {
        let (lo, hi) = (
            i * bins / FINE_BANDS,
            ((i + 1) * bins / FINE_BANDS).max(i * bins / FINE_BANDS + 1),
        );
        let e = band_power(lo, hi);
        f.push(ratio_db(quantile(&e, 0.05), quantile(&e, 0.5)));
        let mean_of =
            |frames: &[usize]| frames.iter().map(|&t| e[t]).sum::<f64>() / frames.len() as f64;
        f.push(ratio_db(mean_of(quiet), mean_of(loud)));
    }
    f
}

/// The model's view: confidence, the teacher-forced lead of its own transcript, the gradient of
/// that transcript's loss and how the high-passed input lines up with it, and what a slight
/// noise does to the lead.
fn model_features(model: &LoadedModel, x: &[f32], decode: &DecodeOptions) -> Result<Vec<f32>> {
    let clean = transcribe(model, x, decode)?;
    let seconds = x.len() as f32 / crate::audio::SAMPLE_RATE as f32;
    let tokens_per_second = clean.tokens.len() as f32 / seconds;
    if clean.tokens.is_empty() {
        // Nothing heard: no transcript to score (a muted input); the landscape is flat.
        return Ok(vec![
            clean.avg_logprob,
            0.0,
            -10.0,
            0.0,
            0.5,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ]);
    }
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let objective = Objective::new(model, goal, &clean.text, &clean.tokens)?;
    let front = MelFrontEnd::new(model.whisper.config().num_mel_bins, model.whisper.device())?;
    let wave = Tensor::from_slice(x, x.len(), model.whisper.device())?;
    let e = objective.evaluate(model, &front, &wave)?;
    let g = &e.grad;
    let norm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let hp = high_pass(x);
    let g_mid = &g[1..g.len() - 1];
    let (mut dot, mut hh, mut agree, mut counted) = (0.0f64, 0.0f64, 0usize, 0usize);
    let mut magnitudes: Vec<f32> = g_mid.iter().map(|v| v.abs()).collect();
    let median = {
        let k = magnitudes.len() / 2;
        *magnitudes.select_nth_unstable_by(k, f32::total_cmp).1
    };
    for (h, gi) in hp.iter().zip(g_mid) {
        dot += *h as f64 * *gi as f64;
        hh += (*h as f64).powi(2);
        if gi.abs() > median && *h != 0.0 {
            counted += 1;
            if (*h > 0.0) == (*gi > 0.0) {
                agree += 1;
            }
        }
    }
    let cosine = if hh > 0.0 && norm > 0.0 {
        dot / (hh.sqrt() * norm)
    } else {
        0.0
    };
    let agreement = if counted > 0 {
        agree as f64 / counted as f64
    } else {
        0.5
    };
    // A slight noise (3 % of the RMS, fixed seed): how much the lead moves.
    let rms = (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let mut rng = Rng::new(0x5eed);
    let sigma = PROBE_RELATIVE * rms as f32;
    let noisy: Vec<f32> = x.iter().map(|v| v + sigma * rng.normal()).collect();
    let probe_lead = objective.lead(model, &noisy)?;
    // How the transcript holds through a 4-kHz low-pass and 8-bit quantisation: algorithms
    // differ in how robust they leave their examples (a universal perturbation is trained to
    // hold on many inputs, DeepFool stops just past the boundary, NES moves smooth tiles).
    let mut robustness = Vec::with_capacity(4);
    for t in [
        Transform::LowPass { cutoff_hz: 4_000.0 },
        Transform::Quantize { bits: 8 },
    ] {
        let y = t.apply(x)?;
        robustness.push(objective.lead(model, &y)? - e.lead);
        let heard = transcribe(model, &y, decode)?;
        robustness.push(crate::metrics::cer(&clean.text, &heard.text) as f32);
    }
    let mut f = vec![
        clean.avg_logprob,
        e.lead,
        norm.max(1e-10).log10() as f32,
        cosine as f32,
        agreement as f32,
        probe_lead - e.lead,
        tokens_per_second,
    ];
    f.extend(robustness);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_with(noise: impl Fn(usize) -> f32) -> Vec<f32> {
        (0..16_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                // A tone that pauses every other 0.25 s, as speech does.
                let on = ((t * 4.0) as usize).is_multiple_of(2);
                let s = if on {
                    0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                } else {
                    0.0
                };
                s + noise(i)
            })
            .collect()
    }

    #[test]
    fn sign_noise_in_the_pauses_reads_as_a_flat_high_floor_with_low_kurtosis() {
        let clean = signal_features(&tone_with(|_| 0.0)).unwrap();
        let mut rng = Rng::new(3);
        let signs: Vec<f32> = (0..16_000)
            .map(|_| if rng.uniform() < 0.5 { -0.005 } else { 0.005 })
            .collect();
        let fgsm_like = signal_features(&tone_with(|i| signs[i])).unwrap();
        assert_eq!(clean.len(), 22 + COUNT - NAMES.len());
        let index = |name: &str| NAMES.iter().position(|n| *n == name).unwrap();
        // The floor above 6 kHz rises by tens of dB.
        assert!(fgsm_like[index("floor_6k_8k")] > clean[index("floor_6k_8k")] + 30.0);
        // ±ε samples: kurtosis 1 (ln 0), far below a Gaussian's 3.
        assert!(fgsm_like[index("quiet_kurtosis_log")] < 0.2);
        // Sparse spikes (GA-like) are the opposite: high high-pass kurtosis.
        let spikes =
            signal_features(&tone_with(|i| if i % 397 == 0 { 0.02 } else { 0.0 })).unwrap();
        assert!(spikes[index("hp_kurtosis_log")] > fgsm_like[index("hp_kurtosis_log")] + 2.0);
    }

    #[test]
    fn a_perturbation_that_repeats_every_second_shows_its_period() {
        let mut rng = Rng::new(9);
        let tile: Vec<f32> = (0..8_000).map(|_| rng.symmetric(0.01)).collect();
        let x: Vec<f32> = (0..48_000).map(|i| tile[i % tile.len()]).collect();
        let mut fresh = Rng::new(10);
        let y: Vec<f32> = (0..48_000).map(|_| fresh.symmetric(0.01)).collect();
        let index = NAMES.iter().position(|n| *n == "period_strength").unwrap();
        assert!(signal_features(&x).unwrap()[index] > 0.9);
        assert!(signal_features(&y).unwrap()[index] < 0.1);
    }
}
