//! `advox attack`.

use crate::common;
use advox::attack::cw::{run_cw, CwConfig};
use advox::attack::deepfool::{run_deepfool, DeepFoolConfig};
use advox::attack::eot::EotConfig;
use advox::attack::imperceptible::{run_imperceptible, ImperceptibleConfig};
use advox::attack::jsma::{run_jsma, JsmaConfig};
use advox::attack::{run_attack, AttackConfig, Method, Rule, Schedule, StepInfo};
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat, SAMPLE_RATE};
use advox::manifest::{read_manifest, ManifestEntry};
use advox::masking::{MaskingConfig, MaskingThreshold};
use advox::metrics::{dbx, l2, linf, snr_db};
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::{Goal, Objective};
use advox::perturb::{Constraints, Domain, MaskingBound};
use advox::transcribe::transcribe;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AttackKind {
    Fgsm,
    Pgd,
    Cw,
    Deepfool,
    Jsma,
    Imperceptible,
}

#[derive(Clone, Copy, ValueEnum)]
enum BlackBoxKind {
    Ga,
    Nes,
    Spsa,
}

#[derive(Clone, Copy, ValueEnum)]
enum RuleArg {
    Adam,
    Sign,
    L2,
}

#[derive(Clone, Copy, ValueEnum)]
enum DomainArg {
    Stft,
    Waveform,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Constant,
    Cosine,
}

/// Make an adversarial example against Whisper (white-box, gradient-based), or against any
/// recogniser with --blackbox.
///
/// Writes OUT.wav (16-bit), the perturbation as OUT.perturbation.wav (32-bit float) and a JSON
/// report OUT.json. Success is judged on the written 16-bit file. Ctrl-C stops the attack and
/// keeps the best result so far.
#[derive(clap::Args)]
pub struct Args {
    /// Input audio (any format advox reads; at most 30 s).
    #[arg(required_unless_present = "manifest", conflicts_with = "manifest")]
    input: Option<PathBuf>,
    /// Attack every input of a manifest (CSV with an `input` column and optional `target` and
    /// `goal` columns, or JSON lines with the same keys); -o is then an output directory.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Output WAV (with --manifest: output directory).
    #[arg(short, long)]
    output: PathBuf,
    /// Attack algorithm.
    #[arg(long, value_enum, default_value = "pgd")]
    attack: AttackKind,
    #[command(flatten)]
    goals: common::GoalArgs,
    /// L-infinity bound on the perturbation (full scale = 1).
    #[arg(long)]
    eps: Option<f32>,
    /// L2 bound on the perturbation.
    #[arg(long)]
    l2: Option<f32>,
    /// Minimum signal-to-perturbation ratio in dB.
    #[arg(long)]
    snr_db: Option<f32>,
    /// Only perturb this band, in Hz, e.g. 300-8000.
    #[arg(long, value_parser = common::parse_band)]
    band: Option<(f32, f32)>,
    /// Only perturb where there is sound (frames within 40 dB of the loudest).
    #[arg(long)]
    speech_only: bool,
    /// Black-box attack (no gradients; scores from the built-in model, transcripts from
    /// --asr-cmd): `ga`, a genetic algorithm with momentum mutation; `nes` / `spsa`, gradient
    /// estimation from Gaussian / ±1 directions with signed steps. Uses --eps (default 0.02),
    /// --queries, --population, --seed; nes/spsa also --step-size (default eps/5), --sigma, --tile,
    /// --check-every.
    #[arg(long, value_enum)]
    blackbox: Option<BlackBoxKind>,
    /// Black-box: attack an external recogniser, a shell command with `{wav}` where the audio
    /// path goes, printing the transcript (default: the built-in model as an opaque box).
    #[arg(long, requires = "blackbox")]
    asr_cmd: Option<String>,
    /// Black-box: seconds before the external recogniser is killed.
    #[arg(long, default_value_t = 60.0)]
    timeout_s: f64,
    /// Black-box: query budget.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// Black-box: candidates per generation (ga), directions per gradient estimate (nes/spsa,
    /// two queries each).
    #[arg(long, default_value_t = 10)]
    population: usize,
    /// Black-box nes/spsa: finite-difference radius (default eps/4).
    #[arg(long)]
    sigma: Option<f32>,
    /// Black-box nes/spsa: samples per estimated coordinate (linear in between).
    #[arg(long, default_value_t = 8)]
    tile: usize,
    /// Keep every T-F bin of the perturbation this many dB under the input's psychoacoustic
    /// masking threshold (FGSM, PGD, CW, imperceptible).
    #[arg(long)]
    masking_margin_db: Option<f32>,
    /// Imperceptible: stage-2 steps (masking loss + network loss).
    #[arg(long, default_value_t = 200)]
    stage2_steps: usize,
    /// Imperceptible: largest sample change of one stage-2 Adam step.
    #[arg(long, default_value_t = 2e-4)]
    stage2_lr: f32,
    /// Imperceptible: initial weight α of the masking loss (default: balance the gradients).
    #[arg(long)]
    alpha: Option<f32>,
    /// Domain the steps are formed in.
    #[arg(long, value_enum, default_value = "stft")]
    domain: DomainArg,
    /// Steps: PGD's per run (default 300), CW's per value of c (default 40), DeepFool's most
    /// linearisations (default 50), JSMA's most iterations (default 100).
    #[arg(long)]
    steps: Option<usize>,
    /// CW: first value of the trade-off constant c.
    #[arg(long, default_value_t = 0.1)]
    c: f32,
    /// CW: confidence margin κ of the tokens, in logits.
    #[arg(long, default_value_t = 1.0)]
    kappa: f32,
    /// CW: values of c tried by the binary search.
    #[arg(long, default_value_t = 3)]
    search_steps: usize,
    /// JSMA: largest share of the STFT bins that may be perturbed (L0 budget).
    #[arg(long, default_value_t = 0.10)]
    max_bins: f32,
    /// JSMA: share of the bins switched on per iteration.
    #[arg(long, default_value_t = 0.005)]
    bins_per_iteration: f32,
    /// JSMA: largest waveform amplitude one bin may contribute.
    #[arg(long, default_value_t = 0.002)]
    bin_amplitude: f32,
    /// DeepFool: relative overshoot past each linearised boundary.
    #[arg(long, default_value_t = 0.5)]
    overshoot: f32,
    /// CW: largest sample change of one Adam step.
    #[arg(long, default_value_t = 0.002)]
    lr: f32,
    /// Step size (L-infinity of a step for sign/adam, L2 for l2); default eps/10, else 0.001.
    #[arg(long)]
    step_size: Option<f32>,
    /// Step rule (PGD).
    #[arg(long, value_enum, default_value = "adam")]
    rule: RuleArg,
    /// Step-size schedule (PGD).
    #[arg(long, value_enum, default_value = "constant")]
    schedule: ScheduleArg,
    /// Start from a random point of the L-infinity ball (PGD).
    #[arg(long)]
    random_start: bool,
    /// Extra runs from random starts while unsuccessful (PGD).
    #[arg(long, default_value_t = 0)]
    restarts: usize,
    /// Expectation over transformation: average the loss over random gain, delay, noise,
    /// band-pass filtering and synthetic rooms so the example survives playback (FGSM, PGD).
    #[arg(long)]
    eot: bool,
    /// EOT: transformations averaged per step.
    #[arg(long, default_value_t = 4)]
    eot_samples: usize,
    /// Decode every N steps to test for success (targeted and mute: at most every N steps, and
    /// only where the goal's tokens lead under teacher forcing, which success requires).
    #[arg(long, default_value_t = 5)]
    check_every: usize,
    /// Beam size of every decode (1 = greedy).
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model directory or known name.
    #[arg(long)]
    model: Option<String>,
}

