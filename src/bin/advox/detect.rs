//! `advox detect`: score files with the detectors, or calibrate thresholds on clean speech.

use crate::common;
use advox::audio::read_audio_16k_mono;
use advox::detect::activations::ActivationModel;
use advox::detect::autoencoder::{MelAutoencoder, TrainConfig};
use advox::detect::calibration::{roc_auc, threshold_at_fpr};
use advox::detect::ensemble::Ensemble;
use advox::detect::verdict::detect_signal;
use advox::detect::{Context, Detector, Input};
use advox::formats::{Calibration, DetectorThreshold};
use advox::manifest::read_manifest;
use advox::model::{DecodeOptions, LoadedModel};
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Score audio files for adversarial perturbations (higher: more likely adversarial), with a
/// verdict per detector; or, with --calibrate, choose each detector's threshold on clean speech.
///
/// Prints one JSON object per file: file, transcript, scores, thresholds, verdicts, and
/// `adversarial` (flagged by any detector with a threshold).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<DetectCommand>,
    /// Audio files to score.
    #[arg(required_unless_present = "calibrate", conflicts_with = "calibrate")]
    files: Vec<PathBuf>,
    /// Detectors, comma-separated (default: the consistency transforms, temporal, confidence,
    /// noise-floor): consistency:TRANSFORM (resample-8000, quantize-8, lowpass-4000, lpc-16,
    /// mel-80, lossy), temporal, confidence, entropy, high-band, noise-floor, masked-energy,
    /// autoencoder:WEIGHTS (detect train-ae), activations:FILE (detect fit-activations),
    /// ensemble:FILE (detect train-ensemble).
    #[arg(long, value_delimiter = ',')]
    detectors: Vec<String>,
    /// Thresholds from `advox detect --calibrate` (default: the built-in character-error-rate
    /// threshold of the transcript detectors; no verdict for the others).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Calibrate on the clean utterances of this manifest (CSV with an `input` column, or JSON
    /// lines) and write the thresholds to -o.
    #[arg(long)]
    calibrate: Option<PathBuf>,
    /// Calibration: largest share of clean inputs flagged.
    #[arg(long, default_value_t = 0.05)]
    fpr: f64,
    /// Output JSON: the calibration (with --calibrate) or all files' results.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Beam size of every transcription (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Model directory or known name.
    #[arg(long)]
    model: Option<String>,
}

