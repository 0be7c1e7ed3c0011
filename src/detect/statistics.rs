//! Spectral statistics of a signal that adversarial perturbations shift: energy high in the
//! band (perturbations spread over the whole band, speech energy sits low) and the level of
//! the quietest frames (perturbations fill pauses and silence). No model needed.

use crate::dsp::{hann_periodic, Stft};
use crate::masking::{db_to_power, MaskingConfig, MaskingThreshold};
use crate::{Error, Result};

/// Frame size of the statistics (32 ms at 16 kHz).
const N_FFT: usize = 512;
/// Hop (8 ms).
const HOP: usize = 128;

fn check(x: &[f32]) -> Result<()> {
    if x.len() < N_FFT {
        return Err(Error::InvalidArgument(format!(
            "spectral statistics need at least {N_FFT} samples, got {}",
            x.len()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(
            "spectral statistics of a signal with NaN or infinite samples".into(),
        ));
    }
    Ok(())
}

/// Share of the signal's energy above 4 kHz (16-kHz samples), in 0..=1; 0 for silence.
pub fn high_band_share(x: &[f32]) -> Result<f64> {
    check(x)?;
    let stft = Stft::new(N_FFT, HOP, hann_periodic(N_FFT))?;
    let spec = stft.stft(x);
    let split = N_FFT / 4; // 4 kHz of 8
    let (mut high, mut total) = (0.0f64, 0.0f64);
    for t in 0..spec.frames {
        for (k, c) in spec.frame(t).iter().enumerate() {
            let p = c.norm_sqr() as f64;
            total += p;
            if k >= split {
                high += p;
            }
        }
    }
    Ok(if total > 0.0 { high / total } else { 0.0 })
}

/// Mean energy of the quietest 10 % of the frames relative to the loudest 10 %, in dB
/// (≤ 0; −120 for digital silence).
pub fn noise_floor_db(x: &[f32]) -> Result<f64> {
    check(x)?;
    // Whole frames only.
    let frame = N_FFT / 2;
    let mut energy = crate::metrics::frame_energies(&x[..x.len() - x.len() % frame], frame);
    energy.sort_by(f64::total_cmp);
    let k = (energy.len() / 10).max(1);
    let quiet = energy[..k].iter().sum::<f64>() / k as f64;
    let loud = energy[energy.len() - k..].iter().sum::<f64>() / k as f64;
    if loud <= 0.0 {
        return Ok(-120.0);
    }
    Ok((10.0 * (quiet.max(1e-12 * loud) / loud).log10()).max(-120.0))
}

/// Share of the signal's energy in T-F bins under its own masking threshold (Qin et al.'s model,
/// 2048/512), in dB (≤ 0; −120 when none). Speech concentrates its energy in unmasked
/// harmonics; added broadband perturbations put theirs where it is masked.
pub fn masked_energy_db(x: &[f32]) -> Result<f64> {
    check(x)?;
    let threshold = MaskingThreshold::compute(x, MaskingConfig::default())?;
    let (theta, psd) = (threshold.theta_db(), threshold.signal_psd_db());
    let (mut masked, mut total) = (0.0f64, 0.0f64);
    for (p, t) in psd.iter().zip(theta) {
        let e = db_to_power(*p) as f64;
        total += e;
        if p < t {
            masked += e;
        }
    }
    if total <= 0.0 || masked <= 0.0 {
        return Ok(-120.0);
    }
    Ok((10.0 * (masked / total).log10()).max(-120.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn high_band_share_tells_a_low_tone_from_white_noise() {
        let tone: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 300.0 * i as f32 / 16_000.0).sin())
            .collect();
        let mut rng = Rng::new(1);
        let noise: Vec<f32> = (0..8000).map(|_| rng.symmetric(0.5)).collect();
        assert!(high_band_share(&tone).unwrap() < 1e-3);
        let n = high_band_share(&noise).unwrap();
        assert!((0.4..0.6).contains(&n), "{n}");
        assert_eq!(high_band_share(&[0.0; 1000]).unwrap(), 0.0);
        assert!(high_band_share(&[0.0; 10]).is_err());
    }

    #[test]
    fn noise_floor_rises_when_pauses_are_filled() {
        let mut rng = Rng::new(2);
        // Speech-like: loud bursts with silent pauses.
        let bursts: Vec<f32> = (0..16_000)
            .map(|i| {
                if (i / 2000) % 2 == 0 {
                    rng.symmetric(0.5)
                } else {
                    0.0
                }
            })
            .collect();
        let filled: Vec<f32> = bursts.iter().map(|v| v + rng.symmetric(0.01)).collect();
        let a = noise_floor_db(&bursts).unwrap();
        let b = noise_floor_db(&filled).unwrap();
        assert_eq!(a, -120.0);
        assert!((-40.0..-25.0).contains(&b), "{b}");
    }
}
