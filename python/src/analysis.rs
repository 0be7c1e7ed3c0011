//! `advox.detect`, `advox.defend`, `advox.purify` and `advox.evaluate`.

use crate::convert::{array, channel_or_file, error, invalid, report, samples, StepValue, Steps};
use crate::models::{model_arg, models_arg};
use advox::defend::Defense;
use advox::detect::transforms::Transform;
use advox::detect::verdict::detect_signal;
use advox::detect::{Context, Detector};
use advox::eval::report::Report;
use advox::eval::{
    evaluate_example, matrix_bounds, matrix_detectors, parse_eval_attack, EvalConfig,
};
use advox::formats::Calibration;
use advox::manifest::ManifestEntry;
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::Goal;
use numpy::PyArray1;
use pyo3::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Score one channel with detectors (default: `advox detect`'s set); thresholds from
/// `calibration` (a file written by `advox detect --calibrate`, or a dict of detector name to
/// threshold), else each detector's built-in one. Returns `scores`, `thresholds`, `verdicts`,
/// `flagged_by`, `adversarial` and the `transcript` where a detector decoded one.
#[pyfunction]
#[pyo3(signature = (audio, sample_rate=16000, *, detectors=None, calibration=None, beam=1, model=None))]
pub fn detect<'py>(
    py: Python<'py>,
    audio: &Bound<'py, PyAny>,
    sample_rate: u32,
    detectors: Option<Vec<String>>,
    calibration: Option<&Bound<'py, PyAny>>,
    beam: usize,
    model: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if beam == 0 {
        return Err(invalid("beam must be at least 1"));
    }
    let detectors = match detectors {
        None => Detector::default_set(),
        Some(names) => names
            .iter()
            .map(|n| Detector::parse(n))
            .collect::<advox::Result<Vec<_>>>()
            .map_err(error)?,
    };
    let thresholds: Option<BTreeMap<String, f64>> = match calibration {
        None => None,
        Some(c) if c.is_none() => None,
        Some(c) => Some(match c.extract::<BTreeMap<String, f64>>() {
            Ok(map) => map,
            Err(_) => {
                let path: PathBuf = c.extract().map_err(|_| {
                    invalid("calibration must be a file from `advox detect --calibrate` or a dict of thresholds")
                })?;
                Calibration::read(&path).map_err(error)?.thresholds()
            }
        }),
    };
    let x = samples(audio, sample_rate, "audio")?;
    let model: Option<Arc<LoadedModel>> = if detectors.iter().any(Detector::needs_model) {
        Some(model_arg(py, model)?)
    } else {
        None
    };
    let detection = py
        .detach(|| {
            let ctx = Context {
                model: model.as_deref(),
                decode: DecodeOptions {
                    beam_size: beam,
                    ..Default::default()
                },
            };
            detect_signal(&detectors, &ctx, &x, thresholds.as_ref())
        })
        .map_err(error)?;
    report(py, &detection)
}

/// Transcribe one channel through a defence (`none`, `purify:T1+T2`, `smoothing[:SIGMA]`,
/// `vote[:T1+T2]`); `samples`, `alpha` and `seed` set smoothing's estimation. Returns `text`,
/// `abstained`, `agreement`, `certified_radius` and `defense`.
#[pyfunction]
#[pyo3(signature = (audio, sample_rate=16000, *, defense="purify:lowpass-4000", samples=None,
    alpha=None, seed=None, beam=1, models=None))]
#[allow(clippy::too_many_arguments)]
pub fn defend<'py>(
    py: Python<'py>,
    audio: &Bound<'py, PyAny>,
    sample_rate: u32,
    defense: &str,
    samples: Option<usize>,
    alpha: Option<f64>,
    seed: Option<u64>,
    beam: usize,
    models: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if beam == 0 {
        return Err(invalid("beam must be at least 1"));
    }
    let mut defense = Defense::parse(defense).map_err(error)?;
    let smoothing = matches!(defense, Defense::Smoothing(_));
    if smoothing || samples.is_some() || alpha.is_some() || seed.is_some() {
        defense
            .set_smoothing(
                samples.unwrap_or(16),
                alpha.unwrap_or(0.05),
                seed.unwrap_or(0),
            )
            .map_err(error)?;
    }
    let x = crate::convert::samples(audio, sample_rate, "audio")?;
    let models = models_arg(py, models)?;
    let defended = py
        .detach(|| {
            let refs: Vec<&LoadedModel> = models.iter().map(|m| m.as_ref()).collect();
            let decode = DecodeOptions {
                beam_size: beam,
                ..Default::default()
            };
            defense.transcribe(&refs, &decode, &x)
        })
        .map_err(error)?;
    let dict = report(py, &defended)?;
    dict.set_item("defense", defense.name())?;
    Ok(dict)
}

/// One channel through input transformations (`lowpass-4000+quantize-8`, names as `advox
/// detect` takes them), at 16 kHz.
#[pyfunction]
#[pyo3(signature = (audio, sample_rate=16000, *, transforms="lowpass-4000"))]
pub fn purify<'py>(
    py: Python<'py>,
    audio: &Bound<'py, PyAny>,
    sample_rate: u32,
    transforms: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let transforms = transforms
        .split('+')
        .map(Transform::parse)
        .collect::<advox::Result<Vec<_>>>()
        .map_err(error)?;
    let x = samples(audio, sample_rate, "audio")?;
    let y = py
        .detach(|| advox::defend::purify(&transforms, &x))
        .map_err(error)?;
    Ok(array(py, y))
}

