//! Randomised smoothing for transcripts (Cohen et al. 2019, with the normalised transcript as
//! the class): transcribe noisy copies `x + N(0, σ²)`, take the most frequent transcript, and
//! certify it when its Clopper–Pearson lower bound beats one half; the certified L2 radius is
//! `σ · Φ⁻¹(p_lower)`.

use crate::model::{DecodeOptions, LoadedModel};
use crate::rng::Rng;
use crate::text::normalize_transcript;
use crate::transcribe::transcribe;
use crate::{Error, Result};
use statrs::distribution::{Beta, ContinuousCDF, Normal};
use std::collections::HashMap;

/// Settings of randomised smoothing.
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothingConfig {
    /// Standard deviation of the Gaussian noise (full scale = 1).
    pub sigma: f32,
    /// Noisy copies that choose the transcript.
    pub selection_samples: usize,
    /// Noisy copies that estimate its probability.
    pub estimation_samples: usize,
    /// Error probability of the certificate.
    pub alpha: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for SmoothingConfig {
    fn default() -> Self {
        SmoothingConfig {
            sigma: 0.005,
            selection_samples: 4,
            estimation_samples: 16,
            alpha: 0.05,
            seed: 0,
        }
    }
}

/// The smoothed transcript and its certificate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Smoothed {
    /// The chosen transcript (as first heard among the noisy copies); empty when abstaining.
    pub text: String,
    /// True when the vote is not significant: no transcript is returned.
    pub abstained: bool,
    /// Estimation copies that agreed with the chosen transcript.
    pub agreeing: usize,
    /// Estimation copies.
    pub estimation_samples: usize,
    /// Clopper–Pearson lower bound on the chosen transcript's probability.
    pub p_lower: f64,
    /// Certified L2 radius (0 when abstaining).
    pub radius: f64,
}

/// One-sided Clopper–Pearson lower confidence bound (level `1 − alpha`) on a binomial
/// proportion with `successes` of `trials`.
pub fn clopper_pearson_lower(successes: usize, trials: usize, alpha: f64) -> Result<f64> {
    if trials == 0 || successes > trials || !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::InvalidArgument(format!(
            "Clopper–Pearson bound of {successes} in {trials} at alpha {alpha}"
        )));
    }
    if successes == 0 {
        return Ok(0.0);
    }
    let beta = Beta::new(successes as f64, (trials - successes + 1) as f64)
        .map_err(|e| Error::Internal(format!("beta distribution: {e}")))?;
    Ok(beta.inverse_cdf(alpha))
}

/// Certified L2 radius `σ · Φ⁻¹(p_lower)` (0 when `p_lower ≤ 1/2`).
pub fn certified_radius(sigma: f64, p_lower: f64) -> f64 {
    if p_lower <= 0.5 {
        return 0.0;
    }
    let normal = Normal::standard();
    sigma * normal.inverse_cdf(p_lower.min(1.0 - 1e-12))
}

/// Smoothed transcription of 16-kHz samples `x`.
pub fn smoothed_transcribe(
    model: &LoadedModel,
    decode: &DecodeOptions,
    x: &[f32],
    cfg: &SmoothingConfig,
) -> Result<Smoothed> {
    if !(cfg.sigma.is_finite() && cfg.sigma >= 0.0)
        || cfg.selection_samples == 0
        || cfg.estimation_samples == 0
    {
        return Err(Error::InvalidArgument(
            "smoothing needs sigma ≥ 0 and at least one selection and one estimation sample".into(),
        ));
    }
    let mut rng = Rng::new(cfg.seed);
    let noisy = |rng: &mut Rng| -> Result<(String, String)> {
        let y: Vec<f32> = x.iter().map(|v| v + cfg.sigma * rng.normal()).collect();
        let text = transcribe(model, &y, decode)?.text;
        Ok((normalize_transcript(&text), text))
    };
    // Selection: the most frequent normalised transcript (first heard wins ties).
    let mut counts: Vec<(String, String, usize)> = Vec::new();
    for _ in 0..cfg.selection_samples {
        let (key, text) = noisy(&mut rng)?;
        match counts.iter_mut().find(|c| c.0 == key) {
            Some(c) => c.2 += 1,
            None => counts.push((key, text, 1)),
        }
    }
    let best = counts.iter().map(|c| c.2).max().unwrap_or(0);
    let (key, text, _) = counts
        .into_iter()
        .find(|c| c.2 == best)
        .ok_or_else(|| Error::Internal("no selection sample".into()))?;
    // Estimation on fresh noise.
    let mut estimate: HashMap<String, usize> = HashMap::new();
    for _ in 0..cfg.estimation_samples {
        *estimate.entry(noisy(&mut rng)?.0).or_default() += 1;
    }
    let agreeing = estimate.get(&key).copied().unwrap_or(0);
    let p_lower = clopper_pearson_lower(agreeing, cfg.estimation_samples, cfg.alpha)?;
    let abstained = p_lower <= 0.5;
    Ok(Smoothed {
        text: if abstained { String::new() } else { text },
        abstained,
        agreeing,
        estimation_samples: cfg.estimation_samples,
        p_lower,
        radius: if abstained {
            0.0
        } else {
            certified_radius(cfg.sigma as f64, p_lower)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_closed_forms() {
        // All successes: the lower bound solves p^n = alpha.
        let p = clopper_pearson_lower(10, 10, 0.05).unwrap();
        assert!((p - 0.05f64.powf(0.1)).abs() < 1e-9, "{p}");
        assert_eq!(clopper_pearson_lower(0, 10, 0.05).unwrap(), 0.0);
        // One success in one trial: alpha.
        assert!((clopper_pearson_lower(1, 1, 0.2).unwrap() - 0.2).abs() < 1e-9);
        // 50 of 100, one-sided 95 %: the 5 % quantile of Beta(50, 51), 0.4136 (its mean 0.495
        // minus 1.645 standard deviations of 0.0495 gives the same to 1e-3).
        let mid = clopper_pearson_lower(50, 100, 0.05).unwrap();
        assert!((mid - 0.4136).abs() < 1e-3, "{mid}");
        assert!(clopper_pearson_lower(3, 2, 0.05).is_err());
        assert!(clopper_pearson_lower(1, 0, 0.05).is_err());
    }

    #[test]
    fn certified_radius_is_sigma_times_the_normal_quantile() {
        assert_eq!(certified_radius(0.1, 0.5), 0.0);
        assert_eq!(certified_radius(0.1, 0.3), 0.0);
        // Φ(1) = 0.841344746…
        assert!((certified_radius(0.25, 0.841_344_746_068_543) - 0.25).abs() < 1e-9);
        assert!((certified_radius(1.0, 0.977_249_868_051_821) - 2.0).abs() < 1e-9);
        assert!(certified_radius(0.1, 1.0).is_finite());
    }
}
