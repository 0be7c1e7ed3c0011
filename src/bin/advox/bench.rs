//! `advox bench`: transcription time and the attack-step workload (forward + backward of the
//! targeted loss to the waveform on a 30-s window), with peak memory.

use crate::common;
use advox::attack::{run_attack, AttackKind};
use advox::audio::read_audio_16k_mono;
use advox::gradient::{targeted_loss_and_grad, TargetSequence};
use advox::mel::MelFrontEnd;
use advox::model::DecodeOptions;
use advox::objective::{Goal, Objective};
use advox::transcribe::transcribe;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Benchmark options.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("batch").args(["suite", "cloak"])))]
#[command(group(clap::ArgGroup::new("mode").args(["suite", "cloak", "realtime", "compare"]).multiple(false)))]
pub struct Args {
    /// Model directory or known name.
    #[arg(long)]
    model: Option<String>,
    /// Input of the attack step (default: the shared reference input, else a bundled sample).
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Target transcript of the attack step.
    #[arg(long, default_value = " Turn off the lights.")]
    target: String,
    /// Recording to time transcription on (default: ../shared/samples/jfk.wav if present).
    #[arg(long)]
    transcribe_wav: Option<PathBuf>,
    /// Timed steps after one warm-up step (at least 5 are recommended).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Skip the time-to-success measurement.
    #[arg(long)]
    no_attack: bool,
    /// Instead: the corpus benchmark. Every input of `--manifest` (or every bundled sample,
    /// attacked towards the next one's transcript) is attacked with each of `--attacks` as
    /// `advox attack` runs it, every example is judged by `--verify`, and the table gives each
    /// attack's verified successes and median time to a verified success.
    #[arg(long)]
    suite: bool,
    /// `--suite`: the inputs, as `advox attack --manifest` takes them (targets from the file,
    /// else `--target`).
    #[arg(long, requires = "suite")]
    manifest: Option<PathBuf>,
    /// `--suite` without `--manifest`: the folder of the samples (with transcripts.tsv).
    #[arg(long, requires = "suite", conflicts_with = "manifest")]
    samples: Option<PathBuf>,
    /// `--suite`: the attacks, comma-separated.
    #[arg(long, requires = "suite", value_delimiter = ',', default_value = "pgd,cw",
          value_parser = crate::attack_args::kind_parser(false))]
    attacks: Vec<AttackKind>,
    /// `--suite`: the SNR bound of the attacks that take one (PGD, CW; the imperceptible
    /// attack has its own constraint).
    #[arg(long, requires = "suite", default_value_t = 35.0)]
    snr_db: f32,
    /// `--suite`: every attack's seed.
    #[arg(long, requires = "suite", default_value_t = 1)]
    seed: u64,
    /// `--suite`, `--cloak`: the independent recognisers (as `advox attack --verify`).
    #[arg(long, requires = "batch", default_value = "faster-whisper",
          value_parser = crate::attack_args::parse_verifiers)]
    verify: crate::attack_args::Verifiers,
    /// `--suite`, `--cloak`: advox's own model only.
    #[arg(long, requires = "batch", conflicts_with = "verify")]
    no_verify: bool,
    /// `--suite`, `--cloak`: where the examples, reports and summaries go (default a new
    /// folder under the system's temporary directory).
    #[arg(long, requires = "batch")]
    out: Option<PathBuf>,
    /// Instead: what Cloak does to the recordings of this manifest, per `--margins` setting:
    /// every recogniser's WER on the cloaked recordings, wideband PESQ, SNR, masked share and
    /// real-time factor, with a trade-off plot (WER against PESQ).
    #[arg(long, value_name = "MANIFEST", conflicts_with_all = ["suite", "realtime"])]
    cloak: Option<PathBuf>,
    /// `--cloak`: Cloak's margins under the masking threshold (dB), one setting each.
    #[arg(
        long,
        requires = "cloak",
        value_delimiter = ',',
        allow_negative_numbers = true,
        default_value = "12,6,0,-6"
    )]
    margins: Vec<f32>,
    /// `--cloak`: play this universal perturbation (`advox universal` output) instead of
    /// masked noise.
    #[arg(long, requires = "cloak")]
    universal: Option<PathBuf>,
    /// `--cloak`: Cloak's mute mode (the built-in mute segment, or `--universal`'s when its
    /// sidecar says prefix-mute or overlay-mute, over the start of every 30-s window) at each
    /// of `--depths`, instead of masked noise at each margin.
    #[arg(long, requires = "cloak", conflicts_with_all = ["with_model", "margins"])]
    mute: bool,
    /// `--cloak --mute`: Cloak's depths (0..1), one setting each.
    #[arg(long, requires = "mute", value_delimiter = ',', default_value = "1")]
    depths: Vec<f32>,
    /// `--cloak`: Cloak's model-in-the-loop mode (an untargeted attack per 30-s window under
    /// the masking threshold, rendered offline) instead of masked noise.
    #[arg(long, requires = "cloak", conflicts_with = "universal")]
    with_model: bool,
    /// `--cloak --with-model`: the WER from the clean transcript a window's attack must reach
    /// by advox's own decodes (default 0.75).
    #[arg(long, requires = "with_model")]
    min_wer: Option<f64>,
    /// `--cloak`: the models the verifiers run (names or directories, comma-separated;
    /// default: the benchmarked model), e.g. `tiny.en,base` to see whether what fools tiny.en
    /// carries over to Whisper base.
    #[arg(long, requires = "cloak", value_delimiter = ',')]
    verify_models: Vec<String>,
    /// `--cloak --with-model`: run the streaming form the plugin runs, with windows of this
    /// many seconds (latency twice that), paced in real time as a live stream (a window's
    /// attack is cut at its deadline); with `--offline-render`, as a host's offline render.
    #[arg(long, requires = "with_model")]
    stream_window: Option<f32>,
    /// `--cloak --with-model --stream-window S`: an offline render instead of real time.
    #[arg(long, requires = "stream_window")]
    offline_render: bool,
    /// `--cloak --with-model`: most attack steps per window.
    #[arg(long, requires = "with_model")]
    window_steps: Option<usize>,
    /// `--cloak`: the host's sample rate Cloak runs at (the recordings are resampled to it
    /// and back to 16 kHz for the recognisers).
    #[arg(long, requires = "cloak", default_value_t = 48_000)]
    rate: u32,
    /// Instead: the real-time cost of the plugins' processing (Cloak, Sentinel) per
    /// 512-sample stereo block at 48 kHz; needs no model.
    #[arg(long)]
    realtime: bool,
    /// Instead: advox side by side with the implementations it is measured against, in
    /// alternating rounds on this machine: the attack step against the PyTorch reference
    /// (`--torch-ref`, when its Python is found) and beam-5 transcription against faster-whisper
    /// (f32, as many threads as advox uses), with each round's ratios, their medians and the
    /// CPU (model, vector extensions).
    #[arg(long)]
    compare: bool,
    /// `--compare`: rounds (each runs every side once).
    #[arg(long, requires = "compare", default_value_t = 3)]
    rounds: usize,
    /// `--compare`: the PyTorch reference's step script (torch_pgd_step.py, with ct2_to_hf.py
    /// beside it).
    #[arg(
        long,
        requires = "compare",
        default_value = "../shared/reference/torch/torch_pgd_step.py"
    )]
    torch_ref: PathBuf,
    /// `--compare`: a Python with torch and transformers (default: $ADVOX_TORCH_PYTHON, else
    /// target/torchref/venv/bin/python, else the transformers verifier's venv, when present).
    #[arg(long, requires = "compare")]
    torch_python: Option<PathBuf>,
    /// `--compare`: leave faster-whisper out.
    #[arg(long, requires = "compare")]
    no_faster_whisper: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The default recording of the transcription timings.
