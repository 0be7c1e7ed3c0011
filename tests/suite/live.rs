//! `advox live` on a file runs the plugins' processing: the samples equal the core's
//! `CloakProcessor` (which the plugin runs in `process()`), and Sentinel prints detections.

use crate::common;

use advox::stream::cloak::CloakSettings;
use advox::stream::processors::CloakProcessor;
use std::process::Command;

#[test]
fn live_on_a_file_is_the_plugins_processing() {
    let dir = std::env::temp_dir().join(format!("advox-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A stereo 48-kHz input (the plugin tests' format).
    let x =
        advox::audio::resample(&common::sample("lock_the_back_door.wav"), 16_000, 48_000).unwrap();
    let input = dir.join("in.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    for v in &x {
        w.write_sample(*v).unwrap();
        w.write_sample(*v).unwrap();
    }
    w.finalize().unwrap();
    let out = dir.join("cloaked.wav");
    let run = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["live", "--cloak", "--margin-db", "6", "--input-file"])
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
