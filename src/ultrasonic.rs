//! The ultrasonic route (DolphinAttack, Zhang et al. 2017; SurfingAttack, Yan et al. 2020),
//! simulated: a command (any 16-kHz recording, e.g. an adversarial example) is amplitude-
//! modulated onto a carrier above the audible band, so what a loudspeaker emits has no energy a
//! listener hears; a microphone's nonlinearity, modelled as `y = x + a·x²` (the second-order
//! term of its amplifier's transfer curve, as both papers model it), demodulates the envelope
//! back into the audible band, and the recording the recogniser gets is `y` low-passed and
//! resampled to 16 kHz by the microphone's own anti-aliasing (here advox's resampler).
//!
//! With `s(t) = A·(1 + m·b(t))·cos(2π f_c t)` and `b` the command scaled to a peak of 1,
//! `a·s²` holds `a·A²/2·(1 + 2m·b + m²·b²)` in the baseband: the command, plus a DC term and a
//! distortion `m²b²` that a modulation depth under 1 keeps small.

use crate::audio::{resample, SAMPLE_RATE};
use crate::{Error, Result};

/// How the command is emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Emission {
    /// Sample rate of the emitted signal (Hz): at least twice the highest sideband.
    pub sample_rate: u32,
    /// Carrier frequency (Hz).
    pub carrier_hz: f32,
    /// Modulation depth `m` (0 < m ≤ 1).
    pub depth: f32,
    /// Peak amplitude `A·(1 + m)` of the emitted signal (full scale 1).
    pub peak: f32,
}

impl Default for Emission {
    /// 96 kHz, a 30-kHz carrier (with the 16-kHz command's 8-kHz band, sidebands 22–38 kHz:
    /// above hearing and under the 48-kHz Nyquist limit), depth 0.5, peak 0.9.
    fn default() -> Self {
        Emission {
            sample_rate: 96_000,
            carrier_hz: 30_000.0,
            depth: 0.5,
            peak: 0.9,
        }
    }
}

impl Emission {
    /// Refuse settings that would put a sideband in the audible band or past Nyquist.
    pub fn check(&self) -> Result<()> {
        let band = SAMPLE_RATE as f32 / 2.0;
        let nyquist = self.sample_rate as f32 / 2.0;
        if !(self.depth > 0.0 && self.depth <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "the modulation depth must be in (0, 1], got {}",
                self.depth
            )));
        }
        if !(self.peak > 0.0 && self.peak <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "the peak amplitude must be in (0, 1], got {}",
                self.peak
            )));
        }
        if self.carrier_hz - band < AUDIBLE_LIMIT_HZ {
            return Err(Error::InvalidArgument(format!(
                "a {} Hz carrier puts the lower sideband at {} Hz, within hearing (< {} Hz): \
                 use a carrier of at least {} Hz",
                self.carrier_hz,
                self.carrier_hz - band,
                AUDIBLE_LIMIT_HZ,
                AUDIBLE_LIMIT_HZ + band
            )));
        }
        if self.carrier_hz + band >= nyquist {
            return Err(Error::InvalidArgument(format!(
                "a {} Hz carrier puts the upper sideband at {} Hz, past the Nyquist limit of \
                 {} Hz at {} Hz: raise the sample rate",
                self.carrier_hz,
                self.carrier_hz + band,
                nyquist,
                self.sample_rate
            )));
        }
        Ok(())
    }
}

/// The upper limit of hearing taken here (Hz).
pub const AUDIBLE_LIMIT_HZ: f32 = 20_000.0;

/// The emitted signal for a 16-kHz `command`, at `emission.sample_rate`.
pub fn modulate(command: &[f32], emission: &Emission) -> Result<Vec<f32>> {
    emission.check()?;
    let peak = command.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if command.is_empty() || peak == 0.0 {
        return Err(Error::InvalidArgument(
            "the command is empty or silent: nothing to modulate".into(),
        ));
    }
    let baseband = resample(command, SAMPLE_RATE, emission.sample_rate)?;
    let amplitude = emission.peak / (1.0 + emission.depth);
    let w = 2.0 * std::f64::consts::PI * emission.carrier_hz as f64 / emission.sample_rate as f64;
    Ok(baseband
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let envelope = 1.0 + emission.depth * (b / peak).clamp(-1.0, 1.0);
            amplitude * envelope * (w * i as f64).cos() as f32
        })
        .collect())
}

