//! `advox attack --blackbox ga|nes|spsa`: attacks that only see transcripts (or scores),
//! against the built-in model used as an opaque box or an external recogniser (`--asr-cmd`).

use advox::attack::blackbox::{run_ga, BlackBoxOutcome, GaConfig};
use advox::attack::nes::{run_nes, Estimator, NesConfig};
use advox::attack::StepInfo;
use advox::audio::{read_audio_16k_mono, refuse_overwrite, write_wav, WavFormat, SAMPLE_RATE};
use advox::metrics::{dbx, l2, linf, snr_db};
use advox::objective::Goal;
use advox::recognizer::Recognizer;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// A black-box algorithm with its settings.
pub enum Algorithm {
    /// Genetic algorithm with momentum mutation.
    Ga(GaConfig),
    /// NES or SPSA gradient estimation.
    Nes(NesConfig),
}

impl Algorithm {
    fn name(&self) -> &'static str {
        match self {
            Algorithm::Ga(_) => "blackbox-ga",
            Algorithm::Nes(c) if c.estimator == Estimator::Spsa => "blackbox-spsa",
            Algorithm::Nes(_) => "blackbox-nes",
        }
    }
    fn budget(&self) -> usize {
        match self {
            Algorithm::Ga(c) => c.query_budget,
            Algorithm::Nes(c) => c.query_budget,
        }
    }
    fn seed(&self) -> u64 {
        match self {
            Algorithm::Ga(c) => c.seed,
            Algorithm::Nes(c) => c.seed,
        }
    }
    /// Run on `x`, whose clean transcript is `original`.
    fn run(
        &self,
        recognizer: &mut dyn Recognizer,
        x: &[f32],
        goal: &Goal,
        original: &str,
        cancel: &AtomicBool,
        on_step: &mut dyn FnMut(&StepInfo),
    ) -> advox::Result<BlackBoxOutcome> {
        match self {
            Algorithm::Ga(cfg) => run_ga(recognizer, x, goal, original, cfg, cancel, on_step),
            Algorithm::Nes(cfg) => run_nes(recognizer, x, goal, original, cfg, cancel, on_step),
        }
    }
    /// Progress-bar length: generations or gradient steps the budget allows.
    fn iterations(&self) -> u64 {
        match self {
            Algorithm::Ga(c) => (c.query_budget / c.population.max(1)) as u64,
            Algorithm::Nes(c) => (c.query_budget / (2 * c.directions).max(1)) as u64,
        }
    }
}

/// Settings the command line gives a black-box attack.
pub struct BlackBoxArgs<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub perturbation: &'a Path,
    pub report: &'a Path,
    pub goal: Goal,
    pub algorithm: Algorithm,
    /// The clean transcript, when the caller already asked the recogniser for it.
    pub original: Option<String>,
}

/// Attack one input through `recognizer` and write the example, δ and the report.
pub fn attack_one(
    recognizer: &mut dyn Recognizer,
    args: &BlackBoxArgs,
    cancel: &AtomicBool,
) -> Result<serde_json::Value> {
    let inputs = [args.input];
    for out in [args.output, args.perturbation, args.report] {
        refuse_overwrite(out, &inputs)?;
    }
    let x = read_audio_16k_mono(args.input)?;
    let original = match &args.original {
        Some(t) => t.clone(),
        None => recognizer
            .transcribe(&x)
            .context("transcribing the input")?,
    };
    eprintln!(
        "original transcript ({}): {original}",
        recognizer.describe()
    );
    let bar = crate::common::step_bar(args.algorithm.iterations());
    let start = Instant::now();
    let mut on_step = |info: &StepInfo| {
        bar.set_position(info.step as u64);
        bar.set_message(info.transcript.clone().unwrap_or_default());
    };
    let out = args
        .algorithm
        .run(recognizer, &x, &args.goal, &original, cancel, &mut on_step)?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    write_wav(
        args.output,
        &out.attack.adversarial,
        SAMPLE_RATE,
        WavFormat::Pcm16,
        &inputs,
    )?;
    write_wav(
        args.perturbation,
        &out.attack.perturbation,
        SAMPLE_RATE,
        WavFormat::Float32,
        &inputs,
    )?;
    let written = read_audio_16k_mono(args.output)?;
    let final_transcript = recognizer.transcribe(&written)?;
    let success = args.goal.is_met(&original, &final_transcript);
    let delta: Vec<f32> = written.iter().zip(&x).map(|(a, b)| a - b).collect();
    let report = serde_json::json!({
        "input": args.input.display().to_string(),
        "output": args.output.display().to_string(),
        "perturbation": args.perturbation.display().to_string(),
        "attack": args.algorithm.name(),
        "recognizer": recognizer.describe(),
        "score_based": recognizer.has_scores(),
        "goal": args.goal.describe(),
        "target": match &args.goal { Goal::Targeted(t) => Some(t.clone()), _ => None },
        "original_transcript": original,
        "adversarial_transcript": final_transcript,
        "success": success,
        "cancelled": out.attack.cancelled,
        "queries": out.queries,
        "query_budget": args.algorithm.budget(),
        "iterations": out.attack.steps,
        "snr_db": snr_db(&x, &delta),
        "dbx": dbx(&x, &delta),
        "linf": linf(&delta),
        "l2": l2(&delta),
        "wall_seconds": seconds,
        "seed": args.algorithm.seed(),
    });
    crate::common::write_json(args.report, &report)?;
    println!(
        "{} | {:?} | SNR {:.1} dB | {} queries | {:.1} s",
        if success { "success" } else { "failure" },
        final_transcript,
        snr_db(&x, &delta),
        out.queries,
        seconds
    );
    Ok(report)
}
