//! Attack attribution end to end: `advox attribute train` on real speech (training and
//! held-out recordings of different speakers) and `advox attribute FILE` with the shipped
//! classifier.

use crate::common;
use advox::attribute::classifier::Classifier;
use advox::attribute::dataset::read_records;
use advox::attribute::{features, Class};
use std::process::Command;

fn advox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_advox"));
    c.env(advox::model::provision::MODEL_ENV, common::model_dir());
    c
}

fn corpus(name: &str) -> std::path::PathBuf {
    common::shared().join("corpus").join(name)
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn attribute_train_makes_examples_trains_scores_held_out_speakers_and_resumes() {
    let dir = common::fresh_dir("attribute-train");
    let (train, held) = (dir.join("train.csv"), dir.join("held.csv"));
    // Training: two LJ Speech clips; held out: the LibriVox reader.
    common::write_manifest(
        &train,
        &[
            corpus("ljspeech/LJ001-0008.wav"),
            corpus("ljspeech/LJ001-0002.wav"),
        ],
    );
    common::write_manifest(
        &held,
        &[corpus(
            "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
        )],
    );
    let out = dir.join("work");
    let train_cmd = |extra: &[&str]| {
        let mut c = advox();
        c.args(["attribute", "train", "--train"])
            .arg(&train)
            .arg("--held-out")
            .arg(&held)
            .arg("--out")
            .arg(&out)
            .args(["--classes", "clean,fgsm,universal", "--steps", "1"])
            .args(["--universal-steps", "1"])
            .args(extra);
        c
    };
    let (ok, stdout, stderr) = run(&mut train_cmd(&[]));
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("held-out (1 recordings, 3 examples)"),
        "{stdout}"
    );
    let records = read_records(&out.join("examples.jsonl")).unwrap();
    assert_eq!(records.len(), 9);
    for r in &records {
        assert_eq!(r.features.len(), features::COUNT, "{r:?}");
        assert!(r.features.iter().all(|v| v.is_finite()));
        assert!(out
            .join("examples")
            .join(&r.class)
            .join(format!("{}.wav", r.clip))
            .exists());
        assert_eq!(r.split == "held-out", r.clip.contains("austen"), "{r:?}");
        assert_eq!(r.eps == 0.0, r.class == "clean", "{r:?}");
    }
    // The FGSM example differs from the clean one; the universal one carries the perturbation
    // trained on the training clips.
    let read = |class: &str| {
        advox::audio::read_audio_16k_mono(&out.join("examples").join(class).join("LJ001-0008.wav"))
            .unwrap()
    };
    let (clean, fgsm, universal) = (read("clean"), read("fgsm"), read("universal"));
    assert!(common::rel_l2(&fgsm, &clean) > 1e-4);
    assert!(common::rel_l2(&universal, &clean) > 1e-3);
    assert!(out.join("universal.wav").exists());
    let classifier = Classifier::load(&out.join("classifier.json")).unwrap();
    assert_eq!(classifier.classes, ["clean", "fgsm", "universal"]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["examples"], 3);

    // A rerun makes nothing new; leaving a class out scores its held-out example as unseen.
    let (ok, stdout, stderr) = run(&mut train_cmd(&["--leave-out", "fgsm"]));
    assert!(ok, "{stderr}");
    assert!(stderr.contains("9 examples cached"), "{stderr}");
    assert!(stderr.contains("0 to make"), "{stderr}");
    assert!(stdout.contains("left out fgsm"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["unseen"]["fgsm"]["examples"], 1);
    assert_eq!(report["examples"], 2);

    // Examples made otherwise are not mixed in; bad requests are refused with reasons.
    let (ok, _, stderr) = run(&mut train_cmd(&["--queries", "7"]));
    assert!(!ok && stderr.contains("other settings"), "{stderr}");
    let (ok, _, stderr) = run(&mut train_cmd(&["--leave-out", "cw"]));
    assert!(!ok && stderr.contains("--leave-out"), "{stderr}");
    let mut c = advox();
    c.args(["attribute", "train", "--train"])
        .arg(&train)
        .arg("--held-out")
        .arg(&train)
        .arg("--out")
        .arg(dir.join("other"));
    let (ok, _, stderr) = run(&mut c);
    assert!(
        !ok && stderr.contains("in both --train and --held-out"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(advox().args(["attribute", "train", "--classes", "clean,sgd"]));
    assert!(!ok, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_classifier_attributes_files_and_bad_files_get_reasons() {
    let c = Classifier::builtin().unwrap();
    assert_eq!(
        c.features,
        features::names(),
        "the shipped classifier is stale: retrain it"
    );
    let all: Vec<&str> = Class::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(c.classes, all);
    assert!(
        c.trained_on.contains("advox attribute train"),
        "{}",
        c.trained_on
    );
    assert!(c.weights.iter().flatten().any(|w| *w != 0.0));

    let dir = common::fresh_dir("attribute-files");
    let short = dir.join("short.wav");
    advox::audio::write_wav(
        &short,
        &[0.1; 800],
        16_000,
        advox::audio::WavFormat::Pcm16,
        &[],
    )
    .unwrap();
    let clean = corpus("librivox/sense_and_sensibility_01_austen_64kb-0930.wav");
    let (ok, stdout, stderr) = run(advox().arg("attribute").arg(&clean).arg("--json"));
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let p = v["probabilities"].as_object().unwrap();
    assert_eq!(p.len(), 10);
    let sum: f64 = p.values().map(|x| x.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-6, "{v}");
    let attack = v["attack"].as_str().unwrap();
    assert!(attack == "unknown" || p.contains_key(attack), "{v}");
    assert_eq!(v["file"], clean.display().to_string());

    let (ok, _, stderr) = run(advox().arg("attribute").arg(&short));
    assert!(
        !ok && stderr.contains("short.wav") && stderr.contains("0.1 to 30 s"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(advox().arg("attribute").arg(dir.join("missing.wav")));
    assert!(!ok && stderr.contains("missing.wav"), "{stderr}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let (ok, _, stderr) = run(advox()
        .arg("attribute")
        .arg(&clean)
        .arg("--classifier")
        .arg(&bad));
    assert!(!ok && stderr.contains("bad.json"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
