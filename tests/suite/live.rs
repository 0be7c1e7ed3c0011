//! `advox live` on a file runs the plugins' processing: the samples equal the core's
//! `CloakProcessor` (which the plugin runs in `process()`), and Sentinel prints detections.

use crate::common;

use advox::stream::cloak::CloakSettings;
use advox::stream::processors::CloakProcessor;
use std::process::Command;

/// `x` (48 kHz) in both channels of a 32-bit float WAV (the plugin tests' format).
fn write_stereo_48k(path: &std::path::Path, x: &[f32]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for v in x {
        w.write_sample(*v).unwrap();
        w.write_sample(*v).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn live_on_a_file_is_the_plugins_processing() {
    let dir = std::env::temp_dir().join(format!("advox-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A stereo 48-kHz input (the plugin tests' format).
    let x =
        advox::audio::resample(&common::sample("lock_the_back_door.wav"), 16_000, 48_000).unwrap();
    let input = dir.join("in.wav");
    write_stereo_48k(&input, &x);
    let out = dir.join("cloaked.wav");
    let run = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args([
            "live",
            "--cloak",
            "--mode",
            "noise",
            "--margin-db",
            "6",
            "--input-file",
        ])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = advox::audio::read_audio(&out).unwrap();
    assert_eq!(written.sample_rate, 48_000);
    // The same processing in the core, in other block sizes.
    let mut expected = vec![x.clone(), x.clone()];
    let mut cloak = CloakProcessor::new(48_000.0, 2).unwrap();
    let settings = CloakSettings::default();
    let mut start = 0;
    while start < x.len() {
        let end = (start + 1000).min(x.len());
        let (l, r) = expected.split_at_mut(1);
        cloak.process(
            &mut [&mut l[0][start..end], &mut r[0][start..end]],
            &settings,
            None,
        );
        start = end;
    }
    assert_eq!(written.channels, expected);
    assert_ne!(
        written.channels[0], written.channels[1],
        "independent noise per channel"
    );
    // Sentinel flags it, and says when.
    let run = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["live", "--sentinel", "--input-file"])
        .arg(&out)
        .arg("-o")
        .arg(dir.join("sentinel.wav"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().any(|e| e["detected"] == true), "{events:?}");
    // Refusals: no mode, an input as the output, a missing file.
    let refuse = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_advox"))
            .args(args)
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let inp = input.to_str().unwrap();
    assert!(refuse(&["live", "--input-file", inp, "-o", "/tmp/x.wav"])
        .contains("--cloak or --sentinel"));
    assert!(refuse(&["live", "--cloak", "--input-file", inp, "-o", inp]).contains("overwrite"));
    assert!(refuse(&[
        "live",
        "--cloak",
        "--input-file",
        "/nonexistent.wav",
        "-o",
        "/tmp/y.wav"
    ])
    .contains("nonexistent.wav"));
    // Sound devices need the `audio-devices` feature: without it, a clear error says so.
    if !cfg!(feature = "audio-devices") {
        assert!(refuse(&["live", "--list"]).contains("--features audio-devices"));
        assert!(refuse(&["live", "--cloak", "--seconds", "1"]).contains("--input-file"));
    }
}

/// Cloak's model mode on a held-out recording of real speech (a voice-assistant request by a
/// speaker no default was chosen on), as a DAW user would bounce a 48-kHz stereo track:
/// faster-whisper (its own front end and resampler) no longer gets the words, and a listener
/// loses next to nothing (PESQ). About 15 s on two cores (the clip moves in a handful of steps).
#[test]
fn cloak_model_mode_keeps_faster_whisper_from_the_words() {
    use advox::verify::Verifier;
    let dir = std::env::temp_dir().join(format!("advox-live-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip = &common::corpus_test(4)[3];
    assert_eq!(clip.name, "rhino/test_within_context.wav");
    let x = advox::audio::resample(&clip.samples, 16_000, 48_000).unwrap();
    let input = dir.join("in.wav");
    write_stereo_48k(&input, &x);
    let live = |extra: &[&str], out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_advox"))
            .env(advox::model::provision::MODEL_ENV, common::model_dir())
            .args(["live", "--cloak", "--mode", "model", "--input-file"])
            .arg(&input)
            .arg("-o")
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    // Options of the streaming modes do not apply, and the mode needs a file.
    let refused = live(&["--depth", "0.5"], &dir.join("x.wav"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--depth"));
    let no_file = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["live", "--cloak", "--mode", "model", "-o"])
        .arg(dir.join("y.wav"))
        .output()
        .unwrap();
    assert_ne!(no_file.status.code(), Some(0));
    let stray = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["live", "--cloak", "--min-wer", "0.6", "--input-file"])
        .arg(&input)
        .arg("-o")
        .arg(dir.join("z.wav"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&stray.stderr).contains("--min-wer"));
    assert!(!dir.join("z.wav").exists());

    let out = dir.join("cloaked.wav");
    let report = dir.join("cloaked.json");
    let run = live(&["--report", report.to_str().unwrap()], &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["windows"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["windows"][0]["success"], true, "{doc}");
    assert_eq!(doc["margin_db"], 0.0);
    assert_eq!(doc["min_wer"], 0.75);
    // Same rate and channels, not delayed: the difference is the perturbation alone, which
    // is the same in both channels and small.
    let written = advox::audio::read_audio(&out).unwrap();
    assert_eq!(written.sample_rate, 48_000);
    assert_eq!(written.channels.len(), 2);
    assert_eq!(written.channels[0], written.channels[1]);
    let delta: Vec<f32> = written.channels[0]
        .iter()
        .zip(&x)
        .map(|(a, b)| a - b)
        .collect();
    let snr = advox::metrics::snr_db(&x, &delta);
    assert!(snr > 20.0 && snr.is_finite(), "SNR {snr} dB");
    let cloaked16 = advox::audio::read_audio_16k_mono(&out).unwrap();
    let clean16 = advox::audio::read_audio_16k_mono(&input).unwrap();
    let pesq = advox::eval::cloak::pesq_wb(&clean16, &cloaked16).unwrap();
    assert!(pesq >= 3.5, "PESQ {pesq}");
    // faster-whisper on both files: every setting's transcript moves at least half a WER
    // away from what it heard in the clean track.
    let heard = Verifier::FasterWhisper
        .transcribe_files(
            &common::model_dir(),
            &[input.clone(), out.clone()],
            None,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(heard[1].len(), 4);
    for (clean, cloaked) in heard[0].iter().zip(&heard[1]) {
        assert_eq!(clean.setting(), cloaked.setting());
        let (c, k) = (clean.text.as_ref().unwrap(), cloaked.text.as_ref().unwrap());
        let wer = advox::metrics::wer(c, k);
        assert!(
            wer >= 0.5,
            "{}: {c:?} -> {k:?} (WER {wer})",
            clean.setting()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Cloak's default, the mute mode, through `advox live` on two held-out LJ Speech utterances
/// (`bench/heldout.csv`: the segment's training never heard them) that start after 0.7 s of
/// silence, as a live stream
/// started before the first word does: written at 48 kHz stereo as a live stream records it (the
/// input delayed by Cloak's latency, the segment from the stream's first sample),
/// faster-whisper (same tiny.en weights) hears nothing but " ." in either, plain and with
/// timestamps, beam 5 and greedy, where the clean files are transcribed; the options of the
/// shaped modes are refused.
#[test]
fn cloak_by_default_keeps_faster_whisper_from_speech_after_a_lead_in() {
    use advox::verify::Verifier;
    let dir = common::fresh_dir("live-mute");
    let mut files = Vec::new();
    for (i, name) in ["LJ001-0005.wav", "LJ001-0009.wav"].iter().enumerate() {
        let path = common::shared().join("corpus/ljspeech").join(name);
        let speech = advox::audio::read_audio_16k_mono(&path).unwrap();
        let mut x16 = vec![0.0f32; 11_200];
        x16.extend(speech);
        let x = advox::audio::resample(&x16, 16_000, 48_000).unwrap();
        let input = dir.join(format!("{i}-clean.wav"));
        write_stereo_48k(&input, &x);
        let out = dir.join(format!("{i}-muted.wav"));
        let run = Command::new(env!("CARGO_BIN_EXE_advox"))
            // Cloak's default mode: the mute segment.
            .args(["live", "--cloak", "--input-file"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        // The segment, and nothing after it: the input delayed by the latency, bit for bit
        // where the segment has ended.
        let written = advox::audio::read_audio(&out).unwrap();
        let lat = 1536;
        let seg = advox::stream::mute_segment::builtin_at_rate(48_000).unwrap();
        let ch = &written.channels[0];
        assert!(ch[..lat].iter().zip(&seg).all(|(a, b)| a == b));
        assert!((ch[lat] - x[0] - seg[lat]).abs() < 1e-6);
        for k in seg.len()..x.len() {
            assert_eq!(ch[k], x[k - lat], "sample {k}");
        }
        files.extend([input, out]);
    }
    // Options that do not apply are refused, naming them; an additive universal file is not a
    // mute segment, and noise plays no file.
    let additive = dir.join("additive.wav");
    advox::audio::write_wav(
        &additive,
        &[0.01; 100],
        16_000,
        advox::audio::WavFormat::Float32,
        &[],
    )
    .unwrap();
    std::fs::write(
        dir.join("additive.json"),
        r#"{"format":"advox-universal","version":1,"sample_rate":16000,"length":100,"mode":"additive","linf":0.01}"#,
    )
    .unwrap();
    let file = additive.to_str().unwrap();
    for extra in [
        &["--margin-db", "3"][..],
        &["--margin-db", "3", "--mode", "mute"][..],
        &["--band", "100-4000", "--mode", "mute"][..],
        &["--universal", file, "--mode", "mute"][..],
        &["--universal", file, "--mode", "noise"][..],
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_advox"))
            .args(["live", "--cloak", "--input-file"])
            .arg(&files[0])
            .arg("-o")
            .arg(dir.join("x.wav"))
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1));
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            err.contains(extra[0]) || err.contains("Additive"),
            "{extra:?}: {err}"
        );
        assert!(!dir.join("x.wav").exists());
    }
    let heard = Verifier::FasterWhisper
        .transcribe_files(&common::model_dir(), &files, None, &mut |_| {})
        .unwrap();
    for (file, settings) in files.iter().zip(&heard) {
        let muted = file.to_string_lossy().ends_with("-muted.wav");
        assert_eq!(settings.len(), 4, "beam 5 and 1, plain and timestamps");
        for h in settings {
            let text = h.text.as_ref().unwrap();
            assert_eq!(
                advox::text::normalize_transcript(text).is_empty(),
                muted,
                "{} {}: {text:?}",
                file.display(),
                h.setting()
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A recording longer than one window is attacked window by window, and the perturbation of
/// each window lands where its window is. About 15 s on two cores.
#[test]
fn a_recording_is_attacked_window_by_window() {
    use advox::attack::cloak_model::{cloak_with_model, ModelCloakConfig};
    let clips = common::corpus_test(2);
    let (a, b) = (&clips[0].samples, &clips[1].samples);
    // Windows the length of the longer clip: the first clip (padded with silence), then the
    // second.
    let window = a.len().max(b.len());
    let mut x = a.clone();
    x.resize(window, 0.0);
    x.extend_from_slice(b);
    // The goal of the first success (0.5, not the default 0.75) keeps this test to a few
    // steps per window: it checks the windowing, not the strength.
    let cfg = ModelCloakConfig {
        window,
        min_wer: 0.5,
        ..ModelCloakConfig::default()
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let mut seen = Vec::new();
    let attack = cloak_with_model(
        common::model(),
        &x,
        &cfg,
        &never,
        &mut |w| seen.push(w.start),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(attack.perturbation.len(), x.len());
    let starts: Vec<usize> = attack.windows.iter().map(|w| w.start).collect();
    assert_eq!(starts, seen);
    assert_eq!(starts, [0, window]);
    assert_eq!(attack.windows[1].len, b.len());
    for (w, clip) in attack.windows.iter().zip(&clips) {
        assert!(w.success && w.skipped.is_none(), "{}: {w:?}", clip.name);
        // Each window's perturbation is its own: it sits under that window's speech.
        let energy: f32 = attack.perturbation[w.start..w.start + w.len]
            .iter()
            .map(|d| d * d)
            .sum();
        assert!(energy > 0.0, "{}", clip.name);
        assert!(w.snr_db > 20.0, "{w:?}");
    }
    assert_eq!(attack.succeeded(), 2);
}

/// The plugin's streaming form of the model mode, as a host's offline render drives it
/// (48-kHz stereo, 512-sample blocks, waiting for the worker): after the reported latency the
/// output is the input plus a perturbation that keeps faster-whisper from the words. Chunks of
/// 10 s (latency 20 s) so that the held-out request is one chunk. About 20 s on two cores.
#[test]
fn the_streaming_model_mode_renders_offline_like_the_file_mode() {
    use advox::stream::model_cloak::{spawn_model_cloak, ModelCloakStatus, ModelStreamConfig};
    use advox::verify::Verifier;
    let clip = &common::corpus_test(4)[3];
    let x = advox::audio::resample(&clip.samples, 16_000, 48_000).unwrap();
    let config = ModelStreamConfig {
        sample_rate: 48_000.0,
        chunk_seconds: 10.0,
        ..Default::default()
    };
    let dir = common::model_dir();
    let (mut stream, worker) = spawn_model_cloak(config, 2, move || {
        advox::model::LoadedModel::load(&dir, &candle_core::Device::Cpu)
    })
    .unwrap();
    let latency = stream.latency();
    assert_eq!(latency, 960_000);
    let mut l = x.clone();
    l.resize(x.len() + latency, 0.0);
    let mut r = l.clone();
    for (a, b) in l.chunks_mut(512).zip(r.chunks_mut(512)) {
        stream.process(&mut [a, b], true, 1.0);
    }
    assert_eq!(stream.state().status(), ModelCloakStatus::Ready);
    // The speech chunk moved; the silent chunk after it (done or not by now) needs no model.
    let (chunks, moved, missed) = stream.state().counts();
    assert!(
        (1..=2).contains(&chunks) && moved == 1 && missed == 0,
        "{chunks} {moved} {missed}"
    );
    drop(stream);
    worker.join().unwrap();
    let out = &l[latency..];
    assert_eq!(out, &r[latency..]);
    let delta: Vec<f32> = out.iter().zip(&x).map(|(a, b)| a - b).collect();
    let snr = advox::metrics::snr_db(&x, &delta);
    assert!(snr > 20.0 && snr.is_finite(), "SNR {snr} dB");
    let tmp = std::env::temp_dir().join(format!("advox-stream-model-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (clean, cloaked) = (tmp.join("clean.wav"), tmp.join("cloaked.wav"));
    for (path, s) in [(&clean, &x[..]), (&cloaked, out)] {
        advox::audio::write_wav(path, s, 48_000, advox::audio::WavFormat::Pcm16, &[]).unwrap();
    }
    // The clean track given twice (as a suite's carrier recurs) is answered at both places.
    let heard = Verifier::FasterWhisper
        .transcribe_files(
            &common::model_dir(),
            &[clean.clone(), cloaked, clean],
            None,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(heard[2], heard[0]);
    assert_eq!(heard[0].len(), 4);
    for (c, k) in heard[0].iter().zip(&heard[1]) {
        let (c, k) = (c.text.as_ref().unwrap(), k.text.as_ref().unwrap());
        let wer = advox::metrics::wer(c, k);
        assert!(wer >= 0.5, "{c:?} -> {k:?} (WER {wer})");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn the_model_check_takes_any_model_detector_with_its_calibration() {
    let dir = common::fresh_dir("live-check");
    let samples = common::root().join("samples");
    let input = samples.join("lock_the_back_door.wav");
    let advox = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_advox"));
        c.env(advox::model::provision::MODEL_ENV, common::model_dir());
        c
    };
    let live = |extra: &[&str], out: &str| {
        advox()
            .args(["live", "--sentinel", "--model-check", "--input-file"])
            .arg(&input)
            .arg("-o")
            .arg(dir.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    // Entropy is scored in nats: without a calibration the check refuses to guess a scale.
    let o = live(&["--model-check-detector", "entropy"], "a.wav");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--model-check-calibration"));
    // A detector that does not listen with the model is not a model check.
    let o = live(&["--model-check-detector", "noise-floor"], "b.wav");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("listens with the model"));
    // A calibration of entropy on clean speech makes it usable; one without it is refused.
    let clean = dir.join("clean.csv");
    common::write_manifest(
        &clean,
        &[
            samples.join("open_the_front_door.wav"),
            samples.join("play_some_music.wav"),
        ],
    );
    let cal = dir.join("cal.json");
    let o = advox()
        .args(["detect", "--calibrate"])
        .arg(&clean)
        .args(["--detectors", "entropy", "-o"])
        .arg(&cal)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = live(
        &[
            "--model-check-detector",
            "confidence",
            "--model-check-calibration",
            cal.to_str().unwrap(),
        ],
        "c.wav",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no threshold for confidence"));
    let o = live(
        &[
            "--model-check-detector",
            "entropy",
            "--model-check-calibration",
            cal.to_str().unwrap(),
        ],
        "d.wav",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("d.wav").exists());
    // The detector option needs the model check.
    let o = advox()
        .args([
            "live",
            "--sentinel",
            "--model-check-detector",
            "entropy",
            "--input-file",
        ])
        .arg(&input)
        .arg("-o")
        .arg(dir.join("e.wav"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}
