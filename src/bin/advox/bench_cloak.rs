//! `advox bench --cloak MANIFEST`: what Cloak does to real recordings, per strength setting
//! (the margin under the masking threshold): the WER of every recogniser on the cloaked
//! signal against the clean one, and what it costs a listener (wideband PESQ, SNR, share of
//! the energy masked), with the real-time factor; the table and a trade-off plot (WER of the
//! first verifier's beam-5 plain decoding against PESQ).

use crate::common;
use advox::attack::cloak_model::ModelCloakConfig;
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat};
use advox::eval::cloak::{
    cloak_recording, cloak_recording_streamed, cloak_recording_with_model, CloakQuality, Cloaked,
};
use advox::manifest::read_manifest;
use advox::metrics::wer;
use advox::model::{DecodeOptions, LoadedModel};
use advox::plot::{line_chart, Axes, Series};
use advox::stream::cloak::{CloakMode, CloakSettings};
use advox::stream::model_cloak::ModelStreamConfig;
use advox::transcribe::transcribe;
use advox::verify::Verifier;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `--cloak` runs.
pub struct CloakBench {
    /// The recordings (`transcript` column: the reference for WER; else each recogniser's
    /// transcript of the clean recording).
    pub manifest: PathBuf,
    /// Cloak's margins under the threshold (dB), one setting each.
    pub margins: Vec<f32>,
    /// A universal perturbation (universal mode; a mute segment's sidecar selects the mute
    /// mode); `None`: masked noise.
    pub universal: Option<PathBuf>,
    /// The mute mode with the built-in segment (or `universal`'s), at each of these depths
    /// instead of the margins.
    pub mute_depths: Option<Vec<f32>>,
    /// Cloak's model-in-the-loop mode with these settings (its margin replaced by each of
    /// `margins`); `None`: masked noise or the universal perturbation.
    pub with_model: Option<ModelCloakConfig>,
    /// The model mode's streaming form: (window seconds, paced live) instead of the file mode.
    pub stream: Option<(f32, bool)>,
    /// The host's sample rate Cloak runs at.
    pub rate: u32,
    /// The models the verifiers run (empty: the benchmarked one); a transcript of another
    /// model than the benchmarked one is labelled with its folder's name.
    pub verify_models: Vec<PathBuf>,
    /// The recognisers besides advox's own model.
    pub verifiers: Vec<Verifier>,
    /// Where the cloaked recordings, `cloak.json` and `tradeoff.png` go.
    pub out: PathBuf,
    /// Print one JSON object instead of the table.
    pub json: bool,
}

/// Host block size (what `advox live` and the plugin tests use).
const BLOCK: usize = crate::live::BLOCK;

/// One setting over every recording.
#[derive(serde::Serialize)]
struct Setting {
    /// `None`: the clean recordings (the chain with Cloak bypassed); the mute mode's rows
    /// have a depth instead.
    margin_db: Option<f32>,
    /// The mute mode's depth.
    depth: Option<f32>,
    /// Mean WER per recogniser setting.
    wer: BTreeMap<String, f64>,
    /// Means over the recordings (`None` for the clean row).
    snr_db: Option<f64>,
    pesq_wb: Option<f64>,
    stoi: Option<f64>,
    /// Recordings PESQ scored.
    pesq_scored: usize,
    energy_under_threshold: Option<f64>,
    rtf: Option<f64>,
    /// Per recording.
    recordings: Vec<Recording>,
}

#[derive(serde::Serialize)]
struct Recording {
    input: String,
    file: String,
    quality: Option<CloakQuality>,
    /// Transcript per recogniser setting.
    transcripts: BTreeMap<String, String>,
    wer: BTreeMap<String, f64>,
}

