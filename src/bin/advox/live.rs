//! `advox live`: Cloak or Sentinel on a live stream — a microphone (cpal) to speakers or to a
//! file, or a WAV file through the same processing — with the plugins' exact code
//! (`advox::stream::processors`), so the samples equal the plugin's.

use advox::attack::universal_file::UniversalFile;
use advox::audio::read_audio;
use advox::stream::cloak::{CloakMode, CloakSettings};
use advox::stream::processors::{CloakProcessor, Detection, SentinelProcessor};
use advox::stream::sentinel::SentinelSettings;
use anyhow::{bail, Context, Result};
use clap::Parser;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Samples per processing block.
const BLOCK: usize = 512;

#[derive(Parser, Debug)]
pub struct Args {
    /// List audio hosts and devices and exit.
    #[arg(long)]
    list: bool,
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
    input_device: Option<String>,
    /// Output device (default: the default output) — unless -o is given.
    #[arg(long, conflicts_with = "output")]
    output_device: Option<String>,
    /// Write the processed audio to this WAV (32-bit float) instead of a device.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Stop after this many seconds (devices; default: until Ctrl-C).
    #[arg(long)]
    seconds: Option<f64>,
    /// Cloak: `noise` (masked noise) or `universal` (needs --universal).
    #[arg(long, default_value = "noise")]
    mode: String,
    /// Cloak: the universal perturbation WAV (`advox universal` output, with its sidecar).
    #[arg(long)]
    universal: Option<PathBuf>,
    /// Cloak: dB under the masking threshold.
    #[arg(long, default_value_t = 6.0)]
    margin_db: f32,
    /// Cloak: scale of the perturbation, 0..1.
    #[arg(long, default_value_t = 1.0)]
    depth: f32,
    /// Cloak: perturbed band in Hz, LOW-HIGH.
    #[arg(long, default_value = "100-8000")]
    band: String,
    /// Sentinel: score threshold.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Sentinel: smoothing time constant (s).
    #[arg(long, default_value_t = 0.5)]
    smoothing: f32,
    /// Sentinel: mute the output while detected.
    #[arg(long)]
    gate: bool,
    /// Sentinel: also run the Whisper transform-consistency check (default model) in the
    /// background.
    #[arg(long)]
    model_check: bool,
}

