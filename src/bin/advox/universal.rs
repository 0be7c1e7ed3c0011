//! `advox universal`.

use crate::common;
use advox::attack::universal::{
    prepare, train_universal_ensemble, MuteDecoding, UniversalMode, Utterance,
};
use advox::attack::universal_plan::{judge_into_sidecar, UniversalSettings};
use advox::attack::StepInfo;
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat, SAMPLE_RATE};
use advox::formats::universal_sidecar::{UniversalJudgement, UniversalSidecar};
use advox::manifest::read_manifest;
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::Goal;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    Additive,
    PrefixMute,
    OverlayMute,
}

/// Train one perturbation that works on a whole set of utterances, and evaluate it on held-out
/// ones.
///
/// Writes OUT.wav (the perturbation, 32-bit float, 16 kHz) and OUT.json (its sidecar: format,
/// sample rate, length, mode, bound, goal, model, and the train/eval results against a random-
/// noise control of the same bound).
#[derive(clap::Args)]
pub struct Args {
    /// Training utterances: a manifest (CSV with an `input` column, or JSON lines).
    #[arg(long)]
    pub(crate) train: PathBuf,
    /// Held-out utterances to evaluate on (same format).
    #[arg(long)]
    pub(crate) eval: Option<PathBuf>,
    /// Output WAV of the perturbation (a JSON sidecar is written beside it).
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// `additive`: tiled over the input from any offset; `prefix-mute`: prepended, mutes;
    /// `overlay-mute`: added over the input's start, trained to mute (measured: it does not
    /// mute held-out speech; Cloak's mute mode plays a prefix-mute segment over a lead-in).
    #[arg(long, value_enum, default_value = "additive")]
    pub(crate) mode: ModeArg,
    /// Goal of the additive mode (default: untargeted); the mute modes always mute.
    #[command(flatten)]
    pub(crate) goals: common::GoalArgs,
    /// L-infinity bound of the perturbation (default 0.02; with --through-cloak the source's,
    /// default 0.5: Cloak's shaping bounds what is added).
    #[arg(long)]
    pub(crate) eps: Option<f32>,
    /// Train a source for Cloak's universal mode through Cloak's own shaping: every step
    /// resamples it to --rate, shapes it under each input's masking threshold as the plugin
    /// does (--masking-margin-db is Cloak's margin, default 6), from a random loop offset, and
    /// back to 16 kHz; untargeted only. The evaluation runs the plugin's chain, next to Cloak's
    /// masked noise at the same margin.
    #[arg(long)]
    pub(crate) through_cloak: bool,
    /// --through-cloak: train for a loop that starts with each recording (Cloak restarts its
    /// loop with the stream: a render from the start, a recording made from when Cloak
    /// starts) instead of at any offset.
    #[arg(long, requires = "through_cloak")]
    pub(crate) aligned: bool,
    /// --through-cloak: the host rate Cloak runs at in training and evaluation.
    #[arg(long, requires = "through_cloak")]
    pub(crate) rate: Option<u32>,
    /// Additive: scale the perturbation where it is applied to keep this SNR to each input.
    #[arg(long)]
    pub(crate) snr_db: Option<f32>,
    /// Additive: project the perturbation where it is applied under each input's masking
    /// threshold minus this margin (dB).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) masking_margin_db: Option<f32>,
    /// Length in seconds (default: 0.64 for the mute modes, 1.0 for additive).
    #[arg(long)]
    pub(crate) length_s: Option<f32>,
    /// Minibatch steps.
    #[arg(long, default_value_t = 100)]
    pub(crate) steps: usize,
    /// Utterances per minibatch.
    #[arg(long, default_value_t = 2)]
    pub(crate) batch: usize,
    /// Largest sample change of one Adam step (default: 0.004 for the mute modes, 0.002 for
    /// additive, 0.1 with --through-cloak).
    #[arg(long)]
    pub(crate) step_size: Option<f32>,
    /// Judge (and, for mute, train) against timestamp decoding, Whisper's default
    /// `transcribe` mode; always on for the mute modes, whose empty output is an empty first
    /// segment (plain decoding never starts with end-of-text).
    #[arg(long)]
    pub(crate) timestamps: bool,
    /// Beam size of the evaluations.
    #[arg(long, default_value_t = 5)]
    pub(crate) beam: usize,
    /// The front ends training takes turns over, comma-separated (default openai;
    /// faster-whisper pads a short recording's log-mel features instead of its audio: the
    /// shipped prefix-mute segment was trained with faster-whisper alone and holds under both).
    #[arg(long, value_delimiter = ',', value_parser = common::front_end_parser())]
    pub(crate) front_ends: Option<Vec<advox::mel::FrontEnd>>,
    /// Mute modes: put up to this many seconds of digital silence before each training input
    /// (a random amount per draw), so the segment works where the recogniser's input starts a
    /// little before it (e.g. Cloak's latency); default none.
    #[arg(long)]
    pub(crate) max_shift_s: Option<f32>,
    /// Mute modes: the decodings to mute, comma-separated, taking turns in training draw by
    /// draw (timestamps: an empty window; plain, which may not start with end-of-text: " ."
    /// alone); judged under each, the first in the sidecar's `train`/`eval`. Default
    /// timestamps.
    #[arg(long, value_delimiter = ',', value_parser = decoding_parser())]
    pub(crate) decodings: Option<Vec<MuteDecoding>>,
    /// Start from this perturbation (a 16-kHz WAV of the mode's length, e.g. one `advox
    /// universal` wrote) instead of faint noise: to train on with other settings. Its length
    /// is the default --length-s.
    #[arg(long)]
    pub(crate) init: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Model directory or known name. Mute modes: repeat to train one segment for several
    /// models at once (draws take turns over them; e.g. `--model tiny.en --model base`): the
    /// first prepares the sets and is judged in `train`/`eval`, each other in the sidecar's
    /// `other_models`.
    #[arg(long)]
    pub(crate) model: Vec<String>,
}

