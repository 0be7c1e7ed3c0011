//! `advox attack`: parsed arguments become the library's [`AttackOptions`]; the library checks
//! them, fills in its defaults, runs the attack and decides the verdict; this prints and
//! writes.

pub use crate::attack_args::Args;
use crate::common;
use advox::attack::plan::{attack_signal, AttackOptions};
use advox::attack::StepInfo;
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat, SAMPLE_RATE};
use advox::formats::attack_report::ReportFiles;
use advox::formats::{AttackReport, AttackSummary, SummaryEntry};
use advox::manifest::read_manifest;
use advox::model::LoadedModel;
use advox::objective::Goal;
use advox::verify::Verifier;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by Ctrl-C: the attack stops at its next step and keeps the best result so far.
static CANCEL: &AtomicBool = &common::INTERRUPTED;

pub fn run(args: Args, device: &str) -> Result<common::Outcome> {
    let goal = args.goals.goal()?;
    let options = args.options()?;
    options.check(goal.as_ref())?;
    let verifiers = args.verify.clone().map(|v| v.0).unwrap_or_default();
    common::install_interrupt();
    if args.blackbox.is_some() {
        let external = common::external_asr(
            args.asr_cmd.as_deref(),
            args.asr_server.as_deref(),
            args.asr.as_deref(),
        )?;
        let target = crate::attack_blackbox::Target {
            input: args.input.as_deref(),
            output: &args.output,
            external: external.as_ref(),
            timeout_s: args.timeout_s,
            model: args.model.as_deref(),
            verify: &verifiers,
        };
        return crate::attack_blackbox::run(&target, goal, &options, device, CANCEL);
    }
    let device = common::device(device)?;
    let Some(manifest) = &args.manifest else {
        let input = args
            .input
            .clone()
            .context("an input file or --manifest is needed")?;
        let goal = goal.context("choose one goal: --target TEXT, --untargeted or --mute")?;
        let model = common::load_model(args.model.as_deref(), &device)?;
        let files = ReportFiles::new(&input, &args.output);
        let report = attack_one(&model, &files, goal, &options, &verifiers, false)?;
        return Ok(common::Outcome::of(report.succeeded()));
    };
    let entries = read_manifest(manifest)?;
    let goals = entries
        .iter()
        .map(|e| e.goal(goal.as_ref(), args.goals.min_wer))
        .collect::<advox::Result<Vec<_>>>()?;
    for g in &goals {
        options.check(Some(g))?;
    }
    let model = common::load_model(args.model.as_deref(), &device)?;
    let jobs: Vec<(&Path, Goal)> = entries
        .iter()
        .map(|e| e.input.as_path())
        .zip(goals)
        .collect();
    let summary = attack_all(
        &model,
        manifest,
        &jobs,
        &args.output,
        &options,
        &verifiers,
        false,
    )?;
    println!(
        "{} of {} attacks succeeded; summary in {}",
        summary.successes,
        summary.inputs,
        args.output.join("summary.json").display()
    );
    Ok(common::Outcome::of(summary.successes == summary.inputs))
}

/// Attack every `(input, goal)` of `manifest` into `out` (`NNNN_<name>.wav`, its perturbation
/// and report, and `summary.json`), until Ctrl-C; an input that fails is recorded as such and
/// the rest go on; each result line goes to stdout, or to stderr if `quiet`. Returns the
/// summary it wrote.
pub fn attack_all(
    model: &LoadedModel,
    manifest: &Path,
    jobs: &[(&Path, Goal)],
    out: &Path,
    options: &AttackOptions,
    verifiers: &[Verifier],
    quiet: bool,
) -> Result<AttackSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut results = Vec::new();
    for (i, (input, goal)) in jobs.iter().enumerate() {
        if CANCEL.load(Ordering::Relaxed) {
            break;
        }
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files = ReportFiles::new(input, &out.join(format!("{i:04}_{stem}.wav")));
        eprintln!("[{}/{}] {}", i + 1, jobs.len(), input.display());
        results.push(
            match attack_one(model, &files, goal.clone(), options, verifiers, quiet) {
                Ok(report) => SummaryEntry::Report(Box::new(report)),
                Err(e) => {
                    eprintln!("error: {}", common::error_text(&e));
                    SummaryEntry::Failed {
                        input: input.display().to_string(),
                        success: false,
                        error: common::error_text(&e),
                    }
                }
            },
        );
    }
    let summary = AttackSummary::new(manifest, results);
    common::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Attack one input and write its example, perturbation and report; returns the report.
