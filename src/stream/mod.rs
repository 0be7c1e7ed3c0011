//! Real-time processing shared by the plugins and `advox live`: everything here works on a
//! stream at the host's sample rate, one block at a time, and never allocates, locks or does
//! I/O after construction.
//!
//! - [`cloak`]: adds a perturbation (a universal perturbation file, or noise) shaped in every
//!   STFT frame to sit a margin under the input's masking threshold.
//! - [`mute_segment`]: the built-in segment of Cloak's mute mode and where it goes.
//! - [`band_meter`]: Cloak's per-band input, threshold and perturbation levels for editors,
//!   through atomics.
//! - [`sentinel`]: per-frame detector features → a smoothed score in 0..1, with a gate.
//! - [`denormals`]: flush-to-zero for the duration of a `process()` call, so a signal fading to
//!   silence costs what speech does.
//! - [`monitor`]: a background worker running the Whisper transform-consistency check on the
//!   last seconds of a stream, fed through a lock-free ring and publishing through atomics.

pub mod band_meter;
pub mod cloak;
pub mod denormals;
pub mod model_cloak;
pub mod monitor;
pub mod mute_segment;
pub mod processors;
pub mod sentinel;

/// STFT frame size used at `sample_rate`: the power of two nearest to 21.3 ms (1024 at
/// 44.1/48 kHz, 2048 at 88.2/96 kHz, 256 at 16 kHz). The hop is half of it.
pub fn frame_size_for(sample_rate: f32) -> usize {
    let target = (sample_rate.clamp(8_000.0, 384_000.0) * 0.021_333) as f64;
    let exponent = target.log2().round().clamp(8.0, 14.0) as u32;
    1usize << exponent
}

/// `x` when it is a normal float (or zero), else 0: a NaN or infinity on the input must not
/// reach filter or FFT state, and a subnormal (|x| < 1.2e-38, far below audibility) must neither
/// cost denormal arithmetic nor pass through to the output, where hosts and clap-validator's
/// fuzzer flag it.
#[inline]
pub fn normal_or_zero(x: f32) -> f32 {
    if x.is_normal() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_track_the_rate() {
        assert_eq!(frame_size_for(44_100.0), 1024);
        assert_eq!(frame_size_for(48_000.0), 1024);
        assert_eq!(frame_size_for(88_200.0), 2048);
        assert_eq!(frame_size_for(96_000.0), 2048);
        assert_eq!(frame_size_for(16_000.0), 256);
        assert_eq!(normal_or_zero(f32::NAN), 0.0);
        assert_eq!(normal_or_zero(-2.0), -2.0);
        assert_eq!(normal_or_zero(f32::INFINITY), 0.0);
        assert_eq!(normal_or_zero(f32::from_bits(1)), 0.0);
        assert_eq!(normal_or_zero(-f32::MIN_POSITIVE), -f32::MIN_POSITIVE);
    }
}
