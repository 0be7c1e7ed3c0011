//! `advox.attack`: every white-box attack of `advox attack`, its options as keyword arguments
//! named as the command line names them (`snr_db` for `--snr-db`), checked by the library.

use crate::convert::{array, error, invalid, report, samples, StepValue, Steps};
use crate::models::model_arg;
use advox::attack::plan::{attack_signal, AttackOptions};
use advox::attack::query_signal::{builtin_target, check_target, query_signal};
use advox::attack::StepInfo;
use advox::audio::{write_wav, WavFormat, SAMPLE_RATE};
use advox::formats::attack_report::ReportFiles;
use advox::formats::AttackReport;
use advox::objective::Goal;
use advox::recognizer::external::ExternalAsr;
use advox::recognizer::Recognizer;
use advox::verify::Verifier;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The options of `kwargs` (keyword arguments of `attack`), as the library reads them; `rir`
/// (a file or folder of room impulse responses) is read here.
fn options(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<AttackOptions> {
    let Some(kwargs) = kwargs else {
        return Ok(AttackOptions::default());
    };
    let kwargs = kwargs.copy()?;
    let rir: Option<PathBuf> = match kwargs.get_item("rir")? {
        Some(path) => {
            kwargs.del_item("rir")?;
            path.extract()?
        }
        None => None,
    };
    let mut options: AttackOptions = pythonize::depythonize(kwargs.as_any())
        .map_err(|e| crate::AdvoxError::new_err(format!("attack options: {e}")))?;
    if let Some(path) = rir {
        options.rirs = Some(advox::attack::eot::load_rirs(&path).map_err(error)?);
    }
    Ok(options)
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
