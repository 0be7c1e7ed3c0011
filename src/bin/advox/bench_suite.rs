//! `advox bench --suite`: the corpus benchmark. Every input of a manifest (or every bundled
//! sample, attacked towards the next one's transcript) is attacked with each chosen attack as
//! `advox attack` runs it, every example is judged by the independent recognisers, and the
//! table gives each attack's verified successes and median time to a verified success.

use crate::attack::attack_all;
use crate::common;
use advox::attack::plan::AttackOptions;
use advox::attack::AttackKind;
use advox::formats::{AttackSummary, SummaryEntry};
use advox::manifest::read_manifest;
use advox::model::LoadedModel;
use advox::objective::Goal;
use advox::verify::Verifier;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What the suite runs.
pub struct Suite {
    /// A manifest of the inputs (its targets, else `target`); `None`: the bundled samples.
    pub manifest: Option<PathBuf>,
    /// Folder of the bundled samples (with transcripts.tsv), without a manifest.
    pub samples: PathBuf,
    /// The attacks, each over every input.
    pub attacks: Vec<AttackKind>,
    /// Target of the manifest's lines that set none.
    pub target: String,
    /// `--snr-db` of the attacks that take it (PGD, CW).
    pub snr_db: f32,
    /// `--seed` of every attack.
    pub seed: u64,
    /// The independent recognisers that judge every example.
    pub verifiers: Vec<Verifier>,
    /// Where the examples, reports and summaries go.
    pub out: PathBuf,
    /// Print one JSON object instead of a table.
    pub json: bool,
}

/// One attack's results over the inputs.
#[derive(serde::Serialize)]
struct AttackResults {
    attack: AttackKind,
    /// The options it ran with, as `advox attack` flags.
    flags: String,
    /// Successes by advox's own verdict.
    own_successes: usize,
    /// Successes that every verifier heard too (`null` without verifiers).
    verified_successes: Option<usize>,
    /// Median steps of the successes.
    median_steps: Option<f64>,
    #[serde(flatten)]
    summary: AttackSummary,
}

/// The options of `kind` in the suite: `advox attack --attack KIND --seed S`, plus
/// `--snr-db` where the attack takes a bound (PGD, CW); every default as `advox attack` has it.
fn options(kind: AttackKind, snr_db: f32, seed: u64) -> (AttackOptions, String) {
    let bounded = matches!(kind, AttackKind::Pgd | AttackKind::Cw);
    let options = AttackOptions {
        kind: Some(kind),
        snr_db: bounded.then_some(snr_db),
        seed,
        ..AttackOptions::default()
    };
    let mut flags = format!("--attack {kind} --seed {seed}");
    if bounded {
        flags.push_str(&format!(" --snr-db {snr_db}"));
    }
    (options, flags)
}

/// The bundled samples as `(file, goal)`: each towards the next one's transcript.
fn sample_jobs(dir: &Path) -> Result<(PathBuf, Vec<(PathBuf, Goal)>)> {
    let tsv = dir.join("transcripts.tsv");
    let text =
        std::fs::read_to_string(&tsv).with_context(|| format!("reading {}", tsv.display()))?;
    let rows: Vec<(&str, &str)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .collect();
    if rows.len() < 2 {
        bail!("{} lists fewer than two samples", tsv.display());
    }
    let jobs = rows
        .iter()
        .enumerate()
        .map(|(i, (file, _))| {
            let next = rows[(i + 1) % rows.len()].1;
            (dir.join(file), Goal::Targeted(next.to_string()))
        })
        .collect();
    Ok((tsv, jobs))
}

