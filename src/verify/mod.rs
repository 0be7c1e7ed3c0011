//! Independent verification: an adversarial example counts when another implementation of the
//! recogniser hears the goal too. [`Verifier::FasterWhisper`] transcribes a file with
//! faster-whisper (CTranslate2) on the same weights, greedy and beam 5, plain and timestamp
//! decoding, from a Python environment advox installs under its cache on first use (as
//! `advox model fetch` fetches the model); [`Verifier::Transformers`] does the same with
//! Hugging Face transformers (PyTorch; a ~3 GB install, for users: CI does not run it);
//! [`Verifier::PocketSphinx`] asks CMU Sphinx with its bundled English model, a recogniser that
//! is not Whisper (also as an external recogniser, [`asr_server_command`]); [`Verifier::Command`] runs
//! any shell command that prints a transcript.

use crate::model::provision::{cache_dir, ct2_dir_beside, last_output_line};
use crate::objective::Goal;
use crate::recognizer::{CommandRecognizer, Recognizer};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An adapter script and the Python environment it runs in.
struct Adapter {
    /// The recogniser's name in reports and on the command line.
    name: &'static str,
    /// What its environment installs with pip.
    packages: &'static [&'static str],
    /// The script's file name in the environment (not the package's own name, which it would
    /// shadow on `sys.path`).
    script_name: &'static str,
    /// The script.
    script: &'static str,
    /// The model files it reads, found from the directory advox loaded (`None`: it brings its
    /// own model).
    model_files: Option<fn(&Path) -> Result<PathBuf>>,
}

impl Adapter {
    /// `python SCRIPT --model FILES` in the adapter's environment (provisioned on first use),
    /// for the model advox loaded from `model_dir`.
    fn command(&self, model_dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<Command> {
        let model = self.model_files.map(|f| f(model_dir)).transpose()?;
        let (python, script) = self.provision(progress)?;
        let mut cmd = Command::new(&python);
        cmd.arg(&script);
        if let Some(model) = model {
            cmd.arg("--model").arg(&model);
        }
        Ok(cmd)
    }

    /// The environment's Python and the script in it (installed on first use).
    fn provision(&self, progress: &mut dyn FnMut(&str)) -> Result<(PathBuf, PathBuf)> {
        let python = environment(self.name, self.packages, progress)?;
        let script = python_script(&python, self.script_name, self.script)?;
        Ok((python, script))
    }
}

/// faster-whisper (CTranslate2) on the model's CTranslate2 files (`requests`: faster-whisper
/// 1.2 imports it without declaring it).
const FASTER_WHISPER: Adapter = Adapter {
    name: "faster-whisper",
    packages: &["faster-whisper==1.2.0", "requests"],
    script_name: "advox_faster_whisper_adapter.py",
    script: include_str!("faster_whisper_adapter.py"),
    model_files: Some(ct2_files),
};

/// Hugging Face transformers (PyTorch) on the model's Hugging Face files. PyPI's torch wheel
/// is a CUDA build (~3 GB with its CUDA libraries) that also runs on a CPU.
const TRANSFORMERS: Adapter = Adapter {
    name: "transformers",
    packages: &["torch==2.15.0", "transformers==5.24.0", "numpy"],
    script_name: "advox_transformers_adapter.py",
    script: include_str!("transformers_adapter.py"),
    model_files: Some(hf_files),
};

/// PocketSphinx (CMU Sphinx) with the English model its package bundles: a recogniser that is
/// not Whisper. Greedy/beam and timestamps are not its settings: one verdict per file.
const POCKETSPHINX: Adapter = Adapter {
    name: "pocketsphinx",
    packages: &["pocketsphinx==5.1.1"],
    script_name: "advox_pocketsphinx_adapter.py",
    script: include_str!("pocketsphinx_adapter.py"),
    model_files: None,
};

/// The names `--asr` takes.
pub const ASR_NAMES: &[&str] = &["faster-whisper", "pocketsphinx"];

/// The server command (for [`crate::recognizer::server::ServerRecognizer`]) that runs a shipped
/// recogniser as an external one (`--asr NAME`, wherever `--asr-cmd` works), provisioned into
/// its environment under the advox cache on first use: `pocketsphinx`, or `faster-whisper` on
/// the CTranslate2 files of the model in `model_dir` (beam 5, plain decoding).
pub fn asr_server_command(
    name: &str,
    model_dir: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<String> {
    let adapter = match name.trim() {
        "pocketsphinx" => &POCKETSPHINX,
        "faster-whisper" => &FASTER_WHISPER,
        other => {
            return Err(Error::InvalidArgument(format!(
                "unknown recogniser {other:?} for --asr (shipped: {}; any other with --asr-cmd \
                 or --asr-server)",
                ASR_NAMES.join(", ")
            )))
        }
    };
    let model = match (adapter.model_files, model_dir) {
        (None, _) => None,
        (Some(files), Some(dir)) => Some(files(dir)?),
        (Some(_), None) => {
            return Err(Error::InvalidArgument(format!(
                "--asr {name} needs a model directory"
            )))
        }
    };
    let (python, script) = adapter.provision(progress)?;
    let quote = |p: &Path| crate::recognizer::shell_quote(&p.display().to_string());
    let mut command = format!("{} {} --server", quote(&python), quote(&script));
    if let Some(model) = model {
        command.push_str(&format!(" --model {} --beams 5", quote(&model)));
    }
    Ok(command)
}

/// Another recogniser that judges an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// faster-whisper on the model's CTranslate2 files.
    FasterWhisper,
    /// Hugging Face transformers on the model's Hugging Face files.
    Transformers,
    /// PocketSphinx with its bundled English model (not Whisper).
    PocketSphinx,
    /// `sh -c TEMPLATE` with `{wav}` replaced by the file, printing a transcript.
    Command(String),
}

/// One verdict of one verifier in one setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The recogniser (`faster-whisper`, or the command).
    pub recognizer: String,
    /// Its beam size, where it has one (1 = greedy).
    pub beam: Option<usize>,
    /// Whether it decoded with timestamps, where that is a setting.
    pub timestamps: Option<bool>,
    /// What it heard (`None` when it failed).
    pub transcript: Option<String>,
    /// Whether that meets the goal.
    pub success: bool,
    /// Why it gave no transcript.
    pub error: Option<String>,
}

