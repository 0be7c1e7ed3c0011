//! Analysis / synthesis windows.

use std::f64::consts::PI;

/// Periodic Hann window of length `n` (as `torch.hann_window(n)`), the STFT convention.
pub fn hann_periodic(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos()) as f32)
        .collect()
}

/// Symmetric Hann window of length `n` (as `numpy.hanning(n)`).
pub fn hann_symmetric(n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![1.0];
    }
    (0..n)
        .map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos()) as f32)
        .collect()
}
