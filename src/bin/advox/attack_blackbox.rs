//! `advox attack --blackbox ga|nes|spsa`: attacks that only see transcripts (or scores),
//! against the built-in model used as an opaque box or an external recogniser (`--asr-cmd`).

use crate::attack::write_example;
use crate::common;
use advox::attack::plan::AttackOptions;
use advox::attack::query_signal::{builtin_target, check_target, query_signal};
use advox::attack::StepInfo;
use advox::audio::{read_audio_16k_mono, refuse_overwrite};
use advox::formats::attack_report::ReportFiles;
use advox::formats::AttackReport;
use advox::model::LoadedModel;
use advox::objective::Goal;
use advox::recognizer::external::ExternalAsr;
use advox::recognizer::Recognizer;
use advox::verify::Verifier;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What the black-box attack runs against, and where it writes.
pub struct Target<'a> {
    /// The input file.
    pub input: Option<&'a Path>,
    /// The output WAV.
    pub output: &'a Path,
    /// An external recogniser (`--asr-cmd`, `--asr-server`, `--asr`), else the built-in model.
    pub external: Option<&'a ExternalAsr>,
    /// Seconds before the external recogniser is killed.
    pub timeout_s: Option<f64>,
    /// The built-in model's directory or name.
    pub model: Option<&'a str>,
    /// Independent recognisers that judge the example too.
    pub verify: &'a [Verifier],
}

/// One input, through the built-in model as an opaque box or `--asr-cmd`.
pub fn run(
    target: &Target,
    goal: Option<Goal>,
    options: &AttackOptions,
    device: &str,
    cancel: &AtomicBool,
) -> Result<common::Outcome> {
    let timeout_s = target.timeout_s.unwrap_or(60.0);
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        bail!("--timeout-s must be positive");
    }
    let input = target
        .input
        .context("black-box attacks take one input file, not a manifest")?;
    let goal = goal.context("choose one goal: --target TEXT, --untargeted or --mute")?;
    // Refuse bad options before the input is read or a model loaded.
    options.black_box(&goal)?;
    check_target(options, target.external.is_some())?;
    let files = ReportFiles::new(input, target.output);
    let inputs = [input];
    for out in [&files.output, &files.perturbation, &files.report] {
        refuse_overwrite(out, &inputs)?;
    }
    let x = read_audio_16k_mono(input)?;
    let device = common::device(device)?;
    // Loaded once: the opaque box without an external recogniser, or the surrogate.
    let model = if target.external.is_none() || options.surrogate {
        Some(common::load_model(target.model, &device)?)
    } else {
        None
    };
    let (mut recognizer, original): (Box<dyn Recognizer>, String) = match target.external {
        Some(external) => {
            let mut r = external.recognizer(Duration::from_secs_f64(timeout_s))?;
            let original = r.transcribe(&x).context("transcribing the input")?;
            (r, original)
        }
        None => {
            let model = model.as_ref().context("the built-in model is not loaded")?;
            let (builtin, text) =
                builtin_target(model, options, &goal, &x).context("transcribing the input")?;
            (Box::new(builtin), text)
        }
    };
    eprintln!(
        "original transcript ({}): {original}",
        recognizer.describe()
    );
    let surrogate = model.as_ref().filter(|_| options.surrogate);
    let mut report = attack_one(
        recognizer.as_mut(),
        original,
        surrogate,
        &files,
        &x,
        &goal,
        options,
        cancel,
    )
    .with_context(|| format!("attacking {}", input.display()))?;
    if !target.verify.is_empty() {
        let dir =
            advox::model::provision::resolve_model(target.model, &mut |m| eprintln!("advox: {m}"))
                .context("could not find a model for --verify (pass --model DIR)")?;
        crate::attack::verify_into(&mut report, target.verify, &dir)?;
        common::write_json(&files.report, &report)?;
    }
    Ok(common::Outcome::of(report.succeeded()))
}

/// Attack `x` through `recognizer` and write the example, δ and the report.
#[allow(clippy::too_many_arguments)]
fn attack_one(
    recognizer: &mut dyn Recognizer,
    original: String,
    surrogate: Option<&LoadedModel>,
    files: &ReportFiles,
    x: &[f32],
    goal: &Goal,
    options: &AttackOptions,
    cancel: &AtomicBool,
) -> Result<AttackReport> {
    let bar = common::step_bar(options.black_box(goal)?.iterations() as u64);
    let mut on_step = |info: &StepInfo| {
        bar.set_position(info.step as u64);
        bar.set_message(info.transcript.clone().unwrap_or_default());
    };
    let done = query_signal(
        recognizer,
        original,
        x,
        goal,
        options,
        surrogate,
        cancel,
        &mut on_step,
    )?;
    bar.finish_and_clear();
    let out = &done.outcome;
    let seconds = done.seconds;
    write_example(files, &out.attack.adversarial, &out.attack.perturbation)?;
    let report = AttackReport::black_box(
        files,
        x,
        done.kind,
        goal,
        &done.original,
        &out.attack,
        done.stats.clone(),
        seconds,
        done.seed,
        options.applied_constraints(),
    );
    common::write_json(&files.report, &report)?;
    for (i, r) in out.surrogate.iter().enumerate() {
        eprintln!(
            "surrogate round {} ({}{}): {:.1} s white-box, SNR {:.1} dB, the target heard {:?}{}",
            i + 1,
            r.goal,
            r.margin
                .map(|m| format!(", margin {m}"))
                .unwrap_or_default(),
            r.seconds,
            r.snr_db,
            r.transcript,
            if r.success { " (goal met)" } else { "" }
        );
    }
    if let Some(met) = out.quiet.iter().position(|r| r.success) {
        let r = &out.quiet[met];
        eprintln!(
            "quiet-frame prior: candidate {} of {} (noise in the quietest {:.0} % of frames, \
             SNR {:.1} dB) met the goal: {:?}",
            met + 1,
            out.quiet.len(),
            100.0 * r.share,
            r.snr_db,
            r.transcript
        );
    } else if !out.quiet.is_empty() {
        eprintln!(
            "quiet-frame prior: none of {} candidates met the goal",
            out.quiet.len()
        );
    }
    if let (Some(first), Some(last)) = (out.snr_trajectory.first(), out.snr_trajectory.last()) {
        eprintln!(
            "shrunk after the first success: SNR {:.1} dB at query {} → {:.1} dB at query {}",
            first.snr_db, first.queries, last.snr_db, last.queries
        );
    }
    println!(
        "{} | {:?} | SNR {:.1} dB | {} queries | {:.1} s",
        if report.success { "success" } else { "failure" },
        report.adversarial_transcript,
        report.snr_db,
        out.queries,
        seconds
    );
    Ok(report)
}