impl std::str::FromStr for Verifier {
    type Err = Error;

    /// `faster-whisper`, `transformers`, or `cmd:SHELL COMMAND WITH {wav}`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(cmd) = s.strip_prefix("cmd:") {
            if !cmd.contains("{wav}") {
                return Err(Error::InvalidArgument(format!(
                    "verifier command {cmd:?} has no {{wav}} placeholder for the audio file"
                )));
            }
            return Ok(Verifier::Command(cmd.to_string()));
        }
        match s {
            "faster-whisper" => Ok(Verifier::FasterWhisper),
            "transformers" => Ok(Verifier::Transformers),
            "pocketsphinx" => Ok(Verifier::PocketSphinx),
            other => Err(Error::InvalidArgument(format!(
                "unknown verifier {other:?} (faster-whisper, transformers, pocketsphinx, or \
                 cmd:COMMAND with {{wav}})"
            ))),
        }
    }
}

impl Verifier {
    /// A comma-separated list (`faster-whisper,transformers,cmd:my-asr {wav}`); a command may
    /// hold commas itself: what follows one that is neither a verifier name nor `cmd:` belongs
    /// to it.
    pub fn parse_list(s: &str) -> Result<Vec<Verifier>> {
        let mut pieces: Vec<String> = Vec::new();
        for piece in s.split(',') {
            let starts_one = [FASTER_WHISPER.name, TRANSFORMERS.name, POCKETSPHINX.name]
                .contains(&piece.trim())
                || piece.trim_start().starts_with("cmd:");
            match pieces.last_mut() {
                Some(last) if !starts_one && last.trim_start().starts_with("cmd:") => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => pieces.push(piece.to_string()),
            }
        }
        pieces.iter().map(|p| p.parse()).collect()
    }

    /// Its name in reports.
    pub fn name(&self) -> String {
        match self.adapter() {
            Some(a) => a.name.into(),
            None => match self {
                Verifier::Command(c) => format!("command `{c}`"),
                _ => String::new(),
            },
        }
    }