fn decoding_parser() -> impl clap::builder::TypedValueParser<Value = MuteDecoding> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(MuteDecoding::ALL.map(|d| d.name()))
        .try_map(|s| s.parse::<MuteDecoding>())
}

/// The utterances of a manifest (16 kHz), named by their files.
pub(crate) fn read_set(manifest: &Path) -> Result<Vec<(String, Vec<f32>)>> {
    let entries = read_manifest(manifest)?;
    if entries.is_empty() {
        bail!("{}: no utterances", manifest.display());
    }
    entries
        .iter()
        .map(|e| {
            Ok((
                e.input.display().to_string(),
                read_audio_16k_mono(&e.input)?,
            ))
        })
        .collect()
}

fn load_set(
    model: &LoadedModel,
    manifest: &Path,
    goal: &Goal,
    decode: &DecodeOptions,
) -> Result<Vec<Utterance>> {
    prepare(model, read_set(manifest)?, goal, decode)
        .with_context(|| format!("preparing {}", manifest.display()))
}

/// Run `train` (`steps` steps) under a progress bar that also logs every tenth step's loss;
/// returns its result and the seconds it took.
pub(crate) fn with_step_bar<T>(
    steps: usize,
    train: impl FnOnce(&mut dyn FnMut(&StepInfo)) -> advox::Result<T>,
) -> Result<(T, f64)> {
    let bar = common::step_bar(steps as u64);
    let start = Instant::now();
    let result = train(&mut |info: &StepInfo| {
        bar.inc(1);
        bar.set_message(format!("loss {:.4}", info.loss));
        if info.step.is_multiple_of(10) {
            bar.suspend(|| eprintln!("step {}: minibatch loss {:.4}", info.step, info.loss));
        }
    })?;
    bar.finish_and_clear();
    Ok((result, start.elapsed().as_secs_f64()))
}