/// What a microphone with second-order coefficient `a` records of `emitted` (at
/// `sample_rate`), at 16 kHz: `y = x + a·x²`, low-passed and resampled, its DC removed.
pub fn record(emitted: &[f32], sample_rate: u32, a: f32) -> Result<Vec<f32>> {
    if !(a.is_finite() && a > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the microphone's nonlinearity a must be positive, got {a}"
        )));
    }
    let y: Vec<f32> = emitted.iter().map(|x| x + a * x * x).collect();
    let mut recorded = resample(&y, sample_rate, SAMPLE_RATE)?;
    let mean = recorded.iter().map(|v| *v as f64).sum::<f64>() / recorded.len().max(1) as f64;
    recorded.iter_mut().for_each(|v| *v -= mean as f32);
    Ok(recorded)
}

/// Share of `signal`'s energy (at `sample_rate`) below `hz`, by its spectrum.
pub fn energy_share_below(signal: &[f32], sample_rate: u32, hz: f32) -> Result<f64> {
    use realfft::RealFftPlanner;
    let mut planner = RealFftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(signal.len());
    let mut input = signal.to_vec();
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut input, &mut spectrum)
        .map_err(|e| Error::InvalidArgument(format!("spectrum: {e}")))?;
    let bin_hz = sample_rate as f64 / signal.len() as f64;
    let (mut below, mut all) = (0.0f64, 0.0f64);
    for (k, c) in spectrum.iter().enumerate() {
        let e = c.norm_sqr() as f64;
        all += e;
        if (k as f64) * bin_hz < hz as f64 {
            below += e;
        }
    }
    Ok(if all > 0.0 { below / all } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, seconds: f32) -> Vec<f32> {
        let n = (seconds * SAMPLE_RATE as f32) as usize;
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / SAMPLE_RATE as f32).sin())
            .collect()
    }

    #[test]
    fn the_emission_is_inaudible_and_the_microphone_brings_the_command_back() {
        let command = tone(440.0, 0.5);
        let e = Emission::default();
        let emitted = modulate(&command, &e).unwrap();
        assert_eq!(emitted.len(), command.len() * 6);
        assert!(emitted.iter().all(|v| v.abs() <= e.peak + 1e-4));
        // Next to nothing under 20 kHz in what the loudspeaker plays.
        let audible = energy_share_below(&emitted, e.sample_rate, AUDIBLE_LIMIT_HZ).unwrap();
        assert!(audible < 1e-6, "{audible}");
        // The recording holds the 440-Hz command: its correlation with the command is high.
        let recorded = record(&emitted, e.sample_rate, 0.1).unwrap();
        let n = command.len().min(recorded.len());
        let (c, r) = (&command[200..n - 200], &recorded[200..n - 200]);
        let dot: f64 = c.iter().zip(r).map(|(a, b)| (*a * *b) as f64).sum();
        let corr = dot / (crate::metrics::l2(c) * crate::metrics::l2(r));
        assert!(corr > 0.95, "correlation {corr}");
        // A linear microphone (a → 0) records nearly nothing of it.
        let linear = record(&emitted, e.sample_rate, 1e-6).unwrap();
        let ratio = crate::metrics::l2(&linear[200..n - 200]) / crate::metrics::l2(r);
        assert!(ratio < 0.01, "linear microphone: {ratio}");
    }

    #[test]
    fn settings_that_would_be_heard_or_alias_are_refused() {
        let low = Emission {
            carrier_hz: 25_000.0,
            ..Default::default()
        };
        assert!(low
            .check()
            .unwrap_err()
            .to_string()
            .contains("within hearing"));
        let high = Emission {
            carrier_hz: 42_000.0,
            ..Default::default()
        };
        assert!(high.check().unwrap_err().to_string().contains("Nyquist"));
        assert!(modulate(&[0.0; 100], &Emission::default()).is_err());
        assert!(record(&[0.1; 10], 96_000, 0.0).is_err());
    }
}