const OWN: &str = "advox beam 5";

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for x in v {
        sum += x;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// Run the benchmark.
pub fn run(model: &LoadedModel, bench: &CloakBench) -> Result<()> {
    if bench.margins.iter().any(|m| !m.is_finite()) || bench.margins.is_empty() {
        bail!("--margins: one or more finite dB values");
    }
    let entries = read_manifest(&bench.manifest)?;
    if entries.is_empty() {
        bail!("{} lists no recordings", bench.manifest.display());
    }
    let mode = match (&bench.mute_depths, &bench.universal) {
        (Some(_), _) => CloakMode::MuteSegment,
        (None, Some(_)) => CloakMode::Universal,
        (None, None) => CloakMode::MaskedNoise,
    };
    let source =
        advox::stream::mute_segment::cloak_source(mode, bench.universal.as_deref(), bench.rate)
            .context("--universal FILE (--mute plays a mute segment, else an additive one)")?;
    let mute = mode == CloakMode::MuteSegment;
    if let Some(depths) = &bench.mute_depths {
        if depths.is_empty() || depths.iter().any(|d| !(0.0..=1.0).contains(d)) {
            bail!("--depths: one or more values in 0..1");
        }
    }
    let inputs: Vec<(PathBuf, Vec<f32>)> = entries
        .iter()
        .map(|e| Ok((e.input.clone(), read_audio_16k_mono(&e.input)?)))
        .collect::<advox::Result<_>>()?;
    std::fs::create_dir_all(&bench.out)
        .with_context(|| format!("creating {}", bench.out.display()))?;
    // Every setting's files: the clean chain first, then one folder per margin.
    let mut files: Vec<Vec<PathBuf>> = Vec::new();
    let mut qualities: Vec<Vec<Option<CloakQuality>>> = Vec::new();
    let mut labels: Vec<Option<f32>> = vec![None];
    // The margins, or the mute mode's depths.
    let knobs = bench.mute_depths.as_ref().unwrap_or(&bench.margins);
    labels.extend(knobs.iter().map(|&m| Some(m)));
    for label in &labels {
        let dir = bench.out.join(match (label, mute) {
            (None, _) => "clean".to_string(),
            (Some(d), true) => format!("mute-depth{d}"),
            (Some(m), false) => format!("margin{m:+}dB"),
        });
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let settings = CloakSettings {
            mode,
            margin_db: if mute { 0.0 } else { label.unwrap_or(0.0) },
            depth: if mute { label.unwrap_or(1.0) } else { 1.0 },
            bypass: label.is_none(),
            ..CloakSettings::default()
        };
        let (mut these, mut quality) = (Vec::new(), Vec::new());
        for (i, (input, x)) in inputs.iter().enumerate() {
            let run = match (&bench.with_model, label) {
                (Some(cfg), Some(margin_db)) => {
                    let cfg = ModelCloakConfig {
                        margin_db: *margin_db,
                        ..cfg.clone()
                    };
                    render_with_model(model, bench, cfg, x, input)?
                }
                _ => cloak_recording(x, bench.rate, BLOCK, &settings, source.as_deref())
                    .with_context(|| format!("cloaking {}", input.display()))?,
            };
            let stem = input.file_stem().unwrap_or_default().to_string_lossy();
            let path = dir.join(format!("{i:04}_{stem}.wav"));
            // At the host's rate, as a bounce holds it: every recogniser resamples it itself.
            let signal = if label.is_none() {
                &run.reference_host
            } else {
                &run.cloaked_host
            };
            let sources = [input.as_path()];
            write_wav(&path, signal, bench.rate, WavFormat::Pcm16, &sources)?;
            these.push(path);
            quality.push(label.map(|_| run.quality));
        }
        eprintln!("{}: {} recordings cloaked", dir.display(), these.len());
        files.push(these);
        qualities.push(quality);
    }
    // Transcripts: advox's own model, then every verifier over all files in one run.
    let all: Vec<PathBuf> = files.iter().flatten().cloned().collect();
    let mut heard: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); all.len()];
    for (i, path) in all.iter().enumerate() {
        let x = read_audio_16k_mono(path)?;
        heard[i].insert(
            OWN.into(),
            transcribe(model, &x, &DecodeOptions::default())?.text,
        );
    }
    let verify_models = if bench.verify_models.is_empty() {
        vec![model.dir.clone()]
    } else {
        bench.verify_models.clone()
    };
    for dir in &verify_models {
        let suffix = if *dir == model.dir {
            String::new()
        } else {
            format!(
                " ({})",
                dir.file_name().unwrap_or_default().to_string_lossy()
            )
        };
        for v in &bench.verifiers {
            eprintln!("transcribing {} files with {}{suffix}", all.len(), v.name());
            let per_file = v
                .transcribe_files(dir, &all, None, &mut |m| eprintln!("advox: {m}"))
                .with_context(|| format!("transcribing with {}{suffix}", v.name()))?;
            for (i, settings) in per_file.into_iter().enumerate() {
                for h in settings {
                    let key = format!("{}{suffix}", h.setting());
                    let text = match h.text {
                        Ok(t) => t,
                        Err(e) => bail!("{key} on {}: {e}", all[i].display()),
                    };
                    heard[i].insert(key, text);
                }
            }
        }
    }
    let n = inputs.len();
    let clean = &heard[..n];
    // WER against the manifest's transcripts where every line has one, else against what
    // each recogniser heard in the clean recording (how much Cloak changes the transcript).
    let references = entries.iter().all(|e| e.transcript.is_some());
    let mut settings = Vec::new();
    for (s, label) in labels.iter().enumerate() {
        let mut recordings = Vec::new();
        for i in 0..n {
            let these = &heard[s * n + i];
            let wers = these
                .iter()
                .map(|(k, t)| {
                    let reference = match (references, &entries[i].transcript) {
                        (true, Some(t)) => t.as_str(),
                        _ => clean[i][k].as_str(),
                    };
                    (k.clone(), wer(reference, t))
                })
                .collect();
            recordings.push(Recording {
                input: inputs[i].0.display().to_string(),
                file: files[s][i].display().to_string(),
                quality: qualities[s][i],
                transcripts: these.clone(),
                wer: wers,
            });
        }
        let keys: Vec<String> = recordings[0].wer.keys().cloned().collect();
        let q = |f: fn(&CloakQuality) -> Option<f64>| {
            mean(
                recordings
                    .iter()
                    .filter_map(|r| r.quality.as_ref().and_then(f)),
            )
        };
        settings.push(Setting {
            margin_db: label.filter(|_| !mute),
            depth: label.filter(|_| mute),
            wer: keys
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        mean(recordings.iter().map(|r| r.wer[k])).unwrap_or(0.0),
                    )
                })
                .collect(),
            snr_db: q(|q| Some(q.snr_db)),
            pesq_wb: q(|q| q.pesq_wb),
            stoi: q(|q| q.stoi),
            pesq_scored: recordings
                .iter()
                .filter(|r| r.quality.is_some_and(|q| q.pesq_wb.is_some()))
                .count(),
            energy_under_threshold: q(|q| Some(q.energy_under_threshold)),
            rtf: q(|q| Some(q.rtf)),
            recordings,
        });
    }
    let primary = bench
        .verifiers
        .first()
        .map_or(OWN.to_string(), |v| format!("{} beam 5", v.name()));
    let plot = bench.out.join("tradeoff.png");
    draw_tradeoff(&plot, &settings, &primary)?;
    let doc = serde_json::json!({
        "model": model.id(),
        "manifest": bench.manifest.display().to_string(),
        "mode": match (&bench.with_model, mode) {
            (Some(_), _) => "model",
            (None, CloakMode::Universal) => "universal",
            (None, CloakMode::MaskedNoise) => "masked-noise",
            (None, CloakMode::MuteSegment) => "mute-segment",
        },
        "model_settings": bench.with_model.as_ref().map(|c| serde_json::json!({
            "stream_window_seconds": bench.stream.map(|s| s.0),
            "stream_live": bench.stream.map(|s| s.1),
            "min_wer": c.min_wer,
            "steps": c.steps,
            "window_samples": c.window,
            "seed": c.seed,
        })),
        "host_rate": bench.rate,
        "wer_reference": if references {
            "the manifest's transcripts"
        } else {
            "each recogniser's transcript of the clean recording"
        },
        "settings": settings,
        "plot": plot.display().to_string(),
    });
    common::write_json(&bench.out.join("cloak.json"), &doc)?;
    if bench.json {
        println!("{doc}");
    } else {
        print_table(&settings, n);
        println!(
            "\ntrade-off plot {}; files and cloak.json in {}",
            plot.display(),
            bench.out.display()
        );
    }
    Ok(())
}

