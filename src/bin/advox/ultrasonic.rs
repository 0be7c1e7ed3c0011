//! `advox ultrasonic`: a command emitted on an ultrasonic carrier, and what a microphone's
//! nonlinearity records of it (`advox::ultrasonic`).

use crate::common;
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat, SAMPLE_RATE};
use advox::model::DecodeOptions;
use advox::text::normalize_transcript;
use advox::transcribe::transcribe;
use advox::ultrasonic::{energy_share_below, modulate, record, Emission, AUDIBLE_LIMIT_HZ};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Emit a command inaudibly (DolphinAttack-style amplitude modulation onto an ultrasonic
/// carrier) and simulate the microphone that demodulates it (`y = x + a·x²`), transcribing the
/// simulated recording with Whisper.
#[derive(clap::Args)]
pub struct Args {
    /// The command (any audio advox reads; e.g. an adversarial example or a spoken command).
    input: PathBuf,
    /// The emitted signal (32-bit float WAV at `--rate`).
    #[arg(short, long)]
    output: PathBuf,
    /// Carrier frequency in Hz (its lower sideband must stay above 20 kHz).
    #[arg(long, default_value_t = 30_000.0)]
    carrier: f32,
    /// Sample rate of the emitted signal in Hz.
    #[arg(long, default_value_t = 96_000)]
    rate: u32,
    /// Modulation depth (0, 1].
    #[arg(long, default_value_t = 0.5)]
    depth: f32,
    /// Peak amplitude of the emitted signal (full scale 1).
    #[arg(long, default_value_t = 0.9)]
    peak: f32,
    /// Simulate a microphone with second-order coefficient A (`y = x + A·x²`): write its
    /// 16-kHz recording to `--recorded` and transcribe it.
    #[arg(long, value_name = "A")]
    mic: Option<f32>,
    /// With --mic: where the simulated recording goes (16-bit WAV, 16 kHz).
    #[arg(long, requires = "mic")]
    recorded: Option<PathBuf>,
    /// With --mic: model directory or known name for the transcription.
    #[arg(long, requires = "mic")]
    model: Option<String>,
}

pub fn run(args: Args, device: &str) -> Result<()> {
    let emission = Emission {
        sample_rate: args.rate,
        carrier_hz: args.carrier,
        depth: args.depth,
        peak: args.peak,
    };
    emission.check()?;
    let inputs = [args.input.as_path()];
    let command = read_audio_16k_mono(&args.input)?;
    let emitted = modulate(&command, &emission)
        .with_context(|| format!("modulating {}", args.input.display()))?;
    write_wav(
        &args.output,
        &emitted,
        args.rate,
        WavFormat::Float32,
        &inputs,
    )?;
    let audible = energy_share_below(&emitted, args.rate, AUDIBLE_LIMIT_HZ)?;
    println!(
        "emitted: {} ({} Hz carrier at {} Hz, depth {}), energy under {} Hz: {:.1} dB of the whole",
        args.output.display(),
        args.carrier,
        args.rate,
        args.depth,
        AUDIBLE_LIMIT_HZ,
        10.0 * audible.max(1e-30).log10()
    );
    let Some(a) = args.mic else {
        return Ok(());
    };
    let recorded = record(&emitted, args.rate, a)?;
    if let Some(path) = &args.recorded {
        let mut inputs = inputs.to_vec();
        inputs.push(args.output.as_path());
        write_wav(path, &recorded, SAMPLE_RATE, WavFormat::Pcm16, &inputs)?;
    }
    let model = common::load_model(args.model.as_deref(), &common::device(device)?)?;
    let decode = DecodeOptions::default();
    let original = transcribe(&model, &command, &decode)?.text;
    let heard = transcribe(&model, &recorded, &decode)?.text;
    println!("command: {original}");
    println!("recorded through the simulated microphone (a = {a}): {heard}");
    println!(
        "{}",
        if normalize_transcript(&heard) == normalize_transcript(&original) {
            "the microphone delivers the command word for word"
        } else {
            "the recording is not heard as the command"
        }
    );
    Ok(())
}
