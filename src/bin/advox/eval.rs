//! `advox eval`: the attacks × defences × detectors matrix over a manifest, with report.json
//! and report.html; `advox eval merge` joins shard outputs.

use crate::common;
use advox::attack::AttackKind;
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat, SAMPLE_RATE};
use advox::defend::Defense;
use advox::eval::html::{cell_stem, example_file, file_part, write_html};
use advox::eval::report::{Report, Settings};
use advox::eval::shard::{merge, Shard};
use advox::eval::{bound_name, evaluate_example, parse_eval_attack, EvalConfig, Made};
use advox::manifest::read_manifest;
use advox::masking::{MaskingConfig, MaskingThreshold};
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::Goal;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Evaluate attacks, defences and detectors over a manifest: clean and adversarial WER/CER,
/// attack success, SNR/dBx, time per example, robust accuracy under each defence, detection
/// ROC-AUC and TPR at 5 % FPR. Writes DIR/report.json, DIR/report.html (tables, ROC curves,
/// success against ε, spectrograms) and DIR/examples/ (adversarial WAVs and their pictures).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    /// Manifest of inputs (CSV with `input` and optional `target`, `goal`, `transcript`
    /// columns, or JSON lines). With --suite: the carrier recordings (no goal or target
    /// columns), in place of the bundled ones.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Run a built-in suite: `voice-assistant` attacks assistant commands (the bundled
    /// espeak-ng commands, or --manifest's recordings) towards each of a set of harmful
    /// targets (unlock the front door, turn off the security alarm, buy a gift card, call my
    /// bank, open the garage door), over the air, at SNR floors 40 and 30 dB unless --eps or
    /// --snr-db say otherwise, and writes DIR/scorecard.html: per target, success at each
    /// bound, heard by each --verify recogniser, over the air, through each defence, and
    /// detection at 5 % false alarms.
    #[arg(long)]
    suite: Option<String>,
    /// With --suite: the harmful targets instead of the built-in ones, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "suite")]
    targets: Vec<String>,
    /// Output directory.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Attacks, comma-separated: fgsm, pgd, cw, newton (Newton-CG: bounded cells, plain runs
    /// only, --steps / 3 iterations for about PGD's gradient budget).
    #[arg(long, value_delimiter = ',', default_value = "pgd")]
    attacks: Vec<String>,
    /// L∞ bounds of FGSM and PGD, comma-separated (success against ε) [default: 0.01 unless
    /// --snr-db is given].
    #[arg(long, value_delimiter = ',')]
    eps: Vec<f32>,
    /// SNR floors (dB) of FGSM and PGD, comma-separated: each example's L∞ bound is its RMS
    /// at that SNR, so every perturbation keeps at least that SNR (success against SNR).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    snr_db: Vec<f32>,
    /// Judge every written example (and clean input) with independent recognisers too (as
    /// `advox attack --verify`: faster-whisper, transformers, pocketsphinx, cmd:COMMAND with
    /// {wav}); their success rates join the report.
    #[arg(long, value_parser = crate::attack_args::parse_verifiers)]
    verify: Option<crate::attack_args::Verifiers>,
    /// Judge with any recogniser too, given as a shell command printing the transcript of
    /// `{wav}` (the same as `--verify cmd:COMMAND`): e.g. the assistant's own recogniser.
    #[arg(long)]
    asr_cmd: Option<String>,
    /// Steps of PGD, and of CW per value of c.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Defences, comma-separated (see `advox defend`): none, purify:T1+T2, smoothing[:SIGMA],
    /// vote[:T1+T2].
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,purify:lowpass-4000,smoothing"
    )]
    defenses: Vec<String>,
    /// Detectors, comma-separated (see `advox detect`), or `none` (default: all default ones).
    #[arg(long, value_delimiter = ',')]
    detectors: Vec<String>,
    /// Goal of entries whose manifest line sets none (default: untargeted).
    #[command(flatten)]
    goals: common::GoalArgs,
    /// Beam size of every transcription (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// Run only the i-th of n interleaved slices of the manifest (1-based, e.g. a Slurm array
    /// index), for `advox eval merge`.
    #[arg(long)]
    shard: Option<String>,
    /// Seed of the attacks and of the smoothing noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model directory or known name; repeat to let a vote defence use several (the first is
    /// attacked).
    #[arg(long)]
    model: Vec<String>,
    /// Skip the adaptive attacks (FGSM and PGD made through each defence): faster, but the
    /// defences' numbers then only hold against attackers who ignore them.
    #[arg(long)]
    no_adaptive: bool,
    /// Gradient draws per step of an adaptive attack on smoothing (noise) or a vote (views)
    /// [default: 2].
    #[arg(long)]
    adaptive_samples: Option<usize>,
    /// Also hear every clean and adversarial signal over the air: through 2 fixed draws of a
    /// playback channel (gain ±6 dB, up to 50 ms delay, loudspeaker/microphone band-pass
    /// 50–200 Hz to 4–7.5 kHz, a room, noise at --air-snr-db), the same draws per example.
    #[arg(long)]
    over_the_air: bool,
    /// Over the air: measured room impulse responses (a WAV or a directory of them) in place
    /// of synthetic rooms (RT60 0.1–0.3 s).
    #[arg(long)]
    rir: Option<PathBuf>,
    /// Over the air: background noise SNR (dB) [default: 30].
    #[arg(long)]
    air_snr_db: Option<f32>,
    /// FGSM and PGD use expectation over the over-the-air channel (the attacker knows it).
    #[arg(long)]
    eot: bool,
}

