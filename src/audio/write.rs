//! Atomic WAV writing: a temporary file beside the target, then a rename.

use crate::{Error, Result};
use std::path::Path;

/// Sample encoding of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit signed PCM (the default; what most tools expect).
    #[default]
    Pcm16,
    /// 32-bit IEEE float.
    Float32,
}

/// Write mono samples as a WAV file, atomically, refusing to overwrite any of `inputs`.
///
/// Samples are clipped to [-1, 1]; 16-bit output rounds to the nearest step.
pub fn write_wav(
    path: &Path,
    samples: &[f32],
    sample_rate: u32,
    format: WavFormat,
    inputs: &[&Path],
) -> Result<()> {
    refuse_overwrite(path, inputs)?;
    crate::atomic_file::write_atomic(path, |tmp| write_to(tmp, samples, sample_rate, format))
}

fn write_to(tmp: &Path, samples: &[f32], sample_rate: u32, format: WavFormat) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: if format == WavFormat::Pcm16 { 16 } else { 32 },
        sample_format: if format == WavFormat::Pcm16 {
            hound::SampleFormat::Int
        } else {
            hound::SampleFormat::Float
        },
    };
    let wrap = |e: hound::Error| match e {
        hound::Error::IoError(io) => Error::io(tmp, io),
        other => Error::io(tmp, std::io::Error::other(other.to_string())),
    };
    let mut writer = hound::WavWriter::create(tmp, spec).map_err(wrap)?;
    for &s in samples {
        let s = if s.is_finite() {
            s.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        match format {
            WavFormat::Pcm16 => writer.write_sample(quantize_i16(s)).map_err(wrap)?,
            WavFormat::Float32 => writer.write_sample(s).map_err(wrap)?,
        }
    }
    writer.finalize().map_err(wrap)
}

/// The 16-bit PCM value a sample in [-1, 1] is written as.
pub fn quantize_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Error if `path` is (or resolves to) one of `inputs`.
pub fn refuse_overwrite(path: &Path, inputs: &[&Path]) -> Result<()> {
    let target = std::fs::canonicalize(path).ok();
    for input in inputs {
        let same = match (&target, std::fs::canonicalize(input).ok()) {
            (Some(t), Some(i)) => *t == i,
            _ => path == *input,
        };
        if same {
            return Err(Error::WouldOverwriteInput(path.to_path_buf()));
        }
    }
    Ok(())
}
