//! `advox attribute`: which algorithm most likely made a recording (or none), with the
//! probability of each; `advox attribute train` makes the examples (every clean recording of
//! two manifests attacked by every algorithm), trains a classifier on one and scores it on the
//! other.

use crate::common;
use advox::attack::universal::{prepare, train_universal, UniversalConfig};
use advox::attribute::classifier::Classifier;
use advox::attribute::dataset::{
    append_record, evaluate, read_records, seed_of, write_records, Record,
};
use advox::attribute::examples::{make_example, Budget};
use advox::attribute::{attribute, features, Class};
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat, SAMPLE_RATE};
use advox::manifest::read_manifest;
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::Goal;
use advox::transcribe::{transcribe, Transcript};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// `advox attribute`'s options.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Recordings to attribute (any format advox reads; up to 30 s each).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print JSON lines (`file`, `attack`, `probabilities`) instead of a table.
    #[arg(long)]
    json: bool,
    /// A classifier from `advox attribute train` [default: the one advox ships].
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Model directory or known name (the classifier's features use tiny.en: the default).
    #[arg(long)]
    model: Option<String>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Make examples of every algorithm from clean recordings, train a classifier on them and
    /// score it on held-out recordings (other speakers).
    Train(TrainArgs),
}

/// `advox attribute train`'s options.
#[derive(clap::Args)]
struct TrainArgs {
    /// Clean recordings to train on (manifest).
    #[arg(long)]
    train: PathBuf,
    /// Clean recordings of other speakers to score the classifier on (manifest).
    #[arg(long)]
    held_out: PathBuf,
    /// Working directory: examples.jsonl (features of every example, resumed when present),
    /// universal.wav, examples/CLASS/NAME.wav, classifier.json and report.json.
    #[arg(short, long)]
    out: PathBuf,
    /// Train without this class and report how often its held-out examples are rejected.
    #[arg(long)]
    leave_out: Option<String>,
    /// The classes to make and train on, comma-separated [default: all: clean, fgsm, pgd, cw,
    /// deepfool, jsma, imperceptible, universal, ga, nes].
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Gradient steps of PGD, CW and JSMA, and of each imperceptible stage.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Iterations of DeepFool.
    #[arg(long, default_value_t = 5)]
    deepfool_iterations: usize,
    /// Queries of GA and NES.
    #[arg(long, default_value_t = 40)]
    queries: usize,
    /// Steps of the universal perturbation's training (on the training recordings).
    #[arg(long, default_value_t = 20)]
    universal_steps: usize,
    /// Compute the features of every cached example again from its WAV (after an advox
    /// update changed them; the examples themselves are kept).
    #[arg(long)]
    recompute_features: bool,
    /// Model directory or known name.
    #[arg(long)]
    model: Option<String>,
}

pub fn run(args: Args, device: &str) -> Result<()> {
    let device = common::device(device)?;
    if let Some(Sub::Train(t)) = args.command {
        let model = common::load_model(t.model.as_deref(), &device)?;
        return train(&t, &model);
    }
    let classifier = match &args.classifier {
        Some(p) => Classifier::load(p)?,
        None => Classifier::builtin()?,
    };
    let model = common::load_model(args.model.as_deref(), &device)?;
    for file in &args.files {
        let x = read_audio_16k_mono(file)?;
        let a = attribute(&model, &classifier, &x).with_context(|| file.display().to_string())?;
        if args.json {
            let line = serde_json::json!({
                "file": file.display().to_string(),
                "attack": a.attack,
                "probabilities": a.probabilities,
            });
            println!("{line}");
        } else {
            let mut ranked: Vec<_> = a.probabilities.iter().collect();
            ranked.sort_by(|x, y| y.1.total_cmp(x.1));
            let top: Vec<String> = ranked
                .iter()
                .take(3)
                .map(|(c, p)| format!("{c} {:.0} %", 100.0 * **p))
                .collect();
            println!("{}: {} ({})", file.display(), a.attack, top.join(", "));
        }
    }
    Ok(())
}

/// A recording: its name (the file's stem) and 16-kHz samples.
type Clip = (String, Vec<f32>);