pub(crate) fn default_transcribe_wav() -> Option<PathBuf> {
    first_existing(&[
        "../shared/samples/jfk.wav",
        "samples/open_the_front_door.wav",
    ])
}

/// The default input of the attack step.
pub(crate) fn default_step_wav() -> Option<PathBuf> {
    first_existing(&[
        "../shared/reference/torch_pgd_step/input.wav",
        "samples/open_the_front_door.wav",
    ])
}

/// Times of `steps` attack steps (forward + backward of the targeted loss to the waveform) after
/// one warm-up step, and the loss.
pub(crate) fn time_steps(
    model: &advox::model::LoadedModel,
    wave: &[f32],
    target: &str,
    steps: usize,
) -> Result<(Vec<f64>, f32)> {
    let device = model.whisper.device();
    let wave_t = Tensor::from_vec(wave.to_vec(), wave.len(), device)?;
    let front = MelFrontEnd::new(model.whisper.config().num_mel_bins, device)?;
    let target = TargetSequence::new(&model.tokenizer, target, None)?;
    let mut step_times = Vec::new();
    let mut loss = 0.0;
    for i in 0..=steps.max(1) {
        let t = Instant::now();
        let (l, g) = targeted_loss_and_grad(&model.whisper, &front, &wave_t, &target)?;
        let _ = g.abs()?.max(0)?.to_scalar::<f32>()?;
        if i > 0 {
            step_times.push(t.elapsed().as_secs_f64());
        }
        loss = l;
    }
    Ok((step_times, loss))
}

