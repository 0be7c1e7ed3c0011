//! Both plugins under the CLAP community's own validator (free-audio/clap-validator 0.4.1, vendored
//! in `../shared/tools/clap-validator/`, built once into `target/clap-validator/`): every
//! `validate` test must pass or be skipped (no `failed`, no `warning`), and `fuzz` must find
//! nothing in its time per plugin.

mod host;

use host::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How long the fuzzer runs per plugin.
const FUZZ_SECONDS: u32 = 30;

/// Runs of the validator's denormal timing whose median is judged (see below).
const DENORMAL_RUNS: usize = 5;

/// The validator, built from the vendored source on first use (copied out of the read-only
/// shared folder, as `../shared/tools/README.md` says).
fn validator() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target");
    let exe = target.join("clap-validator/release/clap-validator");
    if exe.is_file() {
        return exe;
    }
    let vendored = root.join("../shared/tools/clap-validator");
    assert!(
        vendored.join("Cargo.toml").is_file(),
        "clap-validator's source is not at {} (the shared tools folder)",
        vendored.display()
    );
    let src = target.join("clap-validator-src");
    let copied = Command::new("cp")
        .arg("-rT")
        .arg(&vendored)
        .arg(&src)
        .status()
        .expect("running cp");
    assert!(copied.success(), "copying {}", vendored.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
        ])
        .arg(src.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target.join("clap-validator"))
        .status()
        .expect("running cargo build for clap-validator");
    assert!(built.success(), "building clap-validator failed");
    exe
}

/// One `validate --json` run: (plugin id, test name, status code, details) per test.
fn validate(exe: &Path, clap: &Path, only: Option<&str>) -> Vec<(String, String, String, String)> {
    let mut cmd = Command::new(exe);
    cmd.arg("validate").arg(clap).arg("--json");
    if let Some(t) = only {
        cmd.args(["--include", t]);
    }
    let out = cmd.output().expect("running clap-validator");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "clap-validator printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let test = r["test"]
                .as_object()
                .and_then(|t| t.values().next())
                .cloned()
                .unwrap_or_default();
            (
                test["plugin_id"].as_str().unwrap_or("library").to_string(),
                test["test"].as_str().unwrap_or("?").to_string(),
                r["status"]["code"].as_str().unwrap_or("?").to_string(),
                r["status"]["details"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The ratio the validator's denormal test reports ("took 1.42x longer"); below 1.2 it says none.
fn denormal_ratio(details: &str) -> f64 {
    details
        .split_whitespace()
        .find_map(|w| w.strip_suffix('x').and_then(|n| n.parse().ok()))
        .unwrap_or(1.0)
}

#[test]
fn both_plugins_pass_clap_validator_without_warnings_and_survive_its_fuzzer() {
    let exe = validator();
    let clap = clap_path();
    let results = validate(&exe, &clap, None);
    assert!(results.len() > 50, "{results:?}");
    let counted = |code: &str| results.iter().filter(|r| r.2 == code).count();
    eprintln!(
        "clap-validator: {} tests, {} passed, {} skipped",
        results.len(),
        counted("success"),
        counted("skipped")
    );
    for id in [CLOAK, SENTINEL] {
        assert!(
            results.iter().any(|r| r.0 == id && r.2 == "success"),
            "{id} was not validated: {results:?}"
        );
    }
    // Every test passes or is skipped, except that the denormal test's timing is judged over
    // several runs: it compares 50 blocks of noise with 50 blocks of subnormal input (~2 ms
    // each here) and warns above 2×, so one run on a shared 2-core machine is noise-bound
    // (seen with flush-to-zero on: single runs of 1.0–2.65×; without it, 1.2–5.9×).
    let bad: Vec<_> = results
        .iter()
        .filter(|r| r.2 != "success" && r.2 != "skipped")
        .filter(|r| r.1 != "process-audio-denormals" || r.2 != "warning")
        .collect();
    assert!(bad.is_empty(), "clap-validator: {bad:#?}");
    let mut ratios: Vec<(String, Vec<f64>)> =
        vec![(CLOAK.into(), vec![]), (SENTINEL.into(), vec![])];
    for _ in 0..DENORMAL_RUNS {
        for r in validate(&exe, &clap, Some("process-audio-denormals")) {
            assert!(r.2 == "success" || r.2 == "warning", "{r:?}");
            if let Some((_, v)) = ratios.iter_mut().find(|(id, _)| *id == r.0) {
                v.push(denormal_ratio(&r.3));
            }
        }
    }
    for (id, mut v) in ratios {
        assert_eq!(v.len(), DENORMAL_RUNS, "{id}");
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        eprintln!("{id}: denormal/normal processing time, {DENORMAL_RUNS} runs: {v:?}");
        assert!(
            median < 2.0,
            "{id}: the validator's denormal test warns in most runs (median {median:.2}×: {v:?})"
        );
    }
    // The fuzzer: random parameter changes and audio, outputs checked (finite, not subnormal).
    for id in [CLOAK, SENTINEL] {
        let out = Command::new(&exe)
            .arg("fuzz")
            .arg(&clap)
            .args(["--plugin-id", id, "--json", "--duration"])
            .arg(format!("{FUZZ_SECONDS}s"))
            .output()
            .expect("running clap-validator fuzz");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let found: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        assert!(
            out.status.success() && found.as_array().is_some_and(|a| a.is_empty()),
            "clap-validator fuzz on {id}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
