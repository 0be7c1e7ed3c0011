//! Metrics of transcripts (WER/CER) and of perturbations (SNR, dBx, norms); [`stoi`]: speech
//! intelligibility.

pub mod stoi;

use crate::text::normalize_transcript;

/// Median of `values` (the mean of the two middle ones for an even count; `None` if empty).
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    use statrs::statistics::{Data, Median};
    let v: Vec<f64> = values.into_iter().collect();
    (!v.is_empty()).then(|| Data::new(v).median())
}

/// Levenshtein distance between two sequences.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Word error rate of `hypothesis` against `reference`, after normalisation. An empty
/// reference gives 0 for an empty hypothesis and 1 otherwise.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = normalize_transcript(reference);
    let h = normalize_transcript(hypothesis);
    let rw: Vec<&str> = r.split_whitespace().collect();
    let hw: Vec<&str> = h.split_whitespace().collect();
    ratio(edit_distance(&rw, &hw), rw.len(), hw.is_empty())
}

/// Character error rate after normalisation (spaces count as characters).
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<char> = normalize_transcript(reference).chars().collect();
    let h: Vec<char> = normalize_transcript(hypothesis).chars().collect();
    ratio(edit_distance(&r, &h), r.len(), h.is_empty())
}

fn ratio(distance: usize, reference_len: usize, hypothesis_empty: bool) -> f64 {
    match reference_len {
        0 if hypothesis_empty => 0.0,
        0 => 1.0,
        n => distance as f64 / n as f64,
    }
}

/// Euclidean norm.
pub fn l2(x: &[f32]) -> f64 {
    x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()
}

/// Mean energy (mean square) of each `frame`-sample chunk of `x`, the last one possibly
/// shorter.
pub fn frame_energies(x: &[f32], frame: usize) -> Vec<f64> {
    x.chunks(frame.max(1))
        .map(|c| c.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / c.len() as f64)
        .collect()
}

/// Largest absolute value.
pub fn linf(x: &[f32]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64))
}

/// Signal-to-perturbation ratio in dB: `20 log10(|x|₂ / |δ|₂)` (infinite for δ = 0).
pub fn snr_db(signal: &[f32], perturbation: &[f32]) -> f64 {
    20.0 * (l2(signal) / l2(perturbation)).log10()
}

/// Relative loudness of the perturbation's peak: `20 log10(max|δ|) − 20 log10(max|x|)`.
pub fn dbx(signal: &[f32], perturbation: &[f32]) -> f64 {
    20.0 * linf(perturbation).log10() - 20.0 * linf(signal).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates() {
        assert_eq!(wer("turn off the lights", "Turn off the lights."), 0.0);
        assert_eq!(wer("turn off the lights", "turn on the light"), 0.5);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "x"), 1.0);
        assert_eq!(wer("a b", ""), 1.0);
        assert!((cer("abcd", "abed") - 0.25).abs() < 1e-12);
    }

    #[test]
    fn perturbation_measures() {
        let x = [0.5f32, -0.5, 0.5, -0.5];
        let d = [0.05f32, 0.0, 0.0, 0.0];
        assert!((dbx(&x, &d) + 20.0).abs() < 1e-6);
        assert!((snr_db(&x, &d) - 20.0 * (1.0f64 / 0.05).log10()).abs() < 1e-6);
        assert!(snr_db(&x, &[0.0; 4]).is_infinite());
    }
}