/// Set by Ctrl-C: the attack stops at its next step and keeps the best result so far.
static CANCEL: &AtomicBool = &common::INTERRUPTED;

/// `OUT.wav` -> `OUT.<suffix>`.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// The goal of one manifest line: its own target/goal, else the flags' goal.
fn entry_goal(args: &Args, entry: &ManifestEntry, default: &Option<Goal>) -> Result<Goal> {
    Ok(match (entry.goal.as_deref(), &entry.target) {
        (Some("mute"), _) => Goal::Mute,
        (Some("untargeted"), _) => Goal::Untargeted {
            min_wer: args.goals.min_wer,
        },
        (_, Some(t)) => Goal::Targeted(t.clone()),
        (Some(_), None) => bail!("{}: goal `targeted` needs a target", entry.input.display()),
        (None, None) => default.clone().with_context(|| {
            format!(
                "{}: no target in the manifest and no goal flag",
                entry.input.display()
            )
        })?,
    })
}

pub fn run(args: Args, device: &str) -> Result<common::Outcome> {
    let goal = args.goals.goal()?;
    if args.blackbox.is_some() {
        return run_blackbox(&args, goal, device);
    }
    // CW, DeepFool and JSMA minimise or bound the perturbation themselves; FGSM and PGD need a
    // constraint set.
    let bounded = matches!(args.attack, AttackKind::Fgsm | AttackKind::Pgd);
    if bounded
        && args.eps.is_none()
        && args.l2.is_none()
        && args.snr_db.is_none()
        && args.masking_margin_db.is_none()
    {
        bail!("set a bound on the perturbation: --eps, --l2, --snr-db or --masking-margin-db");
    }
    if args.masking_margin_db.is_some()
        && matches!(args.attack, AttackKind::Deepfool | AttackKind::Jsma)
    {
        bail!(
            "--masking-margin-db applies to fgsm, pgd, cw and imperceptible; DeepFool and JSMA \
             shape their perturbations themselves"
        );
    }
    common::install_interrupt();
    let device = common::device(device)?;
    if let Some(manifest) = &args.manifest {
        let entries = read_manifest(manifest)?;
        let goals = entries
            .iter()
            .map(|e| entry_goal(&args, e, &goal))
            .collect::<Result<Vec<_>>>()?;
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
        let model = common::load_model(args.model.as_deref(), &device)?;
        let mut reports = Vec::new();
        for (i, (entry, goal)) in entries.iter().zip(goals).enumerate() {
            if CANCEL.load(Ordering::Relaxed) {
                break;
            }
            let stem = entry
                .input
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = args.output.join(format!("{i:04}_{stem}.wav"));
            eprintln!("[{}/{}] {}", i + 1, entries.len(), entry.input.display());
            let report = attack_one(&args, &model, &entry.input, goal, &out).unwrap_or_else(|e| {
                eprintln!("error: {}", common::error_text(&e));
                serde_json::json!({"input": entry.input.display().to_string(), "success": false, "error": common::error_text(&e)})
            });
            reports.push(report);
        }
        let successes = reports.iter().filter(|r| r["success"] == true).count();
        let summary = serde_json::json!({"manifest": manifest.display().to_string(), "inputs": reports.len(), "successes": successes, "results": reports});
        let path = args.output.join("summary.json");
        common::write_json(&path, &summary)?;
        println!(
            "{successes} of {} attacks succeeded; summary in {}",
            reports.len(),
            path.display()
        );
        return Ok(common::Outcome::of(successes == reports.len()));
    }
    let input = args
        .input
        .clone()
        .context("an input file or --manifest is needed")?;
    let goal = goal.context("choose one goal: --target TEXT, --untargeted or --mute")?;
    let model = common::load_model(args.model.as_deref(), &device)?;
    let report = attack_one(&args, &model, &input, goal, &args.output)?;
    Ok(common::Outcome::of(report["success"] == true))
}

