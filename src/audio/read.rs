//! Reading audio files: WAV through hound (every integer width and 32-bit float), FLAC, MP3,
//! OGG/Vorbis and others through symphonia.

use super::{resample, to_mono, Audio, SAMPLE_RATE};
use crate::{Error, Result};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Longest input accepted, in seconds (two hours). Longer files are refused with a clear error
/// instead of exhausting memory.
pub const MAX_DURATION_SECONDS: f64 = 2.0 * 3600.0;

/// Read an audio file and return it as mono f32 at 16 kHz, the form every model uses.
pub fn read_audio_16k_mono(path: &Path) -> Result<Vec<f32>> {
    let audio = read_audio(path)?;
    let mono = to_mono(&audio);
    resample(&mono, audio.sample_rate, SAMPLE_RATE).map_err(|e| match e {
        Error::InvalidArgument(reason) => Error::bad_audio(path, reason),
        other => other,
    })
}

/// Read an audio file with its own sample rate and channels.
///
/// WAV files are read with hound; anything else (or a WAV hound rejects for its encoding,
/// e.g. A-law) is probed by symphonia. Every failure names the file and the reason.
pub fn read_audio(path: &Path) -> Result<Audio> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::bad_audio(path, "is a directory, not an audio file"));
    }
    if meta.len() == 0 {
        return Err(Error::bad_audio(path, "the file is empty (0 bytes)"));
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
        if n < 4 {
            return Err(Error::bad_audio(path, "file too short to be audio"));
        }
    }
    let audio = if &magic == b"RIFF" || &magic == b"RIFX" {
        match read_wav(path) {
            Ok(a) => a,
            Err(WavError::Unsupported) => read_symphonia(path)?,
            Err(WavError::Fatal(e)) => return Err(e),
        }
    } else {
        read_symphonia(path)?
    };
    validate(path, &audio)?;
    Ok(audio)
}

fn validate(path: &Path, audio: &Audio) -> Result<()> {
    if audio.channels.is_empty() {
        return Err(Error::bad_audio(path, "the file has 0 channels"));
    }
    if audio.sample_rate == 0 {
        return Err(Error::bad_audio(
            path,
            "the file declares a sample rate of 0 Hz",
        ));
    }
    if audio.frames() == 0 {
        return Err(Error::bad_audio(path, "the file holds no samples"));
    }
    for ch in &audio.channels {
        if ch.iter().any(|s| !s.is_finite()) {
            return Err(Error::bad_audio(
                path,
                "the file holds NaN or infinite samples",
            ));
        }
    }
    Ok(())
}

enum WavError {
    /// hound cannot decode this encoding; another decoder may.
    Unsupported,
    Fatal(Error),
}

fn read_wav(path: &Path) -> std::result::Result<Audio, WavError> {
    let file = File::open(path).map_err(|e| WavError::Fatal(Error::io(path, e)))?;
    let reader = hound::WavReader::new(BufReader::new(file)).map_err(|e| match e {
        hound::Error::Unsupported => WavError::Unsupported,
        hound::Error::IoError(io) => WavError::Fatal(Error::bad_audio(
            path,
            format!("malformed or truncated WAV header ({io})"),
        )),
        other => WavError::Fatal(Error::bad_audio(path, format!("malformed WAV: {other}"))),
    })?;
    let spec = reader.spec();
    let fatal = |reason: String| WavError::Fatal(Error::bad_audio(path, reason));
    if spec.channels == 0 {
        return Err(fatal("the WAV header declares 0 channels".into()));
    }
    if spec.sample_rate == 0 {
        return Err(fatal(
            "the WAV header declares a sample rate of 0 Hz".into(),
        ));
    }
    let n_channels = spec.channels as usize;
    let declared_frames = reader.duration() as usize;
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bytes_per_sample = (spec.bits_per_sample as u64).div_ceil(8).max(1);
    let possible_frames = (file_len / (bytes_per_sample * n_channels as u64)) as usize;
    let frames = declared_frames.min(possible_frames);
    check_duration(path, frames, spec.sample_rate).map_err(WavError::Fatal)?;
    let mut channels = vec![Vec::with_capacity(frames); n_channels];
    let mut push = |i: usize, v: f32| channels[i % n_channels].push(v);
    match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(WavError::Unsupported);
            }
            for (i, s) in reader.into_samples::<f32>().enumerate() {
                push(
                    i,
                    s.map_err(|e| fatal(format!("truncated or corrupt sample data: {e}")))?,
                );
            }
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(1..=32).contains(&bits) {
                return Err(fatal(format!("unsupported bit depth {bits}")));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            for (i, s) in reader.into_samples::<i32>().enumerate() {
                let s = s.map_err(|e| fatal(format!("truncated or corrupt sample data: {e}")))?;
                push(i, (s as f64 * scale) as f32);
            }
        }
    }
    let len = channels[0].len();
    if channels.iter().any(|c| c.len() != len) {
        return Err(fatal("truncated WAV: the last frame is incomplete".into()));
    }
    if len < declared_frames {
        return Err(fatal(format!(
            "truncated WAV: the header declares {declared_frames} frames, the file holds {len}"
        )));
    }
    Ok(Audio {
        sample_rate: spec.sample_rate,
        channels,
    })
}

fn check_duration(path: &Path, frames: usize, sample_rate: u32) -> Result<()> {
    let seconds = frames as f64 / sample_rate.max(1) as f64;
    if seconds > MAX_DURATION_SECONDS {
        return Err(Error::bad_audio(
            path,
            format!(
                "too long: {:.0} s, the limit is {:.0} s; split the file first",
                seconds, MAX_DURATION_SECONDS
            ),
        ));
    }
    Ok(())
}

fn read_symphonia(path: &Path) -> Result<Audio> {
    use symphonia::core::audio::GenericAudioBufferRef;
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::errors::Error as SymErr;
    use symphonia::core::formats::probe::Hint;
    use symphonia::core::formats::{FormatOptions, TrackType};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;

    let bad = |reason: String| Error::bad_audio(path, reason);
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| bad(format!("not a recognised audio format ({e})")))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| bad("no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| bad("no audio codec parameters".into()))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| bad(format!("unsupported codec ({e})")))?;
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(format!("corrupt audio stream ({e})"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded: GenericAudioBufferRef = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymErr::DecodeError(_)) => continue,
            Err(e) => return Err(bad(format!("decoding failed ({e})"))),
        };
        let spec_rate = decoded.spec().rate();
        let n_ch = decoded.spec().channels().count();
        if n_ch == 0 {
            return Err(bad("the stream has 0 channels".into()));
        }
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
        } else if channels.len() != n_ch {
            return Err(bad(format!(
                "the channel count changes mid-stream ({} → {n_ch})",
                channels.len()
            )));
        }
        if sample_rate == 0 {
            sample_rate = spec_rate;
        }
        interleaved.clear();
        decoded.copy_to_vec_interleaved(&mut interleaved);
        for (i, s) in interleaved.iter().enumerate() {
            channels[i % n_ch].push(*s);
        }
        check_duration(path, channels[0].len(), sample_rate.max(1))?;
    }
    if channels.is_empty() {
        return Err(bad("no decodable audio".into()));
    }
    Ok(Audio {
        sample_rate,
        channels,
    })
}