fn log_judgement(utterances: usize, how: &str, judged: &UniversalJudgement) {
    eprintln!(
        "{utterances} utterances{how}: success {:.0} % (random noise {:.0} %), mean WER {:.2} \
         (noise {:.2})",
        100.0 * judged.perturbation.success_rate,
        100.0 * judged.random_noise.success_rate,
        judged.perturbation.mean_wer,
        judged.random_noise.mean_wer
    );
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if args.through_cloak {
        return crate::universal_cloak::run(args, device);
    }
    let settings = UniversalSettings {
        mode: match args.mode {
            ModeArg::Additive => UniversalMode::Additive,
            ModeArg::PrefixMute => UniversalMode::PrefixMute,
            ModeArg::OverlayMute => UniversalMode::OverlayMute,
        },
        goal: args.goals.goal()?,
        min_wer: args.goals.min_wer,
        eps: args.eps,
        length_s: args.length_s,
        steps: args.steps,
        batch: args.batch,
        step_size: args.step_size,
        seed: args.seed,
        snr_db: args.snr_db,
        masking_margin_db: args.masking_margin_db,
        timestamps: args.timestamps,
        beam: args.beam,
        front_ends: args.front_ends.clone(),
        max_shift_s: args.max_shift_s,
        decodings: args.decodings.clone(),
    };
    let goal = settings.goal()?;
    let mut cfg = settings.config()?;
    if let Some(path) = &args.init {
        let init = read_audio_16k_mono(path)
            .with_context(|| format!("reading the starting perturbation {}", path.display()))?;
        if args.length_s.is_none() {
            cfg.length = init.len();
        }
        if init.len() != cfg.length {
            bail!(
                "{}: {} samples at 16 kHz, but --length-s asks for {}",
                path.display(),
                init.len(),
                cfg.length
            );
        }
        cfg.init = Some(init);
    }
    let sidecar = args.output.with_extension("json");
    let mut inputs = vec![args.train.as_path()];
    inputs.extend(args.init.as_deref());
    if let Some(e) = &args.eval {
        inputs.push(e.as_path());
    }
    for out in [args.output.as_path(), sidecar.as_path()] {
        advox::audio::refuse_overwrite(out, &inputs)?;
    }
    let device = common::device(device)?;
    if args.model.len() > 1 && !settings.mode.is_mute_segment() {
        bail!(
            "a second --model applies to the mute modes (an additive goal is bound to one \
             model's transcripts)"
        );
    }
    let models = common::load_models(&args.model, &device)?;
    let model = &models[0];
    let decode = settings.decode();
    let train = load_set(model, &args.train, &goal, &decode)?;
    let eval = match &args.eval {
        Some(p) => Some(load_set(model, p, &goal, &decode)?),
        None => None,
    };
    let all: Vec<&LoadedModel> = models.iter().collect();
    let (delta, train_seconds) = with_step_bar(cfg.steps, |on_step| {
        train_universal_ensemble(&all, &train, &cfg, &AtomicBool::new(false), on_step)
    })?;
    let judged = judge_into_sidecar(
        &all,
        &settings,
        &cfg,
        &delta,
        &train,
        eval.as_deref(),
        train_seconds,
        &mut |how, utterances, judged| log_judgement(utterances, how, judged),
    )?;
    write_wav(
        &args.output,
        &delta,
        SAMPLE_RATE,
        WavFormat::Float32,
        &inputs,
    )?;
    let report = UniversalSidecar {
        init: args.init.as_ref().map(|p| p.display().to_string()),
        train_manifest: Some(args.train.display().to_string()),
        eval_manifest: args.eval.as_ref().map(|p| p.display().to_string()),
        ..judged
    };
    common::write_json(&sidecar, &report)?;
    println!("wrote {} and {}", args.output.display(), sidecar.display());
    Ok(())
}
