//! `advox defend distill`: defensive distillation of the model at temperature T on a manifest,
//! the student saved as a model directory, and (with `--held-out`) how the base model and the
//! student fare on held-out speech: clean WER, the gradient an attacker gets at the clean
//! inputs, and fresh untargeted FGSM and PGD (cross-entropy, whose gradient the student's
//! saturated softmax masks) and Carlini–Wagner (margin of the logits, which it does not) at the
//! same L∞ bound.

use crate::common;
use advox::attack::cw::CwConfig;
use advox::attack::plan::CW_BOUNDED_C;
use advox::attack::{Attack, AttackConfig, Method};
use advox::audio::read_audio_16k_mono;
use advox::defend::adv_train::{Scope, TrainableWhisper};
use advox::defend::distill::{examples_of_clip, fold_temperature, DistillConfig};
use advox::manifest::read_manifest;
use advox::model::{load_weights, weights::save_hf, DecodeOptions, LoadedModel};
use advox::perturb::Constraints;
use advox::rng::Rng;
use advox::transcribe::transcribe;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// `advox defend distill`'s options.
#[derive(clap::Args)]
pub struct Args {
    /// Training utterances (manifest).
    #[arg(long)]
    train: PathBuf,
    /// Output model directory (Hugging Face layout, with distill.json).
    #[arg(short, long)]
    output: PathBuf,
    /// Temperature T of training.
    #[arg(long, default_value_t = 20.0)]
    temperature: f64,
    /// Distillation steps (AdamW, one example each: a clip clean or with noise).
    #[arg(long, default_value_t = 40)]
    steps: usize,
    /// Learning rate (AdamW).
    #[arg(long, default_value_t = 2e-5)]
    lr: f64,
    /// SNR (dB) of the white noise on the student's noisy copy of each clip.
    #[arg(long, default_value_t = 30.0)]
    noise_snr_db: f32,
    /// What to train: `decoder` or `all` (as adv-train).
    #[arg(long, default_value = "decoder")]
    scope: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Base (teacher) model directory or known name.
    #[arg(long)]
    model: Option<String>,
    /// Held-out utterances (manifest): their clean WER and fresh untargeted FGSM, PGD and CW
    /// (L∞ --eps, --attack-steps) on the base model and on the student.
    #[arg(long)]
    held_out: Option<PathBuf>,
    /// L∞ bound of the held-out attacks.
    #[arg(long, default_value_t = 0.01)]
    eps: f32,
    /// Steps of each held-out attack.
    #[arg(long, default_value_t = 20)]
    attack_steps: usize,
}