#[derive(clap::Subcommand)]
enum DetectCommand {
    /// Train the input-reconstruction detector (a log-mel autoencoder) on clean speech; use it
    /// as `--detectors autoencoder:WEIGHTS.safetensors`.
    TrainAe {
        /// Clean utterances (manifest).
        #[arg(long)]
        clean: PathBuf,
        /// Output weights (safetensors).
        #[arg(short, long)]
        output: PathBuf,
        /// Adam steps.
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Seed of the initialisation and the windows.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Fit the activation-anomaly detector on clean speech: per encoder layer, a Gaussian of
    /// the activations of every 20-ms frame; use it as `--detectors activations:FILE`.
    FitActivations {
        /// Clean utterances (manifest).
        #[arg(long)]
        clean: PathBuf,
        /// Output (safetensors).
        #[arg(short, long)]
        output: PathBuf,
        /// Model directory or known name (the detector works with this model only).
        #[arg(long)]
        model: Option<String>,
    },
    /// Fit a logistic-regression ensemble of detectors on clean and adversarial examples; use
    /// it as `--detectors ensemble:ENSEMBLE.json`.
    TrainEnsemble {
        /// Clean utterances (manifest).
        #[arg(long)]
        clean: PathBuf,
        /// Adversarial examples (manifest).
        #[arg(long)]
        adversarial: PathBuf,
        /// Member detectors, comma-separated (default: all default ones).
        #[arg(long, value_delimiter = ',')]
        detectors: Vec<String>,
        /// Output JSON.
        #[arg(short, long)]
        output: PathBuf,
        /// Beam size of every transcription.
        #[arg(long, default_value_t = 1)]
        beam: usize,
        /// Model directory or known name.
        #[arg(long)]
        model: Option<String>,
    },
}

fn read_set(manifest: &Path) -> Result<Vec<(PathBuf, Vec<f32>)>> {
    let entries = read_manifest(manifest)?;
    entries
        .into_iter()
        .map(|e| {
            let x = read_audio_16k_mono(&e.input)?;
            Ok((e.input, x))
        })
        .collect()
}

fn run_command(cmd: &DetectCommand, device: &str) -> Result<()> {
    match cmd {
        DetectCommand::TrainAe {
            clean,
            output,
            steps,
            seed,
        } => {
            advox::audio::refuse_overwrite(output, &[clean.as_path()])?;
            let set: Vec<Vec<f32>> = read_set(clean)?.into_iter().map(|(_, x)| x).collect();
            let cfg = TrainConfig {
                steps: *steps,
                seed: *seed,
                ..Default::default()
            };
            let bar = common::step_bar(*steps as u64);
            let ae = MelAutoencoder::train(&set, &cfg, &candle_core::Device::Cpu, &mut |_, l| {
                bar.inc(1);
                bar.set_message(format!("loss {l:.4}"));
            })?;
            bar.finish_and_clear();
            ae.save(output)?;
            let errors: Vec<f64> = set
                .iter()
                .map(|x| ae.score(x))
                .collect::<advox::Result<_>>()?;
            println!(
                "wrote {} (reconstruction error on the training set: mean {:.4}, max {:.4})",
                output.display(),
                errors.iter().sum::<f64>() / errors.len() as f64,
                errors.iter().copied().fold(0.0, f64::max)
            );
            Ok(())
        }
        DetectCommand::FitActivations {
            clean,
            output,
            model,
        } => {
            advox::audio::refuse_overwrite(output, &[clean.as_path()])?;
            let set: Vec<Vec<f32>> = read_set(clean)?.into_iter().map(|(_, x)| x).collect();
            let device = common::device(device)?;
            let model = common::load_model(model.as_deref(), &device)?;
            let fitted = ActivationModel::fit(&model, &set)
                .with_context(|| format!("fitting on {}", clean.display()))?;
            fitted.save(output)?;
            let scores: Vec<f64> = set
                .iter()
                .map(|x| fitted.score(&model, x))
                .collect::<advox::Result<_>>()?;
            println!(
                "wrote {} ({} clips of {}; score on them: mean {:.3}, max {:.3})",
                output.display(),
                set.len(),
                model.id(),
                scores.iter().sum::<f64>() / scores.len() as f64,
                scores.iter().copied().fold(0.0, f64::max)
            );
            Ok(())
        }
        DetectCommand::TrainEnsemble {
            clean,
            adversarial,
            detectors: names,
            output,
            beam,
            model,
        } => {
            advox::audio::refuse_overwrite(output, &[clean.as_path(), adversarial.as_path()])?;
            let members = detectors(names)?;
            let model = if members.iter().any(Detector::needs_model) {
                let device = common::device(device)?;
                Some(common::load_model(model.as_deref(), &device)?)
            } else {
                None
            };
            let ctx = Context {
                model: model.as_ref(),
                decode: DecodeOptions {
                    beam_size: (*beam).max(1),
                    ..Default::default()
                },
            };
            let score_set = |manifest: &Path| -> Result<Vec<Vec<f64>>> {
                read_set(manifest)?
                    .iter()
                    .map(|(p, x)| {
                        advox::detect::score_all(&members, &ctx, &Input::new(x))
                            .with_context(|| format!("scoring {}", p.display()))
                    })
                    .collect()
            };
            let clean_scores = score_set(clean)?;
            let adv_scores = score_set(adversarial)?;
            let ensemble = Ensemble::fit(members, &clean_scores, &adv_scores)?;
            ensemble.save(output)?;
            let s = |rows: &[Vec<f64>]| -> advox::Result<Vec<f64>> {
                rows.iter().map(|r| ensemble.combine(r)).collect()
            };
            let auc = roc_auc(&s(&clean_scores)?, &s(&adv_scores)?)?;
            println!(
                "wrote {} (training ROC-AUC {auc:.3}; weights {:?})",
                output.display(),
                ensemble.weights
            );
            Ok(())
        }
    }
}

fn detectors(names: &[String]) -> Result<Vec<Detector>> {
    if names.is_empty() {
        return Ok(Detector::default_set());
    }
    names
        .iter()
        .map(|n| Detector::parse(n).map_err(anyhow::Error::from))
        .collect()
}

fn read_calibration(path: &Path) -> Result<BTreeMap<String, f64>> {
    Ok(Calibration::read(path)?.thresholds())
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if let Some(cmd) = &args.command {
        return run_command(cmd, device);
    }
    let detectors = detectors(&args.detectors)?;
    if args.beam == 0 {
        bail!("--beam must be at least 1");
    }
    if let Some(out) = &args.output {
        let mut inputs: Vec<&Path> = args.files.iter().map(|p| p.as_path()).collect();
        inputs.extend(args.calibrate.as_deref());
        inputs.extend(args.calibration.as_deref());
        advox::audio::refuse_overwrite(out, &inputs)?;
    }
    let calibration = match &args.calibration {
        Some(p) => Some(read_calibration(p)?),
        None => None,
    };
    let model = if detectors.iter().any(Detector::needs_model) {
        let device = common::device(device)?;
        Some(common::load_model(args.model.as_deref(), &device)?)
    } else {
        None
    };
    let ctx = Context {
        model: model.as_ref(),
        decode: DecodeOptions {
            beam_size: args.beam,
            ..Default::default()
        },
    };
    match &args.calibrate {
        Some(manifest) => calibrate(&args, manifest, &detectors, &ctx, model.as_ref()),
        None => score_files(&args, &detectors, &ctx, calibration.as_ref()),
    }
}

fn score_files(
    args: &Args,
    detectors: &[Detector],
    ctx: &Context,
    calibration: Option<&BTreeMap<String, f64>>,
) -> Result<()> {
    let bar = common::step_bar(args.files.len() as u64);
    let mut results = Vec::new();
    let mut failures = 0;
    for file in &args.files {
        bar.set_message(file.display().to_string());
        match score_one(file, detectors, ctx, calibration) {
            Ok(v) => {
                bar.suspend(|| println!("{v}"));
                results.push(v);
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("error: {}", common::error_text(&e)));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(out) = &args.output {
        common::write_json(out, &serde_json::Value::Array(results))?;
    }
    if failures > 0 {
        bail!("{failures} of {} files failed", args.files.len());
    }
    Ok(())
}

fn score_one(
    file: &Path,
    detectors: &[Detector],
    ctx: &Context,
    calibration: Option<&BTreeMap<String, f64>>,
) -> Result<serde_json::Value> {
    let x = read_audio_16k_mono(file)?;
    let detection = detect_signal(detectors, ctx, &x, calibration)
        .with_context(|| file.display().to_string())?;
    let mut value = serde_json::to_value(detection)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("file".into(), file.display().to_string().into());
    }
    Ok(value)
}

fn calibrate(
    args: &Args,
    manifest: &Path,
    detectors: &[Detector],
    ctx: &Context,
    model: Option<&LoadedModel>,
) -> Result<()> {
    let out = args
        .output
        .as_ref()
        .context("--calibrate needs -o CALIBRATION.json")?;
    let entries = read_manifest(manifest)?;
    if entries.is_empty() {
        bail!("{}: no utterances", manifest.display());
    }
    let bar = common::step_bar(entries.len() as u64);
    let mut scores = vec![Vec::with_capacity(entries.len()); detectors.len()];
    for e in &entries {
        bar.set_message(e.input.display().to_string());
        let x = read_audio_16k_mono(&e.input)?;
        let input = Input::new(&x);
        for (d, s) in detectors.iter().zip(scores.iter_mut()) {
            s.push(
                d.score(ctx, &input)
                    .with_context(|| format!("{}: detector {}", e.input.display(), d.name()))?,
            );
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let thresholds = detectors
        .iter()
        .zip(&scores)
        .map(|(d, s)| {
            let t = threshold_at_fpr(s, args.fpr)?;
            eprintln!("{:<28} threshold {t:.4}", d.name());
            Ok(DetectorThreshold {
                name: d.name(),
                threshold: t,
                clean_min: s.iter().copied().fold(f64::INFINITY, f64::min),
                clean_max: s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            })
        })
        .collect::<Result<_>>()?;
    let report = Calibration::new(
        args.fpr,
        manifest,
        entries.len(),
        model.map(|m| m.id()),
        args.beam,
        thresholds,
    );
    common::write_json(out, &report)?;
    println!("wrote {}", out.display());
    Ok(())
}
