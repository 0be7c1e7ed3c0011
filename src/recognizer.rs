//! Recognisers seen as black boxes: audio in, transcript out, every call counted as a query.
//!
//! - [`BuiltinRecognizer`]: the built-in Whisper, used without gradients.
//! - [`CommandRecognizer`]: any external recogniser given as a shell command template that
//!   receives a WAV path (`{wav}`) and prints a transcript, run with a timeout; failures,
//!   timeouts and unreadable output are errors naming the command, never panics.
//! - [`server::ServerRecognizer`]: an external recogniser started once, answering one WAV path
//!   per line on stdin with one transcript line on stdout (its model loads once).

pub mod external;
pub mod server;

use crate::audio::{write_wav, WavFormat, SAMPLE_RATE};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::transcribe::transcribe;
use crate::{Error, Result};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A speech recogniser that only gives transcripts.
pub trait Recognizer {
    /// Transcribe 16-kHz mono samples (one query).
    fn transcribe(&mut self, samples: &[f32]) -> Result<String>;
    /// Queries made so far.
    fn queries(&self) -> usize;
    /// A name for reports.
    fn describe(&self) -> String;
    /// The attack loss of the samples (lower is closer to the goal) where the recogniser
    /// exposes scores (one query); `None` where it only gives transcripts.
    fn score(&mut self, _samples: &[f32]) -> Option<Result<f32>> {
        None
    }
    /// Whether [`Recognizer::score`] gives scores.
    fn has_scores(&self) -> bool {
        false
    }
}

/// The built-in model as a black box: transcripts, and with an objective its scores (the
/// goal's teacher-forced loss from a forward pass, never a gradient).
pub struct BuiltinRecognizer<'a> {
    model: &'a LoadedModel,
    decode: DecodeOptions,
    queries: usize,
    objective: Option<Objective>,
}

impl<'a> BuiltinRecognizer<'a> {
    /// Wrap a loaded model with its decoding settings.
    pub fn new(model: &'a LoadedModel, decode: DecodeOptions) -> Self {
        BuiltinRecognizer {
            model,
            decode,
            queries: 0,
            objective: None,
        }
    }

    /// Expose scores for `goal` on an input whose clean transcript this recogniser gave as
    /// `original` (with its tokens).
    pub fn expose_scores(&mut self, goal: Goal, original: &str, tokens: &[u32]) -> Result<()> {
        self.objective = Some(Objective::new(self.model, goal, original, tokens)?);
        Ok(())
    }

    /// Transcript and tokens (one query).
    pub fn transcribe_with_tokens(&mut self, samples: &[f32]) -> Result<(String, Vec<u32>)> {
        self.queries += 1;
        let t = transcribe(self.model, samples, &self.decode)?;
        Ok((t.text, t.tokens))
    }
}

impl Recognizer for BuiltinRecognizer<'_> {
    fn transcribe(&mut self, samples: &[f32]) -> Result<String> {
        self.queries += 1;
        Ok(transcribe(self.model, samples, &self.decode)?.text)
    }
    fn queries(&self) -> usize {
        self.queries
    }
    fn describe(&self) -> String {
        format!("built-in {}", self.model.id())
    }
    fn has_scores(&self) -> bool {
        self.objective.is_some()
    }
    fn score(&mut self, samples: &[f32]) -> Option<Result<f32>> {
        let objective = self.objective.as_ref()?;
        self.queries += 1;
        Some(objective.loss(self.model, samples))
    }
}

/// An external recogniser run as `sh -c TEMPLATE` with `{wav}` replaced by a 16-bit WAV path.
pub struct CommandRecognizer {
    template: String,
    timeout: Duration,
    dir: PathBuf,
    queries: usize,
}

impl CommandRecognizer {
    /// A recogniser from a command template containing `{wav}`, killed after `timeout`.
    pub fn new(template: &str, timeout: Duration) -> Result<Self> {
        if !template.contains("{wav}") {
            return Err(Error::InvalidArgument(format!(
                "recogniser command {template:?} has no {{wav}} placeholder for the audio file"
            )));
        }
        if timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the recogniser timeout must be positive".into(),
            ));
        }
        let dir = query_folder("advox-asr")?;
        Ok(CommandRecognizer {
            template: template.to_string(),
            timeout,
            dir,
            queries: 0,
        })
    }
}

/// A fresh temporary folder for an external recogniser's query files, `PREFIX-PID-N` (a
/// per-process counter, so several recognisers never share one).
pub(crate) fn query_folder(prefix: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

impl Drop for CommandRecognizer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Quote a path for `sh`.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Recognizer for CommandRecognizer {
    fn transcribe(&mut self, samples: &[f32]) -> Result<String> {
        self.queries += 1;
        let wav = self.dir.join(format!("query-{}.wav", self.queries));
        write_wav(&wav, samples, SAMPLE_RATE, WavFormat::Pcm16, &[])?;
        let command = self
            .template
            .replace("{wav}", &shell_quote(&wav.to_string_lossy()));
        let fail = |what: String| Error::InvalidArgument(format!("recogniser `{command}`: {what}"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("could not start: {e}")))?;
        // Read the pipes on threads so a chatty command cannot block on a full pipe.
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_file(&wav);
                    return Err(fail(format!(
                        "no answer within {:.1} s; killed",
                        self.timeout.as_secs_f64()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(fail(format!("waiting for it failed: {e}"))),
            }
        };
        let _ = std::fs::remove_file(&wav);
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        if !status.success() {
            let tail = String::from_utf8_lossy(&err);
            let tail = tail.trim();
            let tail: String = tail
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(fail(format!("exited with {status}: {tail}")));
        }
        let text = String::from_utf8(out)
            .map_err(|_| fail("printed something that is not UTF-8 text".into()))?;
        if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            return Err(fail("printed control characters, not a transcript".into()));
        }
        Ok(text.trim().to_string())
    }
    fn queries(&self) -> usize {
        self.queries
    }
    fn describe(&self) -> String {
        format!("command `{}`", self.template)
    }
}
