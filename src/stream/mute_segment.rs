//! Cloak's mute mode: a short segment trained to make Whisper's transcription hear nothing
//! (Raina et al.'s muting segment, `advox universal --mode prefix-mute`), played over the start
//! of every 30-s window of the stream.
//!
//! It is trained prepended to speech, so it works where the stream's first 0.64 s hold no
//! speech (a lead-in before the first word); added over speech it does not (measured, and
//! trained over speech with `--mode overlay-mute` it does not either: see the README).
//!
//! Whisper's long-form transcription (OpenAI's `transcribe`, faster-whisper) reads 30-s windows;
//! the first starts with the recording, and a window heard as nothing moves the next one a whole
//! window on, so a stream whose every window begins with the segment is read window by window
//! from multiples of 30 s. The assumption, stated wherever the mode is offered: the recogniser's
//! input starts where Cloak's stream started (the start of a render, or of a live stream).
//!
//! The built-in segment ships in the binary ([`BUILTIN_WAV`], 16 kHz 32-bit float, made by
//! `bench/mute_segment.sh`: the prefix-mute segment trained on against plain decoding too, so
//! that neither of Whisper's decodings hears the words): the mode works with no file chosen.

use crate::formats::universal_sidecar::UniversalSidecar;
use crate::{Error, Result};

/// Seconds between the segment's starts: Whisper's window.
pub const WINDOW_SECONDS: f64 = 30.0;

/// The built-in segment (`models/mute-segment.wav`).
pub const BUILTIN_WAV: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/mute-segment.wav"
));

/// Its sidecar (`models/mute-segment.json`: how it was made and judged).
pub const BUILTIN_SIDECAR: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/mute-segment.json"
));

/// The built-in segment at 16 kHz, checked against its sidecar (a mute segment, mono 16 kHz).
pub fn builtin() -> Result<Vec<f32>> {
    let bad =
        |reason: String| Error::InvalidArgument(format!("the built-in mute segment: {reason}"));
    let reader =
        hound::WavReader::new(std::io::Cursor::new(BUILTIN_WAV)).map_err(|e| bad(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels != 1 || spec.sample_rate != crate::audio::SAMPLE_RATE {
        return Err(bad(format!(
            "{} channels at {} Hz, not mono 16 kHz",
            spec.channels, spec.sample_rate
        )));
    }
    let samples = reader
        .into_samples::<f32>()
        .collect::<std::result::Result<Vec<f32>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let meta = UniversalSidecar::parse(BUILTIN_SIDECAR, samples.len()).map_err(bad)?;
    if !meta.mode.is_mute_segment() {
        return Err(bad(format!("its sidecar says mode {:?}", meta.mode)));
    }
    Ok(samples)
}

/// The source Cloak plays in `mode` at `rate` Hz: `file` (an `advox universal` output whose
/// sidecar must say a mute segment in the mute mode, an additive perturbation in the universal
/// mode), else the built-in segment in the mute mode; none for masked noise. Reads and
/// allocates: call off the audio thread.
pub fn cloak_source(
    mode: crate::stream::cloak::CloakMode,
    file: Option<&std::path::Path>,
    rate: u32,
) -> Result<Option<Vec<f32>>> {
    use crate::formats::universal_sidecar::UniversalFile;
    use crate::stream::cloak::CloakMode;
    match (file, mode) {
        (Some(path), CloakMode::Universal | CloakMode::MuteSegment) => {
            let file = UniversalFile::read(path)?;
            if file.meta.mode.is_mute_segment() != (mode == CloakMode::MuteSegment) {
                return Err(Error::bad_audio(
                    path,
                    format!(
                        "its sidecar says {:?}; the mute mode plays a mute segment (prefix-mute, \
                         overlay-mute), the universal mode an additive one",
                        file.meta.mode
                    ),
                ));
            }
            Ok(Some(file.at_rate(rate)?))
        }
        (Some(path), CloakMode::MaskedNoise) => Err(Error::bad_audio(
            path,
            "masked noise plays no file (the universal and mute modes do)",
        )),
        (None, CloakMode::Universal) => Err(Error::InvalidArgument(
            "the universal mode needs a perturbation file".into(),
        )),
        (None, CloakMode::MuteSegment) => Ok(Some(builtin_at_rate(rate)?)),
        (None, CloakMode::MaskedNoise) => Ok(None),
    }
}

/// The built-in segment resampled to `rate` Hz (allocates: call off the audio thread).
pub fn builtin_at_rate(rate: u32) -> Result<Vec<f32>> {
    crate::audio::resample(&builtin()?, crate::audio::SAMPLE_RATE, rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::cloak::{CloakChannel, CloakMode, CloakSettings};

    #[test]
    fn the_builtin_segment_loads_within_its_bound() {
        let s = builtin().unwrap();
        assert_eq!(s.len(), 10_240);
        let peak = s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.01 && peak <= 0.02 + 1e-6, "{peak}");
        assert_eq!(builtin_at_rate(48_000).unwrap().len(), 30_720);
    }

    #[test]
    fn the_segment_starts_every_window_of_input_time() {
        // At 1 kHz a window is 30 000 samples; a 5-sample segment on digital silence.
        let rate = 1_000.0;
        let mut ch = CloakChannel::new(rate, 16, 1).unwrap();
        let latency = ch.latency();
        let segment = [0.5, -0.25, 0.125, 1.0, -1.0];
        let settings = CloakSettings {
            mode: CloakMode::MuteSegment,
            ..CloakSettings::default()
        };
        let mut io = vec![0.0f32; 70_000];
        for block in io.chunks_mut(333) {
            ch.process(block, &settings, Some(&segment));
        }
        for window_start in [0usize, 30_000, 60_000] {
            let at = window_start + latency;
            assert_eq!(&io[at..at + 5], &segment[..], "window at {window_start}");
            assert_eq!(io[at + 5], 0.0);
            assert_eq!(io[at - 1], 0.0);
        }
        let nonzero = io.iter().filter(|v| **v != 0.0).count();
        assert_eq!(nonzero, 15);
        // Depth scales it; bypass removes it; the input passes delayed.
        let mut ch = CloakChannel::new(rate, 16, 1).unwrap();
        let mut io: Vec<f32> = (0..100).map(|i| i as f32 * 1e-3).collect();
        let half = CloakSettings {
            depth: 0.5,
            ..settings
        };
        ch.process(&mut io, &half, Some(&segment));
        for i in 0..5 {
            let dry = (i as f32) * 1e-3;
            assert!((io[latency + i] - (dry + 0.5 * segment[i])).abs() < 1e-6);
        }
        // Bypass: the delayed input alone.
        let mut ch = CloakChannel::new(rate, 16, 1).unwrap();
        let mut io = vec![0.0f32; 100];
        let bypass = CloakSettings {
            bypass: true,
            ..settings
        };
        ch.process(&mut io, &bypass, Some(&segment));
        assert!(io.iter().all(|v| *v == 0.0));
        // Counted in output time, the output itself starts with the segment.
        let mut ch = CloakChannel::new(rate, 16, 1).unwrap();
        ch.set_mute_clock(crate::stream::cloak::MuteClock::Output);
        let mut io = vec![0.0f32; 100];
        ch.process(&mut io, &settings, Some(&segment));
        assert_eq!(&io[..5], &segment[..]);
        assert!(io[5..].iter().all(|v| *v == 0.0));
    }
}
