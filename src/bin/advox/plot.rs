//! `advox plot`.

use advox::audio::read_audio_16k_mono;
use advox::masking::{MaskingConfig, MaskingThreshold, Normalization};
use advox::plot::masking_plot;
use anyhow::{Context, Result};
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum NormArg {
    Utterance,
    Frame,
}

/// Draw a PNG: the recording's spectrogram and psychoacoustic masking threshold, and with
/// --adv the perturbation (ADV − INPUT) and where it exceeds the threshold.
#[derive(clap::Args)]
pub struct Args {
    /// The original recording.
    input: PathBuf,
    /// An adversarial version of it (same length once at 16 kHz).
    #[arg(long)]
    adv: Option<PathBuf>,
    /// Output PNG (default: INPUT with the extension .png).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Level normalisation of the masking model.
    #[arg(long, value_enum, default_value = "utterance")]
    normalization: NormArg,
}

pub fn run(args: Args) -> Result<()> {
    let x = read_audio_16k_mono(&args.input)?;
    let adv = match &args.adv {
        Some(p) => Some(read_audio_16k_mono(p)?),
        None => None,
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.input.with_extension("png"));
    let cfg = MaskingConfig {
        normalization: match args.normalization {
            NormArg::Utterance => Normalization::Utterance,
            NormArg::Frame => Normalization::Frame,
        },
        ..Default::default()
    };
    let threshold = MaskingThreshold::compute(&x, cfg)
        .with_context(|| format!("masking threshold of {}", args.input.display()))?;
    let mut inputs = vec![args.input.as_path()];
    if let Some(p) = &args.adv {
        inputs.push(p.as_path());
    }
    masking_plot(&output, &threshold, &x, adv.as_deref(), &inputs).with_context(|| {
        format!(
            "plotting {}{}",
            args.input.display(),
            args.adv
                .as_ref()
                .map(|p| format!(" against {}", p.display()))
                .unwrap_or_default()
        )
    })?;
    println!("wrote {}", output.display());
    Ok(())
}