/// The clips of a manifest, names unique, each at most 30 s.
fn clips(manifest: &Path) -> Result<Vec<Clip>> {
    let mut out: Vec<Clip> = Vec::new();
    for e in read_manifest(manifest)? {
        let name = e
            .input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if out.iter().any(|(n, _)| *n == name) {
            bail!("{}: two recordings named {name}", manifest.display());
        }
        let x = read_audio_16k_mono(&e.input)?;
        if x.len() > advox::mel::N_SAMPLES {
            bail!(
                "{}: longer than 30 s (attribution examples are made per 30-s window: cut it)",
                e.input.display()
            );
        }
        out.push((name, x));
    }
    if out.is_empty() {
        bail!("{}: no recordings", manifest.display());
    }
    Ok(out)
}

fn train(t: &TrainArgs, model: &LoadedModel) -> Result<()> {
    let leave_out = t
        .leave_out
        .as_deref()
        .map(str::parse::<Class>)
        .transpose()?;
    let chosen: Vec<Class> = if t.classes.is_empty() {
        Class::ALL.to_vec()
    } else {
        t.classes
            .iter()
            .map(|c| c.parse::<Class>())
            .collect::<advox::Result<_>>()?
    };
    if chosen.len() < 2 {
        bail!("--classes: name two classes or more");
    }
    if leave_out.is_some_and(|c| !chosen.contains(&c)) {
        bail!("--leave-out names a class that --classes leaves out already");
    }
    if t.steps == 0 || t.queries == 0 || t.deepfool_iterations == 0 || t.universal_steps == 0 {
        bail!("--steps, --queries, --deepfool-iterations and --universal-steps must be positive");
    }
    let train_set = clips(&t.train)?;
    let held_out = clips(&t.held_out)?;
    if let Some((name, _)) = train_set
        .iter()
        .find(|(n, _)| held_out.iter().any(|(m, _)| m == n))
    {
        bail!("{name} is in both --train and --held-out");
    }
    std::fs::create_dir_all(&t.out).with_context(|| t.out.display().to_string())?;
    // The examples cached in the directory must have been made as these would be.
    let settings = serde_json::json!({
        "steps": t.steps,
        "deepfool_iterations": t.deepfool_iterations,
        "queries": t.queries,
        "universal_steps": t.universal_steps,
        "model": model.id(),
    });
    let settings_path = t.out.join("settings.json");
    if settings_path.exists() {
        let text = std::fs::read_to_string(&settings_path)
            .with_context(|| settings_path.display().to_string())?;
        let before: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", settings_path.display()))?;
        if before != settings {
            bail!(
                "{} holds examples made with other settings ({before}): use another --out",
                t.out.display()
            );
        }
    } else {
        common::write_json(&settings_path, &settings)?;
    }
    let universal = if chosen.contains(&Class::Universal) {
        universal_perturbation(t, model, &train_set)?
    } else {
        Vec::new()
    };
    let budget = Budget {
        steps: t.steps,
        deepfool_iterations: t.deepfool_iterations,
        queries: t.queries,
    };
    let cache = t.out.join("examples.jsonl");
    let mut records = read_records(&cache)?;
    if t.recompute_features && !records.is_empty() {
        eprintln!("computing the features of {} examples again", records.len());
        let bar = common::step_bar(records.len() as u64);
        for r in records.iter_mut() {
            let wav = t
                .out
                .join("examples")
                .join(&r.class)
                .join(format!("{}.wav", r.clip));
            let x = read_audio_16k_mono(&wav)?;
            r.features = features::features(model, &x, &DecodeOptions::default())
                .with_context(|| wav.display().to_string())?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        write_records(&cache, &records)?;
    }
    if let Some(r) = records.iter().find(|r| r.features.len() != features::COUNT) {
        bail!(
            "{}: examples with {} features where this advox computes {}: rerun with \
             --recompute-features",
            cache.display(),
            r.features.len(),
            features::COUNT
        );
    }
    let todo: Vec<(&str, &Clip, Class)> = [("train", &train_set), ("held-out", &held_out)]
        .into_iter()
        .flat_map(|(split, set)| set.iter().map(move |c| (split, c)))
        .flat_map(|(split, c)| chosen.iter().map(move |k| (split, c, *k)))
        .filter(|(_, (name, _), k)| {
            !records
                .iter()
                .any(|r| r.clip == *name && r.class == k.name())
        })
        .collect();
    eprintln!(
        "{} examples cached in {}, {} to make",
        records.len(),
        cache.display(),
        todo.len()
    );
    let bar = common::step_bar(todo.len() as u64);
    let mut transcripts: std::collections::HashMap<&str, Transcript> = Default::default();
    for (split, (name, x), class) in todo {
        bar.set_message(format!("{name} {}", class.name()));
        let started = std::time::Instant::now();
        let seed = seed_of(name, class.name());
        // The clean transcript, once per recording.
        if !transcripts.contains_key(name.as_str()) {
            let t = transcribe(model, x, &DecodeOptions::default())?;
            transcripts.insert(name, t);
        }
        let clean = &transcripts[name.as_str()];
        let (example, eps) = make_example(model, x, clean, class, &budget, &universal, seed)
            .with_context(|| format!("{name}: making the {} example", class.name()))?;
        let f = features::features(model, &example, &DecodeOptions::default())
            .with_context(|| format!("{name}: features of the {} example", class.name()))?;
        let dir = t.out.join("examples").join(class.name());
        std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
        let wav = dir.join(format!("{name}.wav"));
        write_wav(&wav, &example, SAMPLE_RATE, WavFormat::Pcm16, &[])?;
        let record = Record {
            clip: name.clone(),
            split: split.into(),
            class: class.name().into(),
            eps,
            seconds: started.elapsed().as_secs_f32(),
            features: f,
        };
        append_record(&cache, &record)?;
        records.push(record);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let classes: Vec<String> = chosen
        .iter()
        .filter(|c| Some(**c) != leave_out)
        .map(|c| c.name().to_string())
        .collect();
    let names = features::names();
    let training: Vec<_> = records
        .iter()
        .filter(|r| r.split == "train" && classes.contains(&r.class))
        .map(Record::labelled)
        .collect();
    let mut classifier = Classifier::train(&classes, &names, &training)?;
    classifier.trained_on = format!(
        "advox attribute train: {} examples of {} recordings ({}), budget: {} steps, {} DeepFool \
         iterations, {} queries, universal {} steps{}",
        training.len(),
        train_set.len(),
        t.train.display(),
        t.steps,
        t.deepfool_iterations,
        t.queries,
        t.universal_steps,
        leave_out.map_or(String::new(), |c| format!(", without {}", c.name()))
    );
    let scored: Vec<Record> = records
        .iter()
        .filter(|r| r.split == "held-out" && chosen.iter().any(|c| c.name() == r.class))
        .cloned()
        .collect();
    let result = evaluate(&classifier, &scored)?;
    let path = t.out.join("classifier.json");
    classifier.save(&path)?;
    common::write_json(&t.out.join("report.json"), &result)?;
    println!(
        "held-out ({} recordings, {} examples): accuracy {:.1} % ({:.1} % without rejection), \
         {:.1} % rejected as unknown",
        held_out.len(),
        result.examples,
        100.0 * result.accuracy,
        100.0 * result.accuracy_without_rejection,
        100.0 * result.unknown_rate
    );
    println!(
        "{:<14} {:>8} {:>8} {:>8}",
        "class", "examples", "right", "unknown"
    );
    for (class, s) in &result.per_class {
        println!(
            "{class:<14} {:>8} {:>7.0}% {:>7.0}%",
            s.examples,
            100.0 * s.correct as f64 / s.examples.max(1) as f64,
            100.0 * s.unknown as f64 / s.examples.max(1) as f64
        );
    }
    for (class, u) in &result.unseen {
        println!(
            "left out {class}: {:.0} % of its {} held-out examples rejected as unknown; taken for {:?}",
            100.0 * u.rejected,
            u.examples,
            u.said
        );
    }
    println!("classifier: {}", path.display());
    Ok(())
}

/// The universal perturbation of the universal class: trained on the training recordings
/// (untargeted, additive, 1 s at L∞ 0.02), kept in `OUT/universal.wav` and reused.
fn universal_perturbation(
    t: &TrainArgs,
    model: &LoadedModel,
    train_set: &[Clip],
) -> Result<Vec<f32>> {
    let path = t.out.join("universal.wav");
    if path.exists() {
        return Ok(read_audio_16k_mono(&path)?);
    }
    eprintln!(
        "training the universal perturbation on {} recordings",
        train_set.len()
    );
    let decode = DecodeOptions::default();
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let set = prepare(model, train_set.to_vec(), &goal, &decode)?;
    let cfg = UniversalConfig {
        steps: t.universal_steps,
        ..UniversalConfig::additive()
    };
    let bar = common::step_bar(cfg.steps as u64);
    let delta = train_universal(model, &set, &cfg, &AtomicBool::new(false), &mut |_| {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    write_wav(&path, &delta, SAMPLE_RATE, WavFormat::Float32, &[])?;
    Ok(delta)
}