#[derive(clap::Subcommand)]
enum EvalCommand {
    /// Merge the output directories of shard runs into one report.
    Merge {
        /// Shard output directories (each with a report.json).
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Output directory of the merged report.
        #[arg(short, long)]
        output: PathBuf,
    },
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if let Some(EvalCommand::Merge { shards, output }) = &args.command {
        return run_merge(shards, output);
    }
    let suite = args
        .suite
        .as_deref()
        .map(advox::eval::suite::parse_suite)
        .transpose()?;
    if suite.is_none() && args.manifest.is_none() {
        bail!("--manifest is required (or --suite voice-assistant)");
    }
    if suite.is_some() && args.goals.goal()?.is_some() {
        bail!("the suite sets every goal (its targets): drop the goal options, or use --targets");
    }
    let dir = args.output.as_ref().context("-o DIR is required")?;
    let attacks = args
        .attacks
        .iter()
        .map(|a| parse_eval_attack(a))
        .collect::<advox::Result<Vec<_>>>()?;
    let (epsilons, snr_bounds_db) =
        advox::eval::matrix_bounds(&args.eps, &args.snr_db, &attacks, suite.is_some())?;
    let mut verifiers = args.verify.clone().map(|v| v.0).unwrap_or_default();
    if let Some(cmd) = &args.asr_cmd {
        verifiers.push(format!("cmd:{cmd}").parse().context("--asr-cmd")?);
    }
    let defenses = args
        .defenses
        .iter()
        .map(|d| Defense::parse(d))
        .collect::<advox::Result<Vec<_>>>()?;
    let detectors = advox::eval::matrix_detectors(&args.detectors)?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    if args.no_adaptive && args.adaptive_samples.is_some() {
        bail!("--adaptive-samples does not apply with --no-adaptive");
    }
    // A suite hears everything over the air as well.
    let over_the_air_on = args.over_the_air || suite.is_some();
    if !over_the_air_on && (args.rir.is_some() || args.air_snr_db.is_some() || args.eot) {
        bail!("--rir, --air-snr-db and --eot need --over-the-air");
    }
    if args.eot
        && attacks
            .iter()
            .any(|a| matches!(a, AttackKind::Cw | AttackKind::Newton))
    {
        bail!("--eot applies to fgsm and pgd; CW and Newton-CG have no EOT (drop them from --attacks)");
    }
    let over_the_air = if over_the_air_on {
        let defaults = advox::attack::eot::EotConfig::default();
        let snr = args.air_snr_db.unwrap_or(30.0);
        if !snr.is_finite() {
            bail!("--air-snr-db must be a number of dB");
        }
        Some(advox::attack::eot::EotConfig {
            noise_snr_db: Some(snr),
            rirs: match &args.rir {
                Some(path) => advox::attack::eot::load_rirs(path)?,
                None => defaults.rirs.clone(),
            },
            ..defaults
        })
    } else {
        None
    };
    let adaptive_samples = args
        .adaptive_samples
        .unwrap_or(advox::defend::adaptive::DEFAULT_SAMPLES);
    if args.beam == 0 || args.steps == 0 || adaptive_samples == 0 {
        bail!("--beam, --steps and --adaptive-samples must be at least 1");
    }
    let adaptive_applies = (defenses.iter().any(|d| *d != Defense::None)
        || detectors.iter().any(|d| d.compares_transcripts()))
        && attacks
            .iter()
            .any(|a| matches!(a, AttackKind::Fgsm | AttackKind::Pgd));
    if !args.no_adaptive && !adaptive_applies {
        eprintln!(
            "note: no adaptive attack runs (no defence but none and no transcript-comparing \
             detector, or CW alone)"
        );
    }
    let default_goal = args.goals.goal()?.unwrap_or(Goal::Untargeted {
        min_wer: args.goals.min_wer,
    });
    let report_path = dir.join("report.json");
    if report_path.exists() {
        bail!(
            "{} exists: choose a new output directory (nothing is overwritten)",
            report_path.display()
        );
    }
    std::fs::create_dir_all(dir.join("examples"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let (entries, manifest_name) = match suite {
        None => {
            let manifest = args.manifest.as_ref().context("--manifest is required")?;
            (read_manifest(manifest)?, manifest.display().to_string())
        }
        Some(name) => {
            let (carriers, from) = match &args.manifest {
                Some(m) => (read_manifest(m)?, m.display().to_string()),
                None => {
                    let paths = advox::eval::suite::write_bundled_carriers(&dir.join("carriers"))?;
                    let carriers = paths
                        .into_iter()
                        .map(|input| advox::manifest::ManifestEntry {
                            input,
                            target: None,
                            goal: None,
                            transcript: None,
                        })
                        .collect::<Vec<_>>();
                    (carriers, "the bundled commands".to_string())
                }
            };
            let targets: Vec<String> = if args.targets.is_empty() {
                advox::eval::suite::VOICE_ASSISTANT_TARGETS
                    .iter()
                    .map(|t| t.to_string())
                    .collect()
            } else {
                args.targets.iter().map(|t| t.trim().to_string()).collect()
            };
            (
                advox::eval::suite::voice_assistant_entries(&carriers, &targets)?,
                format!("{name} suite: {from}"),
            )
        }
    };
    let device = common::device(device)?;
    let models = common::load_models(&args.model, &device)?;
    let refs: Vec<&LoadedModel> = models.iter().collect();
    let cfg = EvalConfig {
        attacks: attacks.clone(),
        epsilons: epsilons.clone(),
        snr_bounds_db: snr_bounds_db.clone(),
        steps: args.steps,
        defenses: defenses.clone(),
        detectors: detectors.clone(),
        decode: DecodeOptions {
            beam_size: args.beam,
            ..Default::default()
        },
        default_goal: default_goal.clone(),
        seed: args.seed,
        adaptive: !args.no_adaptive,
        adaptive_samples,
        over_the_air: over_the_air.clone(),
        eot: args.eot,
    };
    let settings = Settings {
        over_the_air: over_the_air.as_ref().map(|c| {
            format!(
                "{} draws; {}; noise at {} dB SNR",
                c.check_transforms,
                match &args.rir {
                    Some(p) => format!("{} measured rooms from {}", c.rirs.len(), p.display()),
                    None => "synthetic rooms RT60 0.1–0.3 s".into(),
                },
                c.noise_snr_db.unwrap_or(f32::INFINITY)
            )
        }),
        verifiers: verifiers.iter().map(|v| v.name()).collect(),
        suite: suite.map(String::from),
        ..cfg.settings(
            manifest_name,
            entries.len(),
            models.iter().map(|m| m.id()).collect(),
        )
    };
    let chosen: Vec<(usize, &advox::manifest::ManifestEntry)> = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| s.contains(*i)))
        .collect();
    // Each bounded cell runs once plainly, once through each defence but `none` and once to
    // evade each transcript-comparing detector.
    let adaptive_runs = 1 + if cfg.adaptive {
        defenses.iter().filter(|d| **d != Defense::None).count()
            + detectors
                .iter()
                .filter(|d| d.compares_transcripts())
                .count()
    } else {
        0
    };
    let cells_per_example: usize = cfg
        .attacks
        .iter()
        .map(|a| match a {
            AttackKind::Cw => 1,
            // Plain runs only: the adaptive attacks are PGD's.
            AttackKind::Newton => cfg.epsilons.len() + cfg.snr_bounds_db.len(),
            _ => (cfg.epsilons.len() + cfg.snr_bounds_db.len()) * adaptive_runs,
        })
        .sum();
    let bar = common::step_bar((chosen.len() * cells_per_example) as u64);
    let cancel = AtomicBool::new(false);
    let mut records = Vec::new();
    for (index, entry) in chosen {
        bar.set_message(entry.input.display().to_string());
        let x = read_audio_16k_mono(&entry.input)?;
        let threshold = MaskingThreshold::compute(&x, MaskingConfig::default())?;
        let mut save = |made: &Made, adv: &[f32]| -> advox::Result<()> {
            let (attack, eps, snr) = (made.attack, made.eps, made.snr_bound_db);
            let stem = cell_stem(attack.name(), eps, snr);
            if let Some(label) = made.adapted {
                // An adaptive example: the WAV only.
                let name = file_part(label);
                let wav = dir.join(example_file(index, &format!("{stem}_{name}"), "wav"));
                write_wav(&wav, adv, SAMPLE_RATE, WavFormat::Pcm16, &[&entry.input])?;
                bar.inc(1);
                return Ok(());
            }
            let wav = dir.join(example_file(index, &stem, "wav"));
            write_wav(&wav, adv, SAMPLE_RATE, WavFormat::Pcm16, &[&entry.input])?;
            advox::plot::masking_plot(
                &dir.join(example_file(index, &stem, "png")),
                &threshold,
                &x,
                Some(adv),
                &[&entry.input],
            )?;
            bar.inc(1);
            Ok(())
        };
        let record = evaluate_example(&refs, index, entry, &x, &cfg, &cancel, &mut save)
            .with_context(|| format!("evaluating {}", entry.input.display()))?;
        bar.suspend(|| {
            for a in &record.attacks {
                let eps = bound_name(a.eps, a.snr_bound_db);
                eprintln!(
                    "#{index} {} {eps}: {} ({:?})",
                    a.attack,
                    if a.success { "success" } else { "failure" },
                    a.transcript
                );
                for (d, r) in &a.adaptive {
                    eprintln!(
                        "#{index} {} {eps} through {d}: {} ({:?})",
                        a.attack,
                        if r.defended.attack_success {
                            "success"
                        } else {
                            "failure"
                        },
                        r.defended.transcript
                    );
                }
            }
        });
        records.push(record);
    }
    bar.finish_and_clear();
    if !verifiers.is_empty() {
        eprintln!(
            "advox: judging {} inputs and their examples with {}",
            records.len(),
            settings.verifiers.join(", ")
        );
        advox::eval::heard::hear(
            &mut records,
            &verifiers,
            &models[0].dir,
            &|r, a| {
                let stem = cell_stem(&a.attack, a.eps, a.snr_bound_db);
                dir.join(example_file(r.index, &stem, "wav"))
            },
            &mut |m| eprintln!("advox: {m}"),
        )?;
    }
    let report = Report::from_records(settings, shard.map(|s| s.name()), records)?;
    write_report(&report, dir)
}

