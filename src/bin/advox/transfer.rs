//! `advox transfer`.

use crate::common;
use advox::model::DecodeOptions;
use advox::recognizer::{BuiltinRecognizer, Recognizer};
use advox::transfer::{read_reports, transfer};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Judge adversarial examples made against one model with another recogniser: another model
/// (--model) or any external one (--asr-cmd 'my-asr {wav}', which gets a 16-bit WAV path and
/// prints a transcript).
#[derive(clap::Args)]
pub struct Args {
    /// Folder of `advox attack` outputs (OUT.wav beside OUT.json), e.g. a manifest's output.
    #[arg(long)]
    adv: PathBuf,
    /// External recogniser: a shell command with `{wav}` where the audio path goes.
    #[arg(long, group = "external", conflicts_with = "model")]
    asr_cmd: Option<String>,
    /// External recogniser started once: a shell command reading one WAV path per line on
    /// stdin and printing one transcript line for each.
    #[arg(long, group = "external", conflicts_with = "model")]
    asr_server: Option<String>,
    /// A shipped recogniser, started once: `faster-whisper` (the default model's CTranslate2
    /// files, beam 5) or `pocketsphinx` (installed into a venv under the advox cache on first
    /// use).
    #[arg(long, group = "external", conflicts_with = "model")]
    asr: Option<String>,
    /// Seconds before an external recogniser is killed.
    #[arg(long, default_value_t = 60.0)]
    timeout_s: f64,
    /// Another model (directory or known name) as the recogniser.
    #[arg(long)]
    model: Option<String>,
    /// Beam size of the built-in model.
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Write the results as JSON here.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if !(args.timeout_s.is_finite() && args.timeout_s > 0.0) {
        bail!("--timeout-s must be positive");
    }
    let examples = read_reports(&args.adv)?;
    let model;
    let external = common::external_asr(
        args.asr_cmd.as_deref(),
        args.asr_server.as_deref(),
        args.asr.as_deref(),
    )?;
    let mut recognizer: Box<dyn Recognizer> = match &external {
        Some(e) => e.recognizer(Duration::from_secs_f64(args.timeout_s))?,
        None => {
            let device = common::device(device)?;
            model = common::load_model(args.model.as_deref(), &device)?;
            Box::new(BuiltinRecognizer::new(
                &model,
                DecodeOptions {
                    beam_size: args.beam.max(1),
                    ..Default::default()
                },
            ))
        }
    };
    let results = transfer(recognizer.as_mut(), &examples)?;
    let successes = results.iter().filter(|r| r.success).count();
    let source = examples.iter().filter(|e| e.source_success).count();
    for r in &results {
        println!(
            "{} | {} | {} | {}",
            r.wav,
            if r.success {
                "transfers"
            } else {
                "does not transfer"
            },
            r.transcript.as_deref().unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
    }
    println!(
        "{successes} of {} examples meet their goal with {} ({source} did against the attacked model)",
        results.len(),
        recognizer.describe()
    );
    if let Some(path) = &args.output {
        let report = serde_json::json!({
            "recognizer": recognizer.describe(),
            "queries": recognizer.queries(),
            "examples": results.len(),
            "successes": successes,
            "source_successes": source,
            "results": results,
        });
        common::write_json(path, &report)?;
    }
    Ok(())
}