/// The evaluation matrix of `advox eval` on signals (arrays at `sample_rate`, or audio files):
/// every attack at every bound, judged without and through every defence (and adaptively
/// through it), scored by every detector. Returns the report `advox eval` writes as a dict.
#[pyfunction]
#[pyo3(signature = (audios, sample_rate=16000, *, references=None, target=None, untargeted=false,
    mute=false, min_wer=0.5, attacks=None, eps=None, snr_db=None, steps=50, defenses=None,
    detectors=None, beam=1, seed=0, adaptive=true, adaptive_samples=None, models=None,
    progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate<'py>(
    py: Python<'py>,
    audios: &Bound<'py, PyAny>,
    sample_rate: u32,
    references: Option<Vec<Option<String>>>,
    target: Option<String>,
    untargeted: bool,
    mute: bool,
    min_wer: f64,
    attacks: Option<Vec<String>>,
    eps: Option<Vec<f32>>,
    snr_db: Option<Vec<f32>>,
    steps: usize,
    defenses: Option<Vec<String>>,
    detectors: Option<Vec<String>>,
    beam: usize,
    seed: u64,
    adaptive: bool,
    adaptive_samples: Option<usize>,
    models: Option<&Bound<'py, PyAny>>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let attacks = attacks
        .unwrap_or_else(|| vec!["pgd".into()])
        .iter()
        .map(|a| parse_eval_attack(a))
        .collect::<advox::Result<Vec<_>>>()
        .map_err(error)?;
    let (epsilons, snr_bounds_db) = matrix_bounds(
        eps.as_deref().unwrap_or(&[]),
        snr_db.as_deref().unwrap_or(&[]),
        &attacks,
        false,
    )
    .map_err(error)?;
    let defenses = defenses
        .unwrap_or_else(|| {
            ["none", "purify:lowpass-4000", "smoothing"]
                .map(String::from)
                .to_vec()
        })
        .iter()
        .map(|d| Defense::parse(d))
        .collect::<advox::Result<Vec<_>>>()
        .map_err(error)?;
    let detectors = matrix_detectors(&detectors.unwrap_or_default()).map_err(error)?;
    if !adaptive && adaptive_samples.is_some() {
        return Err(invalid(
            "adaptive_samples does not apply with adaptive=False",
        ));
    }
    let adaptive_samples = adaptive_samples.unwrap_or(advox::defend::adaptive::DEFAULT_SAMPLES);
    if beam == 0 || steps == 0 || adaptive_samples == 0 {
        return Err(invalid(
            "beam, steps and adaptive_samples must be at least 1",
        ));
    }
    let default_goal = Goal::choose(target.as_deref(), untargeted, mute, min_wer)
        .map_err(error)?
        .unwrap_or(Goal::Untargeted { min_wer });
    let mut signals = Vec::new();
    for (i, a) in audios.try_iter()?.enumerate() {
        signals.push(channel_or_file(&a?, sample_rate, &format!("audios[{i}]"))?);
    }
    if signals.is_empty() {
        return Err(invalid("audios: no signals"));
    }
    let references = references.unwrap_or_else(|| vec![None; signals.len()]);
    if references.len() != signals.len() {
        return Err(invalid(format!(
            "references: {} for {} signals",
            references.len(),
            signals.len()
        )));
    }
    let models = models_arg(py, models)?;
    let cfg = EvalConfig {
        attacks,
        epsilons,
        snr_bounds_db,
        steps,
        defenses,
        detectors,
        decode: DecodeOptions {
            beam_size: beam,
            ..Default::default()
        },
        default_goal,
        seed,
        adaptive,
        adaptive_samples,
        over_the_air: None,
        eot: false,
    };
    let settings = cfg.settings(
        "(Python signals)".into(),
        signals.len(),
        models.iter().map(|m| m.id()).collect(),
    );
    let steps_report = Steps::new(progress)?;
    let total = signals.len();
    let result = py.detach(|| {
        let refs: Vec<&LoadedModel> = models.iter().map(|m| m.as_ref()).collect();
        let mut records = Vec::new();
        for (index, ((name, x), reference)) in signals.iter().zip(references).enumerate() {
            let entry = ManifestEntry {
                input: PathBuf::from(name),
                target: None,
                goal: None,
                transcript: reference,
            };
            let record = evaluate_example(
                &refs,
                index,
                &entry,
                x,
                &cfg,
                &steps_report.cancel,
                &mut |_, _| Ok(()),
            )?;
            records.push(record);
            steps_report.step(&[
                ("example", StepValue::Int(index + 1)),
                ("examples", StepValue::Int(total)),
            ]);
            if steps_report
                .cancel
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                break;
            }
        }
        Report::from_records(settings, None, records)
    });
    let done = steps_report.finish(result)?;
    report(py, &done)
}
