//! `advox.attack`: every white-box attack of `advox attack`, its options as keyword arguments
//! named as the command line names them (`snr_db` for `--snr-db`), checked by the library.

use crate::convert::{array, error, invalid, report, samples, StepValue, Steps};
use crate::models::model_arg;
use advox::attack::plan::{attack_signal, AttackOptions};
use advox::attack::query_signal::{builtin_target, check_target, query_signal};
use advox::attack::{AttackKind, StepInfo};
use advox::audio::{write_wav, WavFormat, SAMPLE_RATE};
use advox::formats::attack_report::ReportFiles;
use advox::formats::AttackReport;
use advox::mel::FrontEnd;
use advox::objective::Goal;
use advox::recognizer::external::ExternalAsr;
use advox::recognizer::Recognizer;
use advox::verify::Verifier;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The attack options a Python caller may pass, as `advox attack` names them (`--snr-db` is
/// `snr_db`, `--attack` is `attack`); anything else is refused by name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    attack: Option<String>,
    eps: Option<f32>,
    l2: Option<f32>,
    snr_db: Option<f32>,
    band: Option<(f32, f32)>,
    #[serde(default)]
    speech_only: bool,
    masking_margin_db: Option<f32>,
    domain: Option<String>,
    steps: Option<usize>,
    step_size: Option<f32>,
    rule: Option<String>,
    schedule: Option<String>,
    #[serde(default)]
    random_start: bool,
    restarts: Option<usize>,
    #[serde(default)]
    eot: bool,
    eot_samples: Option<usize>,
    rir: Option<PathBuf>,
    c: Option<f32>,
    kappa: Option<f32>,
    search_steps: Option<usize>,
    lr: Option<f32>,
    max_bins: Option<f32>,
    bins_per_iteration: Option<f32>,
    bin_amplitude: Option<f32>,
    overshoot: Option<f32>,
    stage2_steps: Option<usize>,
    stage2_lr: Option<f32>,
    masked_share: Option<f64>,
    alpha: Option<f32>,
    cg_iterations: Option<usize>,
    trust_radius: Option<f32>,
    check_every: Option<usize>,
    beam: Option<usize>,
    #[serde(default)]
    seed: u64,
    margin: Option<f32>,
    front_ends: Option<Vec<String>>,
    #[serde(default)]
    plain_prompt_only: bool,
    queries: Option<usize>,
    population: Option<usize>,
    sigma: Option<f32>,
    tile: Option<usize>,
    #[serde(default)]
    surrogate: bool,
    surrogate_rounds: Option<usize>,
    #[serde(default)]
    quiet_prior: bool,
    quiet_rounds: Option<usize>,
}

impl Options {
    /// The library's options (names parsed, files read).
    fn into_attack_options(self) -> advox::Result<AttackOptions> {
        let kind = self
            .attack
            .as_deref()
            .map(str::parse::<AttackKind>)
            .transpose()?;
        let front_ends = match self.front_ends {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| front_end(n))
                    .collect::<advox::Result<Vec<_>>>()?,
            ),
        };
        if let Some((lo, hi)) = self.band {
            if !(lo >= 0.0 && hi > lo) {
                return Err(advox::Error::InvalidArgument(format!(
                    "band: empty band {lo}-{hi}"
                )));
            }
        }
        Ok(AttackOptions {
            kind,
            eps: self.eps,
            l2: self.l2,
            snr_db: self.snr_db,
            band: self.band,
            speech_only: self.speech_only,
            masking_margin_db: self.masking_margin_db,
            domain: parse_name(self.domain)?,
            steps: self.steps,
            step_size: self.step_size,
            rule: parse_name(self.rule)?,
            schedule: parse_name(self.schedule)?,
            random_start: self.random_start,
            restarts: self.restarts,
            eot: self.eot,
            eot_samples: self.eot_samples,
            rirs: match &self.rir {
                Some(p) => Some(advox::attack::eot::load_rirs(p)?),
                None => None,
            },
            c: self.c,
            kappa: self.kappa,
            search_steps: self.search_steps,
            lr: self.lr,
            max_bins: self.max_bins,
            bins_per_iteration: self.bins_per_iteration,
            bin_amplitude: self.bin_amplitude,
            overshoot: self.overshoot,
            stage2_steps: self.stage2_steps,
            stage2_lr: self.stage2_lr,
            masked_share: self.masked_share,
            alpha: self.alpha,
            cg_iterations: self.cg_iterations,
            trust_radius: self.trust_radius,
            check_every: self.check_every,
            beam: self.beam,
            seed: self.seed,
            margin: self.margin,
            front_ends,
            no_timestamp_prompt: self.plain_prompt_only,
            queries: self.queries,
            population: self.population,
            sigma: self.sigma,
            tile: self.tile,
            surrogate: self.surrogate,
            surrogate_rounds: self.surrogate_rounds,
            quiet_prior: self.quiet_prior,
            quiet_rounds: self.quiet_rounds,
        })
    }
}

