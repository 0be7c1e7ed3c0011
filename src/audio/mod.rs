//! Audio input/output: reading any supported file to mono f32, resampling, atomic writing.

mod read;
mod resample;
mod write;

pub use crate::atomic_file::temp_path_beside;
pub use read::{read_audio, read_audio_16k_mono, MAX_DURATION_SECONDS};
pub use resample::{resample, to_mono};
pub use write::{quantize_i16, refuse_overwrite, write_wav, WavFormat};

/// The sample rate every model in advox works at.
pub const SAMPLE_RATE: u32 = 16_000;

/// Decoded audio: interleaved-free, one `Vec` per channel, samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per second.
    pub sample_rate: u32,
    /// One vector of samples per channel, all of equal length.
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Mono audio from one channel of samples.
    pub fn mono(sample_rate: u32, samples: Vec<f32>) -> Self {
        Audio {
            sample_rate,
            channels: vec![samples],
        }
    }
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
    /// Duration in seconds.
    pub fn duration_seconds(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }
}
