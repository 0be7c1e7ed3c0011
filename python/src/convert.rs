//! Between Python and the library: audio arrays, errors, reports, progress and Ctrl-C.

use crate::AdvoxError;
use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A library error as `advox.AdvoxError`, with the library's message.
pub fn error(e: advox::Error) -> PyErr {
    AdvoxError::new_err(e.to_string())
}

/// An argument error in the library's words (`invalid argument: …`).
pub fn invalid(message: impl Into<String>) -> PyErr {
    error(advox::Error::InvalidArgument(message.into()))
}

/// 16-kHz mono samples from one channel of audio at `sample_rate`: any array-like of numbers,
/// cast to float32, resampled when the rate is not 16 kHz.
pub fn samples(audio: &Bound<'_, PyAny>, sample_rate: u32, what: &str) -> PyResult<Vec<f32>> {
    if sample_rate == 0 {
        return Err(invalid(format!("{what}: the sample rate must be positive")));
    }
    let x = channel(audio, what)?;
    if sample_rate == advox::audio::SAMPLE_RATE {
        return Ok(x);
    }
    audio
        .py()
        .detach(|| advox::audio::resample(&x, sample_rate, advox::audio::SAMPLE_RATE))
        .map_err(error)
}

/// One channel of samples as they are: any 1-D array-like of numbers, cast to float32.
pub fn channel(audio: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<f32>> {
    let py = audio.py();
    let np = py.import("numpy")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", np.getattr("float32")?)?;
    let array = np
        .getattr("ascontiguousarray")?
        .call((audio,), Some(&kwargs))
        .map_err(|e| invalid(format!("{what}: not an array of numbers ({e})")))?;
    let array = array.cast_into::<numpy::PyUntypedArray>()?;
    if array.ndim() != 1 {
        return Err(invalid(format!(
            "{what}: one channel is needed, a 1-D array of samples; got shape {:?} (mix it \
             down first, e.g. x.mean(axis=0) for channels × samples)",
            array.shape()
        )));
    }
    let array = array.cast_into::<PyArray1<f32>>()?;
    let x = array.readonly().as_slice()?.to_vec();
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "{what}: the array holds NaN or infinite samples (the first at index {i})"
        )));
    }
    Ok(x)
}

/// A numpy float32 array of `x`.
pub fn array(py: Python<'_>, x: Vec<f32>) -> Bound<'_, PyArray1<f32>> {
    PyArray1::from_vec(py, x)
}

/// A report (anything the library serialises) as Python objects: dicts, lists, numbers.
pub fn report<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value).map_err(PyErr::from)
}

/// Progress and interruption of a long computation that runs without the GIL: each step
/// briefly takes the GIL to call the user's callback (if any) and to check for Ctrl-C; an
/// exception from either cancels the computation and is raised when it returns.
pub struct Steps {
    callback: Option<Py<PyAny>>,
    /// Set to stop the computation at its next step.
    pub cancel: AtomicBool,
    raised: Mutex<Option<PyErr>>,
}

impl Steps {
    /// Steps reported to `callback` (a callable taking one dict), if given.
    pub fn new(callback: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        if let Some(cb) = &callback {
            if !cb.is_callable() {
                return Err(invalid("progress must be a callable taking one dict"));
            }
        }
        Ok(Steps {
            callback: callback.map(Bound::unbind),
            cancel: AtomicBool::new(false),
            raised: Mutex::new(None),
        })
    }

    /// Report one step (`fields` become the callback's dict) and check for Ctrl-C.
    pub fn step(&self, fields: &[(&str, StepValue)]) {
        if self.cancel.load(Ordering::Relaxed) {
            return;
        }
        let result = Python::attach(|py| -> PyResult<()> {
            if let Some(cb) = &self.callback {
                let d = PyDict::new(py);
                for (k, v) in fields {
                    match v {
                        StepValue::Int(i) => d.set_item(k, i)?,
                        StepValue::Float(f) => d.set_item(k, f)?,
                        StepValue::Text(t) => d.set_item(k, t)?,
                    }
                }
                cb.call1(py, (d,))?;
            }
            py.check_signals()
        });
        if let Err(e) = result {
            if let Ok(mut slot) = self.raised.lock() {
                slot.get_or_insert(e);
            }
            self.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// The computation's result, unless a callback or Ctrl-C raised during it.
    pub fn finish<T>(self, result: advox::Result<T>) -> PyResult<T> {
        if let Some(e) = self.raised.into_inner().ok().flatten() {
            return Err(e);
        }
        result.map_err(error)
    }
}

/// A value reported with a step.
pub enum StepValue {
    /// A count.
    Int(usize),
    /// A measurement.
    Float(f64),
    /// A transcript.
    Text(String),
}

/// One signal of a list that may mix arrays (at `sample_rate`) and audio files: its name (the
/// file, or `what`) and its 16-kHz samples.
pub fn channel_or_file(
    item: &Bound<'_, PyAny>,
    sample_rate: u32,
    what: &str,
) -> PyResult<(String, Vec<f32>)> {
    if let Ok(path) = item.extract::<std::path::PathBuf>() {
        let x = item
            .py()
            .detach(|| advox::audio::read_audio_16k_mono(&path))
            .map_err(error)?;
        return Ok((path.display().to_string(), x));
    }
    Ok((what.to_string(), samples(item, sample_rate, what)?))
}
