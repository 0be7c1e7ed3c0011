//! `advox live`: Cloak or Sentinel on a live stream — a microphone to speakers or to a file
//! (`live_devices`, with the `audio-devices` feature), or a WAV file through the same processing — with the plugins' exact code
//! (`advox::stream::processors`), so the samples equal the plugin's.

use advox::audio::read_audio;
use advox::stream::cloak::{CloakMode, CloakSettings};
use advox::stream::processors::{CloakProcessor, Detection, SentinelProcessor};
use advox::stream::sentinel::SentinelSettings;
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};

/// Samples per processing block.
pub(crate) const BLOCK: usize = 512;

#[derive(Parser, Debug)]
pub struct Args {
    /// List audio hosts and devices and exit.
    #[arg(long)]
    pub(crate) list: bool,
    /// Run Cloak (adds an inaudible perturbation).
    #[arg(long, conflicts_with = "sentinel")]
    cloak: bool,
    /// Run Sentinel (flags adversarial audio; prints detections as JSON lines).
    #[arg(long)]
    sentinel: bool,
    /// Read this file instead of a device (processed at its own rate and channel count).
    #[arg(long, conflicts_with = "input_device")]
    input_file: Option<PathBuf>,
    /// Input device (its id as `--list` prints it; default: the default input).
    #[arg(long)]
    pub(crate) input_device: Option<String>,
    /// Output device (default: the default output) — unless -o is given.
    #[arg(long, conflicts_with = "output")]
    pub(crate) output_device: Option<String>,
    /// Write the processed audio to this WAV (32-bit float) instead of a device.
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
    /// Stop after this many seconds (devices; default: until Ctrl-C).
    #[arg(long)]
    pub(crate) seconds: Option<f64>,
    /// Cloak: `mute` (the default: the built-in mute segment, or --universal's, over the start
    /// of every 30-s window from the stream's start: where the first word comes after it,
    /// Whisper's transcription, plain or timestamped, then hears nothing), `noise` (masked
    /// noise), `universal` (needs --universal), or `model` (an
    /// untargeted attack on the built-in Whisper per 30-s window under the masking threshold;
    /// renders a file offline: needs --input-file and -o).
    #[arg(long, default_value = "mute")]
    pub(crate) mode: String,
    /// Cloak: the universal perturbation WAV (`advox universal` output, with its sidecar).
    #[arg(long)]
    pub(crate) universal: Option<PathBuf>,
    /// Cloak: dB under the masking threshold (default 6; 0 in model mode; not the mute mode's).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) margin_db: Option<f32>,
    /// Cloak: scale of the perturbation, 0..1 (mute, noise and universal modes).
    #[arg(long)]
    pub(crate) depth: Option<f32>,
    /// Cloak: perturbed band in Hz, LOW-HIGH (noise and universal modes).
    #[arg(long, value_parser = crate::common::parse_band)]
    pub(crate) band: Option<(f32, f32)>,
    /// Cloak, model mode: the WER from each window's clean transcript its attack must reach
    /// (by advox's own decodes; default 0.75).
    #[arg(long)]
    pub(crate) min_wer: Option<f64>,
    /// Cloak, model mode: most attack steps per window (default 300).
    #[arg(long)]
    pub(crate) window_steps: Option<usize>,
    /// Cloak, model mode: the model (directory or known name; default the default model).
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Cloak, model mode: write a JSON report of every window here.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Sentinel: score threshold.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Sentinel: smoothing time constant (s).
    #[arg(long, default_value_t = 0.5)]
    smoothing: f32,
    /// Sentinel: mute the output while detected.
    #[arg(long)]
    gate: bool,
    /// Sentinel: also run a Whisper-based check (default model) in the background: transform
    /// consistency unless --model-check-detector says otherwise.
    #[arg(long)]
    model_check: bool,
    /// Sentinel: the model check's detector, any that listens with the model (default
    /// consistency:lowpass-4000; e.g. entropy, activations:ACT.safetensors, confidence).
    #[arg(long, requires = "model_check")]
    model_check_detector: Option<String>,
    /// Sentinel: a calibration file (`advox detect --calibrate`) holding the model check's
    /// detector: its score is published relative to the calibrated threshold (the threshold at
    /// 0.5). Needed for detectors not scored 0..1 (everything but consistency and temporal).
    #[arg(long, requires = "model_check")]
    model_check_calibration: Option<PathBuf>,
}

/// Either plugin's processing.
pub(crate) enum Processor {
    Cloak {
        processor: CloakProcessor,
        settings: CloakSettings,
        source: Option<Vec<f32>>,
    },
    Sentinel {
        processor: Box<SentinelProcessor>,
        settings: SentinelSettings,
        model_check: bool,
        rate: f32,
        time: u64,
    },
}

impl Processor {
    pub(crate) fn process(&mut self, planar: &mut [&mut [f32]]) {
        match self {
            Processor::Cloak {
                processor,
                settings,
                source,
            } => processor.process(planar, settings, source.as_deref()),
            Processor::Sentinel {
                processor,
                settings,
                model_check,
                rate,
                time,
            } => {
                let (t0, r) = (*time, *rate);
                processor.process(planar, settings, *model_check, &mut |d: Detection| {
                    println!(
                        "{}",
                        serde_json::json!({
                            "time_s": (t0 + d.offset as u64) as f64 / r as f64,
                            "detected": d.on,
                            "score": d.score,
                        })
                    );
                });
                *time += planar.first().map_or(0, |c| c.len()) as u64;
            }
        }
    }
}

