//! `advox bench --compare`: advox's attack step and transcription side by side with the PyTorch
//! reference step and faster-whisper, in alternating rounds on this machine, with the ratios.
//! The CPUs of shared machines vary from day to day and hour to hour, so only ratios measured
//! together mean anything; the CPU's model and vector extensions go with every figure.

use crate::bench::{peak_rss_mb, time_steps, time_transcription};
use advox::audio::read_audio_16k_mono;
use advox::model::provision::{cache_dir, ct2_dir_beside};
use advox::model::LoadedModel;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `--compare` runs.
pub struct Compare {
    pub step_wav: PathBuf,
    pub target: String,
    pub transcribe_wav: Option<PathBuf>,
    pub steps: usize,
    pub rounds: usize,
    pub torch_ref: PathBuf,
    pub torch_python: Option<PathBuf>,
    pub faster_whisper: bool,
    pub json: bool,
}

/// One round's medians (seconds) and ratios (advox / other).
#[derive(Serialize, Default)]
struct Round {
    advox_step: f64,
    torch_step: Option<f64>,
    step_ratio: Option<f64>,
    advox_transcribe: Option<f64>,
    faster_whisper_transcribe: Option<f64>,
    transcribe_ratio: Option<f64>,
}

/// The CPU: `/proc/cpuinfo`'s model name and the vector extensions that matter here, and the
/// instruction set advox's fused kernels run with.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags = field("flags").unwrap_or_default();
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_bf16",
    ];
    let have: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| flags.split_whitespace().any(|f| f == *w))
        .collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{model}, {cores} cores, {} (fused kernels: {:?})",
        if have.is_empty() {
            "no AVX2".to_string()
        } else {
            have.join(" ")
        },
        advox::model::ops::simd_level()
    )
}

