//! `advox defend adv-train`: PGD examples of a manifest, fine-tuning (decoder or all), the tuned model
//! directory, and how both models hear the clean and adversarial inputs.

use crate::common;
use advox::attack::{run_attack, Attack, AttackConfig};
use advox::audio::read_audio_16k_mono;
use advox::defend::adv_train::{AdvTrainConfig, Scope, TrainableWhisper, TrainingExample};
use advox::manifest::read_manifest;
use advox::metrics::wer;
use advox::model::{load_weights, weights::save_hf, DecodeOptions, LoadedModel};
use advox::objective::{Goal, Objective};
use advox::perturb::Constraints;
use advox::transcribe::transcribe;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// What the command line gives adversarial training.
pub struct Settings<'a> {
    pub train: &'a Path,
    pub output: &'a Path,
    pub eps: f32,
    pub attack_steps: usize,
    pub steps: usize,
    pub lr: f64,
    pub scope: Scope,
    pub seed: u64,
    pub model: Option<&'a str>,
    pub held_out: Option<&'a Path>,
}

/// Mean WER of each signal's transcript against its clean transcript, and the share heard
/// exactly as clean.
fn hearing(model: &LoadedModel, pairs: &[(Vec<f32>, String)]) -> Result<(f64, f64)> {
    let decode = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let mut total = 0.0;
    let mut exact = 0;
    for (x, clean) in pairs {
        let heard = transcribe(model, x, &decode)?.text;
        let w = wer(clean, &heard);
        total += w;
        exact += usize::from(w == 0.0);
    }
    let n = pairs.len().max(1) as f64;
    Ok((total / n, exact as f64 / n))
}

pub fn run(s: &Settings, device: &str) -> Result<()> {
    if s.output.exists() {
        bail!(
            "{} exists: choose a new directory for the tuned model",
            s.output.display()
        );
    }
    if !(s.eps > 0.0 && s.eps.is_finite()) || s.attack_steps == 0 || s.steps == 0 {
        bail!("--eps, --attack-steps and --steps must be positive");
    }
    let device = common::device(device)?;
    let model = common::load_model(s.model, &device)?;
    let entries = read_manifest(s.train)?;
    let decode = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let cfg = AttackConfig {
        constraints: Constraints {
            linf: Some(s.eps),
            ..Default::default()
        },
        steps: s.attack_steps,
        step_size: s.eps / 10.0,
        decode: decode.clone(),
        seed: s.seed,
        ..Default::default()
    };
    let bar = common::step_bar(entries.len() as u64);
    let mut clean_set = Vec::new();
    let mut adv_set = Vec::new();
    let mut clean_pairs = Vec::new();
    let mut adv_pairs = Vec::new();
    let mut fooled = 0;
    for e in &entries {
        bar.set_message(e.input.display().to_string());
        let x = read_audio_16k_mono(&e.input)?;
        let t = transcribe(&model, &x, &decode)?;
        let objective = Objective::new(
            &model,
            Goal::Untargeted { min_wer: 0.5 },
            &t.text,
            &t.tokens,
        )
        .with_context(|| e.input.display().to_string())?;
        let out = run_attack(
            &model,
            &x,
            &objective,
            &cfg,
            &AtomicBool::new(false),
            &mut |_| {},
        )?;
        fooled += usize::from(out.success);
        clean_set.push(TrainingExample::new(&model, &x, &t.tokens)?);
        adv_set.push(TrainingExample::new(&model, &out.adversarial, &t.tokens)?);
        clean_pairs.push((x, t.text.clone()));
        adv_pairs.push((out.adversarial, t.text));
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "PGD (L∞ {}, {} steps) fooled {fooled} of {} inputs",
        s.eps,
        s.attack_steps,
        entries.len()
    );
    let (config, mut weights) = load_weights(&model.dir, &candle_core::Device::Cpu)?;
    let mut trainable = TrainableWhisper::from_weights(&config, &weights, s.scope)?;
    eprintln!(
        "training {} parameters (scope {})",
        trainable.trainable_parameters(),
        s.scope.name()
    );
    let bar = common::step_bar(s.steps as u64);
    let training = std::time::Instant::now();
    trainable.train(
        &clean_set,
        &adv_set,
        &AdvTrainConfig {
            steps: s.steps,
            learning_rate: s.lr,
            seed: s.seed,
            ..Default::default()
        },
        &mut |_, lc, la| {
            bar.inc(1);
            bar.set_message(format!("loss clean {lc:.3} adversarial {la:.3}"));
        },
    )?;
    bar.finish_and_clear();
    let train_seconds = training.elapsed().as_secs_f64();
    let train_peak_rss_mb = crate::bench::peak_rss_mb();
    trainable.write_into(&mut weights)?;
    // Written beside the destination, renamed into place once complete.
    advox::atomic_file::write_atomic(s.output, |tmp| {
        save_hf(tmp, &config, &weights, &model.dir.join("tokenizer.json"))
    })
    .with_context(|| format!("creating {}", s.output.display()))?;
    let tuned = LoadedModel::load(s.output, &device)?;
    let (base_clean, base_clean_exact) = hearing(&model, &clean_pairs)?;
    let (base_adv, base_adv_exact) = hearing(&model, &adv_pairs)?;
    let (tuned_clean, tuned_clean_exact) = hearing(&tuned, &clean_pairs)?;
    let (tuned_adv, tuned_adv_exact) = hearing(&tuned, &adv_pairs)?;
    let held_out_report = match s.held_out {
        None => None,
        Some(path) => {
            let inputs = crate::held_out::read_inputs(path, &model, &decode)?;
            eprintln!(
                "held out: attacking the base and the tuned model on {} utterances",
                inputs.len()
            );
            let attacks = [("pgd", Attack::Pgd(cfg.clone()))];
            let base = crate::held_out::measure(&model, &inputs, &attacks, &decode)?;
            let tuned = crate::held_out::measure(&tuned, &inputs, &attacks, &decode)?;
            println!(
                "held out ({} utterances, fresh PGD on each model):",
                inputs.len()
            );
            crate::held_out::print_table(&[("base model", &base), ("tuned model", &tuned)]);
            Some(serde_json::json!({
                "manifest": path.display().to_string(),
                "utterances": inputs.len(),
                "base": base,
                "tuned": tuned,
            }))
        }
    };
    let report = serde_json::json!({
        "base_model": model.id(),
        "train_manifest": s.train.display().to_string(),
        "scope": s.scope.name(),
        "eps": s.eps,
        "attack_steps": s.attack_steps,
        "steps": s.steps,
        "learning_rate": s.lr,
        "seed": s.seed,
        "examples": entries.len(),
        "pgd_fooled": fooled,
        "base": {"clean_wer": base_clean, "clean_exact": base_clean_exact,
                  "adversarial_wer": base_adv, "adversarial_exact": base_adv_exact},
        "tuned": {"clean_wer": tuned_clean, "clean_exact": tuned_clean_exact,
                   "adversarial_wer": tuned_adv, "adversarial_exact": tuned_adv_exact},
        "train_seconds": train_seconds,
        "peak_rss_mb": train_peak_rss_mb,
        "held_out": held_out_report,
    });
    common::write_json(&s.output.join("adv_train.json"), &report)?;
    println!("                 clean WER  adversarial WER");
    println!("base model       {base_clean:>9.2}  {base_adv:>15.2}");
    println!("tuned model      {tuned_clean:>9.2}  {tuned_adv:>15.2}");
    println!("wrote {}", s.output.display());
    Ok(())
}