pub(crate) fn processor(args: &Args, rate: f32, channels: usize) -> Result<Processor> {
    if args.cloak {
        let (band_low_hz, band_high_hz) = args.band.unwrap_or((100.0, 8_000.0));
        let depth = args.depth.unwrap_or(1.0);
        let margin_db = args.margin_db.unwrap_or(6.0);
        let mode = match args.mode.as_str() {
            "noise" | "masked-noise" => CloakMode::MaskedNoise,
            "universal" => CloakMode::Universal,
            "mute" => CloakMode::MuteSegment,
            "model" => bail!(
                "--mode model renders a file offline (it runs an attack per window, slower than \
                 real time on a CPU): give --input-file IN and -o OUT"
            ),
            m => bail!("--mode {m:?}: `noise`, `universal`, `mute` or `model`"),
        };
        let source = advox::stream::mute_segment::cloak_source(
            mode,
            args.universal.as_deref(),
            rate.round() as u32,
        )
        .with_context(|| format!("--mode {} with --universal FILE", args.mode))?;
        if mode == CloakMode::MuteSegment && (args.margin_db.is_some() || args.band.is_some()) {
            bail!(
                "--margin-db and --band do not apply to --mode mute, the default (the segment is \
                 added as trained, unshaped): --mode noise or --mode universal shape under the \
                 masking threshold"
            );
        }
        if let Some((flag, _)) = crate::live_model::model_only_flags(args).first() {
            bail!("{flag} applies to --mode model only");
        }
        if !(0.0..=1.0).contains(&depth) || !margin_db.is_finite() {
            bail!("--depth must be in 0..1 and --margin-db finite");
        }
        let mut processor = CloakProcessor::new(rate, channels)?;
        // A stream recorded as it comes out (no latency compensation) starts with the segment.
        processor.set_mute_clock(advox::stream::cloak::MuteClock::Output);
        Ok(Processor::Cloak {
            processor,
            settings: CloakSettings {
                mode,
                depth,
                margin_db,
                band_low_hz,
                band_high_hz,
                bypass: false,
            },
            source,
        })
    } else if args.sentinel {
        let monitor = if args.model_check {
            let config = model_check_config(args, rate)?;
            let (feed, state, _thread) = advox::stream::monitor::spawn_monitor(config, || {
                let dir =
                    advox::model::provision::resolve_model(None, &mut |m| eprintln!("advox: {m}"))?;
                advox::model::LoadedModel::load(&dir, &candle_core::Device::Cpu)
            })?;
            Some((feed, state))
        } else {
            None
        };
        Ok(Processor::Sentinel {
            processor: Box::new(SentinelProcessor::new(rate, monitor)?),
            settings: SentinelSettings {
                threshold: args.threshold,
                smoothing_seconds: args.smoothing,
                gate: args.gate,
            },
            model_check: args.model_check,
            rate,
            time: 0,
        })
    } else {
        bail!("choose --cloak or --sentinel (or --list)")
    }
}

/// Write planar f32 channels as a 32-bit float WAV, through a temporary file and a rename.
pub(crate) fn write_planar(
    path: &Path,
    channels: &[Vec<f32>],
    rate: u32,
    inputs: &[&Path],
) -> Result<()> {
    advox::audio::refuse_overwrite(path, inputs)?;
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let io = |e: hound::Error| advox::Error::io(path, std::io::Error::other(e.to_string()));
    advox::atomic_file::write_atomic(path, |tmp| {
        let mut w = hound::WavWriter::create(tmp, spec).map_err(io)?;
        for i in 0..channels.first().map_or(0, |c| c.len()) {
            for c in channels {
                w.write_sample(c[i]).map_err(io)?;
            }
        }
        w.finalize().map_err(io)
    })
    .with_context(|| format!("writing {}", path.display()))
}

fn run_file(args: &Args, input: &Path) -> Result<()> {
    let output = args
        .output
        .as_ref()
        .context("with --input-file, give -o OUT.wav")?;
    if args.cloak && args.mode == "model" {
        return crate::live_model::run(args, input, output);
    }
    let audio = read_audio(input)?;
    let rate = audio.sample_rate;
    let mut channels = audio.channels;
    let mut p = processor(args, rate as f32, channels.len())?;
    let len = channels[0].len();
    let mut start = 0;
    while start < len {
        let end = (start + BLOCK).min(len);
        let mut planar: Vec<&mut [f32]> = channels.iter_mut().map(|c| &mut c[start..end]).collect();
        p.process(&mut planar);
        start = end;
    }
    write_planar(output, &channels, rate, &[input])?;
    if let Processor::Cloak { processor, .. } = &p {
        eprintln!(
            "wrote {} ({} Hz, {} channels; the input delayed by {} samples plus the perturbation)",
            output.display(),
            rate,
            channels.len(),
            processor.latency()
        );
    }
    Ok(())
}

#[cfg(feature = "audio-devices")]
fn devices(args: &Args) -> Result<()> {
    if args.list {
        crate::live_devices::list()
    } else {
        crate::live_devices::run(args)
    }
}

#[cfg(not(feature = "audio-devices"))]
fn devices(_: &Args) -> Result<()> {
    bail!(
        "this advox was built without sound devices (--list, microphones, speakers): rebuild it \
         with `--features audio-devices` (on Linux that needs pkg-config and libasound2-dev), or \
         run on a file with --input-file and -o"
    )
}

pub fn run(args: Args) -> Result<()> {
    match &args.input_file {
        Some(input) if !args.list => run_file(&args, input),
        _ => devices(&args),
    }
}

/// The model check's settings from `--model-check-detector` and `--model-check-calibration`.
fn model_check_config(args: &Args, rate: f32) -> Result<advox::stream::monitor::MonitorConfig> {
    advox::stream::monitor::MonitorConfig::for_detector(
        rate,
        args.model_check_detector.as_deref(),
        args.model_check_calibration.as_deref(),
    )
    .context("the model check (--model-check-detector, --model-check-calibration)")
}
