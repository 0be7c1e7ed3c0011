//! Audio reading (every WAV encoding, FLAC/OGG/MP3), resampling, atomic writing and clear
//! errors on bad input.

use crate::common;

use advox::audio::{read_audio, read_audio_16k_mono, resample, write_wav, WavFormat};
use advox::Error;
use std::f32::consts::PI;
use std::path::{Path, PathBuf};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advox-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tone(freq: f32, rate: u32, seconds: f32, amp: f32) -> Vec<f32> {
    (0..(rate as f32 * seconds) as usize)
        .map(|i| amp * (2.0 * PI * freq * i as f32 / rate as f32).sin())
        .collect()
}

/// Frequency from zero crossings and RMS level, over the middle of the signal.
fn freq_and_rms(x: &[f32], rate: u32) -> (f32, f32) {
    let mid = &x[x.len() / 5..x.len() * 4 / 5];
    let crossings = mid
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    let freq = crossings as f32 / 2.0 / (mid.len() as f32 / rate as f32);
    let rms = (mid.iter().map(|v| v * v).sum::<f32>() / mid.len() as f32).sqrt();
    (freq, rms)
}

fn write_int_wav(path: &Path, bits: u16, channels: u16, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let scale = (1i64 << (bits - 1)) as f32;
    for s in samples {
        for _ in 0..channels {
            let v = (s * scale).round().clamp(-scale, scale - 1.0) as i32;
            if bits == 8 {
                w.write_sample(v as i8).unwrap();
            } else {
                w.write_sample(v).unwrap();
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn reads_every_wav_integer_width_and_float() {
    let dir = tempdir("widths");
    let x = tone(440.0, 16000, 0.25, 0.5);
    for bits in [8u16, 16, 24, 32] {
        let p = dir.join(format!("i{bits}.wav"));
        write_int_wav(&p, bits, 1, 16000, &x);
        let a = read_audio(&p).unwrap();
        assert_eq!(a.sample_rate, 16000);
        let tol = 2.0 / (1u64 << (bits - 1)) as f32;
        let err = a.channels[0]
            .iter()
            .zip(&x)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= tol, "{bits}-bit error {err}");
    }
    let p = dir.join("f32.wav");
    write_wav(&p, &x, 16000, WavFormat::Float32, &[]).unwrap();
    assert_eq!(read_audio(&p).unwrap().channels[0], x);
}

#[test]
fn mixes_channels_and_resamples_to_16k() {
    let dir = tempdir("stereo");
    let x = tone(1000.0, 48000, 1.0, 0.5);
    let p = dir.join("stereo48k.wav");
    write_int_wav(&p, 16, 2, 48000, &x);
    let y = read_audio_16k_mono(&p).unwrap();
    assert_eq!(y.len(), 16000);
    let (f, rms) = freq_and_rms(&y, 16000);
    assert!((f - 1000.0).abs() < 2.0, "frequency {f}");
    assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.005, "rms {rms}");
}

#[test]
fn resampler_keeps_a_tones_frequency_and_level() {
    for rate in [8000u32, 22050, 44100, 96000] {
        let x = tone(1000.0, rate, 1.0, 0.5);
        let y = resample(&x, rate, 16000).unwrap();
        assert_eq!(y.len(), 16000);
        let (f, rms) = freq_and_rms(&y, 16000);
        assert!((f - 1000.0).abs() < 2.0, "{rate} Hz: frequency {f}");
        assert!(
            (rms - 0.5 / 2f32.sqrt()).abs() < 0.005,
            "{rate} Hz: rms {rms}"
        );
    }
}

#[test]
fn resampler_removes_content_above_the_new_nyquist() {
    // A 7 kHz tone at 44.1 kHz cannot exist at 8 kHz; band-limited resampling must drop it
    // instead of aliasing it to 1 kHz.
    let x = tone(7000.0, 44100, 1.0, 0.5);
    let y = resample(&x, 44100, 8000).unwrap();
    let (_, rms) = freq_and_rms(&y, 8000);
    assert!(rms < 0.01, "aliased energy left: rms {rms}");
}

#[test]
fn reads_flac_ogg_and_mp3() {
    let data = common::root().join("tests/data");
    for (name, channels) in [
        ("tone_1k_stereo_44k.flac", 2),
        ("tone_1k_22k.ogg", 1),
        ("tone_1k_44k.mp3", 1),
    ] {
        let p = data.join(name);
        let a = read_audio(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.channels.len(), channels, "{name}");
        let y = read_audio_16k_mono(&p).unwrap();
        let (f, rms) = freq_and_rms(&y, 16000);
        assert!((f - 1000.0).abs() < 5.0, "{name}: frequency {f}");
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.03, "{name}: rms {rms}");
    }
}

fn assert_bad_audio(path: &Path, needle: &str) {
    match read_audio(path) {
        Err(e @ (Error::BadAudio { .. } | Error::Io { .. })) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()),
                "error does not name the file: {msg}"
            );
            assert!(
                msg.to_lowercase().contains(needle),
                "error {msg:?} lacks {needle:?}"
            );
        }
        other => panic!("{}: expected a clear error, got {other:?}", path.display()),
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempdir("bad");
    let good = dir.join("good.wav");
    write_wav(
        &good,
        &tone(440.0, 16000, 0.5, 0.5),
        16000,
        WavFormat::Pcm16,
        &[],
    )
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_bad_audio(&truncated, "truncated");

    let header_only = dir.join("header_only.wav");
    std::fs::write(&header_only, &bytes[..20]).unwrap();
    assert_bad_audio(&header_only, "wav");

    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert_bad_audio(&empty, "empty");

    let no_samples = dir.join("no_samples.wav");
    write_wav(&no_samples, &[], 16000, WavFormat::Pcm16, &[]).unwrap();
    assert_bad_audio(&no_samples, "no samples");

    let text = dir.join("text.wav");
    std::fs::write(&text, "this is not audio at all, just some text\n").unwrap();
    assert_bad_audio(&text, "not a recognised audio format");

    assert_bad_audio(&dir.join("missing.wav"), "no such file");

    let nan = dir.join("nan.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&nan, spec).unwrap();
    for v in [0.0f32, f32::NAN, 0.5] {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    assert_bad_audio(&nan, "nan");

    // A header claiming far more data than the file holds is refused without allocating it.
    let mut huge = bytes.clone();
    huge[40..44].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    let claim = dir.join("claims_4g.wav");
    std::fs::write(&claim, &huge).unwrap();
    assert_bad_audio(&claim, "truncated");
}

#[test]
fn writing_is_atomic_quantised_and_never_overwrites_an_input() {
    let dir = tempdir("write");
    let x = vec![0.0, 0.25, -0.5, 1.5, -1.5];
    let out = dir.join("out.wav");
    write_wav(&out, &x, 16000, WavFormat::Pcm16, &[]).unwrap();
    let back = read_audio(&out).unwrap().channels[0].clone();
    assert_eq!(back, vec![0.0, 0.25, -0.5, 32767.0 / 32768.0, -1.0]);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
    let before = std::fs::read(&out).unwrap();
    let err = write_wav(&out, &[0.1], 16000, WavFormat::Pcm16, &[&out]).unwrap_err();
    assert!(matches!(err, Error::WouldOverwriteInput(_)), "{err}");
    let via_dot = dir.join(".").join("out.wav");
    assert!(write_wav(&via_dot, &[0.1], 16000, WavFormat::Pcm16, &[&out]).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), before, "input was modified");
    let missing_dir = dir.join("no/such/dir/out.wav");
    let err = write_wav(&missing_dir, &x, 16000, WavFormat::Pcm16, &[]).unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

/// A canonical 44-byte-header WAV with the given fields and raw data (no checks).
fn raw_wav(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block = channels.wrapping_mul(bits.div_ceil(8));
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&format.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate.wrapping_mul(block as u32)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn hostile_headers_give_clear_errors_and_tiny_files_read_correctly() {
    let dir = tempdir("hostile");
    let pcm: Vec<u8> = (0..64i16).flat_map(|s| (s * 100).to_le_bytes()).collect();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "zero_channels.wav",
            raw_wav(1, 0, 16_000, 16, &pcm),
            "channel",
        ),
        ("zero_hz.wav", raw_wav(1, 1, 0, 16, &pcm), "0 hz"),
        ("zero_bits.wav", raw_wav(1, 1, 16_000, 0, &pcm), "wav"),
        ("float_64.wav", raw_wav(3, 1, 16_000, 64, &pcm), "wav"),
        (
            // 2^32 − 1 data bytes claimed by a 172-byte file.
            "claims_2_32.wav",
            {
                let mut v = raw_wav(1, 1, 16_000, 16, &pcm);
                v[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
                v
            },
            "malformed",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        assert_bad_audio(&path, needle);
    }

    // Infinity is refused like NaN.
    let inf = dir.join("inf.wav");
    let data: Vec<u8> = [0.25f32, f32::INFINITY, -0.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&inf, raw_wav(3, 1, 16_000, 32, &data)).unwrap();
    assert_bad_audio(&inf, "infinite");

    // One sample: read exactly, and resampled to one or two finite samples.
    let one = dir.join("one_sample.wav");
    std::fs::write(&one, raw_wav(1, 1, 48_000, 16, &16_384i16.to_le_bytes())).unwrap();
    let audio = read_audio(&one).unwrap();
    assert_eq!(audio.channels, vec![vec![0.5]]);
    assert_eq!(audio.sample_rate, 48_000);
    let x16 = advox::audio::read_audio_16k_mono(&one).unwrap();
    assert!(!x16.is_empty() && x16.len() <= 2, "{x16:?}");
    assert!(x16.iter().all(|v| v.is_finite()));
    let one_16k = dir.join("one_sample_16k.wav");
    std::fs::write(
        &one_16k,
        raw_wav(1, 1, 16_000, 16, &16_384i16.to_le_bytes()),
    )
    .unwrap();
    assert_eq!(
        advox::audio::read_audio_16k_mono(&one_16k).unwrap(),
        vec![0.5]
    );
}