fn print_table(settings: &[Setting], n: usize) {
    let keys: Vec<&String> = settings[0].wer.keys().collect();
    let mut head = "| setting | SNR | PESQ (wb) | STOI | masked | RTF |".to_string();
    for k in &keys {
        head.push_str(&format!(" WER {k} |"));
    }
    println!("{head}");
    println!("|{}", "---|".repeat(6 + keys.len()));
    let opt = |v: Option<f64>, unit: &str, digits: usize| {
        v.map_or("-".to_string(), |v| format!("{v:.digits$}{unit}"))
    };
    for s in settings {
        let mut row = format!(
            "| {} | {} | {} | {} | {} | {} |",
            match (s.margin_db, s.depth) {
                (Some(m), _) => format!("margin {m} dB"),
                (None, Some(d)) => format!("mute segment, depth {d}"),
                (None, None) => format!("clean ({n} recordings)"),
            },
            opt(s.snr_db, " dB", 1),
            match (s.pesq_wb, s.pesq_scored) {
                (Some(p), k) if k < n => format!("{p:.2} ({k} of {n} scored)"),
                (p, _) => opt(p, "", 2),
            },
            opt(s.stoi, "", 3),
            opt(s.energy_under_threshold.map(|e| 100.0 * e), " %", 1),
            opt(s.rtf, "", 4),
        );
        for k in &keys {
            row.push_str(&format!(" {:.2} |", s.wer[*k]));
        }
        println!("{row}");
    }
}

