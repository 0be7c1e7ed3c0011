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
use std::path::Path;

/// What the command line gives distillation.
pub struct Settings<'a> {
    pub train: &'a Path,
    pub output: &'a Path,
    pub distill: DistillConfig,
    pub scope: Scope,
    pub model: Option<&'a str>,
    pub held_out: Option<&'a Path>,
    pub eps: f32,
    pub attack_steps: usize,
}

pub fn run(s: &Settings, device: &str) -> Result<()> {
    if s.output.exists() {
        bail!(
            "{} exists: choose a new directory for the student model",
            s.output.display()
        );
    }
    s.distill.validate()?;
    if s.distill.steps == 0 {
        bail!("--steps must be positive");
    }
    if !(s.eps > 0.0 && s.eps.is_finite()) || s.attack_steps == 0 {
        bail!("--eps and --attack-steps must be positive");
    }
    let device = common::device(device)?;
    let model = common::load_model(s.model, &device)?;
    let decode = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let entries = read_manifest(s.train)?;
    let (config, base_weights) = load_weights(&model.dir, &candle_core::Device::Cpu)?;
    let teacher = TrainableWhisper::from_weights(&config, &base_weights, Scope::Decoder)?;
    let mut rng = Rng::new(s.distill.seed ^ 0x5eed);
    let bar = common::step_bar(entries.len() as u64);
    let mut examples = Vec::new();
    for e in &entries {
        bar.set_message(e.input.display().to_string());
        let x = read_audio_16k_mono(&e.input)?;
        let t = transcribe(&model, &x, &decode)?;
        examples.extend(
            examples_of_clip(&model, &teacher, &x, &t.tokens, &s.distill, &mut rng)
                .with_context(|| e.input.display().to_string())?,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(teacher);
    let mut weights = base_weights;
    fold_temperature(&mut weights, s.distill.temperature)?;
    let mut student = TrainableWhisper::from_weights(&config, &weights, s.scope)?;
    eprintln!(
        "distilling at T = {} into {} parameters (scope {}) from {} examples",
        s.distill.temperature,
        student.trainable_parameters(),
        s.scope.name(),
        examples.len()
    );
    let bar = common::step_bar(s.distill.steps as u64);
    let training = std::time::Instant::now();
    let mut losses = Vec::with_capacity(s.distill.steps);
    student.distill(&examples, &s.distill, &mut |_, loss| {
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
    advox::atomic_file::write_atomic(s.output, |tmp| {
        save_hf(tmp, &config, &weights, &model.dir.join("tokenizer.json"))
    })
    .with_context(|| format!("creating {}", s.output.display()))?;
    let distilled = LoadedModel::load(s.output, &device)?;
    let held_out_report = match s.held_out {
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
        "temperature": s.distill.temperature,
        "scope": s.scope.name(),
        "steps": s.distill.steps,
        "learning_rate": s.distill.learning_rate,
        "noise_snr_db": s.distill.noise_snr_db,
        "seed": s.distill.seed,
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
