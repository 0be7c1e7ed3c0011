//! Thresholds from clean speech at a chosen false-positive rate, and how well scores separate
//! clean from adversarial inputs.

use crate::{Error, Result};

/// The threshold a detector flags above (`score > threshold`), chosen so that at most `fpr`
/// of the clean scores are flagged.
pub fn threshold_at_fpr(clean: &[f64], fpr: f64) -> Result<f64> {
    if clean.is_empty() {
        return Err(Error::InvalidArgument(
            "calibration needs at least one clean score".into(),
        ));
    }
    if !(0.0..1.0).contains(&fpr) {
        return Err(Error::InvalidArgument(format!(
            "the false-positive rate must be in [0, 1), got {fpr}"
        )));
    }
    if clean.iter().any(|s| !s.is_finite()) {
        return Err(Error::InvalidArgument("a clean score is not finite".into()));
    }
    let mut sorted = clean.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // Flag at most floor(fpr · n) clean inputs: the threshold is the next score down.
    let allowed = (fpr * sorted.len() as f64).floor() as usize;
    Ok(sorted[allowed.min(sorted.len() - 1)])
}

/// Area under the ROC curve of scores (higher: adversarial), the probability that a random
/// adversarial input scores above a random clean one (ties count half).
pub fn roc_auc(clean: &[f64], adversarial: &[f64]) -> Result<f64> {
    if clean.is_empty() || adversarial.is_empty() {
        return Err(Error::InvalidArgument(
            "ROC-AUC needs clean and adversarial scores".into(),
        ));
    }
    let mut wins = 0.0;
    for a in adversarial {
        for c in clean {
            wins += match a.total_cmp(c) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    Ok(wins / (clean.len() * adversarial.len()) as f64)
}

/// Share of adversarial inputs flagged at the threshold calibrated on `clean` for `fpr`.
pub fn tpr_at_fpr(clean: &[f64], adversarial: &[f64], fpr: f64) -> Result<f64> {
    let t = threshold_at_fpr(clean, fpr)?;
    if adversarial.is_empty() {
        return Err(Error::InvalidArgument("no adversarial scores".into()));
    }
    Ok(adversarial.iter().filter(|s| **s > t).count() as f64 / adversarial.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_flags_at_most_the_allowed_share_of_clean_scores() {
        let clean: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let t = threshold_at_fpr(&clean, 0.05).unwrap();
        assert_eq!(clean.iter().filter(|s| **s > t).count(), 5);
        let t0 = threshold_at_fpr(&clean, 0.0).unwrap();
        assert_eq!(t0, 99.0);
        assert!(threshold_at_fpr(&[], 0.05).is_err());
        assert!(threshold_at_fpr(&[1.0], 1.5).is_err());
        assert!(threshold_at_fpr(&[f64::NAN], 0.1).is_err());
    }

    #[test]
    fn auc_of_separated_tied_and_reversed_scores() {
        assert_eq!(roc_auc(&[0.0, 0.1], &[0.5, 0.9]).unwrap(), 1.0);
        assert_eq!(roc_auc(&[0.5, 0.9], &[0.0, 0.1]).unwrap(), 0.0);
        assert_eq!(roc_auc(&[0.3], &[0.3]).unwrap(), 0.5);
        assert_eq!(roc_auc(&[0.0, 0.4], &[0.2, 0.6]).unwrap(), 0.75);
        assert_eq!(
            tpr_at_fpr(&[0.0, 0.1, 0.2], &[0.15, 0.5], 0.0).unwrap(),
            0.5
        );
    }
}
