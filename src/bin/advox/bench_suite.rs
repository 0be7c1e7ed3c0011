//! `advox bench --suite`: time to the first success of targeted PGD and Carlini–Wagner over the
//! bundled sample commands, each attacked towards the next sample's transcript.

use advox::attack::cw::CwConfig;
use advox::attack::{Attack, AttackConfig, StepInfo};
use advox::audio::read_audio_16k_mono;
use advox::metrics::{dbx, snr_db};
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::{Goal, Objective};
use advox::transcribe::transcribe;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One attack of the suite.
#[derive(serde::Serialize)]
pub struct SuiteRun {
    sample: String,
    target: String,
    attack: &'static str,
    success: bool,
    seconds_to_success: Option<f64>,
    steps: usize,
    snr_db: f64,
    dbx: f64,
}

/// The targeted PGD setting the README reports: Adam steps in the STFT domain, SNR >= 30 dB.
pub fn pgd_config() -> AttackConfig {
    AttackConfig::quick_start(300)
}

/// Read `samples/transcripts.tsv` under `dir`: (file, transcript) pairs.
fn read_samples(dir: &Path) -> Result<Vec<(String, String)>> {
    let tsv = dir.join("transcripts.tsv");
    let text =
        std::fs::read_to_string(&tsv).with_context(|| format!("reading {}", tsv.display()))?;
    let rows: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    if rows.len() < 2 {
        bail!("{} lists fewer than two samples", tsv.display());
    }
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Attack every sample towards the next one's transcript with PGD and CW, stopping each at its
/// first success; returns the runs and prints a table unless `json`.
pub fn run(model: &LoadedModel, dir: &Path, json: bool) -> Result<()> {
    let rows = read_samples(dir)?;
    let decode = DecodeOptions::default();
    let mut runs = Vec::new();
    for (i, (file, _)) in rows.iter().enumerate() {
        let path = dir.join(file);
        let x = read_audio_16k_mono(&path)?;
        let target = rows[(i + 1) % rows.len()].1.clone();
        let original = transcribe(model, &x, &decode)?;
        let objective = Objective::new(
            model,
            Goal::Targeted(target.clone()),
            &original.text,
            &original.tokens,
        )?;
        for attack in [Attack::Pgd(pgd_config()), Attack::Cw(CwConfig::default())] {
            let stop = AtomicBool::new(false);
            let mut first_success = None;
            let start = Instant::now();
            let mut on_step = |info: &StepInfo| {
                if let Some(t) = &info.transcript {
                    if first_success.is_none() && objective.is_met(t) {
                        first_success = Some(start.elapsed().as_secs_f64());
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            };
            let out = attack
                .run(model, &x, &objective, &stop, &mut on_step)?
                .outcome;
            let run = SuiteRun {
                sample: file.clone(),
                target: target.clone(),
                attack: attack.kind().name(),
                success: out.success,
                seconds_to_success: first_success.filter(|_| out.success),
                steps: out.steps,
                snr_db: snr_db(&x, &out.perturbation),
                dbx: dbx(&x, &out.perturbation),
            };
            if !json {
                eprintln!(
                    "{} -> {:?} ({}): {} in {} steps",
                    run.sample,
                    run.target,
                    run.attack,
                    if run.success { "success" } else { "failure" },
                    run.steps
                );
            }
            runs.push(run);
        }
    }
    let summary = |attack: &str| {
        let of: Vec<&SuiteRun> = runs.iter().filter(|r| r.attack == attack).collect();
        let times: Vec<f64> = of.iter().filter_map(|r| r.seconds_to_success).collect();
        (times.len(), of.len(), median(times))
    };
    if json {
        let (pgd_ok, n, pgd_median) = summary("pgd");
        let (cw_ok, _, cw_median) = summary("cw");
        println!(
            "{}",
            serde_json::json!({
                "model": model.id(),
                "runs": runs,
                "pgd": {"successes": pgd_ok, "of": n, "median_seconds_to_success": pgd_median},
                "cw": {"successes": cw_ok, "of": n, "median_seconds_to_success": cw_median},
            })
        );
        return Ok(());
    }
    println!("| sample | target | attack | result | steps | time to success | SNR | dBx |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} dB | {:.1} dB |",
            r.sample,
            r.target,
            r.attack,
            if r.success { "success" } else { "failure" },
            r.steps,
            r.seconds_to_success
                .map_or("-".to_string(), |s| format!("{s:.1} s")),
            r.snr_db,
            r.dbx
        );
    }
    for attack in ["pgd", "cw"] {
        let (ok, n, med) = summary(attack);
        println!(
            "| **{attack}: {ok}/{n} succeeded, median time to success {}** | | | | | | | |",
            med.map_or("-".to_string(), |s| format!("{s:.1} s"))
        );
    }
    Ok(())
}
