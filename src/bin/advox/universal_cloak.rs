//! `advox universal --through-cloak`: a source for Cloak's universal mode, trained through
//! Cloak's own shaping ([`advox::attack::cloak_source`]) and judged through the plugin's chain.

use crate::common;
use crate::universal::{read_set, with_step_bar, Args, ModeArg};
use advox::attack::cloak_source::{
    evaluate_through_cloak, prepare_cloak_set, train_cloak_source, CloakSourceConfig,
    CloakUtterance,
};
use advox::audio::{write_wav, WavFormat, SAMPLE_RATE};
use advox::formats::universal_sidecar::{UniversalJudgement, UniversalMode, UniversalSidecar};
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::Goal;
use advox::stream::cloak::CloakSettings;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Host block size of the evaluations (what `advox live` and `bench --cloak` use).
const BLOCK: usize = crate::live::BLOCK;

fn load(
    model: &LoadedModel,
    manifest: &Path,
    cfg: &CloakSourceConfig,
) -> Result<Vec<CloakUtterance>> {
    prepare_cloak_set(model, read_set(manifest)?, cfg)
        .with_context(|| format!("preparing {}", manifest.display()))
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if !matches!(args.mode, ModeArg::Additive) {
        bail!("--through-cloak trains an additive source; the mute modes do not apply");
    }
    for (given, name) in [
        (args.init.is_some(), "--init"),
        (args.decodings.is_some(), "--decodings"),
        (args.max_shift_s.is_some(), "--max-shift-s"),
        (args.front_ends.is_some(), "--front-ends"),
        (args.model.len() > 1, "a second --model"),
    ] {
        if given {
            bail!("{name} does not apply with --through-cloak");
        }
    }
    if args.snr_db.is_some() {
        bail!("--snr-db does not apply with --through-cloak: Cloak's margin (--masking-margin-db) bounds what it adds");
    }
    if args.timestamps {
        bail!(
            "--timestamps does not apply with --through-cloak: it trains and judges plain decoding"
        );
    }
    let min_wer = match args.goals.goal()? {
        None => args.goals.min_wer,
        Some(Goal::Untargeted { min_wer }) => min_wer,
        Some(_) => bail!("--through-cloak trains an untargeted source; drop --target / --mute"),
    };
    let base = CloakSourceConfig::default();
    let length = match args.length_s {
        Some(s) if !(s.is_finite() && s > 0.0 && s <= 30.0) => {
            bail!("--length-s must be in (0, 30], got {s}")
        }
        Some(s) => (s * SAMPLE_RATE as f32).round() as usize,
        None => base.length,
    };
    let rate = args.rate.unwrap_or(base.rate);
    if !(8_000..=384_000).contains(&rate) {
        bail!("--rate must be a host rate from 8000 to 384000 Hz, got {rate}");
    }
    let cfg = CloakSourceConfig {
        rate,
        settings: CloakSettings {
            margin_db: args.masking_margin_db.unwrap_or(base.settings.margin_db),
            ..base.settings
        },
        length,
        linf: args.eps.unwrap_or(base.linf),
        steps: args.steps,
        batch: args.batch,
        step_size: args.step_size.unwrap_or(base.step_size),
        seed: args.seed,
        aligned: args.aligned,
        ..base
    };
    let sidecar = args.output.with_extension("json");
    let mut inputs = vec![args.train.as_path()];
    if let Some(e) = &args.eval {
        inputs.push(e.as_path());
    }
    for out in [args.output.as_path(), sidecar.as_path()] {
        advox::audio::refuse_overwrite(out, &inputs)?;
    }
    let device = common::device(device)?;
    let model = common::load_model(args.model.first().map(String::as_str), &device)?;
    let train = load(&model, &args.train, &cfg)?;
    let eval = match &args.eval {
        Some(p) => Some(load(&model, p, &cfg)?),
        None => None,
    };
    let (source, train_seconds) = with_step_bar(cfg.steps, |on_step| {
        train_cloak_source(&model, &train, &cfg, &AtomicBool::new(false), on_step)
    })?;
    let decode = DecodeOptions {
        beam_size: args.beam.max(1),
        ..Default::default()
    };
    let judge = |set: &[CloakUtterance]| -> Result<UniversalJudgement> {
        let with =
            evaluate_through_cloak(&model, set, Some(&source), &cfg, BLOCK, &decode, min_wer)?;
        let control = evaluate_through_cloak(&model, set, None, &cfg, BLOCK, &decode, min_wer)?;
        eprintln!(
            "{} utterances through Cloak at {} Hz, margin {} dB: WER >= {min_wer} on {:.0} % \
             (masked noise {:.0} %), mean WER {:.2} (masked noise {:.2})",
            set.len(),
            cfg.rate,
            cfg.settings.margin_db,
            100.0 * with.success_rate,
            100.0 * control.success_rate,
            with.mean_wer,
            control.mean_wer
        );
        Ok(UniversalJudgement {
            perturbation: with,
            random_noise: control,
        })
    };
    let train_judged = judge(&train)?;
    let eval_judged = match &eval {
        Some(set) => Some(judge(set)?),
        None => None,
    };
    write_wav(
        &args.output,
        &source,
        SAMPLE_RATE,
        WavFormat::Float32,
        &inputs,
    )?;
    let report = UniversalSidecar {
        masking_margin_db: Some(cfg.settings.margin_db),
        goal: Some(Goal::Untargeted { min_wer }),
        model: Some(model.id()),
        steps: Some(cfg.steps),
        batch: Some(cfg.batch),
        step_size: Some(cfg.step_size),
        decoding: Some("plain".into()),
        seed: Some(cfg.seed),
        train_seconds: Some(train_seconds),
        train_manifest: Some(args.train.display().to_string()),
        eval_manifest: args.eval.as_ref().map(|p| p.display().to_string()),
        cloak_rate: Some(cfg.rate),
        train: Some(train_judged),
        eval: eval_judged,
        ..UniversalSidecar::new(
            SAMPLE_RATE,
            source.len(),
            UniversalMode::Additive,
            Some(cfg.linf),
        )
    };
    common::write_json(&sidecar, &report)?;
    println!("wrote {} and {}", args.output.display(), sidecar.display());
    Ok(())
}
