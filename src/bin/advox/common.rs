//! Helpers shared by the subcommands: device choice, model loading with progress.

use advox::model::{provision, LoadedModel};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Keep freed large blocks in the heap instead of returning them to the OS after every tensor:
/// the attack loop allocates and frees the same large buffers every step, and re-faulting
/// fresh pages cost ~40 % of a step (see README, Performance). CLI only, never the plugin.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// How a command that did not fail ended: `main` turns it into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Done,
    /// Exit code 2: the command ran, but its goal was not met (an attack that did not succeed).
    GoalNotMet,
}

impl Outcome {
    /// `Done` if `met`, else `GoalNotMet`.
    pub fn of(met: bool) -> Self {
        if met {
            Outcome::Done
        } else {
            Outcome::GoalNotMet
        }
    }
}

/// Set by Ctrl-C (SIGINT) once [`install_interrupt`] has run: a long command stops at its next
/// step and keeps what it has.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catch Ctrl-C instead of dying: it sets [`INTERRUPTED`].
pub fn install_interrupt() {
    // SAFETY: the handler is async-signal-safe (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
}

/// A band `LOW-HIGH` in Hz (`--band`), e.g. `300-8000`.
pub fn parse_band(s: &str) -> std::result::Result<(f32, f32), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or("expected LOW-HIGH in Hz, e.g. 300-8000")?;
    let lo: f32 = lo
        .trim()
        .parse()
        .map_err(|_| format!("bad low frequency {lo:?}"))?;
    let hi: f32 = hi
        .trim()
        .parse()
        .map_err(|_| format!("bad high frequency {hi:?}"))?;
    if !(lo >= 0.0 && hi > lo) {
        return Err(format!("empty band {lo}-{hi}"));
    }
    Ok((lo, hi))
}

/// The device named on the command line.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device cuda: this advox was built without CUDA support (cargo build --features cuda)");
            }
            Device::new_cuda(0).context("could not open CUDA device 0")
        }
        other => bail!("unknown device {other:?}: use cpu or cuda"),
    }
}

/// Resolve (fetching if needed) and load a model, with progress on stderr.
pub fn load_model(explicit: Option<&str>, device: &Device) -> Result<LoadedModel> {
    let dir = provision::resolve_model(explicit, &mut |msg| eprintln!("advox: {msg}"))
        .context("could not find a model (pass --model DIR, or run `advox model fetch`)")?;
    let spinner = spinner(&format!("loading model {}", dir.display()));
    let model =
        LoadedModel::load(&dir, device).with_context(|| format!("loading model {}", dir.display()));
    spinner.finish_and_clear();
    model
}

/// Every model named by a repeatable `--model` (the default model when none is named).
pub fn load_models(names: &[String], device: &Device) -> Result<Vec<LoadedModel>> {
    if names.is_empty() {
        return Ok(vec![load_model(None, device)?]);
    }
    names.iter().map(|m| load_model(Some(m), device)).collect()
}

/// A spinner on stderr (hidden when stderr is not a terminal).
pub fn spinner(msg: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A progress bar for `len` steps: bar, position, elapsed time and a message.
pub fn step_bar(len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Write `value` as pretty JSON to `path` through a temporary file beside it and a rename.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &std::path::Path, value: &T) -> Result<()> {
    advox::atomic_file::write_bytes_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The goal flags of the attack commands.
#[derive(clap::Args)]
pub struct GoalArgs {
    /// Targeted: the transcript to produce.
    #[arg(long, group = "goal")]
    pub target: Option<String>,
    /// Untargeted: move the transcript away from the original (see --min-wer).
    #[arg(long, group = "goal")]
    pub untargeted: bool,
    /// Mute: make the recogniser output nothing.
    #[arg(long, group = "goal")]
    pub mute: bool,
    /// Untargeted success threshold: WER to the original transcript.
    #[arg(long, default_value_t = 0.5)]
    pub min_wer: f64,
}

impl GoalArgs {
    /// The goal the flags set, if any.
    pub fn goal(&self) -> Result<Option<advox::objective::Goal>> {
        Ok(advox::objective::Goal::choose(
            self.target.as_deref(),
            self.untargeted,
            self.mute,
            self.min_wer,
        )?)
    }
}

/// The error and its causes, "a: b: c", leaving out a cause (or a context) whose text the
/// message so far already ends with, as when a library error already names its source or a
/// context repeats the path the error gives.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(p);
    }
    out
}

/// `--front-end(s)`: a [`advox::mel::FrontEnd`] by name (`openai`, `faster-whisper`).
pub fn front_end_parser() -> impl clap::builder::TypedValueParser<Value = advox::mel::FrontEnd> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = advox::mel::FrontEnd::ALL.iter().map(|f| f.name()).collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|name| name.parse())
}

/// The external recogniser `--asr-cmd`, `--asr-server` or `--asr NAME` names, if any (at
/// most one is set; clap enforces it).
pub fn external_asr(
    cmd: Option<&str>,
    server: Option<&str>,
    name: Option<&str>,
) -> Result<Option<advox::recognizer::external::ExternalAsr>> {
    Ok(advox::recognizer::external::ExternalAsr::choose(
        cmd,
        server,
        name,
        &mut |m| eprintln!("advox: {m}"),
    )?)
}