    /// The adapter script that runs it, if it is one of the built-in implementations.
    fn adapter(&self) -> Option<&'static Adapter> {
        match self {
            Verifier::FasterWhisper => Some(&FASTER_WHISPER),
            Verifier::Transformers => Some(&TRANSFORMERS),
            Verifier::PocketSphinx => Some(&POCKETSPHINX),
            Verifier::Command(_) => None,
        }
    }

    /// Judge `wav` against `goal` (clean transcript `original`) with the model in `model_dir`
    /// (the directory advox loaded; the CTranslate2 files beside it for faster-whisper).
    /// A recogniser that fails is reported in its verdicts, not as an error; a missing
    /// environment that cannot be installed is an error.
    pub fn verify(
        &self,
        model_dir: &Path,
        wav: &Path,
        goal: &Goal,
        original: &str,
        language: Option<&str>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<Verification>> {
        let heard = self
            .transcribe_files(model_dir, &[wav.to_path_buf()], language, progress)?
            .pop()
            .unwrap_or_default();
        Ok(heard
            .into_iter()
            .map(|h| {
                let (transcript, error) = match h.text {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e)),
                };
                Verification {
                    recognizer: h.recognizer,
                    beam: h.beam,
                    timestamps: h.timestamps,
                    success: transcript
                        .as_deref()
                        .is_some_and(|t| goal.is_met(original, t)),
                    transcript,
                    error,
                }
            })
            .collect())
    }

    /// What this recogniser hears in each of `wavs`, in every setting it has (one adapter
    /// run for all of them: the model loads once; a path given twice is heard once and answered
    /// at both places). A file it fails on gets an `Err` text.
    pub fn transcribe_files(
        &self,
        model_dir: &Path,
        wavs: &[PathBuf],
        language: Option<&str>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<Vec<Heard>>> {
        let heard = |beam, timestamps, text| Heard {
            recognizer: self.name(),
            beam,
            timestamps,
            text,
        };
        let adapter = match (self, self.adapter()) {
            (_, Some(a)) => a,
            (Verifier::Command(template), None) => {
                let mut r = CommandRecognizer::new(template, Duration::from_secs(300))?;
                return wavs
                    .iter()
                    .map(|wav| {
                        let samples = crate::audio::read_audio_16k_mono(wav)?;
                        let text = r.transcribe(&samples).map_err(|e| e.to_string());
                        Ok(vec![heard(None, None, text)])
                    })
                    .collect();
            }
            (_, None) => return Err(Error::Internal(format!("{self:?} has no adapter"))),
        };
        if wavs.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = adapter.command(model_dir, progress)?;
        cmd.args(["--beams", "5,1"]);
        if let Some(l) = language {
            cmd.args(["--language", l]);
        }
        // Each path once; a path given twice gets the same answers twice.
        let mut unique: Vec<&PathBuf> = Vec::new();
        for w in wavs {
            if !unique.contains(&w) {
                unique.push(w);
            }
        }
        let lines = run_adapter(cmd.args(unique), adapter.name)?;
        let mut per_file: Vec<Vec<Heard>> = wavs.iter().map(|_| Vec::new()).collect();
        for v in lines {
            let file = v["file"].as_str().unwrap_or_default();
            let at: Vec<usize> = (0..wavs.len())
                .filter(|i| wavs[*i].as_os_str() == file)
                .collect();
            if at.is_empty() {
                return Err(Error::Provision(format!(
                    "the {} adapter printed a result for {file:?}, which it was not given",
                    adapter.name
                )));
            }
            let text = match (v["text"].as_str(), v["error"].as_str()) {
                (Some(t), _) => Ok(t.to_string()),
                (None, Some(e)) => Err(e.to_string()),
                (None, None) => Err("the adapter printed no text".to_string()),
            };
            let answer = heard(
                v["beam"].as_u64().map(|b| b as usize),
                v["timestamps"].as_bool(),
                text,
            );
            for j in at {
                per_file[j].push(answer.clone());
            }
        }
        Ok(per_file)
    }
}

/// Wall times of `repeats` transcriptions of `wav` by faster-whisper (CTranslate2, f32, plain
/// decoding at temperature 0 with beam `beam`, `threads` CPU threads) after one warm-up, with
/// what it heard: the other side of `advox bench --compare`. Provisions faster-whisper's venv
/// as [`Verifier::FasterWhisper`] does.
pub fn time_faster_whisper(
    model_dir: &Path,
    wav: &Path,
    beam: usize,
    repeats: usize,
    threads: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<f64>, String)> {
    let adapter = &FASTER_WHISPER;
    let mut cmd = adapter.command(model_dir, progress)?;
    cmd.args(["--beams", &beam.to_string()])
        .args(["--time", &repeats.max(1).to_string()])
        .args(["--threads", &threads.max(1).to_string()])
        .arg(wav);
    let lines = run_adapter(&mut cmd, adapter.name)?;
    let line = lines.first().ok_or_else(|| {
        Error::Provision(format!("the {} adapter printed no timing", adapter.name))
    })?;
    let seconds = line["seconds"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(serde_json::Value::as_f64)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::Provision(format!(
                "the {} adapter printed {line}, no timing",
                adapter.name
            ))
        })?;
    Ok((
        seconds,
        line["text"].as_str().unwrap_or_default().to_string(),
    ))
}

/// What one recogniser heard in one file in one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// The recogniser.
    pub recognizer: String,
    /// Its beam size, where it has one (1 = greedy).
    pub beam: Option<usize>,
    /// Whether it decoded with timestamps, where that is a setting.
    pub timestamps: Option<bool>,
    /// The transcript, or why there is none.
    pub text: std::result::Result<String, String>,
}

impl Heard {
    /// The setting, for tables: `faster-whisper beam 5`, `… beam 1 timestamps`.
    pub fn setting(&self) -> String {
        let mut s = self.recognizer.clone();
        if let Some(b) = self.beam {
            s.push_str(&format!(" beam {b}"));
        }
        if self.timestamps == Some(true) {
            s.push_str(" timestamps");
        }
        s
    }
}