/// Run the suite, write `suite.json` into `out`, and print the table (or the JSON).
pub fn run(model: &LoadedModel, suite: &Suite) -> Result<()> {
    let (list, jobs) = match &suite.manifest {
        Some(m) => {
            let default = Goal::Targeted(suite.target.trim().to_string());
            let jobs = read_manifest(m)?
                .into_iter()
                .map(|e| e.goal(Some(&default), 0.5).map(|g| (e.input, g)))
                .collect::<advox::Result<Vec<_>>>()?;
            (m.clone(), jobs)
        }
        None => sample_jobs(&suite.samples)?,
    };
    let plans: Vec<(AttackKind, AttackOptions, String)> = suite
        .attacks
        .iter()
        .map(|&k| {
            let (o, f) = options(k, suite.snr_db, suite.seed);
            (k, o, f)
        })
        .collect();
    // Every option against every goal before the first attack starts.
    for (kind, options, _) in &plans {
        for (input, goal) in &jobs {
            options
                .check(Some(goal))
                .with_context(|| format!("{kind} on {}", input.display()))?;
        }
    }
    let borrowed: Vec<(&Path, Goal)> = jobs.iter().map(|(i, g)| (i.as_path(), g.clone())).collect();
    let mut results = Vec::new();
    for (kind, options, flags) in plans {
        eprintln!("== {flags}");
        let summary = attack_all(
            model,
            &list,
            &borrowed,
            &suite.out.join(kind.name()),
            &options,
            &suite.verifiers,
            suite.json,
        )?;
        let reports = || {
            summary.results.iter().filter_map(|r| match r {
                SummaryEntry::Report(r) => Some(r),
                _ => None,
            })
        };
        results.push(AttackResults {
            attack: kind,
            flags,
            own_successes: reports().filter(|r| r.success).count(),
            verified_successes: (!suite.verifiers.is_empty()).then_some(summary.successes),
            median_steps: advox::metrics::median(
                reports().filter(|r| r.succeeded()).map(|r| r.steps as f64),
            ),
            summary,
        });
    }
    let verifiers: Vec<String> = suite.verifiers.iter().map(Verifier::name).collect();
    let doc = serde_json::json!({
        "model": model.id(),
        "inputs": list.display().to_string(),
        "verifiers": verifiers,
        "attacks": results,
    });
    common::write_json(&suite.out.join("suite.json"), &doc)?;
    if suite.json {
        println!("{doc}");
        return Ok(());
    }
    print_table(&results, &verifiers, &suite.out);
    Ok(())
}

fn print_table(results: &[AttackResults], verifiers: &[String], out: &Path) {
    let judged_by = if verifiers.is_empty() {
        "advox's own verdict (no verifier)".to_string()
    } else {
        format!("verified by {}", verifiers.join(", "))
    };
    println!("| input | attack | own verdict | {judged_by} | steps | time | SNR | masked |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in results {
        for e in &r.summary.results {
            match e {
                SummaryEntry::Report(x) => println!(
                    "| {} | {} | {} | {} | {} | {:.1} s | {:.1} dB | {} |",
                    Path::new(&x.input)
                        .file_name()
                        .map_or(x.input.clone(), |n| n.to_string_lossy().into_owned()),
                    r.attack,
                    if x.success { "✓" } else { "✗" },
                    match x.verified {
                        Some(true) => "✓",
                        Some(false) => "✗",
                        None => "-",
                    },
                    x.steps,
                    x.wall_seconds,
                    x.snr_db,
                    x.masking.as_ref().map_or("-".to_string(), |m| format!(
                        "{:.1} %",
                        100.0 * m.energy_under_threshold
                    )),
                ),
                SummaryEntry::Failed { input, error, .. } => {
                    println!("| {input} | {} | error: {error} | | | | | |", r.attack)
                }
            }
        }
    }
    for r in results {
        println!(
            "\n**{}** (`{}`): {}/{} by advox's verdict, {}; median time to a {} success {}, \
             median steps {}",
            r.attack,
            r.flags,
            r.own_successes,
            r.summary.inputs,
            r.verified_successes
                .map_or("not verified".to_string(), |v| format!(
                    "{v}/{} {judged_by}",
                    r.summary.inputs
                )),
            if verifiers.is_empty() { "" } else { "verified" },
            r.summary
                .median_seconds_to_success
                .map_or("-".to_string(), |s| format!("{s:.1} s")),
            r.median_steps
                .map_or("-".to_string(), |s| format!("{s:.0}")),
        );
    }
    println!("\nexamples and reports in {}", out.display());
}
