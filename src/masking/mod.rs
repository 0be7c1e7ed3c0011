//! Psychoacoustic masking (Qin et al. 2019, after the MPEG-1 psychoacoustic model 1): the level
//! under which a perturbation is hidden by the signal, per STFT frame and bin.
//!
//! - [`MaskingAnalyzer`]: one frame at a time, no allocation after construction (real time).
//! - [`MaskingThreshold`]: a whole file (centred Hann frames), with the differentiable masking
//!   loss `ℓ_θ = mean ReLU(p_δ − 10^{θ/10})`, the projection that puts every T-F bin of δ a
//!   margin under θ, and statistics for reports.
//!
//! Levels are on the model's normalised scale: the signal's PSD `10·log10(z²)`, with
//! `z = |sqrt(8/3)·X/N|`, shifted so the loudest component (of the utterance, of the frame, or a
//! reference level: [`Normalization`]) is at 96 dB. A perturbation's PSD on the same scale is
//! `p_δ = 10^{9.6} / psd_max · |sqrt(8/3)·STFT(δ)/N|²`.

mod analyzer;
mod threshold;

pub use analyzer::{db_to_power, MaskingAnalyzer, Normalization, PSD_NORMALISED_MAX_DB};
pub use threshold::{MaskingConfig, MaskingStats, MaskingThreshold};

/// The Bark scale: `13·atan(0.00076 f) + 3.5·atan((f / 7500)²)`.
pub fn bark(f_hz: f32) -> f32 {
    13.0 * (0.00076 * f_hz).atan() + 3.5 * (f_hz / 7500.0).powi(2).atan()
}

/// Threshold in quiet (dB SPL) at `f_hz`:
/// `3.64 f^−0.8 − 6.5 e^{−0.6 (f − 3.3)²} + 10^−3 f⁴ − 12`, f in kHz.
pub fn absolute_threshold_db(f_hz: f32) -> f32 {
    let f = f_hz / 1000.0;
    3.64 * f.powf(-0.8) - 6.5 * (-0.6 * (f - 3.3).powi(2)).exp() + 1e-3 * f.powi(4) - 12.0
}
