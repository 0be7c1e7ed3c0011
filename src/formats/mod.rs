//! The files advox writes and reads back, as typed serde structs in one place: the attack
//! report ([`attack_report`], shared by `attack`, its manifest summary and `transfer`), the
//! universal perturbation's sidecar ([`universal_sidecar`]) and the detector calibration
//! ([`calibration`]). The evaluation report is [`crate::eval::report::Report`], beside the
//! evaluation that fills it.

pub mod attack_report;
pub mod calibration;
pub mod universal_sidecar;

pub use attack_report::{AttackReport, AttackSummary, BlackBoxStats, SummaryEntry};
pub use calibration::{Calibration, DetectorThreshold};
pub use universal_sidecar::{UniversalMode, UniversalSidecar};

/// Serde for numbers that may not be finite (an SNR of no perturbation is infinite, a loss
/// that was never computed is NaN): JSON has no such numbers, so they are written as `null`
/// and read back as NaN.
pub mod maybe_finite {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `v`, or `null` if it is not finite.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Read a number, or NaN for `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}