/// The Python that runs the PyTorch reference, if one is found.
fn torch_python(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ADVOX_TORCH_PYTHON").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    [
        PathBuf::from("target/torchref/venv/bin/python"),
        cache_dir().join("venv/transformers/bin/python"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The reference's model: the CTranslate2 files beside `model` converted once by the
/// reference's own `ct2_to_hf.py` into the advox cache.
fn torch_model(python: &Path, script: &Path, model: &LoadedModel) -> Result<PathBuf> {
    let name = model
        .dir
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let out = cache_dir().join("torchref").join(format!("{name}-hf"));
    if out.join("model.safetensors").is_file() {
        return Ok(out);
    }
    let ct2 = if model.dir.join("model.bin").is_file() {
        model.dir.clone()
    } else {
        ct2_dir_beside(&model.dir)
    };
    let convert = script.with_file_name("ct2_to_hf.py");
    let status = Command::new(python)
        .arg(&convert)
        .arg("--model")
        .arg(&ct2)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", convert.display()))?;
    if !status.success() {
        bail!(
            "{} could not convert {} for the PyTorch reference",
            convert.display(),
            ct2.display()
        );
    }
    Ok(out)
}

/// One run of the PyTorch reference step: its per-step seconds and peak RSS (MiB).
fn torch_step(python: &Path, script: &Path, hf: &Path, c: &Compare) -> Result<(Vec<f64>, f64)> {
    let out = Command::new(python)
        .arg(script)
        .arg("--wav")
        .arg(&c.step_wav)
        .args(["--target", &c.target])
        .args(["--steps", &c.steps.max(1).to_string(), "--warmup", "1"])
        .args(["--threads", &rayon::current_num_threads().to_string()])
        .env("ADVOX_REF_HF", hf)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let (true, Some(line)) = (out.status.success(), last) else {
        bail!(
            "the PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    };
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("the PyTorch reference printed {line:?}"))?;
    let steps: Vec<f64> = v["step_seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    if steps.is_empty() {
        bail!("the PyTorch reference printed no step times: {line}");
    }
    Ok((steps, v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)))
}

fn median(v: &[f64]) -> f64 {
    advox::metrics::median(v.iter().copied()).unwrap_or(f64::NAN)
}

/// Run the comparison and print it.
pub fn run(model: &LoadedModel, c: &Compare) -> Result<()> {
    let wave = read_audio_16k_mono(&c.step_wav)?;
    let speech = c
        .transcribe_wav
        .as_ref()
        .map(|p| read_audio_16k_mono(p).map(|s| (p, s)))
        .transpose()?;
    let python = torch_python(c.torch_python.as_deref()).filter(|_| c.torch_ref.is_file());
    if c.torch_python.is_some() && !c.torch_ref.is_file() {
        bail!(
            "--torch-python needs the reference script: {} does not exist (pass --torch-ref)",
            c.torch_ref.display()
        );
    }
    let hf = match &python {
        Some(p) => Some(torch_model(p, &c.torch_ref, model)?),
        None => {
            eprintln!(
                "advox: no PyTorch reference (needs {} and a Python with torch: --torch-python)",
                c.torch_ref.display()
            );
            None
        }
    };
    let threads = rayon::current_num_threads();
    let mut rounds = Vec::new();
    let mut torch_rss = f64::NAN;
    let mut texts = (String::new(), String::new());
    for r in 0..c.rounds.max(1) {
        eprintln!("advox: round {} of {}", r + 1, c.rounds.max(1));
        let mut round = Round {
            advox_step: median(&time_steps(model, &wave, &c.target, c.steps)?.0),
            ..Round::default()
        };
        if let (Some(p), Some(hf)) = (&python, &hf) {
            let (steps, rss) = torch_step(p, &c.torch_ref, hf, c)?;
            round.torch_step = Some(median(&steps));
            torch_rss = rss;
        }
        if let Some((path, samples)) = &speech {
            // One warm transcription first, as faster-whisper's side gets.
            let (times, text) = time_transcription(model, samples, 4)?;
            round.advox_transcribe = Some(median(&times[1..]));
            texts.0 = text;
            if c.faster_whisper {
                let (times, text) = advox::verify::time_faster_whisper(
                    &model.dir,
                    path,
                    5,
                    3,
                    threads,
                    &mut |m| eprintln!("advox: {m}"),
                )?;
                round.faster_whisper_transcribe = Some(median(&times));
                texts.1 = text;
            }
        }
        round.step_ratio = round.torch_step.map(|t| round.advox_step / t);
        round.transcribe_ratio = round
            .advox_transcribe
            .zip(round.faster_whisper_transcribe)
            .map(|(a, f)| a / f);
        rounds.push(round);
    }
    let med = |f: fn(&Round) -> Option<f64>| advox::metrics::median(rounds.iter().filter_map(f));
    let doc = serde_json::json!({
        "cpu": cpu_description(),
        "threads": threads,
        "model": model.id(),
        "step_wav": c.step_wav.display().to_string(),
        "transcribe_wav": c.transcribe_wav.as_ref().map(|p| p.display().to_string()),
        "rounds": rounds,
        "median_step_ratio": med(|r| r.step_ratio),
        "median_transcribe_ratio": med(|r| r.transcribe_ratio),
        "advox_peak_rss_mb": peak_rss_mb(),
        "torch_peak_rss_mb": torch_rss.is_finite().then_some(torch_rss),
        "advox_transcript": texts.0,
        "faster_whisper_transcript": texts.1,
    });
    if c.json {
        println!("{doc}");
        return Ok(());
    }
    let s = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
    println!(
        "CPU: {} ({threads} threads)",
        doc["cpu"].as_str().unwrap_or("")
    );
    println!(
        "| round | advox step | PyTorch step | ratio | advox transcribe | faster-whisper | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.3} s | {} | {} | {} | {} | {} |",
            i + 1,
            r.advox_step,
            s(r.torch_step),
            s(r.step_ratio),
            s(r.advox_transcribe),
            s(r.faster_whisper_transcribe),
            s(r.transcribe_ratio)
        );
    }
    println!(
        "| **median ratio** | | | **{}** | | | **{}** |",
        s(med(|r| r.step_ratio)),
        s(med(|r| r.transcribe_ratio))
    );
    println!(
        "peak RSS: advox {} MiB, PyTorch {} MiB",
        s(peak_rss_mb()),
        s(torch_rss.is_finite().then_some(torch_rss))
    );
    Ok(())
}
