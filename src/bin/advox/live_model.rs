//! `advox live --cloak --mode model --input-file IN -o OUT`: Cloak's model-in-the-loop mode
//! (`advox::attack::cloak_model`), rendered offline: an untargeted attack on the built-in
//! Whisper per 30-s window of the recording's mono mix, under the masking threshold, added to
//! every channel at the file's own rate. Unlike the streaming modes the output is not delayed.

use super::common;
use super::live::{write_planar, Args};
use advox::attack::cloak_model::{add_at_rate, cloak_with_model, ModelCloakConfig};
use advox::audio::{read_audio, resample, to_mono, SAMPLE_RATE};
use advox::metrics::snr_db;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The flags that apply to the model mode only, each with whether it was given.
pub(crate) fn model_only_flags(args: &Args) -> Vec<(&'static str, bool)> {
    [
        ("--min-wer", args.min_wer.is_some()),
        ("--window-steps", args.window_steps.is_some()),
        ("--model", args.model.is_some()),
        ("--report", args.report.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .collect()
}

/// Render `input` through the model mode into `output`.
pub(crate) fn run(args: &Args, input: &Path, output: &Path) -> Result<()> {
    for (flag, set) in [
        ("--depth", args.depth.is_some()),
        ("--band", args.band.is_some()),
        ("--universal", args.universal.is_some()),
    ] {
        if set {
            bail!("{flag} does not apply to --mode model (the attack shapes its own perturbation)");
        }
    }
    let cfg = ModelCloakConfig {
        margin_db: args.margin_db.unwrap_or(0.0),
        min_wer: args
            .min_wer
            .unwrap_or(advox::attack::cloak_model::DEFAULT_MIN_WER),
        steps: args.window_steps,
        ..ModelCloakConfig::default()
    };
    cfg.validate()?;
    advox::audio::refuse_overwrite(output, &[input])?;
    let audio = read_audio(input)?;
    let rate = audio.sample_rate;
    let x = resample(&to_mono(&audio), rate, SAMPLE_RATE)
        .with_context(|| format!("resampling {}", input.display()))?;
    let model = common::load_model(args.model.as_deref(), &candle_core::Device::Cpu)?;
    common::install_interrupt();
    let windows = x.len().div_ceil(cfg.window);
    eprintln!(
        "advox: {} window(s) of up to 30 s, each attacked under the masking threshold ({} dB \
         margin) until its transcript is {} WER away from the clean one",
        windows, cfg.margin_db, cfg.min_wer
    );
    let start = std::time::Instant::now();
    let attack = cloak_with_model(
        &model,
        &x,
        &cfg,
        &common::INTERRUPTED,
        &mut |w| {
            let at = w.start as f64 / SAMPLE_RATE as f64;
            match &w.skipped {
            Some(why) => eprintln!("  {at:7.1} s: left as it is ({why})"),
            None => eprintln!(
                "  {at:7.1} s: {} in {} steps ({:.1} s), SNR {:.1} dB, {:.1} % masked: {:?} -> {:?}",
                if w.success { "moved" } else { "NOT moved" },
                w.steps,
                w.seconds,
                w.snr_db,
                100.0 * w.masking.energy_under_threshold,
                w.original,
                w.transcript
            ),
        }
        },
        &mut |_| {},
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let mut channels = audio.channels;
    for channel in &mut channels {
        add_at_rate(channel, rate, &attack.perturbation)?;
    }
    write_planar(output, &channels, rate, &[input])?;
    let snr = snr_db(&x, &attack.perturbation);
    eprintln!(
        "wrote {} ({rate} Hz, {} channel(s), not delayed): {} of {} attacked window(s) moved, \
         SNR {snr:.1} dB, {seconds:.1} s ({:.2}× the recording's duration)",
        output.display(),
        channels.len(),
        attack.succeeded(),
        attack.attacked(),
        seconds / (x.len() as f64 / SAMPLE_RATE as f64)
    );
    if let Some(path) = &args.report {
        common::write_json(
            path,
            &serde_json::json!({
                "input": input.display().to_string(),
                "output": output.display().to_string(),
                "mode": "model",
                "model": model.id(),
                "margin_db": cfg.margin_db,
                "min_wer": cfg.min_wer,
                "steps_per_window": cfg.steps,
                "snr_db": snr,
                "seconds": seconds,
                "cancelled": common::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed),
                "windows": attack.windows,
            }),
        )?;
    }
    Ok(())
}
