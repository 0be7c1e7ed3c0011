//! Short-Time Objective Intelligibility (STOI; Taal, Hendriks, Heusdens and Jensen, IEEE TASLP
//! 2011): how intelligible a processed signal stays next to the clean one, 0..1 (higher is
//! better), from the correlation of their short-time one-third-octave band envelopes.
//!
//! No Rust crate computes it; this follows the paper's algorithm and the constants of the
//! authors' reference implementation: both signals at 10 kHz, frames where the clean signal is
//! more than 40 dB under its loudest frame removed, 256-sample Hann frames (hop 128) zero-padded
//! to 512, 15 one-third-octave bands from 150 Hz, 30-frame (384 ms) segments, the processed
//! envelope scaled to the clean one's energy and clipped at −15 dB signal-to-distortion, and the
//! mean correlation over bands and segments. Checked against `pystoi` 0.4.1 (the Python port
//! the literature uses) in the tests.

use crate::audio::resample;
use crate::{Error, Result};
use realfft::RealFftPlanner;

/// STOI's internal sample rate.
const RATE: u32 = 10_000;
const FRAME: usize = 256;
const HOP: usize = FRAME / 2;
const NFFT: usize = 512;
const BANDS: usize = 15;
const LOWEST_CENTRE_HZ: f64 = 150.0;
/// Frames per segment (384 ms).
const SEGMENT: usize = 30;
/// Lower bound of the signal-to-distortion ratio (dB).
const BETA_DB: f64 = -15.0;
/// Frames this far (dB) under the loudest clean frame are removed.
const DYNAMIC_RANGE_DB: f64 = 40.0;
const EPS: f64 = f64::EPSILON;

/// STOI of `processed` against `clean` (the same length, at `rate` Hz). `None` where fewer than
/// 30 frames (0.4 s) of the clean signal are within 40 dB of its loudest frame.
pub fn stoi(clean: &[f32], processed: &[f32], rate: u32) -> Result<Option<f64>> {
    if clean.len() != processed.len() {
        return Err(Error::InvalidArgument(format!(
            "STOI compares signals of one length, got {} and {} samples",
            clean.len(),
            processed.len()
        )));
    }
    let (x, y) = if rate == RATE {
        (clean.to_vec(), processed.to_vec())
    } else {
        (
            resample(clean, rate, RATE)?,
            resample(processed, rate, RATE)?,
        )
    };
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    let (x, y) = without_silent_frames(&x, &y);
    let (xb, yb) = (band_envelopes(&x), band_envelopes(&y));
    let frames = xb.first().map_or(0, Vec::len);
    if frames < SEGMENT {
        return Ok(None);
    }
    let clip = 1.0 + 10f64.powf(-BETA_DB / 20.0);
    let (mut sum, mut count) = (0.0, 0usize);
    for end in SEGMENT..=frames {
        for band in 0..BANDS {
            let xs = &xb[band][end - SEGMENT..end];
            let ys = &yb[band][end - SEGMENT..end];
            let scale = norm(xs) / (norm(ys) + EPS);
            let yp: Vec<f64> = ys
                .iter()
                .zip(xs)
                .map(|(&yv, &xv)| (yv * scale).min(xv * clip))
                .collect();
            sum += correlation(xs, &yp);
            count += 1;
        }
    }
    Ok(Some(sum / count as f64))
}

/// MATLAB's `hanning(n)`: the periodic-free Hann window without its zero end points.
fn hanning(n: usize) -> Vec<f64> {
    (1..=n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n + 1) as f64).cos())
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Pearson-style correlation of two vectors (means removed, norms regularised).
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&u, &v) in a.iter().zip(b) {
        let (u, v) = (u - ma, v - mb);
        ab += u * v;
        aa += u * u;
        bb += v * v;
    }
    ab / ((aa.sqrt() + EPS) * (bb.sqrt() + EPS))
}

/// Frame starts of a signal of `len` samples: every hop while a whole frame fits, short of
/// the very end (as the reference implementation frames).
fn frame_starts(len: usize) -> impl Iterator<Item = usize> {
    (0..len.saturating_sub(FRAME)).step_by(HOP)
}