fn attack_one(
    model: &LoadedModel,
    files: &ReportFiles,
    goal: Goal,
    options: &AttackOptions,
    verifiers: &[Verifier],
    quiet: bool,
) -> Result<AttackReport> {
    let inputs = [files.input.as_path()];
    for out in [&files.output, &files.perturbation, &files.report] {
        advox::audio::refuse_overwrite(out, &inputs)?;
    }
    let x = read_audio_16k_mono(&files.input)?;
    let bar = common::step_bar(0);
    let mut on_original = |original: &str, attack: &advox::attack::Attack| {
        bar.suspend(|| eprintln!("original transcript: {original}"));
        bar.set_length(attack.max_steps() as u64);
    };
    let mut message = String::new();
    let mut on_step = |info: &StepInfo| {
        if let Some(t) = &info.transcript {
            message = t.clone();
        }
        bar.inc(1);
        bar.set_message(format!("loss {:.4} | {}", info.loss, message));
    };
    let done = attack_signal(
        model,
        &x,
        goal,
        options,
        CANCEL,
        &mut on_original,
        &mut on_step,
    )
    .with_context(|| format!("attacking {}", files.input.display()))?;
    bar.finish_and_clear();
    let outcome = &done.run.outcome;
    write_example(files, &outcome.adversarial, &outcome.perturbation)?;
    let mut report = AttackReport::white_box(
        files,
        &x,
        &done,
        model.id(),
        options.seed,
        options.applied_constraints(),
    );
    verify_into(&mut report, verifiers, &model.dir)?;
    common::write_json(&files.report, &report)?;
    let line = format!(
        "{} | {:?} | SNR {:.1} dB | dBx {:.1} | {:.1} % of the energy masked | {} steps | {:.1} s",
        match (report.success, report.verified) {
            (true, Some(false)) => "failure (not heard by every verifier)",
            (true, Some(true)) => "success (verified)",
            (true, None) => "success",
            (false, _) => "failure",
        },
        report.adversarial_transcript,
        report.snr_db,
        report.dbx,
        100.0 * done.masking.energy_under_threshold,
        report.steps,
        report.wall_seconds
    );
    if quiet {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(report)
}

/// Write the example (16-bit) and its perturbation (32-bit float), and check that the example
/// reads back as the samples the verdict was given on.
pub fn write_example(files: &ReportFiles, adversarial: &[f32], perturbation: &[f32]) -> Result<()> {
    let inputs = [files.input.as_path()];
    write_wav(
        &files.output,
        adversarial,
        SAMPLE_RATE,
        WavFormat::Pcm16,
        &inputs,
    )?;
    write_wav(
        &files.perturbation,
        perturbation,
        SAMPLE_RATE,
        WavFormat::Float32,
        &inputs,
    )?;
    if read_audio_16k_mono(&files.output)? != adversarial {
        bail!(
            "{}: the written example does not read back as the attacked samples",
            files.output.display()
        );
    }
    Ok(())
}

/// Judge the written example with the independent recognisers, print and record their
/// verdicts.
pub fn verify_into(
    report: &mut AttackReport,
    verifiers: &[Verifier],
    model_dir: &Path,
) -> Result<()> {
    if verifiers.is_empty() {
        return Ok(());
    }
    let mut verdicts = Vec::new();
    for v in verifiers {
        let found = v
            .verify(
                model_dir,
                Path::new(&report.output),
                &report.goal,
                &report.original_transcript,
                None,
                &mut |m| eprintln!("advox: {m}"),
            )
            .with_context(|| format!("verifying with {}", v.name()))?;
        for x in &found {
            let setting = match (x.beam, x.timestamps) {
                (Some(b), Some(t)) => format!(" (beam {b}{})", if t { ", timestamps" } else { "" }),
                _ => String::new(),
            };
            eprintln!(
                "{}{setting}: {} {}",
                x.recognizer,
                if x.success {
                    "hears the goal"
                } else {
                    "does not"
                },
                x.transcript
                    .as_deref()
                    .map(|t| format!("{t:?}"))
                    .or(x.error.clone())
                    .unwrap_or_default()
            );
        }
        verdicts.extend(found);
    }
    report.set_verified(verdicts);
    Ok(())
}
