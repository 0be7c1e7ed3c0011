//! Reading the universal perturbation files `advox universal` writes: a 32-bit float WAV (16 kHz
//! mono) and its JSON sidecar (same name, `.json`), which names the format and describes the
//! perturbation. Every problem is an error naming the file; nothing panics on hostile input.

use crate::audio::{read_audio, to_mono};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The sidecar's `format` value.
pub const UNIVERSAL_FORMAT: &str = "advox-universal";
/// Longest perturbation accepted (seconds): a universal perturbation is a short loop, and the
/// plugin keeps it in memory at the host rate.
pub const MAX_UNIVERSAL_SECONDS: u64 = 600;

/// A universal perturbation and what its sidecar says about it.
#[derive(Debug, Clone)]
pub struct UniversalFile {
    /// Perturbation samples at `sample_rate`.
    pub samples: Vec<f32>,
    /// Sample rate (Hz) of `samples`.
    pub sample_rate: u32,
    /// `additive` or `prefix-mute`.
    pub mode: String,
    /// The L∞ bound it was trained under.
    pub linf: Option<f32>,
    /// The sidecar it was described by.
    pub sidecar: PathBuf,
}

/// The sidecar of a perturbation WAV (`X.wav` → `X.json`).
pub fn sidecar_path(wav: &Path) -> PathBuf {
    wav.with_extension("json")
}

/// Check a sidecar's text against the WAV's sample count; returns (mode, linf).
pub fn parse_sidecar(
    text: &str,
    samples: usize,
) -> std::result::Result<(String, Option<f32>), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if v["format"] != UNIVERSAL_FORMAT {
        return Err(format!("format is not {UNIVERSAL_FORMAT:?}"));
    }
    if v["version"] != 1 {
        return Err(format!("unsupported version {}", v["version"]));
    }
    let length = v["length"]
        .as_u64()
        .ok_or_else(|| "no `length`".to_string())?;
    if length != samples as u64 {
        return Err(format!("says {length} samples but the WAV has {samples}"));
    }
    let mode = v["mode"]
        .as_str()
        .filter(|m| matches!(*m, "additive" | "prefix-mute"))
        .ok_or_else(|| "`mode` is not additive or prefix-mute".to_string())?
        .to_string();
    let linf = match &v["linf"] {
        serde_json::Value::Null => None,
        x => Some(
            x.as_f64()
                .filter(|l| l.is_finite() && *l > 0.0)
                .ok_or_else(|| "`linf` is not a positive number".to_string())? as f32,
        ),
    };
    Ok((mode, linf))
}

impl UniversalFile {
    /// Read `wav` and its sidecar; the samples must be finite, non-empty and at most
    /// [`MAX_UNIVERSAL_SECONDS`] long.
    pub fn read(wav: &Path) -> Result<Self> {
        let audio = read_audio(wav)?;
        let samples = to_mono(&audio);
        let seconds = samples.len() as f64 / audio.sample_rate.max(1) as f64;
        if samples.is_empty() || seconds > MAX_UNIVERSAL_SECONDS as f64 {
            return Err(Error::bad_audio(
                wav,
                format!(
                    "a universal perturbation must be non-empty and at most \
                     {MAX_UNIVERSAL_SECONDS} s long, this is {seconds:.1} s"
                ),
            ));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(Error::bad_audio(
                wav,
                "the perturbation has non-finite samples",
            ));
        }
        let sidecar = sidecar_path(wav);
        let text = std::fs::read_to_string(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
        let (mode, linf) = parse_sidecar(&text, samples.len()).map_err(|reason| {
            Error::bad_audio(
                &sidecar,
                format!("not a universal perturbation sidecar: {reason}"),
            )
        })?;
        Ok(UniversalFile {
            samples,
            sample_rate: audio.sample_rate,
            mode,
            linf,
            sidecar,
        })
    }

    /// The samples resampled to `rate` Hz.
    pub fn at_rate(&self, rate: u32) -> Result<Vec<f32>> {
        crate::audio::resample(&self.samples, self.sample_rate, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_are_checked() {
        let good =
            r#"{"format":"advox-universal","version":1,"length":4,"mode":"additive","linf":0.01}"#;
        assert_eq!(
            parse_sidecar(good, 4).unwrap(),
            ("additive".into(), Some(0.01))
        );
        assert!(parse_sidecar(good, 5).unwrap_err().contains("4 samples"));
        assert!(parse_sidecar("{", 4).is_err());
        assert!(parse_sidecar(r#"{"format":"x"}"#, 4).is_err());
        let bad_mode = good.replace("additive", "loud");
        assert!(parse_sidecar(&bad_mode, 4).is_err());
        let bad_linf = good.replace("0.01", "-1");
        assert!(parse_sidecar(&bad_linf, 4).is_err());
    }
}
