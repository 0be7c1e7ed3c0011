//! `advox._advox`: the Python face of the advox library (PyO3, stable ABI 3.9+). numpy arrays
//! in and out, the library's typed reports as dicts, its errors as `advox.AdvoxError` with the
//! same messages; compute runs with the GIL released. The Python package `advox` re-exports
//! everything here (see `advox/_advox.pyi` for the signatures).

mod analysis;
mod attack;
mod convert;
mod models;
mod universal;

use pyo3::prelude::*;

pyo3::create_exception!(
    _advox,
    AdvoxError,
    pyo3::exceptions::PyException,
    "An error of the advox library: bad input, a missing model, an option that does not apply."
);

/// The extension module.
#[pymodule]
fn _advox(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("AdvoxError", m.py().get_type::<AdvoxError>())?;
    m.add("SAMPLE_RATE", advox::audio::SAMPLE_RATE)?;
    m.add_class::<models::Model>()?;
    m.add_function(wrap_pyfunction!(models::read_audio, m)?)?;
    m.add_function(wrap_pyfunction!(models::resample, m)?)?;
    m.add_function(wrap_pyfunction!(models::transcribe, m)?)?;
    m.add_function(wrap_pyfunction!(attack::attack, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::detect, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::defend, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::purify, m)?)?;
    m.add_function(wrap_pyfunction!(analysis::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(universal::universal, m)?)?;
    Ok(())
}