pub fn run(s: &Args, device: &str) -> Result<()> {
    if s.output.exists() {
        bail!(
            "{} exists: choose a new directory for the student model",
            s.output.display()
        );
    }
    let distill = DistillConfig {
        temperature: s.temperature,
        steps: s.steps,
        learning_rate: s.lr,
        noise_snr_db: s.noise_snr_db,
        seed: s.seed,
    };
    distill.validate()?;
    let scope = Scope::parse(&s.scope)?;
    if s.steps == 0 {
        bail!("--steps must be positive");
    }
    if !(s.eps > 0.0 && s.eps.is_finite()) || s.attack_steps == 0 {
        bail!("--eps and --attack-steps must be positive");
    }
    let device = common::device(device)?;
    let model = common::load_model(s.model.as_deref(), &device)?;
    let decode = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let entries = read_manifest(&s.train)?;
    let mut rng = Rng::new(distill.seed ^ 0x5eed);
    let bar = common::step_bar(entries.len() as u64);
    let mut examples = Vec::new();
    for e in &entries {
        bar.set_message(e.input.display().to_string());
        let x = read_audio_16k_mono(&e.input)?;
        let t = transcribe(&model, &x, &decode)?;
        examples.extend(
            examples_of_clip(&model, &x, &t.tokens, &distill, &mut rng)
                .with_context(|| e.input.display().to_string())?,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (config, mut weights) = load_weights(&model.dir, &candle_core::Device::Cpu)?;
    fold_temperature(&mut weights, distill.temperature)?;
    let mut student = TrainableWhisper::from_weights(&config, &weights, scope)?;
    eprintln!(
        "distilling at T = {} into {} parameters (scope {}) from {} examples",
        distill.temperature,
        student.trainable_parameters(),
        scope.name(),
        examples.len()
    );
    let bar = common::step_bar(distill.steps as u64);
    let training = std::time::Instant::now();
    let mut losses = Vec::with_capacity(distill.steps);
    student.distill(&examples, &distill, &mut |_, loss| {
        losses.push(loss);
        bar.inc(1);
        bar.set_message(format!("loss {loss:.4}"));
    })?;
    // The mean loss of the first and the last quarter of the steps (one example each).
    let quarter = (losses.len() / 4).max(1);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    let (first_loss, last_loss) = (
        mean(&losses[..quarter]),
        mean(&losses[losses.len() - quarter..]),
    );
    bar.finish_and_clear();
    let train_seconds = training.elapsed().as_secs_f64();
    student.write_into(&mut weights)?;
    advox::atomic_file::write_atomic(&s.output, |tmp| {
        save_hf(tmp, &config, &weights, &model.dir.join("tokenizer.json"))
    })
    .with_context(|| format!("creating {}", s.output.display()))?;
    let distilled = LoadedModel::load(&s.output, &device)?;
    let held_out_report = match &s.held_out {
        None => None,
        Some(path) => {
            let inputs = crate::held_out::read_inputs(path, &model, &decode)?;
            let constraints = Constraints {
                linf: Some(s.eps),
                ..Default::default()
            };
            let attacks = [
                (
                    "fgsm",
                    Attack::Pgd(AttackConfig {
                        method: Method::Fgsm,
                        constraints: constraints.clone(),
                        decode: decode.clone(),
                        ..Default::default()
                    }),
                ),
                (
                    "pgd",
                    Attack::Pgd(AttackConfig {
                        constraints: constraints.clone(),
                        steps: s.attack_steps,
                        step_size: s.eps / 10.0,
                        decode: decode.clone(),
                        ..Default::default()
                    }),
                ),
                (
                    "cw",
                    Attack::Cw(CwConfig {
                        steps: s.attack_steps,
                        search_steps: 1,
                        initial_c: CW_BOUNDED_C,
                        learning_rate: s.eps / 10.0,
                        decode: decode.clone(),
                        constraints,
                        ..Default::default()
                    }),
                ),
            ];
            eprintln!(
                "held out: PGD and CW on the base model and the student, {} utterances",
                inputs.len()
            );
            let base = crate::held_out::measure(&model, &inputs, &attacks, &decode)?;
            let student = crate::held_out::measure(&distilled, &inputs, &attacks, &decode)?;
            println!(
                "held out ({} utterances, fresh untargeted attacks at L∞ {} on each model):",
                inputs.len(),
                s.eps
            );
            crate::held_out::print_table(&[("base model", &base), ("student", &student)]);
            Some(serde_json::json!({
                "manifest": path.display().to_string(),
                "utterances": inputs.len(),
                "eps": s.eps,
                "attack_steps": s.attack_steps,
                "base": base,
                "student": student,
            }))
        }
    };
    let report = serde_json::json!({
        "base_model": model.id(),
        "train_manifest": s.train.display().to_string(),
        "clips": entries.len(),
        "examples": examples.len(),
        "temperature": distill.temperature,
        "scope": scope.name(),
        "steps": distill.steps,
        "learning_rate": distill.learning_rate,
        "noise_snr_db": distill.noise_snr_db,
        "seed": distill.seed,
        "first_quarter_loss": first_loss,
        "last_quarter_loss": last_loss,
        "losses": losses,
        "train_seconds": train_seconds,
        "held_out": held_out_report,
    });
    common::write_json(&s.output.join("distill.json"), &report)?;
    println!("wrote {}", s.output.display());
    Ok(())
}