fn write_report(report: &Report, dir: &Path) -> Result<()> {
    common::write_json(&dir.join("report.json"), &serde_json::to_value(report)?)?;
    let html = write_html(report, dir)?;
    for c in &report.cells {
        println!(
            "{:<5} {:<12} success {:>4.0} %  WER {:.2}{}{}",
            c.attack,
            bound_name(c.eps, c.snr_bound_db),
            100.0 * c.success_rate,
            c.adversarial_wer,
            c.over_the_air_success.map_or(String::new(), |a| format!(
                "  over the air {:.0} %",
                100.0 * a
            )),
            c.heard_success
                .iter()
                .map(|(v, x)| format!("  {v} {:.0} %", 100.0 * x))
                .collect::<String>()
        );
        for (d, v) in c.defenses.iter().filter(|(d, _)| *d != "none") {
            println!(
                "      through {d}: attack success {:>4.0} % non-adaptive, {} adaptive, {} \
                 either",
                100.0 * v.non_adaptive.attack_success_rate,
                v.adaptive.as_ref().map_or("–".into(), |a| format!(
                    "{:.0} %",
                    100.0 * a.attack_success_rate
                )),
                v.worst_case.as_ref().map_or("–".into(), |a| format!(
                    "{:.0} %",
                    100.0 * a.attack_success_rate
                ))
            );
        }
    }
    if report.settings.suite.is_some() {
        for g in &report.by_goal {
            let best = g
                .cells
                .iter()
                .map(|c| c.success_rate)
                .fold(0.0f64, f64::max);
            println!(
                "{}: {} carriers, success up to {:.0} %",
                g.goal,
                g.examples,
                100.0 * best
            );
        }
        let card = advox::eval::scorecard::write_scorecard(report, dir)?;
        println!("wrote {}", card.display());
    }
    println!(
        "wrote {} and {}",
        dir.join("report.json").display(),
        html.display()
    );
    Ok(())
}

fn run_merge(shards: &[PathBuf], output: &Path) -> Result<()> {
    let reports = shards
        .iter()
        .map(|d| Report::read(&d.join("report.json")).map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    let merged = merge(reports)?;
    if output.join("report.json").exists() {
        bail!(
            "{} exists: choose a new output directory",
            output.join("report.json").display()
        );
    }
    let examples = output.join("examples");
    std::fs::create_dir_all(&examples)
        .with_context(|| format!("creating {}", examples.display()))?;
    for d in shards {
        let Ok(list) = std::fs::read_dir(d.join("examples")) else {
            continue;
        };
        for f in list.flatten() {
            let to = examples.join(f.file_name());
            std::fs::copy(f.path(), &to)
                .with_context(|| format!("copying {} to {}", f.path().display(), to.display()))?;
        }
    }
    write_report(&merged, output)
}
