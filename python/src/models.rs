//! Models (loaded once per process and shared), audio files, transcription.

use crate::convert::{array, channel, error, report, samples};
use advox::model::{provision, DecodeOptions, LoadedModel};
use numpy::PyArray1;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Every model loaded in this process, by directory: a notebook that names the same model in
/// many calls loads it once.
static LOADED: Mutex<Option<HashMap<PathBuf, Arc<LoadedModel>>>> = Mutex::new(None);

/// The model `name` names (a directory or a known name such as `tiny.en`; `None`: the default,
/// or `$ADVOX_MODEL`), fetched into the cache first if it is a known one not cached yet.
pub fn load(py: Python<'_>, name: Option<&str>) -> PyResult<Arc<LoadedModel>> {
    py.detach(|| {
        let dir = provision::resolve_model(name, &mut |m| eprintln!("advox: {m}"))?;
        let mut loaded = LOADED
            .lock()
            .map_err(|_| advox::Error::Internal("the model cache's lock is poisoned".into()))?;
        let loaded = loaded.get_or_insert_with(HashMap::new);
        if let Some(m) = loaded.get(&dir) {
            return Ok(m.clone());
        }
        let model = Arc::new(LoadedModel::load(&dir, &candle_core::Device::Cpu)?);
        loaded.insert(dir, model.clone());
        Ok(model)
    })
    .map_err(error)
}

/// A Whisper model, loaded once: `Model()` is the default (tiny.en), `Model("base")` a known
/// model (fetched into the cache on first use), `Model("/path/to/dir")` a model directory.
#[pyclass(frozen, module = "advox")]
pub struct Model {
    pub(crate) inner: Arc<LoadedModel>,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (name=None))]
    fn new(py: Python<'_>, name: Option<&str>) -> PyResult<Self> {
        Ok(Model {
            inner: load(py, name)?,
        })
    }

    /// The model's identifier (as reports record it).
    #[getter]
    fn id(&self) -> String {
        self.inner.id()
    }

    /// Its directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir.clone()
    }

    fn __repr__(&self) -> String {
        format!("advox.Model({:?})", self.inner.id())
    }
}

/// The model an argument names: a `Model`, a name or directory, or `None` (the default).
pub fn model_arg(py: Python<'_>, model: Option<&Bound<'_, PyAny>>) -> PyResult<Arc<LoadedModel>> {
    match model {
        None => load(py, None),
        Some(m) if m.is_none() => load(py, None),
        Some(m) => {
            if let Ok(m) = m.cast::<Model>() {
                return Ok(m.get().inner.clone());
            }
            let name: String = m.extract().map_err(|_| {
                crate::convert::invalid("model must be an advox.Model, a model name or a directory")
            })?;
            load(py, Some(&name))
        }
    }
}

/// Every model of a `models` argument: one (as `model_arg` takes it) or a list of them.
pub fn models_arg(
    py: Python<'_>,
    models: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<Arc<LoadedModel>>> {
    match models {
        Some(list) if list.is_instance_of::<pyo3::types::PyList>() => {
            let mut out = Vec::new();
            for m in list.try_iter()? {
                out.push(model_arg(py, Some(&m?))?);
            }
            if out.is_empty() {
                return Err(crate::convert::invalid("models: the list is empty"));
            }
            Ok(out)
        }
        other => Ok(vec![model_arg(py, other)?]),
    }
}

/// Read any audio file (WAV, FLAC, MP3, Ogg, …) as 16-kHz mono float32 samples.
#[pyfunction]
pub fn read_audio<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let x = py
        .detach(|| advox::audio::read_audio_16k_mono(Path::new(&path)))
        .map_err(error)?;
    Ok(array(py, x))
}

/// Resample one channel from `from_hz` to `to_hz`.
#[pyfunction]
pub fn resample<'py>(
    py: Python<'py>,
    audio: &Bound<'py, PyAny>,
    from_hz: u32,
    to_hz: u32,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(crate::convert::invalid("sample rates must be positive"));
    }
    let x = channel(audio, "audio")?;
    let y = py
        .detach(|| advox::audio::resample(&x, from_hz, to_hz))
        .map_err(error)?;
    Ok(array(py, y))
}

/// Transcribe one channel: a dict with `text`, `tokens`, `language`, `avg_logprob` and, with
/// timestamps, `segments`.
#[pyfunction]
#[pyo3(signature = (audio, sample_rate=16000, *, beam=5, timestamps=false, language=None, model=None))]
pub fn transcribe<'py>(
    py: Python<'py>,
    audio: &Bound<'py, PyAny>,
    sample_rate: u32,
    beam: usize,
    timestamps: bool,
    language: Option<String>,
    model: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    if beam == 0 {
        return Err(crate::convert::invalid("beam must be at least 1"));
    }
    let x = samples(audio, sample_rate, "audio")?;
    let model = model_arg(py, model)?;
    let decode = DecodeOptions {
        beam_size: beam,
        timestamps,
        language,
        ..Default::default()
    };
    let t = py
        .detach(|| advox::transcribe::transcribe(&model, &x, &decode))
        .map_err(error)?;
    report(py, &t)
}