/// Attack one input and write its three outputs; returns the report.
fn attack_one(
    args: &Args,
    model: &LoadedModel,
    input: &Path,
    goal: Goal,
    output: &Path,
) -> Result<serde_json::Value> {
    let inputs = [input];
    let perturbation_path = sibling(output, "perturbation.wav");
    let report_path = sibling(output, "json");
    for out in [output, perturbation_path.as_path(), report_path.as_path()] {
        advox::audio::refuse_overwrite(out, &inputs)?;
    }
    if matches!(args.attack, AttackKind::Imperceptible) && !matches!(goal, Goal::Targeted(_)) {
        bail!("the imperceptible attack is targeted: give a target transcript");
    }
    let x = read_audio_16k_mono(input)?;
    let decode = DecodeOptions {
        beam_size: args.beam.max(1),
        ..Default::default()
    };
    let original = transcribe(model, &x, &decode).context("transcribing the input")?;
    eprintln!("original transcript: {}", original.text);
    let objective = Objective::new(model, goal, &original.text, &original.tokens)?;
    let threshold = Arc::new(MaskingThreshold::compute(&x, MaskingConfig::default())?);
    let masking = args.masking_margin_db.map(|margin_db| MaskingBound {
        threshold: threshold.clone(),
        margin_db,
    });
    let imperceptible = matches!(args.attack, AttackKind::Imperceptible);
    let constraints = Constraints {
        // Stage 1 of the imperceptible attack needs an L∞ ball; Qin et al.'s is much louder.
        linf: args
            .eps
            .or((imperceptible && args.l2.is_none() && args.snr_db.is_none()).then_some(0.02)),
        l2: args.l2,
        snr_db: args.snr_db,
        band_hz: args.band,
        time_mask: args
            .speech_only
            .then(|| advox::perturb::speech_mask(&x, SAMPLE_RATE)),
        masking: masking.clone(),
    };
    let cfg = AttackConfig {
        method: match args.attack {
            AttackKind::Fgsm => Method::Fgsm,
            _ => Method::Pgd,
        },
        domain: match args.domain {
            DomainArg::Stft => Domain::default(),
            DomainArg::Waveform => Domain::Waveform,
        },
        constraints,
        steps: args.steps.unwrap_or(300),
        step_size: args
            .step_size
            .unwrap_or(args.eps.map_or(0.001, |e| e / 10.0)),
        rule: match args.rule {
            RuleArg::Adam => Rule::Adam,
            RuleArg::Sign => Rule::Sign,
            RuleArg::L2 => Rule::L2,
        },
        schedule: match args.schedule {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine,
        },
        random_start: args.random_start,
        restarts: args.restarts,
        check_every: args.check_every,
        decode: decode.clone(),
        seed: args.seed,
        eot: args.eot.then(|| EotConfig {
            samples: args.eot_samples,
            ..Default::default()
        }),
    };
    let bar = common::step_bar((cfg.steps * (1 + cfg.restarts)) as u64);
    if matches!(args.attack, AttackKind::Fgsm) {
        bar.set_length(1);
    }
    let mut last_transcript = original.text.clone();
    let start = Instant::now();
    let mut on_step = |info: &StepInfo| {
        if let Some(t) = &info.transcript {
            last_transcript = t.clone();
        }
        bar.inc(1);
        bar.set_message(format!("loss {:.4} | {}", info.loss, last_transcript));
    };
    let mut bins_fraction = None;
    let mut imperceptible_json = serde_json::Value::Null;
    let outcome = match args.attack {
        AttackKind::Fgsm | AttackKind::Pgd => {
            run_attack(model, &x, &objective, &cfg, CANCEL, &mut on_step)?
        }
        AttackKind::Cw => {
            let cw = CwConfig {
                steps: args.steps.unwrap_or(40),
                search_steps: args.search_steps,
                initial_c: args.c,
                kappa: args.kappa,
                learning_rate: args.lr,
                domain: cfg.domain,
                check_every: args.check_every,
                decode: decode.clone(),
                masking: masking.clone(),
            };
            bar.set_length((cw.steps * cw.search_steps.max(1)) as u64);
            run_cw(model, &x, &objective, &cw, CANCEL, &mut on_step)?
        }
        AttackKind::Deepfool => {
            let df = DeepFoolConfig {
                max_iterations: args.steps.unwrap_or(50),
                overshoot: args.overshoot,
                decode: decode.clone(),
            };
            bar.set_length(df.max_iterations as u64);
            run_deepfool(model, &x, &objective, &df, CANCEL, &mut on_step)?
        }
        AttackKind::Jsma => {
            let js = JsmaConfig {
                max_bins_fraction: args.max_bins,
                bins_per_iteration_fraction: args.bins_per_iteration,
                amplitude: args.bin_amplitude,
                iterations: args.steps.unwrap_or(100),
                check_every: args.check_every.min(2),
                decode: decode.clone(),
            };
            bar.set_length(js.iterations as u64);
            let out = run_jsma(model, &x, &objective, &js, CANCEL, &mut on_step)?;
            bins_fraction = Some(out.bins_fraction);
            out.attack
        }
        AttackKind::Imperceptible => {
            let im = ImperceptibleConfig {
                steps: args.stage2_steps,
                learning_rate: args.stage2_lr,
                alpha: args.alpha,
                check_every: args.check_every.max(1) * 2,
                stage1: cfg.clone(),
                ..Default::default()
            };
            bar.set_length((cfg.steps + im.steps) as u64);
            let out = run_imperceptible(model, &x, &objective, &im, CANCEL, &mut on_step)?;
            imperceptible_json = serde_json::json!({
                "stage1_steps": out.stage1_steps,
                "alpha": out.alpha,
                "masking_loss": out.masking_loss,
            });
            out.attack
        }
    };
    bar.finish_and_clear();
    let attack_seconds = start.elapsed().as_secs_f64();

    write_wav(
        output,
        &outcome.adversarial,
        16_000,
        WavFormat::Pcm16,
        &inputs,
    )?;
    write_wav(
        &perturbation_path,
        &outcome.perturbation,
        16_000,
        WavFormat::Float32,
        &inputs,
    )?;
    // The verdict comes from the file as written.
    let written = read_audio_16k_mono(output)?;
    let final_transcript = transcribe(model, &written, &decode)?.text;
    let success = objective.is_met(&final_transcript);
    let delta: Vec<f32> = written.iter().zip(&x).map(|(a, b)| a - b).collect();
    let masking_stats = threshold.stats(&delta)?;
    let report = serde_json::json!({
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "perturbation": perturbation_path.display().to_string(),
        "attack": format!("{:?}", args.attack).to_lowercase(),
        "goal": objective.describe(),
        "target": match &objective.goal {
            Goal::Targeted(t) => Some(t.clone()),
            _ => None,
        },
        "original_transcript": original.text,
        "adversarial_transcript": final_transcript,
        "success": success,
        "cancelled": outcome.cancelled,
        "snr_db": snr_db(&x, &delta),
        "dbx": dbx(&x, &delta),
        "linf": linf(&delta),
        "l2": l2(&delta),
        "steps": outcome.steps,
        "final_loss": outcome.loss,
        "wall_seconds": attack_seconds,
        "model": model.id(),
        "tf_bins_fraction": bins_fraction,
        "masking": masking_stats,
        "imperceptible": imperceptible_json,
        "seed": args.seed,
        "constraints": {
            "eps": args.eps, "l2": args.l2, "snr_db": args.snr_db,
            "band_hz": args.band, "speech_only": args.speech_only, "eot": args.eot,
            "masking_margin_db": args.masking_margin_db,
        },
    });
    common::write_json(&report_path, &report)?;
    println!(
        "{} | {:?} | SNR {:.1} dB | dBx {:.1} | {:.1} % of the energy masked | {} steps | {:.1} s",
        if success { "success" } else { "failure" },
        final_transcript,
        snr_db(&x, &delta),
        dbx(&x, &delta),
        100.0 * masking_stats.energy_under_threshold,
        outcome.steps,
        attack_seconds
    );
    Ok(report)
}