/// `x` (16 kHz) through Cloak's model mode as `bench` asks: the file mode, or the plugin's
/// streaming form (live or offline), with a line on stderr of what the attack did.
fn render_with_model(
    model: &LoadedModel,
    bench: &CloakBench,
    cfg: ModelCloakConfig,
    x: &[f32],
    input: &Path,
) -> Result<Cloaked> {
    let margin_db = cfg.margin_db;
    let context = || format!("cloaking {}", input.display());
    if let Some((window, live)) = bench.stream {
        let config = ModelStreamConfig {
            chunk_seconds: window,
            cloak: cfg,
            ..ModelStreamConfig::default()
        };
        // A fresh worker per recording, loading its own model, as a plugin instance does.
        let dir = model.dir.clone();
        let (run, (chunks, moved, missed)) =
            cloak_recording_streamed(x, bench.rate, BLOCK, config, live, move || {
                LoadedModel::load(&dir, &candle_core::Device::Cpu)
            })
            .with_context(context)?;
        eprintln!(
            "{}: margin {margin_db} dB, {window}-s windows {}: {chunks} window(s), {moved} \
             moved, {missed} missed",
            input.display(),
            if live { "live" } else { "offline" },
        );
        return Ok(run);
    }
    let never = std::sync::atomic::AtomicBool::new(false);
    let (run, attack) = cloak_recording_with_model(model, x, bench.rate, &cfg, &never, &mut |_| {})
        .with_context(context)?;
    eprintln!(
        "{}: margin {margin_db} dB: {} of {} windows succeeded, {} steps, {:.1} s",
        input.display(),
        attack.succeeded(),
        attack.attacked(),
        attack.steps(),
        attack.windows.iter().map(|w| w.seconds).sum::<f64>()
    );
    Ok(run)
}

/// WER of `primary` against PESQ, one point per margin (or depth).
fn draw_tradeoff(path: &Path, settings: &[Setting], primary: &str) -> Result<()> {
    let points: Vec<(f64, f64)> = settings
        .iter()
        .filter_map(|s| Some((s.pesq_wb?, *s.wer.get(primary)?)))
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    line_chart(
        path,
        &Axes {
            title: "Cloak: WER against quality, one point per setting",
            x_label: "wideband PESQ against the clean recording",
            y_label: &format!("WER ({primary})"),
            x_range: ((lo - 0.2).clamp(1.0, 4.4), 4.64),
            y_range: (0.0, 1.05),
        },
        &[Series {
            name: primary.to_string(),
            points,
        }],
    )?;
    Ok(())
}