/// A front end by name (`openai`, `faster-whisper`).
pub fn front_end(name: &str) -> advox::Result<FrontEnd> {
    FrontEnd::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            advox::error::unknown_name("front end", name, &FrontEnd::ALL.map(FrontEnd::name))
        })
}

/// A name the library parses, if given.
fn parse_name<T: std::str::FromStr<Err = advox::Error>>(
    v: Option<String>,
) -> advox::Result<Option<T>> {
    v.map(|s| s.parse()).transpose()
}

/// The options of `kwargs` (keyword arguments of `attack`).
fn options(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<AttackOptions> {
    let opts: Options = match kwargs {
        None => Options::default(),
        Some(k) => pythonize::depythonize(k.as_any())
            .map_err(|e| invalid(format!("attack options: {e}")))?,
    };
    opts.into_attack_options().map_err(error)
}

/// Attack one channel of audio; returns `(example, report)`: the adversarial example (16 kHz,
/// float32, quantised to 16 bits as a WAV would hold it) and the report `advox attack` writes
/// (a dict; without file names). `attack="ga"|"nes"|"spsa"` runs a black-box attack: against
/// the built-in model as an opaque box, or an external recogniser (`asr`, `asr_cmd`,
/// `asr_server`, as `advox attack --blackbox` takes them).
#[pyfunction]
#[pyo3(signature = (audio, sample_rate=16000, *, target=None, untargeted=false, mute=false,
    min_wer=0.5, model=None, verify=None, progress=None, asr=None, asr_cmd=None, asr_server=None,
    timeout_s=None, **kwargs))]
