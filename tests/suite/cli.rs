//! End-to-end tests of the `advox` binary on the real tiny.en model.

use crate::common;

use advox::text::normalize_transcript;
use std::process::Command;

fn advox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_advox"));
    c.env(advox::model::provision::MODEL_ENV, common::model_dir());
    c
}

#[test]
fn transcribes_jfk() {
    let out = advox()
        .arg("transcribe")
        .arg(common::shared().join("samples/jfk.wav"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        normalize_transcript(&text),
        "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
    );
}

#[test]
fn transcribes_every_bundled_sample_as_json() {
    let samples = common::root().join("samples");
    let tsv = std::fs::read_to_string(samples.join("transcripts.tsv")).unwrap();
    let rows: Vec<(String, String)> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    assert!(rows.len() >= 5);
    let mut cmd = advox();
    cmd.arg("transcribe").arg("--json");
    for (file, _) in &rows {
        cmd.arg(samples.join(file));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), rows.len());
    for ((file, transcript), obj) in rows.iter().zip(&lines) {
        assert!(obj["file"].as_str().unwrap().ends_with(file.as_str()));
        assert_eq!(
            normalize_transcript(obj["text"].as_str().unwrap()),
            normalize_transcript(transcript),
            "{file}"
        );
        assert!(!obj["tokens"].as_array().unwrap().is_empty());
        assert!(obj["seconds"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn greedy_search_also_transcribes() {
    let out = advox()
        .args(["transcribe", "--beam", "1"])
        .arg(common::root().join("samples/open_the_front_door.wav"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        normalize_transcript(&String::from_utf8_lossy(&out.stdout)),
        "open the front door"
    );
}

#[test]
fn bad_inputs_fail_cleanly_and_name_the_file() {
    let dir = std::env::temp_dir().join(format!("advox-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(common::root().join("samples/call_my_mother.wav")).unwrap();
    let truncated = dir.join("truncated.wav");
    std::fs::write(&truncated, &good[..good.len() / 3]).unwrap();
    let empty = dir.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.join("notes.wav");
    std::fs::write(&text, "hello, I am a text file\n").unwrap();
    let missing = dir.join("missing.wav");
    for path in [&truncated, &empty, &text, &missing] {
        let out = advox().arg("transcribe").arg(path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(
            stderr.contains(&path.display().to_string()),
            "error must name the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // One bad file among good ones: the good ones are still transcribed, the exit is non-zero.
    let out = advox()
        .arg("transcribe")
        .arg(&missing)
        .arg(common::root().join("samples/call_my_mother.wav"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(normalize_transcript(&String::from_utf8_lossy(&out.stdout)).contains("call my mother"));
}

#[test]
fn bad_model_directory_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_advox"))
        .args(["transcribe", "--model", "/nonexistent/model/dir"])
        .arg(common::root().join("samples/call_my_mother.wav"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/model/dir"), "{stderr}");
}

#[test]
fn model_info_describes_tiny_en() {
    let out = advox().args(["model", "info"]).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("4 layers, 6 heads"), "{s}");
    assert!(s.contains("mel bins         80"), "{s}");
}

#[test]
fn recordings_longer_than_30_seconds_are_transcribed_window_by_window() {
    // jfk (11 s) + 19 s of silence + jfk again: the second copy lies in the second window.
    let jfk = advox::audio::read_audio_16k_mono(&common::shared().join("samples/jfk.wav")).unwrap();
    let mut long = jfk.clone();
    long.resize(30 * 16000, 0.0);
    long.extend_from_slice(&jfk);
    let dir = std::env::temp_dir().join(format!("advox-cli-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jfk_twice.wav");
    advox::audio::write_wav(&path, &long, 16000, advox::audio::WavFormat::Pcm16, &[]).unwrap();
    let out = advox()
        .args(["transcribe", "--beam", "1"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = normalize_transcript(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        text.matches("ask not what your country can do for you")
            .count(),
        2,
        "{text}"
    );
}

/// Width and height of a PNG from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// `advox plot` of an original alone (two panels) and against its adversarial version (four).
fn check_plot(input: &std::path::Path, adv: &std::path::Path, dir: &std::path::Path) {
    let alone = dir.join("original.png");
    let run = advox()
        .arg("plot")
        .arg(input)
        .arg("-o")
        .arg(&alone)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(png_size(&std::fs::read(&alone).unwrap()), (1200, 600));
    let both = dir.join("both.png");
    let run = advox()
        .arg("plot")
        .arg(input)
        .arg("--adv")
        .arg(adv)
        .arg("-o")
        .arg(&both)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(png_size(&std::fs::read(&both).unwrap()), (1200, 1200));
    // Bad inputs: a missing file is named; the input is never overwritten.
    let missing = advox()
        .arg("plot")
        .arg(dir.join("nope.wav"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.wav"));
    let before = std::fs::read(adv).unwrap();
    let over = advox()
        .arg("plot")
        .arg(input)
        .arg("--adv")
        .arg(adv)
        .arg("-o")
        .arg(adv)
        .output()
        .unwrap();
    assert_eq!(over.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&over.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(adv).unwrap(), before);
}

/// `advox transfer` over the attack's output folder: the same model through the built-in
/// recogniser and through an external command both hear the target.
fn check_transfer(dir: &std::path::Path) {
    let report = dir.join("transfer.json");
    let run = advox()
        .arg("transfer")
        .arg("--adv")
        .arg(dir)
        .arg("-o")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("1 of 1 examples meet their goal"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["successes"], 1);
    let cmd = format!(
        "ADVOX_MODEL='{}' '{}' transcribe {{wav}}",
        common::model_dir().display(),
        env!("CARGO_BIN_EXE_advox")
    );
    // The same as a server reading WAV paths on stdin (`--asr-server`).
    let server = format!(
        "while read -r p; do ADVOX_MODEL='{}' '{}' transcribe \"$p\"; done",
        common::model_dir().display(),
        env!("CARGO_BIN_EXE_advox")
    );
    for (flag, recogniser) in [("--asr-cmd", &cmd), ("--asr-server", &server)] {
        let run = advox()
            .arg("transfer")
            .arg("--adv")
            .arg(dir)
            .arg(flag)
            .arg(recogniser)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(String::from_utf8_lossy(&run.stdout).contains("1 of 1 examples meet their goal"));
    }
    // A recogniser that fails is reported per example, not a crash.
    let run = advox()
        .arg("transfer")
        .arg("--adv")
        .arg(dir)
        .args(["--asr-cmd", "exit 4 # {wav}"])
        .output()
        .unwrap();
    assert!(run.status.success());
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("0 of 1") && stdout.contains("exited"),
        "{stdout}"
    );
}

#[test]
fn attack_writes_a_working_example_a_perturbation_and_a_report() {
    let dir = std::env::temp_dir().join(format!("advox-cli-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = common::root().join("samples/open_the_front_door.wav");
    let before = std::fs::read(&input).unwrap();
    let out = dir.join("adv.wav");
    let run = advox()
        .arg("attack")
        .arg(&input)
        .args([
            "--target",
            "turn off the lights",
            "--snr-db",
            "30",
            "--eps",
            "0.02",
            "--steps",
            "80",
            "--seed",
            "3",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adv.json")).unwrap()).unwrap();
    assert_eq!(report["success"], true);
    assert!(report["snr_db"].as_f64().unwrap() >= 30.0);
    assert_eq!(
        normalize_transcript(report["adversarial_transcript"].as_str().unwrap()),
        "turn off the lights"
    );
    assert_eq!(
        normalize_transcript(report["original_transcript"].as_str().unwrap()),
        "open the front door"
    );
    for key in [
        "dbx",
        "linf",
        "l2",
        "steps",
        "wall_seconds",
        "model",
        "seed",
        "target",
    ] {
        assert!(!report[key].is_null(), "report lacks {key}");
    }
    let masked = report["masking"]["energy_under_threshold"]
        .as_f64()
        .unwrap();
    assert!(
        (0.0..=1.0).contains(&masked),
        "masking stats {}",
        report["masking"]
    );
    assert!(report["masking"]["mean_margin_db"].is_number());
    assert!(dir.join("adv.perturbation.wav").is_file());
    check_plot(&input, &out, &dir);
    check_transfer(&dir);
    // The written file, transcribed by a separate process.
    let t = advox().arg("transcribe").arg(&out).output().unwrap();
    assert_eq!(
        normalize_transcript(&String::from_utf8_lossy(&t.stdout)),
        "turn off the lights"
    );
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input changed");

    // Writing over the input is refused before any work.
    let refused = advox()
        .arg("attack")
        .arg(&input)
        .args(["--mute", "--eps", "0.01", "-o"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&input).unwrap(), before);

    // No bound on the perturbation is a clear error.
    let unbounded = advox()
        .arg("attack")
        .arg(&input)
        .args(["--mute", "-o"])
        .arg(dir.join("x.wav"))
        .output()
        .unwrap();
    assert_eq!(unbounded.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unbounded.stderr).contains("--eps"));
}

/// An attack that runs but does not reach its goal exits with 2 (1 is an error) and still
/// writes its example, perturbation and report.
#[test]
fn a_failed_attack_exits_with_2_and_writes_its_report() {
    let dir = std::env::temp_dir().join(format!("advox-cli-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("weak.wav");
    // One step of 1e-4: far too little to turn one command into another.
    let run = advox()
        .arg("attack")
        .arg(common::root().join("samples/open_the_front_door.wav"))
        .args([
            "--target",
            "turn off the lights",
            "--eps",
            "0.0001",
            "--steps",
            "1",
        ])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("weak.json")).unwrap()).unwrap();
    assert_eq!(report["success"], false);
    assert_eq!(report["steps"], 1);
    assert!(out.is_file() && dir.join("weak.perturbation.wav").is_file());
}

/// An option the chosen attack does not take is refused (exit 1, naming it) before any work,
/// as is an unknown attack.
#[test]
fn an_option_that_does_not_apply_to_the_attack_is_an_error() {
    let input = common::root().join("samples/open_the_front_door.wav");
    let out = std::env::temp_dir().join(format!("advox-cli-na-{}.wav", std::process::id()));
    for (args, named) in [
        (&["--attack", "cw", "--snr-db", "35", "--eot"][..], "--eot"),
        (&["--blackbox", "ga", "--margin", "2"][..], "--margin"),
        (&["--attack", "jsma", "--restarts", "2"][..], "--restarts"),
        (&["--blackbox", "ga", "--l2", "1"][..], "--l2"),
        (&["--eps", "0.01", "--surrogate"][..], "--surrogate"),
        (&["--blackbox", "nes", "--surrogate"][..], "--surrogate"),
        (
            &["--blackbox", "nes", "--surrogate-rounds", "2"][..],
            "--surrogate-rounds",
        ),
        (&["--eps", "0.01", "--kappa", "2"][..], "--kappa"),
        (
            &["--attack", "fgsm", "--eps", "0.01", "--steps", "9"][..],
            "--steps",
        ),
        (&["--attack", "foo"][..], "foo"),
    ] {
        let run = advox()
            .arg("attack")
            .arg(&input)
            .args(["--target", "turn off the lights"])
            .args(args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn a_universal_option_that_does_not_apply_is_an_error() {
    let dir = std::env::temp_dir().join(format!("advox-cli-uni-na-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let train = dir.join("train.csv");
    let wav = common::root().join("samples/open_the_front_door.wav");
    std::fs::write(&train, format!("input\n{}\n", wav.display())).unwrap();
    let out = dir.join("uni.wav");
    let wav_str = wav.to_str().unwrap();
    for (args, named) in [
        (&["--decodings", "plain"][..], "--decodings"),
        (&["--max-shift-s", "0.1"][..], "--max-shift-s"),
        (
            &[
                "--mode",
                "prefix-mute",
                "--decodings",
                "plain",
                "--timestamps",
            ][..],
            "--timestamps",
        ),
        (
            &["--mode", "prefix-mute", "--decodings", "segments"][..],
            "segments",
        ),
        (
            &["--through-cloak", "--decodings", "plain"][..],
            "--decodings",
        ),
        (&["--through-cloak", "--init", wav_str][..], "--init"),
        // Several models at once: the mute modes only.
        (&["--model", "tiny.en", "--model", "tiny.en"][..], "--model"),
        (
            &[
                "--through-cloak",
                "--model",
                "tiny.en",
                "--model",
                "tiny.en",
            ][..],
            "--model",
        ),
        (
            &[
                "--mode",
                "prefix-mute",
                "--init",
                wav_str,
                "--length-s",
                "0.64",
            ][..],
            "--length-s asks for 10240",
        ),
    ] {
        let run = advox()
            .arg("universal")
            .arg("--train")
            .arg(&train)
            .args(args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_ne!(run.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn attack_runs_every_line_of_a_manifest() {
    let dir = std::env::temp_dir().join(format!("advox-cli-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let samples = common::root().join("samples");
    let manifest = dir.join("batch.jsonl");
    std::fs::write(
        &manifest,
        format!(
            "{{\"input\": \"{}\", \"target\": \"turn off the lights\"}}\n{{\"input\": \"{}\", \"goal\": \"untargeted\"}}\n",
            samples.join("open_the_front_door.wav").display(),
            samples.join("play_some_music.wav").display()
        ),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let run = advox()
        .args(["attack", "--manifest"])
        .arg(&manifest)
        .args(["--snr-db", "30", "--eps", "0.02", "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["inputs"], 2);
    assert_eq!(summary["successes"], 2);
    let first = &summary["results"][0];
    assert_eq!(
        normalize_transcript(first["adversarial_transcript"].as_str().unwrap()),
        "turn off the lights"
    );
    assert!(out_dir.join("0000_open_the_front_door.wav").is_file());
    assert!(out_dir
        .join("0001_play_some_music.perturbation.wav")
        .is_file());
    // A manifest line without a goal, and no goal flag: a clear error naming the input.
    std::fs::write(
        &manifest,
        format!(
            "{{\"input\": \"{}\"}}\n",
            samples.join("call_my_mother.wav").display()
        ),
    )
    .unwrap();
    let bad = advox()
        .args(["attack", "--manifest"])
        .arg(&manifest)
        .args(["--eps", "0.01", "-o"])
        .arg(dir.join("o2"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("call_my_mother.wav"));
}

#[test]
fn universal_writes_a_perturbation_and_its_sidecar() {
    let dir = std::env::temp_dir().join(format!("advox-cli-universal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let samples = common::root().join("samples");
    let manifest = |name: &str, files: &[&str]| {
        let path = dir.join(name);
        let mut text = String::from("input\n");
        for f in files {
            text.push_str(&format!("{}\n", samples.join(f).display()));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let train = manifest(
        "train.csv",
        &["open_the_front_door.wav", "call_my_mother.wav"],
    );
    let eval = manifest("eval.csv", &["play_some_music.wav"]);
    let out = dir.join("uni.wav");
    let run = advox()
        .arg("universal")
        .arg("--train")
        .arg(&train)
        .arg("--eval")
        .arg(&eval)
        .args(["--steps", "2", "--length-s", "0.5", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let delta = advox::audio::read_audio_16k_mono(&out).unwrap();
    assert_eq!(delta.len(), 8_000);
    assert!(delta.iter().all(|d| d.abs() <= 0.02 + 1e-6));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("uni.json")).unwrap()).unwrap();
    assert_eq!(sidecar["format"], "advox-universal");
    assert_eq!(sidecar["version"], 1);
    assert_eq!(sidecar["sample_rate"], 16_000);
    assert_eq!(sidecar["length"], 8_000);
    assert_eq!(sidecar["mode"], "additive");
    assert_eq!(
        sidecar["train"]["perturbation"]["results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(sidecar["eval"]["random_noise"]["mean_wer"].is_number());
    // A manifest naming a missing file is an error naming it.
    let bad = manifest("bad.csv", &["no_such_file.wav"]);
    let run = advox()
        .arg("universal")
        .arg("--train")
        .arg(&bad)
        .arg("-o")
        .arg(dir.join("u2.wav"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no_such_file.wav"));
}

#[test]
fn universal_through_cloak_trains_a_source_and_judges_it_through_the_plugin_chain() {
    let dir = std::env::temp_dir().join(format!("advox-cli-cloak-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let samples = common::root().join("samples");
    let train = dir.join("train.csv");
    std::fs::write(
        &train,
        format!("input\n{}\n", samples.join("call_my_mother.wav").display()),
    )
    .unwrap();
    let out = dir.join("src.wav");
    let run = advox()
        .args(["universal", "--through-cloak", "--rate", "16000", "--train"])
        .arg(&train)
        .args(["--steps", "2", "--batch", "1", "--length-s", "0.25", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let source = advox::audio::read_audio_16k_mono(&out).unwrap();
    assert_eq!(source.len(), 4_000);
    assert!(source.iter().all(|s| s.abs() <= 0.5 + 1e-6));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("src.json")).unwrap()).unwrap();
    assert_eq!(sidecar["cloak_rate"], 16_000);
    assert_eq!(sidecar["masking_margin_db"], 6.0);
    let train_results = &sidecar["train"];
    assert!(train_results["perturbation"]["mean_wer"].is_number());
    // The control is Cloak's own masked noise through the same chain.
    assert!(train_results["random_noise"]["mean_wer"].is_number());
    // The Cloak plugin loads it as any universal file.
    let file = advox::formats::universal_sidecar::UniversalFile::read(&out).unwrap();
    assert_eq!(file.at_rate(48_000).unwrap().len(), 12_000);
    // Options that do not apply are errors naming them.
    for extra in [
        &["--snr-db", "30"][..],
        &["--timestamps"][..],
        &["--target", "hello"][..],
        &["--mode", "prefix-mute"][..],
    ] {
        let run = advox()
            .args(["universal", "--through-cloak", "--train"])
            .arg(&train)
            .args(extra)
            .arg("-o")
            .arg(dir.join("x.wav"))
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            err.contains(extra[0].trim_start_matches("--").split('-').next().unwrap()),
            "{extra:?}: {err}"
        );
    }
    // --rate and --aligned belong to --through-cloak.
    let run = advox()
        .args(["universal", "--rate", "48000", "--train"])
        .arg(&train)
        .arg("-o")
        .arg(dir.join("y.wav"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--through-cloak"));
}

#[test]
fn model_fetch_verifies_the_cached_model_and_refuses_a_tampered_file() {
    // A copy of the cached model (resolved as the tests load it) in a cache of its own.
    let cache = std::env::temp_dir().join(format!("advox-cli-tamper-{}", std::process::id()));
    let copy = cache.join("models").join("tiny.en");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(common::model_dir().join(name), copy.join(name)).unwrap();
    }
    let fetch = || {
        advox()
            .args(["model", "fetch", "tiny.en"])
            .env("ADVOX_CACHE", &cache)
            .output()
            .unwrap()
    };
    let ok = fetch();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("sha256 verified"));
    // One byte changed in the tokenizer: refused, naming the file, the registry and the remedy.
    let tokenizer = copy.join("tokenizer.json");
    let mut bytes = std::fs::read(&tokenizer).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(&tokenizer, &bytes).unwrap();
    let refused = fetch();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("tokenizer.json")
            && err.contains("models/registry.json")
            && err.contains("delete"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn transcribes_with_timestamps_as_segments() {
    let out = advox()
        .args(["transcribe", "--timestamps", "--json"])
        .arg(common::shared().join("samples/jfk.wav"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let segments = v["segments"].as_array().unwrap();
    assert!(segments.len() >= 2, "{v}");
    let mut last_end = 0.0;
    for s in segments {
        let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
        assert!(
            start >= last_end - 1e-6 && end > start && end <= 11.5,
            "{s}"
        );
        last_end = end;
    }
    assert!(
        normalize_transcript(v["text"].as_str().unwrap()).starts_with("and so my fellow americans")
    );
}

#[test]
fn detect_calibrates_on_clean_speech_and_scores_files() {
    let dir = std::env::temp_dir().join(format!("advox-cli-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Real speech: the first three clips of the corpus's train split (LJ Speech).
    let samples = common::shared().join("corpus");
    let clips = common::corpus_train(3);
    let clean: Vec<&str> = clips.iter().map(|c| c.name.as_str()).collect();
    let manifest = dir.join("clean.csv");
    let mut csv = String::from("input\n");
    for c in &clean {
        csv += &format!("{}\n", samples.join(c).display());
    }
    std::fs::write(&manifest, csv).unwrap();
    let detectors = "noise-floor,consistency:quantize-8";
    let cal = dir.join("cal.json");
    let out = advox()
        .args(["detect", "--calibrate"])
        .arg(&manifest)
        .args(["--fpr", "0", "--detectors", detectors, "-o"])
        .arg(&cal)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cal).unwrap()).unwrap();
    assert_eq!(c["format"], "advox-detect-calibration");
    assert_eq!(c["clean_utterances"], 3);
    assert_eq!(c["detectors"].as_array().unwrap().len(), 2);
    // Files of the calibration set are not flagged at a zero false-positive rate.
    let results = dir.join("results.json");
    let out = advox()
        .args(["detect", "--detectors", detectors, "--calibration"])
        .arg(&cal)
        .arg(samples.join(clean[0]))
        .arg(samples.join(clean[1]))
        .arg("-o")
        .arg(&results)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["adversarial"], false, "{l}");
        assert_eq!(l["verdicts"]["noise-floor"], false);
        assert!(l["scores"]["consistency:quantize-8"].as_f64().unwrap() <= 1.0);
        assert!(l["transcript"].is_string());
    }
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert_eq!(saved.as_array().unwrap().len(), 2);
    // Bad calibration file, unknown detector: clear errors.
    let out = advox()
        .args(["detect", "--calibration"])
        .arg(&manifest)
        .arg(samples.join(clean[0]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clean.csv"));
    let out = advox()
        .args(["detect", "--detectors", "crystal-ball"])
        .arg(samples.join(clean[0]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown detector"));
    // An autoencoder trained by the CLI is usable as a detector; so is a fitted ensemble.
    let ae = dir.join("ae.safetensors");
    let out = advox()
        .args(["detect", "train-ae", "--clean"])
        .arg(&manifest)
        .args(["--steps", "20", "-o"])
        .arg(&ae)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let noisy = dir.join("noisy.csv");
    std::fs::write(
        &noisy,
        format!(
            "input\n{}\n",
            common::shared().join("samples/jfk.wav").display()
        ),
    )
    .unwrap();
    let ens = dir.join("ensemble.json");
    let out = advox()
        .args(["detect", "train-ensemble", "--clean"])
        .arg(&manifest)
        .arg("--adversarial")
        .arg(&noisy)
        .arg("--detectors")
        .arg(format!("noise-floor,autoencoder:{}", ae.display()))
        .arg("-o")
        .arg(&ens)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = advox()
        .arg("detect")
        .arg("--detectors")
        .arg(format!("ensemble:{}", ens.display()))
        .arg(samples.join(clean[0]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (name, score) = v["scores"].as_object().unwrap().iter().next().unwrap();
    assert!(name.starts_with("ensemble:"));
    let p = score.as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    assert_eq!(v["verdicts"][name], p > 0.5);
    // The activation detector fitted by the CLI on six clips (20.6 s), calibrated with the
    // entropy detector beside it; its own fitting clips score about 1 (their mean is the
    // reference).
    let six = dir.join("six.csv");
    let mut csv = String::from("input\n");
    for c in common::corpus_train(6) {
        csv += &format!("{}\n", samples.join(&c.name).display());
    }
    std::fs::write(&six, csv).unwrap();
    let act = dir.join("act.safetensors");
    let out = advox()
        .args(["detect", "fit-activations", "--clean"])
        .arg(&six)
        .arg("-o")
        .arg(&act)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both = format!("activations:{},entropy", act.display());
    let cal2 = dir.join("cal2.json");
    let out = advox()
        .args(["detect", "--calibrate"])
        .arg(&manifest)
        .args(["--fpr", "0", "--detectors", &both, "-o"])
        .arg(&cal2)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fitted: Vec<std::path::PathBuf> = common::corpus_train(6)
        .iter()
        .map(|c| samples.join(&c.name))
        .collect();
    let out = advox()
        .args(["detect", "--detectors", &both, "--calibration"])
        .arg(&cal2)
        .args(&fitted)
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let a_name = format!("activations:{}", act.display());
    let scores: Vec<f64> = lines
        .iter()
        .map(|l| l["scores"][&a_name].as_f64().unwrap())
        .collect();
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    assert!(scores.iter().all(|s| *s > 0.5 && *s < 2.0), "{scores:?}");
    assert!(mean <= 1.05, "{scores:?}");
    assert_eq!(lines.len(), 6);
    // Calibrated at 0 % FPR on the first three: their verdicts are "clean".
    for l in &lines[..3] {
        assert_eq!(l["verdicts"][&a_name], false, "{l}");
        assert_eq!(l["verdicts"]["entropy"], false, "{l}");
        assert!(l["scores"]["entropy"].as_f64().unwrap() >= 0.0);
    }
    // Too little clean speech to fit (the three short clips: 6.3 s, 315 frames of the 384
    // needed).
    let out = advox()
        .args(["detect", "fit-activations", "--clean"])
        .arg(&manifest)
        .arg("-o")
        .arg(dir.join("short.safetensors"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 384 frames"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `report.json` without wall times (which differ between runs).
fn without_times(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(cells) = v["cells"].as_array_mut() {
        for c in cells {
            c["seconds"] = serde_json::Value::Null;
        }
    }
    if let Some(records) = v["records"].as_array_mut() {
        for r in records {
            for a in r["attacks"].as_array_mut().unwrap() {
                a["seconds"] = serde_json::Value::Null;
                for key in ["adaptive", "evasive"] {
                    if let Some(m) = a[key].as_object_mut() {
                        for v in m.values_mut() {
                            v["seconds"] = serde_json::Value::Null;
                        }
                    }
                }
            }
        }
    }
    v["shard"] = serde_json::Value::Null;
    v
}

fn run_eval(manifest: &std::path::Path, out: &std::path::Path, shard: Option<&str>) {
    let mut cmd = advox();
    cmd.args(["eval", "--manifest"])
        .arg(manifest)
        .args([
            "--attacks",
            "pgd",
            "--eps",
            "0.02",
            "--steps",
            "8",
            "--defenses",
            "none,purify:quantize-8",
            "--detectors",
            "consistency:quantize-8,noise-floor",
            "-o",
        ])
        .arg(out);
    if let Some(s) = shard {
        cmd.args(["--shard", s]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn eval_runs_newton_cg_in_bounded_cells() {
    let dir = common::fresh_dir("cli-eval-newton");
    let manifest = dir.join("m.csv");
    common::write_manifest(
        &manifest,
        &[common::root().join("samples/play_some_music.wav")],
    );
    let out = dir.join("out");
    let o = advox()
        .args(["eval", "--manifest"])
        .arg(&manifest)
        .args([
            "--attacks",
            "newton",
            "--eps",
            "0.02",
            "--snr-db",
            "30",
            "--steps",
            "9",
            "--defenses",
            "none",
            "--detectors",
            "noise-floor",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let attacks = report["records"][0]["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 2, "one L∞ and one SNR cell: {report}");
    let x = advox::audio::read_audio_16k_mono(&common::root().join("samples/play_some_music.wav"))
        .unwrap();
    for a in attacks {
        assert_eq!(a["attack"], "newton");
        // The written example is inside its cell's bound.
        let name = match a["snr_bound_db"].as_f64() {
            Some(_) => "examples/0000_newton_snr30.wav",
            None => "examples/0000_newton_eps0.02.wav",
        };
        let y = advox::audio::read_audio_16k_mono(&out.join(name)).unwrap();
        let delta: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
        match a["snr_bound_db"].as_f64() {
            Some(floor) => assert!(advox::metrics::snr_db(&x, &delta) >= floor - 0.01),
            None => assert!(advox::metrics::linf(&delta) <= 0.02 + 1.0 / 32768.0),
        }
    }
    // Newton-CG has no EOT.
    let o = advox()
        .args(["eval", "--manifest"])
        .arg(&manifest)
        .args(["--attacks", "newton", "--over-the-air", "--eot", "-o"])
        .arg(dir.join("eot"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no EOT"));
}

#[test]
fn eval_reports_agree_with_separate_measurements_and_shards_merge() {
    use advox::detect::calibration::roc_auc;
    let dir = std::env::temp_dir().join(format!("advox-cli-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let samples = common::root().join("samples");
    let manifest = dir.join("m.csv");
    std::fs::write(
        &manifest,
        format!(
            "input,transcript\n{},open the front door\n{},call my mother\n",
            samples.join("open_the_front_door.wav").display(),
            samples.join("call_my_mother.wav").display()
        ),
    )
    .unwrap();
    let whole = dir.join("whole");
    run_eval(&manifest, &whole, None);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["format"], "advox-eval");
    assert_eq!(report["examples"], 2);
    let records = report["records"].as_array().unwrap();
    let cell = &report["cells"][0];
    assert_eq!(
        (cell["attack"].as_str(), cell["examples"].as_u64()),
        (Some("pgd"), Some(2))
    );
    // The numbers agree with ones computed here from the written examples.
    let mut successes = 0;
    let mut clean_scores = Vec::new();
    let mut adv_scores = Vec::new();
    for r in records {
        let index = r["index"].as_u64().unwrap() as usize;
        let wav = whole.join(format!("examples/{index:04}_pgd_eps0.02.wav"));
        let heard = advox()
            .args(["transcribe", "--beam", "1"])
            .arg(&wav)
            .output()
            .unwrap();
        let heard = String::from_utf8_lossy(&heard.stdout).trim().to_string();
        let a = &r["attacks"][0];
        assert_eq!(heard, a["transcript"].as_str().unwrap(), "{wav:?}");
        let clean = r["clean_transcript"].as_str().unwrap();
        let wer = advox::metrics::wer(clean, &heard);
        assert!((wer - a["wer"].as_f64().unwrap()).abs() < 1e-9);
        assert_eq!(a["success"], wer >= 0.5);
        successes += usize::from(wer >= 0.5);
        assert_eq!(r["clean_wer"].as_f64(), Some(0.0), "{r}");
        clean_scores.push(
            r["clean_scores"]["consistency:quantize-8"]
                .as_f64()
                .unwrap(),
        );
        if wer >= 0.5 {
            adv_scores.push(a["scores"]["consistency:quantize-8"].as_f64().unwrap());
        }
        // The attack stayed within its bound on the written file.
        let x =
            advox::audio::read_audio_16k_mono(std::path::Path::new(r["input"].as_str().unwrap()))
                .unwrap();
        let y = advox::audio::read_audio_16k_mono(&wav).unwrap();
        let linf = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(linf <= 0.02 + 1.0 / 32768.0, "{linf}");
    }
    assert!(successes >= 1, "PGD at 0.02 fooled neither example");
    // The adaptive attack through the defence: its example, written beside the others, is
    // heard through the defence (`advox defend`) as the record says, and the report keeps
    // both numbers.
    assert_eq!(report["version"], 2);
    for r in records {
        let index = r["index"].as_u64().unwrap() as usize;
        let a = &r["attacks"][0]["adaptive"]["purify:quantize-8"];
        assert_eq!(a["gradient"], "quantize-8 straight-through", "{a}");
        let wav = whole.join(format!(
            "examples/{index:04}_pgd_eps0.02_adaptive_purify_quantize-8.wav"
        ));
        let out = advox()
            .args([
                "defend",
                "--json",
                "--defense",
                "purify:quantize-8",
                "--beam",
                "1",
            ])
            .arg(&wav)
            .output()
            .unwrap();
        let heard: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(heard["text"], a["defended"]["transcript"], "{wav:?}");
        let clean = r["clean_transcript"].as_str().unwrap();
        let met = advox::metrics::wer(clean, heard["text"].as_str().unwrap()) >= 0.5;
        assert_eq!(a["defended"]["attack_success"], met);
        assert!(a["linf"].as_f64().unwrap() <= 0.02 + 1e-6);
    }
    let q = &cell["defenses"]["purify:quantize-8"];
    assert!(q["non_adaptive"]["attack_success_rate"].is_number(), "{q}");
    let adaptive = q["adaptive"]["attack_success_rate"].as_f64().unwrap();
    let wins = records
        .iter()
        .filter(|r| {
            r["attacks"][0]["adaptive"]["purify:quantize-8"]["defended"]["attack_success"] == true
        })
        .count();
    assert!((adaptive - wins as f64 / 2.0).abs() < 1e-9, "{q}");
    assert!((cell["success_rate"].as_f64().unwrap() - successes as f64 / 2.0).abs() < 1e-9);
    let auc = roc_auc(&clean_scores, &adv_scores).unwrap();
    let detection = &cell["detectors"]["consistency:quantize-8"];
    let reported = detection["non_adaptive"]["roc_auc"].as_f64().unwrap();
    assert!((auc - reported).abs() < 1e-9, "{auc} vs {reported}");
    // The attack made to evade the consistency detector (each success retargeted at its own
    // transcript through both views): its written example scored by `advox detect` as the
    // record says, and counted in the adaptive AUC when it met the goal.
    let mut evaded = Vec::new();
    for r in records {
        let index = r["index"].as_u64().unwrap() as usize;
        let a = &r["attacks"][0];
        let e = &a["evasive"]["consistency:quantize-8"];
        if a["success"] != true {
            assert!(e.is_null(), "{e}");
            continue;
        }
        assert_eq!(e["targets"][0], a["transcript"], "{e}");
        let wav = whole.join(format!(
            "examples/{index:04}_pgd_eps0.02_evasive_consistency_quantize-8.wav"
        ));
        let out = advox()
            .args(["detect", "--detectors", "consistency:quantize-8"])
            .arg(&wav)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let score = v["scores"]["consistency:quantize-8"].as_f64().unwrap();
        assert!(
            (score - e["score"].as_f64().unwrap()).abs() < 1e-9,
            "{v} {e}"
        );
        if e["consistent"] == true {
            assert_eq!(score, 0.0, "{v}");
        }
        if e["success"] == true {
            evaded.push(score);
        }
    }
    match roc_auc(&clean_scores, &evaded) {
        Ok(auc) => {
            let reported = detection["adaptive"]["roc_auc"].as_f64().unwrap();
            assert!((auc - reported).abs() < 1e-9, "{auc} vs {reported}");
        }
        Err(_) => assert!(detection["adaptive"].is_null(), "{detection}"),
    }
    // The page references images that exist.
    let html = std::fs::read_to_string(whole.join("report.html")).unwrap();
    let images: Vec<&str> = html
        .split("src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(images.len() >= 3, "{images:?}");
    assert!(images.iter().any(|i| i.starts_with("roc_")));
    assert!(images.iter().any(|i| i.starts_with("examples/")));
    for i in &images {
        let bytes = std::fs::read(whole.join(i)).unwrap_or_else(|_| panic!("missing {i}"));
        assert_eq!(&bytes[..4], b"\x89PNG", "{i}");
    }
    // Two shards merge into the same report. Shard 2/2 (entry 1) is run; shard 1/2 (entry 0) is
    // the whole run's report cut to its entry, as a run of it would write them (the
    // run of shard 2/2 shows a shard's record equals the whole run's).
    let (s1, s2, merged) = (dir.join("s1"), dir.join("s2"), dir.join("merged"));
    run_eval(&manifest, &s2, Some("2/2"));
    let mut first = report.clone();
    first["shard"] = "1/2".into();
    first["examples"] = 1.into();
    first["records"] = records
        .iter()
        .filter(|r| r["index"] != 1)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    std::fs::create_dir_all(&s1).unwrap();
    std::fs::write(s1.join("report.json"), first.to_string()).unwrap();
    let out = advox()
        .args(["eval", "merge"])
        .arg(&s1)
        .arg(&s2)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap()
    };
    assert_eq!(read(&s2)["examples"], 1);
    assert_eq!(
        without_times(read(&s2))["records"][0],
        without_times(report.clone())["records"][1]
    );
    assert_eq!(without_times(read(&merged)), without_times(report));
    assert!(merged.join("report.html").exists());
    // One shard alone does not merge; an existing report is never overwritten.
    let out = advox()
        .args(["eval", "merge"])
        .arg(&s1)
        .arg("-o")
        .arg(dir.join("partial"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("miss manifest entries"));
    let out = advox()
        .args(["eval", "--manifest"])
        .arg(&manifest)
        .arg("-o")
        .arg(&whole)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
}

#[test]
fn defensive_distillation_masks_the_gradient_and_the_attacks_walk_through() {
    let dir = common::fresh_dir("cli-distill");
    let samples = common::root().join("samples");
    let manifest = dir.join("train.csv");
    common::write_manifest(
        &manifest,
        &[
            samples.join("open_the_front_door.wav"),
            samples.join("play_some_music.wav"),
        ],
    );
    // Held out: a LibriVox speaker none of the training clips is.
    let held_out = dir.join("held_out.csv");
    common::write_manifest(
        &held_out,
        &[common::shared().join("corpus/librivox/sense_and_sensibility_01_austen_64kb-0930.wav")],
    );
    let student = dir.join("student");
    let out = advox()
        .args(["defend", "distill", "--train"])
        .arg(&manifest)
        .arg("--held-out")
        .arg(&held_out)
        .args(["--steps", "4", "--attack-steps", "10", "-o"])
        .arg(&student)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(student.join("distill.json")).unwrap())
            .unwrap();
    assert_eq!(r["losses"].as_array().unwrap().len(), 4, "{r}");
    assert_eq!(r["examples"], 4, "each clip clean and with noise");
    let (base, distilled) = (&r["held_out"]["base"], &r["held_out"]["student"]);
    // Deployed at temperature 1, the student's logits are 20 times the teacher's: it hears the
    // held-out clip as the base model does, and the cross-entropy gradient at it vanishes
    // (measured 2026-12-07: 12 → 5e-14).
    assert_eq!(distilled["clean_wer"], base["clean_wer"], "{r}");
    let (g_base, g_student) = (
        base["clean_gradient_norm"].as_f64().unwrap(),
        distilled["clean_gradient_norm"].as_f64().unwrap(),
    );
    assert!(
        g_base > 1e-3 && g_student < 1e-6 * g_base,
        "{g_base} → {g_student}"
    );
    // Every attack still reports on the student: the masking is measured, not assumed to help.
    for attack in ["fgsm", "pgd", "cw"] {
        let score = &distilled["attacks"][attack];
        assert!(score["success"].as_f64().is_some(), "{attack}: {r}");
    }
    // PGD's Adam steps normalise the gradient's scale away: the masked gradient still leads it
    // to success on the student as on the base model (measured: 1/1 and 1/1 at 10 steps).
    assert_eq!(distilled["attacks"]["pgd"]["success"], 1.0, "{r}");
    // The student is a model directory every command loads, and it hears speech as before.
    let heard = advox()
        .args(["transcribe", "--model"])
        .arg(&student)
        .arg(common::shared().join("samples/jfk.wav"))
        .output()
        .unwrap();
    assert!(heard.status.success());
    let heard = normalize_transcript(&String::from_utf8_lossy(&heard.stdout));
    assert!(
        advox::metrics::wer(
            "and so my fellow americans ask not what your country can do for you ask what you can do for your country",
            &heard
        ) <= 0.1,
        "{heard}"
    );
    // A temperature under 1 and an existing output are refused.
    for (args, to, says) in [
        (
            vec!["--temperature", "0.5"],
            dir.join("other"),
            "temperature",
        ),
        (vec![], student.clone(), "exists"),
    ] {
        let out = advox()
            .args(["defend", "distill", "--train"])
            .arg(&manifest)
            .args(&args)
            .arg("-o")
            .arg(&to)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn adversarial_fine_tuning_writes_a_model_that_hears_its_adversarial_examples_better() {
    let dir = std::env::temp_dir().join(format!("advox-cli-advtrain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let samples = common::root().join("samples");
    let manifest = dir.join("train.csv");
    std::fs::write(
        &manifest,
        format!(
            "input\n{}\n{}\n{}\n",
            samples.join("open_the_front_door.wav").display(),
            samples.join("play_some_music.wav").display(),
            samples.join("lock_the_back_door.wav").display()
        ),
    )
    .unwrap();
    let tuned = dir.join("tuned");
    // 5 attack and 10 tuning steps (measured 2026-12-01: two of the three PGD examples fool the
    // base model, adversarial WER 0.64 → 0.08 after tuning, clean WER 0.00; with 10 and 20 steps
    // all three fooled it, 1.14 → 0.00).
    let out = advox()
        .args(["defend", "adv-train", "--train"])
        .arg(&manifest)
        .args(["--attack-steps", "5", "--steps", "10", "-o"])
        .arg(&tuned)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("adv_train.json")).unwrap())
            .unwrap();
    assert!(r["pgd_fooled"].as_u64().unwrap() >= 1, "{r}");
    let (base, after) = (
        r["base"]["adversarial_wer"].as_f64().unwrap(),
        r["tuned"]["adversarial_wer"].as_f64().unwrap(),
    );
    assert!(after < base, "adversarial WER {base} → {after}");
    assert!(r["tuned"]["clean_wer"].as_f64().unwrap() <= 0.25, "{r}");
    // The tuned model is a model directory every command loads, and it still hears speech it
    // was not tuned on.
    let out = advox()
        .args(["transcribe", "--model"])
        .arg(&tuned)
        .arg(common::shared().join("samples/jfk.wav"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = normalize_transcript(&String::from_utf8_lossy(&out.stdout));
    assert!(
        advox::metrics::wer(
            "and so my fellow americans ask not what your country can do for you ask what you can do for your country",
            &heard
        ) <= 0.1,
        "{heard}"
    );
    // The whole model: a short run changes the encoder's weights too, and the result still
    // hears clean speech (a mechanism check: two attack and two tuning steps, 52 s here, where
    // five and four took 89 s; measured 2026-12-01: clean WER 0.00, adversarial 0.42 → 0.33).
    let whole = dir.join("whole");
    let out = advox()
        .args(["defend", "adv-train", "--scope", "all", "--train"])
        .arg(&manifest)
        .args(["--attack-steps", "2", "--steps", "2", "-o"])
        .arg(&whole)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("adv_train.json")).unwrap())
            .unwrap();
    assert_eq!(r["scope"], "all");
    assert!(r["tuned"]["clean_wer"].as_f64().unwrap() <= 0.25, "{r}");
    let cpu = candle_core::Device::Cpu;
    let (_, base) = advox::model::load_weights(&common::model_dir(), &cpu).unwrap();
    let (_, tuned_all) = advox::model::load_weights(&whole, &cpu).unwrap();
    let (_, tuned_decoder) = advox::model::load_weights(&tuned, &cpu).unwrap();
    let changed = |w: &advox::model::Weights, name: &str| -> usize {
        let a = base
            .get(name)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let b = w
            .get(name)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        a.iter().zip(&b).filter(|(x, y)| x != y).count()
    };
    for name in ["encoder.conv1.weight", "encoder.layers.2.fc1.weight"] {
        assert!(changed(&tuned_all, name) > 100, "{name} did not change");
        assert_eq!(
            changed(&tuned_decoder, name),
            0,
            "{name} changed under scope decoder"
        );
    }
    assert!(changed(&tuned_all, "decoder.layers.0.fc1.weight") > 100);
    // An unknown scope and an existing output are refused.
    let out = advox()
        .args(["defend", "adv-train", "--scope", "encoder", "--train"])
        .arg(&manifest)
        .arg("-o")
        .arg(dir.join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`decoder` or `all`"));
    let out = advox()
        .args(["defend", "adv-train", "--train"])
        .arg(&manifest)
        .arg("-o")
        .arg(&tuned)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
}

/// `advox attack CLIP --blackbox nes ARGS -o DIR/adv.wav`: its report, which must say success.
fn black_box_report(
    dir: &std::path::Path,
    clip: &std::path::Path,
    args: &[&str],
) -> serde_json::Value {
    let run = advox()
        .arg("attack")
        .arg(clip)
        .args(["--blackbox", "nes"])
        .args(args)
        .arg("-o")
        .arg(dir.join("adv.wav"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adv.json")).unwrap()).unwrap();
    assert_eq!(report["success"], true, "{stderr}");
    report
}

/// The surrogate prior against a real external recogniser: on held-out real speech (a
/// LibriVox reader none of advox's tuning used), an untargeted black-box attack on
/// faster-whisper (`--asr faster-whisper`, the same tiny.en weights in CTranslate2, beam 5)
/// under an SNR bound succeeds in the first few queries, stays inside the bound, shrinks δ with
/// the queries left, and the written file is still heard as changed by faster-whisper.
#[test]
fn a_surrogate_prior_moves_faster_whisper_in_a_few_queries_inside_the_snr_bound() {
    let dir = std::env::temp_dir().join(format!("advox-cli-surrogate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip = common::shared()
        .join("corpus")
        .join(&common::corpus_test(1)[0].name);
    let report = black_box_report(
        &dir,
        &clip,
        &[
            "--asr",
            "faster-whisper",
            "--untargeted",
            "--snr-db",
            "30",
            "--surrogate",
            "--queries",
            "20",
            "--seed",
            "1",
            "--verify",
            "faster-whisper",
        ],
    );
    let bb = &report["black_box"];
    let rounds = bb["surrogate"].as_array().unwrap();
    assert!(
        !rounds.is_empty() && rounds.last().unwrap()["success"] == true,
        "{bb}"
    );
    let first = bb["first_success_queries"].as_u64().unwrap();
    assert!(first <= 3, "{bb}");
    assert_eq!(bb["search_queries"], 0);
    assert!(bb["queries"].as_u64().unwrap() <= 20);
    // Inside the bound, and quieter after the shrinking queries than at the first success.
    let snr = report["snr_db"].as_f64().unwrap();
    assert!(snr >= 29.95, "{snr}");
    let trajectory = bb["snr_trajectory"].as_array().unwrap();
    let at = |i: usize| trajectory[i]["snr_db"].as_f64().unwrap();
    assert!(
        trajectory.len() >= 2 && at(trajectory.len() - 1) > at(0),
        "{bb}"
    );
    assert!((at(trajectory.len() - 1) - snr).abs() < 0.05);
    // The written file, transcribed afresh by faster-whisper as attacked (beam 5, plain).
    let fw = report["verified_by"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["beam"] == 5 && v["timestamps"] == false)
        .unwrap();
    assert_eq!(fw["success"], true, "{fw}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The quiet-frame prior against a recogniser unlike Whisper: PocketSphinx, as an external
/// server, on held-out real speech (LibriVox 0930) at a 25-dB SNR floor. Noise in the quietest
/// frames moves its transcript within a few queries, the written example is inside the bound,
/// and PocketSphinx run afresh on the written file hears it as the attack did.
#[test]
fn a_quiet_frame_prior_moves_pocketsphinx_within_a_few_queries_inside_the_snr_bound() {
    let dir = std::env::temp_dir().join(format!("advox-cli-quiet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip =
        common::shared().join("corpus/librivox/sense_and_sensibility_01_austen_64kb-0930.wav");
    let report = black_box_report(
        &dir,
        &clip,
        &[
            "--asr",
            "pocketsphinx",
            "--untargeted",
            "--snr-db",
            "25",
            "--quiet-prior",
            "--quiet-rounds",
            "4",
            "--queries",
            "12",
            "--seed",
            "1",
            "--verify",
            "pocketsphinx",
        ],
    );
    let bb = &report["black_box"];
    let rounds = bb["quiet_prior"].as_array().unwrap();
    assert!(
        !rounds.is_empty() && rounds.last().unwrap()["success"] == true,
        "{bb}"
    );
    assert_eq!(rounds[0]["share"], 0.5);
    assert!(bb["first_success_queries"].as_u64().unwrap() <= 4, "{bb}");
    assert_eq!(bb["search_queries"], 0);
    assert!(bb["queries"].as_u64().unwrap() <= 12);
    let snr = report["snr_db"].as_f64().unwrap();
    assert!(snr >= 24.95, "{snr}");
    // PocketSphinx run afresh on the written 16-bit file.
    let ps = &report["verified_by"].as_array().unwrap()[0];
    assert_eq!(ps["recognizer"], "pocketsphinx", "{ps}");
    assert_eq!(ps["success"], true, "{ps}");
    // The prior applies to black-box attacks only, and its rounds need it.
    let refused = advox()
        .arg("attack")
        .arg(&clip)
        .args(["--untargeted", "--eps", "0.01", "--quiet-prior", "-o"])
        .arg(dir.join("white.wav"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--quiet-prior does not apply"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A recording longer than Whisper's 30-s window: real speech (the held-out clips of
/// `common::corpus_test`, then LJ Speech clips of `common::corpus_train`, 35 s in all) is
/// attacked window by window, untargeted; the example is as long as the input, every window is
/// reported, and a targeted goal on it is refused with the reason.
#[test]
fn attack_moves_a_recording_longer_than_one_window_window_by_window() {
    let dir = std::env::temp_dir().join(format!("advox-cli-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut long: Vec<f32> = Vec::new();
    for clip in common::corpus_test(5)
        .into_iter()
        .chain(common::corpus_train(6))
    {
        long.extend(&clip.samples);
        long.extend(std::iter::repeat_n(0.0, 4000));
        if long.len() >= 35 * 16_000 {
            break;
        }
    }
    long.truncate(35 * 16_000);
    assert_eq!(long.len(), 35 * 16_000, "the corpus clips give 35 s");
    let input = dir.join("long.wav");
    advox::audio::write_wav(&input, &long, 16_000, advox::audio::WavFormat::Pcm16, &[]).unwrap();
    let out = dir.join("adv.wav");
    let run = advox()
        .arg("attack")
        .arg(&input)
        .args(["--untargeted", "--snr-db", "30", "--seed", "1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adv.json")).unwrap()).unwrap();
    let windows = report["details"]["windows"]["outcomes"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{report}");
    assert_eq!(windows[1]["start"], 480_000);
    assert!(windows.iter().all(|w| w["success"] == true), "{report}");
    assert!(report["snr_db"].as_f64().unwrap() >= 29.95);
    let adv = advox::audio::read_audio_16k_mono(&out).unwrap();
    assert_eq!(adv.len(), long.len());
    // The whole file, transcribed long-form by advox, is far from the clean transcript.
    let t = advox().arg("transcribe").arg(&out).output().unwrap();
    let heard = String::from_utf8_lossy(&t.stdout).to_string();
    let original = report["original_transcript"].as_str().unwrap();
    assert!(
        advox::metrics::wer(original, &heard) >= 0.5,
        "{original} → {heard}"
    );
    // A target is one transcript for one window.
    let run = advox()
        .arg("attack")
        .arg(&input)
        .args(["--target", "turn off the lights", "--snr-db", "30", "-o"])
        .arg(dir.join("targeted.wav"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("targeted goal is one transcript"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The ultrasonic route, simulated: a held-out real voice-assistant request amplitude-modulated
/// onto a 30-kHz carrier at 96 kHz has next to no energy under 20 kHz, and a microphone with a
/// second-order nonlinearity (`y = x + 0.5·x²`) records it so that Whisper hears the request
/// word for word; settings whose sideband would be audible are refused.
#[test]
fn an_ultrasonic_emission_is_demodulated_by_the_simulated_microphone() {
    let dir = std::env::temp_dir().join(format!("advox-cli-ultrasonic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip = common::shared().join("corpus/rhino/test_within_context.wav");
    let run = advox()
        .arg("ultrasonic")
        .arg(&clip)
        .arg("-o")
        .arg(dir.join("emitted.wav"))
        .args(["--mic", "0.5", "--recorded"])
        .arg(dir.join("recorded.wav"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("delivers the command word for word"),
        "{stdout}"
    );
    let db: f64 = stdout
        .split("energy under 20000 Hz: ")
        .nth(1)
        .and_then(|s| s.split(" dB").next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(db < -50.0, "{stdout}");
    let emitted = advox::audio::read_audio(&dir.join("emitted.wav")).unwrap();
    assert_eq!(emitted.sample_rate, 96_000);
    assert!(dir.join("recorded.wav").is_file());
    let refused = advox()
        .arg("ultrasonic")
        .arg(&clip)
        .arg("-o")
        .arg(dir.join("audible.wav"))
        .args(["--carrier", "24000"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("within hearing"));
    assert!(!dir.join("audible.wav").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// `eval --over-the-air --rir`: every signal heard through the same fixed draws of a playback
/// channel with a measured room (here one written by the test), reported next to success on
/// the file; `--eot` makes PGD expect that channel. Options that need the channel are refused
/// without it.
#[test]
fn eval_hears_examples_over_the_air_through_measured_rooms() {
    let dir = std::env::temp_dir().join(format!("advox-cli-air-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A small room: direct path, one reflection after 10 ms, a short decaying tail.
    let mut rir = vec![0.0f32; 2400];
    rir[0] = 1.0;
    rir[160] = 0.4;
    for (n, v) in rir.iter_mut().enumerate().skip(200) {
        *v += 0.05 * (-(n as f32) / 400.0).exp() * if n % 3 == 0 { 1.0 } else { -0.5 };
    }
    let room = dir.join("room.wav");
    advox::audio::write_wav(&room, &rir, 16_000, advox::audio::WavFormat::Float32, &[]).unwrap();
    let manifest = dir.join("m.csv");
    std::fs::write(
        &manifest,
        format!(
            "input\n{}\n",
            common::root().join("samples/call_my_mother.wav").display()
        ),
    )
    .unwrap();
    let eval = |extra: &[&str], out: &str| {
        advox()
            .args(["eval", "--manifest"])
            .arg(&manifest)
            .args([
                "--attacks",
                "pgd",
                "--eps",
                "0.02",
                "--steps",
                "8",
                "--defenses",
                "none",
                "--detectors",
                "none",
            ])
            .args(extra)
            .arg("-o")
            .arg(dir.join(out))
            .output()
            .unwrap()
    };
    let room_arg = room.display().to_string();
    let o = eval(&["--over-the-air", "--rir", &room_arg, "--eot"], "air");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("air/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["settings"]["eot"], true);
    let channel = report["settings"]["over_the_air"].as_str().unwrap();
    assert!(channel.contains("1 measured rooms"), "{channel}");
    let r = &report["records"][0];
    let clean_air = &r["clean_over_the_air"];
    assert_eq!(
        clean_air["transcripts"].as_array().unwrap().len(),
        2,
        "{clean_air}"
    );
    // Speech in a small room stays intelligible.
    assert!(clean_air["wer"].as_f64().unwrap() <= 0.5, "{clean_air}");
    let a = &r["attacks"][0]["over_the_air"];
    let clean = r["clean_transcript"].as_str().unwrap();
    let met = a["transcripts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| advox::metrics::wer(clean, t.as_str().unwrap()) >= 0.5)
        .count();
    assert_eq!(a["goal_met"].as_f64().unwrap(), met as f64 / 2.0, "{a}");
    assert_eq!(
        report["cells"][0]["over_the_air_success"].as_f64(),
        a["goal_met"].as_f64()
    );
    for (extra, why) in [
        (vec!["--rir", room_arg.as_str()], "need --over-the-air"),
        (vec!["--eot"], "need --over-the-air"),
        (
            vec!["--over-the-air", "--rir", "/nonexistent/rooms"],
            "/nonexistent/rooms",
        ),
    ] {
        let o = eval(&extra, "refused");
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(why), "{extra:?}: {e}");
    }
}

#[test]
fn eval_suite_scores_each_harmful_target_per_snr_floor_and_recogniser() {
    let dir = std::env::temp_dir().join(format!("advox-cli-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("carriers.csv");
    std::fs::write(
        &manifest,
        format!(
            "input\n{}\n",
            common::root()
                .join("samples/turn_off_the_lights.wav")
                .display()
        ),
    )
    .unwrap();
    // The assistant's recogniser (`--asr-cmd`) here is advox's own greedy decode run as a
    // command: what it hears must then agree with the attack's own verdicts, file by file.
    let heard_by = format!(
        "'{}' transcribe --beam 1 {{wav}}",
        env!("CARGO_BIN_EXE_advox")
    );
    let out = dir.join("card");
    let o = advox()
        .args(["eval", "--suite", "voice-assistant", "--manifest"])
        .arg(&manifest)
        .args([
            "--targets",
            "unlock the front door",
            "--snr-db",
            "45,30",
            "--steps",
            "12",
            "--defenses",
            "none",
            "--detectors",
            "none",
            "--asr-cmd",
            &heard_by,
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["settings"]["suite"], "voice-assistant");
    let goals = report["by_goal"].as_array().unwrap();
    assert_eq!(goals.len(), 1);
    assert_eq!(goals[0]["goal"], "targeted: \"unlock the front door\"");
    let cells = goals[0]["cells"].as_array().unwrap();
    let floors: Vec<f64> = cells
        .iter()
        .map(|c| c["snr_bound_db"].as_f64().unwrap())
        .collect();
    assert_eq!(floors, vec![45.0, 30.0]);
    let r = &report["records"][0];
    let x = advox::audio::read_audio_16k_mono(std::path::Path::new(r["input"].as_str().unwrap()))
        .unwrap();
    let setting = r["clean_heard"].as_object().unwrap();
    assert_eq!(setting.len(), 1, "{setting:?}");
    let (name, clean_heard) = setting.iter().next().unwrap();
    assert_eq!(clean_heard, &r["clean_transcript"]);
    for (a, cell) in r["attacks"].as_array().unwrap().iter().zip(cells) {
        let floor = a["snr_bound_db"].as_f64().unwrap();
        // Each example keeps its SNR floor on the written 16-bit file.
        let stem = format!("pgd_snr{floor}");
        let wav = out.join(format!("examples/0000_{stem}.wav"));
        let y = advox::audio::read_audio_16k_mono(&wav).unwrap();
        let delta: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
        let snr = advox::metrics::snr_db(&x, &delta);
        assert!(snr >= floor - 0.2, "{stem}: SNR {snr} under {floor}");
        // What the command heard is what the attack recorded, and so is the verdict.
        let h = &a["heard"][name];
        assert_eq!(h["transcript"], a["transcript"], "{stem}");
        assert_eq!(h["success"], a["success"], "{stem}");
        assert_eq!(
            cell["heard_success"][name].as_f64(),
            Some(if a["success"].as_bool().unwrap() {
                1.0
            } else {
                0.0
            })
        );
        assert!(a["over_the_air"]["transcripts"].is_array(), "{a}");
    }
    // The louder bound gets the target through at least as often as the quieter one.
    assert!(
        cells[1]["success_rate"].as_f64() >= cells[0]["success_rate"].as_f64(),
        "{cells:?}"
    );
    let page = std::fs::read_to_string(out.join("scorecard.html")).unwrap();
    assert!(page.contains("unlock the front door") && page.contains("SNR ≥ 30 dB"));
    assert!(out.join("scorecard_0.png").exists());
    // A carrier that sets its own target, a goal option and an unknown suite are refused.
    let own = dir.join("own.csv");
    std::fs::write(
        &own,
        format!(
            "input,target\n{},call my mother\n",
            common::root()
                .join("samples/turn_off_the_lights.wav")
                .display()
        ),
    )
    .unwrap();
    for (args, why) in [
        (
            vec![
                "--suite".to_string(),
                "voice-assistant".into(),
                "--manifest".into(),
                own.display().to_string(),
            ],
            "must not set a goal",
        ),
        (
            vec!["--suite".into(), "voice-assistant".into(), "--mute".into()],
            "the suite sets every goal",
        ),
        (vec!["--suite".into(), "car".into()], "unknown suite"),
    ] {
        let o = advox()
            .arg("eval")
            .args(&args)
            .arg("-o")
            .arg(dir.join("refused"))
            .output()
            .unwrap();
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(why), "{args:?}: {e}");
    }
}
