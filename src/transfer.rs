//! Transfer evaluation: adversarial examples made against one model, judged by another
//! recogniser (another model, or any external one).

use crate::audio::read_audio_16k_mono;
use crate::formats::AttackReport;
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

impl AdversarialExample {
    /// The example a report describes. The output path is as the attack was given it; where
    /// no file is there, the report's folder is tried.
    pub fn of_report(path: &Path, report: AttackReport) -> Self {
        let mut wav = PathBuf::from(&report.output);
        if !wav.is_file() {
            if let (Some(dir), Some(name)) = (path.parent(), wav.file_name()) {
                wav = dir.join(name);
            }
        }
        AdversarialExample {
            report: path.to_path_buf(),
            wav,
            goal: report.goal,
            original: report.original_transcript,
            source_model: report.model.unwrap_or_default(),
            source_success: report.success,
        }
    }
}

/// Read one attack report.
pub fn read_report(path: &Path) -> Result<AdversarialExample> {
    Ok(AdversarialExample::of_report(
        path,
        AttackReport::read(path)?,
    ))
}

/// Every attack report in `dir` (see [`AttackReport::read_dir`]), sorted by name.
pub fn read_reports(dir: &Path) -> Result<Vec<AdversarialExample>> {
    let out: Vec<AdversarialExample> = AttackReport::read_dir(dir)?
        .into_iter()
        .map(|(p, r)| AdversarialExample::of_report(&p, r))
        .collect();
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
