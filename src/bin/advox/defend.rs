//! `advox defend`: transcribe through a defence.

use crate::common;
use advox::audio::read_audio_16k_mono;
use advox::defend::adv_train::Scope;
use advox::defend::Defense;
use advox::model::{DecodeOptions, LoadedModel};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Transcribe audio files through a defence: purification by input transforms, randomised
/// smoothing with a certified radius, or a vote across transforms and models.
///
/// Prints the transcript per file, or with --json one object per file: file, defense, text,
/// abstained, agreement, certified_radius.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<DefendCommand>,
    /// Audio files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// `none`, `purify:T1+T2` (transforms: resample-8000, quantize-8, lowpass-4000, lpc-16,
    /// mel-80, lossy), `smoothing[:SIGMA]` (default σ 0.005) or `vote[:T1+T2]` (default: all
    /// transforms; with several --model, every model votes).
    #[arg(long, default_value = "purify:lowpass-4000")]
    defense: String,
    /// Smoothing: noisy copies that estimate the vote (plus 4 that choose it).
    #[arg(long, default_value_t = 16)]
    samples: usize,
    /// Smoothing: error probability of the certificate.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Beam size of every transcription (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Model directory or known name; repeat for an ensemble vote.
    #[arg(long)]
    model: Vec<String>,
    /// Seed of the smoothing noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One JSON object per file.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum DefendCommand {
    /// Adversarial fine-tuning: make PGD examples of a manifest against the model, fine-tune
    /// the decoder to transcribe them (mixed with the clean inputs) as the clean transcripts,
    /// and save the tuned model as a directory (`--model DIR` everywhere).
    AdvTrain {
        /// Training utterances (manifest).
        #[arg(long)]
        train: PathBuf,
        /// Output model directory (Hugging Face layout, with adv_train.json).
        #[arg(short, long)]
        output: PathBuf,
        /// L∞ bound of the PGD examples.
        #[arg(long, default_value_t = 0.01)]
        eps: f32,
        /// PGD steps per example.
        #[arg(long, default_value_t = 20)]
        attack_steps: usize,
        /// Fine-tuning steps (one clean and one adversarial example each).
        #[arg(long, default_value_t = 40)]
        steps: usize,
        /// Learning rate (AdamW; higher forgets more of what the model knew).
        #[arg(long, default_value_t = 2e-5)]
        lr: f64,
        /// What to train: `decoder` (the decoder blocks; the encoder and embeddings stay
        /// frozen: fast) or `all` (every weight; each step also runs the encoder forward and
        /// backward, about 10× slower per step on a CPU).
        #[arg(long, default_value = "decoder")]
        scope: String,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Base model directory or known name.
        #[arg(long)]
        model: Option<String>,
        /// Held-out utterances (manifest; other speakers than --train): after training, their
        /// clean WER (against the manifest's `transcript` column, else the base model's clean
        /// transcript) and fresh PGD (same --eps and --attack-steps) against the base and the
        /// tuned model, each attacked as it stands.
        #[arg(long)]
        held_out: Option<PathBuf>,
    },
    /// Defensive distillation (Papernot et al. 2016): a student trained at temperature T on
    /// the teacher's softened outputs, deployed at temperature 1 (its logits T times the
    /// teacher's). Saved as a model directory (`--model DIR` everywhere) with distill.json.
    Distill(crate::distill::Args),
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if let Some(DefendCommand::AdvTrain {
        train,
        output,
        eps,
        attack_steps,
        steps,
        lr,
        scope,
        seed,
        model,
        held_out,
    }) = &args.command
    {
        let scope = Scope::parse(scope)?;
        return crate::adv_train::run(
            &crate::adv_train::Settings {
                train,
                output,
                eps: *eps,
                attack_steps: *attack_steps,
                steps: *steps,
                lr: *lr,
                scope,
                seed: *seed,
                model: model.as_deref(),
                held_out: held_out.as_deref(),
            },
            device,
        );
    }
    if let Some(DefendCommand::Distill(distill)) = &args.command {
        return crate::distill::run(distill, device);
    }
    let mut defense = Defense::parse(&args.defense)?;
    if matches!(defense, Defense::Smoothing(_)) {
        defense.set_smoothing(args.samples, args.alpha, args.seed)?;
    }
    if args.beam == 0 {
        bail!("--beam must be at least 1");
    }
    let device = common::device(device)?;
    let models = common::load_models(&args.model, &device)?;
    let refs: Vec<&LoadedModel> = models.iter().collect();
    let decode = DecodeOptions {
        beam_size: args.beam,
        ..Default::default()
    };
    let mut failures = 0;
    for file in &args.files {
        let result = read_audio_16k_mono(file)
            .map_err(anyhow::Error::from)
            .and_then(|x| {
                defense
                    .transcribe(&refs, &decode, &x)
                    .with_context(|| format!("{}: {}", file.display(), defense.name()))
            });
        match result {
            Ok(d) if args.json => println!(
                "{}",
                serde_json::json!({
                    "file": file.display().to_string(),
                    "defense": defense.name(),
                    "text": d.text,
                    "abstained": d.abstained,
                    "agreement": d.agreement,
                    "certified_radius": d.certified_radius,
                })
            ),
            Ok(d) => {
                let text = if d.abstained { "(abstained)" } else { &d.text };
                match d.certified_radius {
                    Some(r) => println!("{}: {text} (certified L2 radius {r:.4})", file.display()),
                    None => println!("{}: {text}", file.display()),
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("error: {}", common::error_text(&e));
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} files failed", args.files.len());
    }
    Ok(())
}