/// Either plugin's processing.
enum Processor {
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
    fn process(&mut self, planar: &mut [&mut [f32]]) {
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

fn parse_band(s: &str) -> Result<(f32, f32)> {
    let (lo, hi) = s
        .split_once('-')
        .context("--band must be LOW-HIGH in Hz, e.g. 100-8000")?;
    let (lo, hi): (f32, f32) = (lo.trim().parse()?, hi.trim().parse()?);
    if !(lo >= 0.0 && hi > lo) {
        bail!("--band {s}: need 0 <= LOW < HIGH");
    }
    Ok((lo, hi))
}

fn processor(args: &Args, rate: f32, channels: usize) -> Result<Processor> {
    if args.cloak {
        let (band_low_hz, band_high_hz) = parse_band(&args.band)?;
        let mode = match args.mode.as_str() {
            "noise" | "masked-noise" => CloakMode::MaskedNoise,
            "universal" => CloakMode::Universal,
            m => bail!("--mode {m:?}: `noise` or `universal`"),
        };
        let source = match (&args.universal, mode) {
            (Some(path), _) => Some(
                UniversalFile::read(path)?
                    .at_rate(rate.round() as u32)
                    .with_context(|| path.display().to_string())?,
            ),
            (None, CloakMode::Universal) => bail!("--mode universal needs --universal FILE"),
            (None, _) => None,
        };
        if !(0.0..=1.0).contains(&args.depth) || !args.margin_db.is_finite() {
            bail!("--depth must be in 0..1 and --margin-db finite");
        }
        Ok(Processor::Cloak {
            processor: CloakProcessor::new(rate, channels)?,
            settings: CloakSettings {
                mode,
                depth: args.depth,
                margin_db: args.margin_db,
                band_low_hz,
                band_high_hz,
                bypass: false,
            },
            source,
        })
    } else if args.sentinel {
        let monitor = if args.model_check {
            let config = advox::stream::monitor::MonitorConfig {
                sample_rate: rate,
                ..Default::default()
            };
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
fn write_planar(path: &Path, channels: &[Vec<f32>], rate: u32, inputs: &[&Path]) -> Result<()> {
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

fn list() -> Result<()> {
    let mut any = false;
    for id in cpal::available_hosts() {
        let host = cpal::host_from_id(id)?;
        println!("host {}", id.name());
        if let Ok(devices) = host.devices() {
            for d in devices {
                any = true;
                let name = d.id().map(|i| i.to_string()).unwrap_or_else(|_| "?".into());
                let dirs = [
                    d.default_input_config().is_ok().then_some("input"),
                    d.default_output_config().is_ok().then_some("output"),
                ];
                let dirs: Vec<&str> = dirs.into_iter().flatten().collect();
                println!("  {name} ({})", dirs.join(", "));
            }
        }
    }
    if !any {
        bail!("no audio devices found: this machine has no sound card (or no access to it); use --input-file and -o instead");
    }
    Ok(())
}

fn find_device(host: &cpal::Host, id: Option<&str>, input: bool) -> Result<cpal::Device> {
    let kind = if input { "input" } else { "output" };
    let device = match id {
        Some(id) => {
            let parsed = id.parse().map_err(|e| {
                anyhow::anyhow!("device id {id:?}: {e:?} (see `advox live --list`)")
            })?;
            host.device_by_id(&parsed)
        }
        None if input => host.default_input_device(),
        None => host.default_output_device(),
    };
    device.with_context(|| {
        format!("no {kind} device: this machine has no sound card, or the device is unknown (see `advox live --list`; use --input-file / -o without one)")
    })
}

fn run_devices(args: &Args) -> Result<()> {
    let host = cpal::default_host();
    let input = find_device(&host, args.input_device.as_deref(), true)?;
    let config: cpal::StreamConfig = input
        .default_input_config()
        .context(
            "the input device cannot be opened: no sound card (or no access to it)? \
             `advox live --list` shows the devices; --input-file and -o work without one",
        )?
        .into();
    let channels = config.channels as usize;
    let rate = config.sample_rate as f32;
    let mut p = processor(args, rate, channels)?;
    let capacity = (rate as usize * channels).max(BLOCK * channels * 4);
    let (mut to_proc, mut from_input) = rtrb::RingBuffer::<f32>::new(capacity);
    let input_stream = input.build_input_stream(
        config,
        move |data: &[f32], _: &cpal::InputCallbackInfo| {
            for &x in data {
                let _ = to_proc.push(x);
            }
        },
        |e| eprintln!("advox live: input stream error: {e}"),
        None,
    )?;
    let (mut to_out, mut from_proc) = rtrb::RingBuffer::<f32>::new(capacity);
    let output_stream = match &args.output {
        Some(_) => None,
        None => {
            let out = find_device(&host, args.output_device.as_deref(), false)?;
            let stream = out.build_output_stream(
                config,
                move |data: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    for v in data.iter_mut() {
                        *v = from_proc.pop().unwrap_or(0.0);
                    }
                },
                |e| eprintln!("advox live: output stream error: {e}"),
                None,
            )?;
            Some(stream)
        }
    };
    input_stream.play()?;
    if let Some(s) = &output_stream {
        s.play()?;
    }
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut recorded: Vec<Vec<f32>> = vec![Vec::new(); channels];
    let mut planar: Vec<Vec<f32>> = vec![vec![0.0; BLOCK]; channels];
    eprintln!(
        "advox live: {} Hz, {channels} channels; Ctrl-C or --seconds to stop",
        rate
    );
    install_sigint();
    while !INTERRUPTED.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
        if from_input.slots() < BLOCK * channels {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        for i in 0..BLOCK {
            for c in planar.iter_mut() {
                c[i] = from_input.pop().unwrap_or(0.0);
            }
        }
        let mut views: Vec<&mut [f32]> = planar.iter_mut().map(|c| c.as_mut_slice()).collect();
        p.process(&mut views);
        if args.output.is_some() {
            for (r, c) in recorded.iter_mut().zip(&planar) {
                r.extend_from_slice(c);
            }
        } else {
            for i in 0..BLOCK {
                for c in &planar {
                    let _ = to_out.push(c[i]);
                }
            }
        }
    }
    drop(input_stream);
    drop(output_stream);
    if let Some(path) = &args.output {
        write_planar(path, &recorded, rate as u32, &[])?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Set by SIGINT: the capture loop stops and writes what it has.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Stop on SIGINT instead of dying (the handler only stores to an atomic).
fn install_sigint() {
    // SAFETY: the handler is async-signal-safe (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.list {
        return list();
    }
    match &args.input_file {
        Some(input) => run_file(&args, input),
        None => run_devices(&args),
    }
}