#[allow(clippy::too_many_arguments)]
pub fn attack<'py>(
    py: Python<'py>,
    audio: &Bound<'py, PyAny>,
    sample_rate: u32,
    target: Option<String>,
    untargeted: bool,
    mute: bool,
    min_wer: f64,
    model: Option<&Bound<'py, PyAny>>,
    verify: Option<Vec<String>>,
    progress: Option<Bound<'py, PyAny>>,
    asr: Option<String>,
    asr_cmd: Option<String>,
    asr_server: Option<String>,
    timeout_s: Option<f64>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let goal = Goal::choose(target.as_deref(), untargeted, mute, min_wer)
        .map_err(error)?
        .ok_or_else(|| invalid("choose one goal: target=TEXT, untargeted=True or mute=True"))?;
    let options = options(kwargs)?;
    options.check(Some(&goal)).map_err(error)?;
    let black_box = options.kind().is_black_box();
    let external_chosen = asr.is_some() || asr_cmd.is_some() || asr_server.is_some();
    if !black_box && (external_chosen || timeout_s.is_some()) {
        return Err(invalid(format!(
            "asr, asr_cmd, asr_server and timeout_s apply to the black-box attacks (ga, nes, \
             spsa), not {}",
            options.kind()
        )));
    }
    let timeout_s = timeout_s.unwrap_or(60.0);
    if !(timeout_s.is_finite() && timeout_s > 0.0) {
        return Err(invalid("timeout_s must be positive"));
    }
    if black_box {
        options.black_box(&goal).map_err(error)?;
        check_target(&options, external_chosen).map_err(error)?;
        if external_chosen && !options.surrogate && model.is_some_and(|m| !m.is_none()) {
            return Err(invalid(
                "model is the built-in recogniser or the surrogate: it does not apply to an \
                 external recogniser without surrogate=True",
            ));
        }
    }
    let verifiers = match &verify {
        Some(names) => Verifier::parse_list(&names.join(",")).map_err(error)?,
        None => Vec::new(),
    };
    let x = samples(audio, sample_rate, "audio")?;
    let needs_model = !black_box || !external_chosen || options.surrogate || !verifiers.is_empty();
    let model = if needs_model {
        Some(model_arg(py, model)?)
    } else {
        None
    };
    let steps = Steps::new(progress)?;
    let files = ReportFiles::new(Path::new(""), Path::new(""));
    let run = py.detach(|| -> advox::Result<(Vec<f32>, AttackReport)> {
        let mut on_step = |info: &StepInfo| {
            let mut fields = vec![
                ("run", StepValue::Int(info.run)),
                ("step", StepValue::Int(info.step)),
                ("steps", StepValue::Int(info.steps)),
                ("loss", StepValue::Float(info.loss as f64)),
            ];
            if let Some(t) = &info.transcript {
                fields.push(("transcript", StepValue::Text(t.clone())));
            }
            steps.step(&fields);
        };
        if black_box {
            let external = ExternalAsr::choose(
                asr_cmd.as_deref(),
                asr_server.as_deref(),
                asr.as_deref(),
                &mut |m| eprintln!("advox: {m}"),
            )?;
            let (mut recognizer, original): (Box<dyn Recognizer>, String) = match &external {
                Some(e) => {
                    let mut r = e.recognizer(Duration::from_secs_f64(timeout_s))?;
                    let original = r.transcribe(&x)?;
                    (r, original)
                }
                None => {
                    let m = model.as_deref().ok_or_else(|| {
                        advox::Error::Internal("the built-in model is not loaded".into())
                    })?;
                    let (builtin, text) = builtin_target(m, &options, &goal, &x)?;
                    (Box::new(builtin), text)
                }
            };
            let surrogate = model.as_deref().filter(|_| options.surrogate);
            let done = query_signal(
                recognizer.as_mut(),
                original,
                &x,
                &goal,
                &options,
                surrogate,
                &steps.cancel,
                &mut on_step,
            )?;
            let report = AttackReport::black_box(
                &files,
                &x,
                done.kind,
                &goal,
                &done.original,
                &done.outcome.attack,
                done.stats,
                done.seconds,
                done.seed,
                options.applied_constraints(),
            );
            return Ok((done.outcome.attack.adversarial, report));
        }
        let m = model
            .as_deref()
            .ok_or_else(|| advox::Error::Internal("the model is not loaded".into()))?;
        let done = attack_signal(
            m,
            &x,
            goal.clone(),
            &options,
            &steps.cancel,
            &mut |_, _| {},
            &mut on_step,
        )?;
        let report = AttackReport::white_box(
            &files,
            &x,
            &done,
            m.id(),
            options.seed,
            options.applied_constraints(),
        );
        Ok((done.run.outcome.adversarial, report))
    });
    let (example, mut report_value) = steps.finish(run)?;
    if let Some(m) = model.as_deref().filter(|_| !verifiers.is_empty()) {
        let verdicts = py
            .detach(|| verify_example(&example, &report_value, &verifiers, &m.dir))
            .map_err(error)?;
        report_value.set_verified(verdicts);
    }
    let dict = report(py, &report_value)?;
    if let Ok(d) = dict.cast::<PyDict>() {
        for key in ["input", "output", "perturbation"] {
            d.del_item(key)?;
        }
    }
    PyTuple::new(py, [array(py, example).into_any(), dict])
}

/// The independent recognisers' verdicts on `example`, written to a temporary WAV as the
/// command line writes it (16-bit).
fn verify_example(
    example: &[f32],
    report: &AttackReport,
    verifiers: &[Verifier],
    model_dir: &Path,
) -> advox::Result<Vec<advox::verify::Verification>> {
    let dir = std::env::temp_dir().join(format!(
        "advox-python-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| advox::Error::io(&dir, e))?;
    let wav = dir.join("example.wav");
    let result = write_wav(&wav, example, SAMPLE_RATE, WavFormat::Pcm16, &[]).and_then(|()| {
        let mut verdicts = Vec::new();
        for v in verifiers {
            verdicts.extend(v.verify(
                model_dir,
                &wav,
                &report.goal,
                &report.original_transcript,
                None,
                &mut |m| eprintln!("advox: {m}"),
            )?);
        }
        Ok(verdicts)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
