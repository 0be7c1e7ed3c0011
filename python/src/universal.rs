//! `advox.universal`: one perturbation for a whole set of utterances, as `advox universal`
//! trains it (additive, prefix-mute or overlay-mute), judged next to random noise of the same bound.

use crate::convert::{array, channel_or_file, error, invalid, report, StepValue, Steps};
use crate::models::models_arg;
use advox::attack::universal::{prepare, train_universal_ensemble, UniversalMode};
use advox::attack::universal_plan::{judge_into_sidecar, UniversalSettings};
use advox::attack::StepInfo;
use advox::objective::Goal;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::time::Instant;

/// A list argument of names (front ends, decodings), each parsed as the command line parses it.
fn parse_names<T: std::str::FromStr<Err = advox::Error>>(
    names: Option<Vec<String>>,
) -> PyResult<Option<Vec<T>>> {
    names
        .map(|names| {
            names
                .iter()
                .map(|n| n.parse())
                .collect::<advox::Result<_>>()
        })
        .transpose()
        .map_err(error)
}

/// The signals of a set argument (arrays or files), named for the report.
fn set(
    items: &Bound<'_, PyAny>,
    sample_rate: u32,
    what: &str,
) -> PyResult<Vec<(String, Vec<f32>)>> {
    let mut out = Vec::new();
    for (i, a) in items.try_iter()?.enumerate() {
        out.push(channel_or_file(&a?, sample_rate, &format!("{what}[{i}]"))?);
    }
    if out.is_empty() {
        return Err(invalid(format!("{what}: no utterances")));
    }
    Ok(out)
}

/// Train a universal perturbation on `train` (arrays at `sample_rate`, or audio files) and
/// judge it on `train` and, if given, the held-out `eval`, each next to uniform noise of the
/// same bound. Returns `(perturbation, sidecar)`: the perturbation at 16 kHz and the sidecar
/// `advox universal` writes beside its WAV (a dict). `model` may be a list (the mute modes): one
/// segment for all of them, the first judged in `train`/`eval`, the others in `other_models`.
#[pyfunction]
#[pyo3(signature = (train, sample_rate=16000, *, eval=None, mode="additive", target=None,
    untargeted=false, mute=false, min_wer=0.5, eps=None, length_s=None, steps=100, batch=2,
    step_size=None, seed=0, snr_db=None, masking_margin_db=None, timestamps=false, beam=5,
    front_ends=None, max_shift_s=None, decodings=None, model=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn universal<'py>(
    py: Python<'py>,
    train: &Bound<'py, PyAny>,
    sample_rate: u32,
    eval: Option<&Bound<'py, PyAny>>,
    mode: &str,
    target: Option<String>,
    untargeted: bool,
    mute: bool,
    min_wer: f64,
    eps: Option<f32>,
    length_s: Option<f32>,
    steps: usize,
    batch: usize,
    step_size: Option<f32>,
    seed: u64,
    snr_db: Option<f32>,
    masking_margin_db: Option<f32>,
    timestamps: bool,
    beam: usize,
    front_ends: Option<Vec<String>>,
    max_shift_s: Option<f32>,
    decodings: Option<Vec<String>>,
    model: Option<&Bound<'py, PyAny>>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mode = match mode {
        "additive" => UniversalMode::Additive,
        "prefix-mute" => UniversalMode::PrefixMute,
        "overlay-mute" => UniversalMode::OverlayMute,
        other => {
            return Err(error(advox::error::unknown_name(
                "universal mode",
                other,
                &["additive", "prefix-mute", "overlay-mute"],
            )))
        }
    };
    let settings = UniversalSettings {
        mode,
        goal: Goal::choose(target.as_deref(), untargeted, mute, min_wer).map_err(error)?,
        min_wer,
        eps,
        length_s,
        steps,
        batch,
        step_size,
        seed,
        snr_db,
        masking_margin_db,
        timestamps,
        beam,
        front_ends: parse_names(front_ends)?,
        max_shift_s,
        decodings: parse_names(decodings)?,
    };
    let goal = settings.goal().map_err(error)?;
    let cfg = settings.config().map_err(error)?;
    let decode = settings.decode();
    let train = set(train, sample_rate, "train")?;
    let eval = match eval {
        Some(e) if !e.is_none() => Some(set(e, sample_rate, "eval")?),
        _ => None,
    };
    let models = models_arg(py, model)?;
    let model = models[0].clone();
    let steps_report = Steps::new(progress)?;
    let result = py.detach(|| -> advox::Result<_> {
        let train_set = prepare(&model, train, &goal, &decode)?;
        let eval_set = match eval {
            Some(e) => Some(prepare(&model, e, &goal, &decode)?),
            None => None,
        };
        let start = Instant::now();
        let all: Vec<&advox::model::LoadedModel> = models.iter().map(|m| m.as_ref()).collect();
        let delta = train_universal_ensemble(
            &all,
            &train_set,
            &cfg,
            &steps_report.cancel,
            &mut |info: &StepInfo| {
                steps_report.step(&[
                    ("step", StepValue::Int(info.step)),
                    ("steps", StepValue::Int(info.steps)),
                    ("loss", StepValue::Float(info.loss as f64)),
                ])
            },
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let report = judge_into_sidecar(
            &all,
            &settings,
            &cfg,
            &delta,
            &train_set,
            eval_set.as_deref(),
            seconds,
            &mut |_, _, _| {},
        )?;
        Ok((delta, report))
    });
    let (delta, sidecar_value) = steps_report.finish(result)?;
    let sidecar_dict = report(py, &sidecar_value)?;
    PyTuple::new(py, [array(py, delta).into_any(), sidecar_dict])
}