/// Whether every verdict met the goal (and there was at least one).
pub fn all_succeed(verdicts: &[Verification]) -> bool {
    !verdicts.is_empty() && verdicts.iter().all(|v| v.success)
}

/// The CTranslate2 files of the model in `dir`: `dir` itself if it holds `model.bin`, else
/// the `NAME-ct2` folder `advox model fetch` keeps beside `NAME`.
fn ct2_files(dir: &Path) -> Result<PathBuf> {
    if dir.join("model.bin").is_file() {
        return Ok(dir.to_path_buf());
    }
    let sibling = ct2_dir_beside(dir);
    if sibling.join("model.bin").is_file() {
        return Ok(sibling);
    }
    Err(Error::bad_model(
        dir,
        format!(
            "faster-whisper needs the model's CTranslate2 files (model.bin), here or in {}; \
             `advox model fetch` keeps them for the known models",
            sibling.display()
        ),
    ))
}

/// The Hugging Face files of the model in `dir` (config.json and model.safetensors: the layout
/// `advox model fetch` converts to).
fn hf_files(dir: &Path) -> Result<PathBuf> {
    if dir.join("config.json").is_file() && dir.join("model.safetensors").is_file() {
        return Ok(dir.to_path_buf());
    }
    Err(Error::bad_model(
        dir,
        "transformers needs the model in the Hugging Face layout (config.json, \
         model.safetensors, tokenizer.json), as `advox model fetch` keeps it",
    ))
}

/// The Python of a virtual environment `name` under the advox cache holding `packages`,
/// created and installed with pip on first use (a marker file names what was installed).
pub fn environment(
    name: &str,
    packages: &[&str],
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let dir = cache_dir().join("venv").join(name);
    let python = dir.join("bin").join("python");
    let marker = dir.join("advox-packages.txt");
    let wanted = packages.join("\n");
    if python.is_file() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&wanted) {
        return Ok(python);
    }
    progress(&format!(
        "installing {} into {} (once)",
        packages.join(" "),
        dir.display()
    ));
    let venv = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .map_err(|e| Error::Provision(format!("could not run python3 -m venv: {e}")))?;
    if !venv.status.success() {
        return Err(Error::Provision(format!(
            "python3 -m venv {} failed (install python3-venv): {}",
            dir.display(),
            last_output_line(&venv.stderr)
        )));
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(packages)
        .output()
        .map_err(|e| Error::Provision(format!("could not run pip in {}: {e}", dir.display())))?;
    if !pip.status.success() {
        return Err(Error::Provision(format!(
            "pip install {} failed: {}",
            packages.join(" "),
            last_output_line(&pip.stderr)
        )));
    }
    crate::atomic_file::write_bytes_atomic(&marker, wanted.as_bytes())?;
    Ok(python)
}

/// Write `text` as `file` beside `python`'s environment and return its path.
fn python_script(python: &Path, file: &str, text: &str) -> Result<PathBuf> {
    let dir = python
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Internal(format!("{} has no environment", python.display())))?;
    let path = dir.join(file);
    crate::atomic_file::write_bytes_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Run an adapter and read its JSON lines.
fn run_adapter(cmd: &mut Command, name: &str) -> Result<Vec<serde_json::Value>> {
    let out = cmd
        .output()
        .map_err(|e| Error::Provision(format!("could not run the {name} adapter: {e}")))?;
    if !out.status.success() {
        return Err(Error::Provision(format!(
            "the {name} adapter failed: {}",
            last_output_line(&out.stderr)
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| {
                Error::Provision(format!("the {name} adapter printed {l:?}, not JSON: {e}"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_parse_and_bad_ones_are_named() {
        assert_eq!(
            "faster-whisper".parse::<Verifier>().unwrap(),
            Verifier::FasterWhisper
        );
        assert_eq!(
            "cmd:my-asr {wav}".parse::<Verifier>().unwrap(),
            Verifier::Command("my-asr {wav}".into())
        );
        assert!("cmd:my-asr"
            .parse::<Verifier>()
            .unwrap_err()
            .to_string()
            .contains("{wav}"));
        assert!("whisper.cpp"
            .parse::<Verifier>()
            .unwrap_err()
            .to_string()
            .contains("whisper.cpp"));
        assert!(!all_succeed(&[]));
        assert_eq!(
            Verifier::parse_list("faster-whisper,cmd:asr --opts a,b {wav}").unwrap(),
            vec![
                Verifier::FasterWhisper,
                Verifier::Command("asr --opts a,b {wav}".into())
            ]
        );
        assert_eq!(
            Verifier::parse_list("faster-whisper,transformers").unwrap(),
            vec![Verifier::FasterWhisper, Verifier::Transformers]
        );
        assert!(Verifier::parse_list("faster-whisper,whisper.cpp").is_err());
    }
}
