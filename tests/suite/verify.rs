//! Independent verification: an example made by `advox attack` on held-out real speech is heard
//! as the target by faster-whisper (CTranslate2, the same tiny.en weights, its own front end),
//! greedy and beam 5, plain and timestamp decoding. faster-whisper is installed by advox itself
//! into a venv under its cache on first use (`.ci/run` provides python3 with venv and pip).

use crate::common;
use std::process::Command;

#[test]
fn a_targeted_attack_on_held_out_speech_is_heard_by_faster_whisper() {
    // The held-out split (`common::corpus_test`): a voice-assistant request by a speaker whose
    // clips set no default here (the margin was chosen on LJ Speech). 8 s on two cores.
    let clip = common::shared().join("corpus/rhino/test_within_context.wav");
    let dir = std::env::temp_dir().join(format!("advox-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("adv.wav");
    let run = Command::new(env!("CARGO_BIN_EXE_advox"))
        .env(advox::model::provision::MODEL_ENV, common::model_dir())
        .arg("attack")
        .arg(&clip)
        .args([
            "--target",
            "Turn off the lights.",
            "--snr-db",
            "35",
            "--seed",
            "1",
        ])
        .args(["--verify", "faster-whisper", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adv.json")).unwrap()).unwrap();
    let verdicts = report["verified_by"].as_array().unwrap();
    // Greedy and beam 5, each plain and with timestamps.
    assert_eq!(verdicts.len(), 4, "{stderr}");
    for v in verdicts {
        assert_eq!(v["recognizer"], "faster-whisper");
        assert_eq!(v["success"], true, "{v}\n{stderr}");
    }
    assert_eq!(report["verified"], true);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
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
    std::fs::remove_dir_all(&dir).ok();
}