/// Times of `repeats` beam-5 transcriptions of `samples` (the first one included: the model is
/// already loaded) and the transcript.
pub(crate) fn time_transcription(
    model: &advox::model::LoadedModel,
    samples: &[f32],
    repeats: usize,
) -> Result<(Vec<f64>, String)> {
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        text = transcribe(model, samples, &DecodeOptions::default())?.text;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok((times, text))
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if args.realtime {
        return crate::bench_realtime::run(args.json);
    }
    let device = common::device(device)?;
    let t0 = Instant::now();
    let model = common::load_model(args.model.as_deref(), &device)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let verifiers = if args.no_verify {
        Vec::new()
    } else {
        args.verify.0.clone()
    };
    let out = |what: &str| {
        args.out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("advox-bench-{what}-{}", std::process::id()))
        })
    };
    if let Some(manifest) = &args.cloak {
        let bench = crate::bench_cloak::CloakBench {
            manifest: manifest.clone(),
            margins: args.margins.clone(),
            universal: args.universal.clone(),
            mute_depths: args.mute.then(|| args.depths.clone()),
            with_model: args
                .with_model
                .then(|| advox::attack::cloak_model::ModelCloakConfig {
                    min_wer: args
                        .min_wer
                        .unwrap_or(advox::attack::cloak_model::DEFAULT_MIN_WER),
                    steps: args.window_steps,
                    ..Default::default()
                }),
            stream: args.stream_window.map(|s| (s, !args.offline_render)),
            rate: args.rate,
            verify_models: args
                .verify_models
                .iter()
                .map(|m| {
                    advox::model::provision::resolve_model(Some(m), &mut |msg| {
                        eprintln!("advox: {msg}")
                    })
                    .with_context(|| format!("--verify-models {m}"))
                })
                .collect::<Result<_>>()?,
            verifiers,
            out: out("cloak"),
            json: args.json,
        };
        return crate::bench_cloak::run(&model, &bench);
    }
    if args.suite {
        let suite = crate::bench_suite::Suite {
            manifest: args.manifest.clone(),
            samples: args
                .samples
                .clone()
                .unwrap_or_else(|| PathBuf::from("samples")),
            attacks: args.attacks.clone(),
            target: args.target.clone(),
            snr_db: args.snr_db,
            seed: args.seed,
            verifiers,
            out: out("suite"),
            json: args.json,
        };
        return crate::bench_suite::run(&model, &suite);
    }

    let step_wav = args
        .wav
        .clone()
        .or_else(default_step_wav)
        .context("no input for the step benchmark: pass --wav")?;
    if args.compare {
        let compare = crate::bench_compare::Compare {
            step_wav,
            target: args.target.clone(),
            transcribe_wav: args.transcribe_wav.clone().or_else(default_transcribe_wav),
            steps: args.steps,
            rounds: args.rounds,
            torch_ref: args.torch_ref.clone(),
            torch_python: args.torch_python.clone(),
            faster_whisper: !args.no_faster_whisper,
            json: args.json,
        };
        return crate::bench_compare::run(&model, &compare);
    }
    let wave = read_audio_16k_mono(&step_wav)?;
    let (step_times, loss) = time_steps(&model, &wave, &args.target, args.steps)?;
    let step_rss = peak_rss_mb();
    let step_seconds = advox::metrics::median(step_times.iter().copied()).unwrap_or(f64::NAN);

    // Time to success of the default targeted attack (PGD, Adam steps in the STFT domain,
    // SNR >= 30 dB) on the same input and target, judged with beam-5 decoding.
    let mut attack_json = serde_json::Value::Null;
    let mut time_to_success = None;
    if !args.no_attack {
        let original = transcribe(&model, &wave, &DecodeOptions::default())?;
        let objective = Objective::new(
            &model,
            Goal::Targeted(args.target.trim().to_string()),
            &original.text,
            &original.tokens,
        )?;
        let cfg = advox::attack::AttackConfig::quick_start(300);
        let t = Instant::now();
        let out = run_attack(
            &model,
            &wave,
            &objective,
            &cfg,
            &AtomicBool::new(false),
            &mut |_| {},
        )?;
        let seconds = t.elapsed().as_secs_f64();
        if out.success {
            time_to_success = Some(seconds);
        }
        attack_json = serde_json::json!({"success": out.success, "steps": out.steps, "seconds": seconds, "transcript": out.transcript});
    }

    let tr_wav = args.transcribe_wav.clone().or_else(default_transcribe_wav);
    let mut transcribe_seconds = None;
    if let Some(path) = &tr_wav {
        let samples = read_audio_16k_mono(path)?;
        transcribe_seconds = Some(time_transcription(&model, &samples, 1)?.0[0]);
    }
    if args.json {
        let obj = serde_json::json!({
            "model": model.id(),
            "device": format!("{device:?}"),
            "cpu": crate::bench_compare::cpu_description(),
            "model_load_seconds": load_seconds,
            "step_wav": step_wav.display().to_string(),
            "step_loss": loss,
            "step_seconds": step_seconds,
            "step_seconds_all": step_times,
            "peak_rss_mb": step_rss,
            "transcribe_wav": tr_wav.as_ref().map(|p| p.display().to_string()),
            "transcribe_seconds": transcribe_seconds,
            "time_to_success_seconds": time_to_success,
            "attack": attack_json,
        });
        println!("{obj}");
    } else {
        println!("| measurement | value |");
        println!("|---|---|");
        println!("| model | {} on {:?} |", model.id(), device);
        println!("| model load | {load_seconds:.2} s |");
        println!("| attack step (fwd+bwd to waveform, 30-s window), median of {} | {step_seconds:.3} s |", step_times.len());
        println!("| step loss | {loss:.6} |");
        if let Some(rss) = step_rss {
            println!("| peak RSS after the steps | {rss:.0} MiB |");
        }
        if let Some(a) = attack_json.as_object() {
            println!(
                "| targeted PGD to {:?} (SNR >= 30 dB) | {} after {} steps, {:.1} s |",
                args.target.trim(),
                if a["success"].as_bool() == Some(true) {
                    "success"
                } else {
                    "failure"
                },
                a["steps"],
                a["seconds"].as_f64().unwrap_or(f64::NAN)
            );
        }
        if let (Some(p), Some(s)) = (&tr_wav, transcribe_seconds) {
            println!("| transcribe {} (beam 5) | {s:.3} s |", p.display());
        }
    }
    Ok(())
}
