//! Independent verification: an example made by `advox attack` on held-out real speech is heard
//! as the target by faster-whisper (CTranslate2, the same tiny.en weights, its own front end),
//! greedy and beam 5, plain and timestamp decoding. faster-whisper is installed by advox itself
//! into a venv under its cache on first use (`.ci/run` provides python3 with venv and pip).

use crate::common;
use std::process::Command;

/// `advox attack` on a held-out Rhino request with `args` and `--seed 1 --verify faster-whisper`,
/// in a temporary folder named by `tag` (removed after): its exit status, stderr and report.
fn attack_verified(tag: &str, args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let clip = common::shared().join("corpus/rhino/test_within_context.wav");
    let dir = std::env::temp_dir().join(format!("advox-verify-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("adv.wav");
    let run = Command::new(env!("CARGO_BIN_EXE_advox"))
        .env(advox::model::provision::MODEL_ENV, common::model_dir())
        .arg("attack")
        .arg(&clip)
        .args(args)
        .args(["--seed", "1", "--verify", "faster-whisper", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let report = std::fs::read_to_string(dir.join("adv.json"))
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|e| panic!("no report ({e}): {stderr}"));
    std::fs::remove_dir_all(&dir).ok();
    (run.status.code(), stderr, report)
}

#[test]
fn a_targeted_attack_on_held_out_speech_is_heard_by_faster_whisper() {
    // The held-out split (`common::corpus_test`): a voice-assistant request by a speaker whose
    // clips set no default here (the margin was chosen on LJ Speech). 8 s on two cores.
    let (status, stderr, report) = attack_verified(
        "pgd",
        &["--target", "Turn off the lights.", "--snr-db", "35"],
    );
    let verdicts = report["verified_by"].as_array().unwrap();
    // Greedy and beam 5, each plain and with timestamps.
    assert_eq!(verdicts.len(), 4, "{stderr}");
    for v in verdicts {
        assert_eq!(v["recognizer"], "faster-whisper");
        assert_eq!(v["success"], true, "{v}\n{stderr}");
    }
    assert_eq!(report["verified"], true);
    assert_eq!(status, Some(0), "{stderr}");
    // The bound held and what success had to survive is recorded.
    assert!(
        report["snr_db"].as_f64().unwrap() >= 34.99,
        "{}",
        report["snr_db"]
    );
    assert_eq!(
        report["robustness"]["front_ends"].as_array().unwrap().len(),
        2
    );
    assert_eq!(report["robustness"]["timestamps"], true);
}

/// Carlini–Wagner under the same bound (c from 100, its margin loss once the target leads):
/// heard as the target by faster-whisper in all four settings, inside the bound. 31 steps, 21 s
/// on two cores when measured (`advox bench --suite`, 2026-12-06).
#[test]
fn a_cw_attack_on_held_out_speech_is_heard_by_faster_whisper() {
    let (status, stderr, report) = attack_verified(
        "cw",
        &[
            "--attack",
            "cw",
            "--target",
            "Turn off the lights.",
            "--snr-db",
            "35",
        ],
    );
    let verdicts = report["verified_by"].as_array().unwrap();
    assert_eq!(verdicts.len(), 4, "{stderr}");
    assert!(
        verdicts.iter().all(|v| v["success"] == true),
        "{verdicts:?}\n{stderr}"
    );
    assert_eq!(report["verified"], true);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(report["snr_db"].as_f64().unwrap() >= 34.99);
    assert_eq!(report["constraints"]["snr_db"], 35.0);
}

#[test]
fn the_imperceptible_attack_on_held_out_speech_is_masked_and_heard_by_faster_whisper() {
    // Its defaults: stage 1 under the masking bound at 1 dB first; a success there is already
    // under the threshold and stage 2 is skipped (56 steps here, 41 s, measured 2026-12-06).
    let (status, stderr, report) = attack_verified(
        "imperceptible",
        &[
            "--attack",
            "imperceptible",
            "--target",
            "Turn off the lights.",
        ],
    );
    assert_eq!(status, Some(0), "{stderr}");
    let verdicts = report["verified_by"].as_array().unwrap();
    assert_eq!(verdicts.len(), 4, "{stderr}");
    assert!(verdicts.iter().all(|v| v["success"] == true), "{report}");
    let masked = report["masking"]["energy_under_threshold"]
        .as_f64()
        .unwrap();
    assert!(masked >= 0.95, "{masked}");
    let details = &report["details"]["imperceptible"];
    assert!(details["stage1_margin_db"].is_number(), "{details}");
}

#[test]
fn the_corpus_benchmark_counts_verified_successes_and_refuses_what_does_not_apply() {
    // `advox bench --suite` on a one-line manifest of held-out speech: the attack as `advox
    // attack` runs it, the example judged by faster-whisper, the median time of the verified
    // successes.
    let clip = common::shared().join("corpus/rhino/test_within_context.wav");
    let dir = std::env::temp_dir().join(format!("advox-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("heldout.csv");
    std::fs::write(&manifest, format!("input\n{}\n", clip.display())).unwrap();
    let bench = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_advox"))
            .env(advox::model::provision::MODEL_ENV, common::model_dir())
            .args(["bench", "--suite", "--manifest"])
            .arg(&manifest)
            .args(extra)
            .output()
            .unwrap()
    };
    // A goal the attack cannot pursue is refused before any attack runs.
    let refused = bench(&["--attacks", "deepfool"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("deepfool"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = dir.join("out");
    let run = bench(&["--attacks", "pgd", "--json", "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["verifiers"], serde_json::json!(["faster-whisper"]));
    let pgd = &doc["attacks"][0];
    assert_eq!(pgd["attack"], "pgd");
    assert_eq!(pgd["flags"], "--attack pgd --seed 1 --snr-db 35");
    assert_eq!(pgd["inputs"], 1);
    assert_eq!(pgd["own_successes"], 1, "{stderr}");
    assert_eq!(pgd["verified_successes"], 1, "{stderr}");
    let report = &pgd["results"][0];
    assert_eq!(report["verified"], true);
    assert_eq!(report["verified_by"].as_array().unwrap().len(), 4);
    assert_eq!(
        pgd["median_seconds_to_success"].as_f64(),
        report["wall_seconds"].as_f64()
    );
    assert!(out.join("pgd/0000_test_within_context.wav").is_file());
    assert!(out.join("pgd/summary.json").is_file());
    assert!(out.join("suite.json").is_file());
    // The suite's options need --suite.
    let stray = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["bench", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(stray.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stray.stderr).contains("--suite"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_side_by_side_benchmark_times_advox_against_faster_whisper_on_this_cpu() {
    // `advox bench --compare` without the PyTorch reference (its script is absent here): one
    // round of advox's step and beam-5 transcription against faster-whisper's, with the ratio
    // and the CPU it was measured on.
    let jfk = common::shared().join("samples/jfk.wav");
    let bench = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_advox"))
            .env(advox::model::provision::MODEL_ENV, common::model_dir())
            .args(["bench", "--compare", "--rounds", "1", "--steps", "1"])
            .arg("--transcribe-wav")
            .arg(&jfk)
            .args(extra)
            .output()
            .unwrap()
    };
    let run = bench(&["--torch-ref", "/nonexistent/torch_pgd_step.py", "--json"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no PyTorch reference"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(doc["cpu"].as_str().unwrap().contains("cores"), "{doc}");
    let round = &doc["rounds"][0];
    assert!(round["advox_step"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(round["torch_step"].is_null(), "{doc}");
    let (ours, theirs) = (
        round["advox_transcribe"].as_f64().unwrap(),
        round["faster_whisper_transcribe"].as_f64().unwrap(),
    );
    assert!(ours > 0.0 && theirs > 0.0, "{doc}");
    assert!((doc["median_transcribe_ratio"].as_f64().unwrap() - ours / theirs).abs() < 1e-9);
    // Both heard the same speech.
    for key in ["advox_transcript", "faster_whisper_transcript"] {
        let text = doc[key].as_str().unwrap().to_lowercase();
        assert!(text.contains("ask not what your country"), "{key}: {text}");
    }
    // A Python for the reference but no script: refused, naming the file.
    let refused = bench(&[
        "--torch-python",
        "python3",
        "--torch-ref",
        "/nonexistent/ref.py",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("/nonexistent/ref.py"));
}