/// Both signals with the frames removed where the clean one is more than 40 dB under its
/// loudest frame: the kept windowed frames overlap-added again.
fn without_silent_frames(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let w = hanning(FRAME);
    let energy = |s: usize| -> f64 {
        let e: f64 = (0..FRAME).map(|i| (w[i] * x[s + i]).powi(2)).sum();
        20.0 * (e.sqrt() + EPS).log10()
    };
    let starts: Vec<usize> = frame_starts(x.len()).collect();
    let energies: Vec<f64> = starts.iter().map(|&s| energy(s)).collect();
    let loudest = energies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let kept: Vec<usize> = starts
        .iter()
        .zip(&energies)
        .filter(|(_, &e)| e > loudest - DYNAMIC_RANGE_DB)
        .map(|(&s, _)| s)
        .collect();
    let len = kept.len().saturating_sub(1) * HOP + if kept.is_empty() { 0 } else { FRAME };
    let (mut xo, mut yo) = (vec![0.0; len], vec![0.0; len]);
    for (k, &s) in kept.iter().enumerate() {
        for i in 0..FRAME {
            xo[k * HOP + i] += w[i] * x[s + i];
            yo[k * HOP + i] += w[i] * y[s + i];
        }
    }
    (xo, yo)
}

/// One-third-octave band envelopes: per band, per frame, the root of the summed power of the
/// band's FFT bins.
fn band_envelopes(x: &[f64]) -> Vec<Vec<f64>> {
    let w = hanning(FRAME);
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(NFFT);
    let mut buffer = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let bands = band_bins();
    let mut out = vec![Vec::new(); BANDS];
    for s in frame_starts(x.len()) {
        buffer.iter_mut().for_each(|b| *b = 0.0);
        for i in 0..FRAME {
            buffer[i] = w[i] * x[s + i];
        }
        if fft.process(&mut buffer, &mut spectrum).is_err() {
            continue;
        }
        for (band, &(lo, hi)) in bands.iter().enumerate() {
            let power: f64 = spectrum[lo..hi].iter().map(|c| c.norm_sqr()).sum();
            out[band].push(power.sqrt());
        }
    }
    out
}

/// The FFT bins `[lo, hi)` of each band: its edges (a sixth of an octave either side of the
/// centre) rounded to the nearest bin.
fn band_bins() -> Vec<(usize, usize)> {
    let bin_hz = RATE as f64 / NFFT as f64;
    let nearest = |f: f64| ((f / bin_hz).round() as usize).min(NFFT / 2);
    (0..BANDS)
        .map(|k| {
            let k = k as f64;
            let lo = LOWEST_CENTRE_HZ * 2f64.powf((2.0 * k - 1.0) / 6.0);
            let hi = LOWEST_CENTRE_HZ * 2f64.powf((2.0 * k + 1.0) / 6.0);
            (nearest(lo), nearest(hi))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic speech-like signal at 10 kHz (also written out in Python for the
    /// reference values): an amplitude-modulated harmonic complex with pauses.
    fn voice(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / RATE as f64;
                let on = ((t * 3.0).fract() < 0.7) as u8 as f64;
                let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
                let tone: f64 = (1..=12)
                    .map(|h| (2.0 * std::f64::consts::PI * 140.0 * h as f64 * t).sin() / h as f64)
                    .sum();
                (0.2 * on * env * tone) as f32
            })
            .collect()
    }

    fn noise(n: usize, amplitude: f64) -> Vec<f32> {
        // A linear congruential generator, the same sequence in the Python reference.
        let mut state: u64 = 12345;
        (0..n)
            .map(|_| {
                state = (state * 1103515245 + 12345) % (1 << 31);
                (amplitude * (state as f64 / (1u64 << 31) as f64 * 2.0 - 1.0)) as f32
            })
            .collect()
    }

    #[test]
    fn stoi_matches_the_reference_implementation() {
        let n = 30_000;
        let x = voice(n);
        // Reference values from pystoi 0.4.1, `stoi(x, y, 10000)` on the same signals.
        let noisy: Vec<f32> = x.iter().zip(noise(n, 0.1)).map(|(a, b)| a + b).collect();
        let quiet: Vec<f32> = x.iter().zip(noise(n, 0.01)).map(|(a, b)| a + b).collect();
        let got_noisy = stoi(&x, &noisy, RATE).unwrap().unwrap();
        let got_quiet = stoi(&x, &quiet, RATE).unwrap().unwrap();
        let same = stoi(&x, &x, RATE).unwrap().unwrap();
        eprintln!("noisy {got_noisy:.6} quiet {got_quiet:.6} same {same:.6}");
        assert!((same - 1.0).abs() < 1e-9, "{same}");
        assert!(
            (got_noisy - REF_NOISY).abs() < 1e-4,
            "{got_noisy} vs {REF_NOISY}"
        );
        assert!(
            (got_quiet - REF_QUIET).abs() < 1e-4,
            "{got_quiet} vs {REF_QUIET}"
        );
        // Too short after silence removal: no score; unequal lengths: an error.
        assert_eq!(stoi(&x[..2_000], &x[..2_000], RATE).unwrap(), None);
        assert!(stoi(&x, &x[..10], RATE).is_err());
    }

    const REF_NOISY: f64 = 0.862_070_839_369_476_6;
    const REF_QUIET: f64 = 0.957_408_595_213_981_3;
}
