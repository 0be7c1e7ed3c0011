//! `advox bench --cloak`: real recordings through Cloak as a host runs it, judged by advox's
//! model and faster-whisper (one run over every file), with wideband PESQ, SNR, the masked
//! share and the real-time factor per setting, and the trade-off plot.

use crate::common;
use std::process::Command;

#[test]
fn the_cloak_benchmark_measures_every_setting_with_every_recogniser() {
    let dir = std::env::temp_dir().join(format!("advox-cloak-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("heldout.csv");
    let clips = [
        "rhino/test_within_context.wav",
        "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    ];
    let lines: Vec<String> = clips
        .iter()
        .map(|c| {
            common::shared()
                .join("corpus")
                .join(c)
                .display()
                .to_string()
        })
        .collect();
    std::fs::write(&manifest, format!("input\n{}\n", lines.join("\n"))).unwrap();
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_advox"))
        .env(advox::model::provision::MODEL_ENV, common::model_dir())
        .args(["bench", "--cloak"])
        .arg(&manifest)
        .args(["--margins", "0", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["mode"], "masked-noise");
    assert_eq!(doc["host_rate"], 48000);
    let settings = doc["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 2);
    // The clean chain: the reference of every WER, so 0 for every recogniser and setting.
    let clean = &settings[0];
    assert!(clean["margin_db"].is_null());
    let wers = clean["wer"].as_object().unwrap();
    for key in [
        "advox beam 5",
        "faster-whisper beam 5",
        "faster-whisper beam 1",
        "faster-whisper beam 5 timestamps",
        "faster-whisper beam 1 timestamps",
    ] {
        assert_eq!(wers[key], 0.0, "{key}: {clean}");
    }
    // Cloak at margin 0: a perturbation mostly under the threshold, scored by PESQ.
    let cloaked = &settings[1];
    assert_eq!(cloaked["margin_db"], 0.0);
    let snr = cloaked["snr_db"].as_f64().unwrap();
    assert!(snr > 3.0 && snr < 40.0, "{snr}");
    let pesq = cloaked["pesq_wb"].as_f64().unwrap();
    assert!(pesq > 1.0 && pesq < 4.64, "{pesq}");
    assert_eq!(cloaked["pesq_scored"], 2);
    let stoi = cloaked["stoi"].as_f64().unwrap();
    assert!(stoi > 0.5 && stoi < 1.0, "{stoi}");
    assert!(cloaked["energy_under_threshold"].as_f64().unwrap() > 0.5);
    assert!(cloaked["rtf"].as_f64().unwrap() > 0.0);
    let recordings = cloaked["recordings"].as_array().unwrap();
    assert_eq!(recordings.len(), 2);
    for r in recordings {
        assert!(std::path::Path::new(r["file"].as_str().unwrap()).is_file());
        let w = r["wer"]["faster-whisper beam 5"].as_f64().unwrap();
        assert!((0.0..=3.0).contains(&w), "{r}");
    }
    let png = std::fs::read(out.join("tradeoff.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(out.join("cloak.json").is_file());
    // Its options need --cloak.
    let stray = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["bench", "--margins", "3"])
        .output()
        .unwrap();
    assert_eq!(stray.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stray.stderr).contains("--cloak"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `--mute`: Cloak's mute mode at each `--depths` value (here advox's own model only, on one
/// request: this checks the settings and the quality figures; what faster-whisper hears is
/// the live test's and the README's); the margins do not apply.
#[test]
fn the_cloak_benchmark_measures_the_mute_mode_per_depth() {
    let dir = common::fresh_dir("cloak-bench-mute");
    let manifest = dir.join("one.csv");
    let clip = common::shared().join("corpus/rhino/test_within_context.wav");
    std::fs::write(&manifest, format!("input\n{}\n", clip.display())).unwrap();
    let bench = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_advox"))
            .env(advox::model::provision::MODEL_ENV, common::model_dir())
            .args(["bench", "--cloak"])
            .arg(&manifest)
            .args(["--mute", "--no-verify", "--json", "--out"])
            .arg(dir.join("out"))
            .args(extra)
            .output()
            .unwrap()
    };
    let run = bench(&["--depths", "1,0.5"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["mode"], "mute-segment");
    let settings = doc["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 3);
    assert!(settings[0]["depth"].is_null() && settings[0]["margin_db"].is_null());
    for (s, depth) in settings[1..].iter().zip([1.0, 0.5]) {
        assert_eq!(s["depth"], depth);
        assert!(s["margin_db"].is_null());
        // The segment (amplitude 0.02) over a quiet request: 12.7 dB SNR at depth 1; cheap.
        let snr = s["snr_db"].as_f64().unwrap();
        assert!((10.0..40.0).contains(&snr), "SNR {snr}");
        assert!(s["rtf"].as_f64().unwrap() < 0.01);
    }
    // Half the depth is 6 dB less segment.
    let (a, b) = (
        settings[1]["snr_db"].as_f64().unwrap(),
        settings[2]["snr_db"].as_f64().unwrap(),
    );
    assert!((b - a - 6.02).abs() < 0.3, "{a} -> {b}");
    // Margins do not apply to it; depths must be in 0..1.
    for extra in [&["--margins", "6"][..], &["--depths", "2"][..]] {
        let run = bench(extra);
        assert_ne!(run.status.code(), Some(0), "{extra:?}");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(extra[0]), "{extra:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
