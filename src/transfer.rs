//! Transfer evaluation: adversarial examples made against one model, judged by another
//! recogniser (another model, or any external one).

use crate::audio::read_audio_16k_mono;
use crate::metrics::wer;
use crate::objective::Goal;
use crate::recognizer::Recognizer;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One adversarial example, from the JSON report `advox attack` wrote beside it.
#[derive(Debug, Clone)]
pub struct AdversarialExample {
    /// The report file.
    pub report: PathBuf,
    /// The adversarial WAV.
    pub wav: PathBuf,
    /// The attack's goal.
    pub goal: Goal,
    /// Transcript of the clean input by the attacked model.
    pub original: String,
    /// The attacked model.
    pub source_model: String,
    /// Whether the attack succeeded against that model.
    pub source_success: bool,
}

/// How one example fared with the other recogniser.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransferResult {
    /// The adversarial WAV.
    pub wav: String,
    /// The goal, described.
    pub goal: String,
    /// Whether the attack succeeded against the attacked model.
    pub source_success: bool,
    /// What the other recogniser heard (`None` on error).
    pub transcript: Option<String>,
    /// Whether that meets the goal.
    pub success: bool,
    /// WER of that transcript against the clean input's transcript.
    pub wer_to_original: Option<f64>,
    /// Why the recogniser gave no transcript, if it failed.
    pub error: Option<String>,
}

fn bad_report(path: &Path, what: &str) -> Error {
    Error::InvalidArgument(format!(
        "{}: not an advox attack report: {what}",
        path.display()
    ))
}

/// Read one attack report.
pub fn read_report(path: &Path) -> Result<AdversarialExample> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_report(path, &e.to_string()))?;
    report_from_json(path, &v)
}

fn report_from_json(path: &Path, v: &serde_json::Value) -> Result<AdversarialExample> {
    let field = |k: &str| v.get(k).and_then(|x| x.as_str());
    let output = field("output").ok_or_else(|| bad_report(path, "no `output`"))?;
    let goal = match (
        field("goal").and_then(Goal::parse_description),
        field("target"),
    ) {
        (Some(Goal::Targeted(_)), Some(t)) => Goal::Targeted(t.to_string()),
        (Some(g), _) => g,
        (None, _) => return Err(bad_report(path, "no readable `goal`")),
    };
    // The output path is as the attack was given it; fall back to the report's folder.
    let mut wav = PathBuf::from(output);
    if !wav.is_file() {
        if let (Some(dir), Some(name)) = (path.parent(), wav.file_name()) {
            wav = dir.join(name);
        }
    }
    Ok(AdversarialExample {
        report: path.to_path_buf(),
        wav,
        goal,
        original: field("original_transcript").unwrap_or_default().to_string(),
        source_model: field("model").unwrap_or_default().to_string(),
        source_success: v.get("success").and_then(|s| s.as_bool()).unwrap_or(false),
    })
}

/// Every attack report in `dir` (JSON files with an `output` and a `goal`; other JSON files,
/// such as a manifest's `summary.json`, are skipped), sorted by name.
pub fn read_reports(dir: &Path) -> Result<Vec<AdversarialExample>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v.get("output").is_some() && v.get("goal").is_some() {
                out.push(report_from_json(&p, &v)?);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{}: no advox attack reports (OUT.json beside OUT.wav) found",
            dir.display()
        )));
    }
    Ok(out)
}

/// Judge every example with `recognizer`. A recogniser failure on one example is recorded in
/// its result (and counts as no success); unreadable audio is an error.
pub fn transfer(
    recognizer: &mut dyn Recognizer,
    examples: &[AdversarialExample],
) -> Result<Vec<TransferResult>> {
    let mut results = Vec::with_capacity(examples.len());
    for ex in examples {
        let samples = read_audio_16k_mono(&ex.wav)?;
        let (transcript, error) = match recognizer.transcribe(&samples) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e.to_string())),
        };
        results.push(TransferResult {
            wav: ex.wav.display().to_string(),
            goal: ex.goal.describe(),
            source_success: ex.source_success,
            success: transcript
                .as_deref()
                .is_some_and(|t| ex.goal.is_met(&ex.original, t)),
            wer_to_original: transcript.as_deref().map(|t| wer(&ex.original, t)),
            transcript,
            error,
        });
    }
    Ok(results)
}