/// `--blackbox`: one input, through the built-in model as an opaque box or `--asr-cmd`.
fn run_blackbox(args: &Args, goal: Option<Goal>, device: &str) -> Result<common::Outcome> {
    use crate::attack_blackbox::{attack_one, Algorithm, BlackBoxArgs};
    use advox::attack::blackbox::GaConfig;
    use advox::attack::nes::{Estimator, NesConfig};
    use advox::recognizer::{BuiltinRecognizer, CommandRecognizer, Recognizer};
    if args.manifest.is_some() {
        bail!("black-box attacks take one input file, not a manifest");
    }
    if !(args.timeout_s.is_finite() && args.timeout_s > 0.0) {
        bail!("--timeout-s must be positive");
    }
    let input = args.input.clone().context("an input file is needed")?;
    let goal = goal.context("choose one goal: --target TEXT, --untargeted or --mute")?;
    common::install_interrupt();
    let model;
    let mut original = None;
    let mut recognizer: Box<dyn Recognizer> = match &args.asr_cmd {
        Some(cmd) => Box::new(CommandRecognizer::new(
            cmd,
            std::time::Duration::from_secs_f64(args.timeout_s),
        )?),
        None => {
            // The built-in model exposes the goal's loss as a score (no gradients).
            let device = common::device(device)?;
            model = common::load_model(args.model.as_deref(), &device)?;
            let mut builtin = BuiltinRecognizer::new(
                &model,
                DecodeOptions {
                    beam_size: args.beam.max(1),
                    ..Default::default()
                },
            );
            let x = advox::audio::read_audio_16k_mono(&input)?;
            let (text, tokens) = builtin
                .transcribe_with_tokens(&x)
                .context("transcribing the input")?;
            builtin.expose_scores(goal.clone(), &text, &tokens)?;
            original = Some(text);
            Box::new(builtin)
        }
    };
    let linf = args.eps.unwrap_or(0.02);
    let algorithm = match args.blackbox {
        Some(BlackBoxKind::Nes) | Some(BlackBoxKind::Spsa) => Algorithm::Nes(NesConfig {
            estimator: match args.blackbox {
                Some(BlackBoxKind::Spsa) => Estimator::Spsa,
                _ => Estimator::Nes,
            },
            linf,
            directions: args.population,
            sigma: args.sigma.unwrap_or(linf / 4.0),
            step_size: args.step_size.unwrap_or(linf / 5.0),
            tile: args.tile,
            check_every: args.check_every,
            query_budget: args.queries,
            seed: args.seed,
        }),
        _ => Algorithm::Ga(GaConfig {
            population: args.population,
            linf,
            query_budget: args.queries,
            seed: args.seed,
            ..Default::default()
        }),
    };
    let perturbation = sibling(&args.output, "perturbation.wav");
    let report_path = sibling(&args.output, "json");
    let bb = BlackBoxArgs {
        input: &input,
        output: &args.output,
        perturbation: &perturbation,
        report: &report_path,
        goal,
        algorithm,
        original,
    };
    let report = attack_one(recognizer.as_mut(), &bb, CANCEL)?;
    Ok(common::Outcome::of(report["success"] == true))
}
