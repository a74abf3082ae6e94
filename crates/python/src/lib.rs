//! The extension module `m2ib._m2ib`: the library crates as Python sees them. The friendly API
//! (`m2ib.load`, `Model.attribute`, `m2ib.metrics`, `m2ib.run`, `m2ib.results`) is written in
//! Python over it (`python/m2ib/`); this crate converts arrays, releases the GIL during compute
//! and turns every error (and any panic) into a Python exception carrying the CLI's message.

mod convert;
mod errors;
mod metrics;
mod model;
mod run;

use pyo3::prelude::*;

/// The libtorch this module links (tch 0.26's; scripts/setup-libtorch.sh installs it). A
/// Python torch imported beside it must be this version: both share one set of libraries.
const TORCH_VERSION: &str = "2.13.0";

#[pymodule]
fn _m2ib(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("Error", m.py().get_type::<errors::Error>())?;
    m.add("TORCH_VERSION", TORCH_VERSION)?;
    m.add("BUNDLED_NAME", m2ib_runner::bundled::NAME)?;
    m.add("METHODS", m2ib_attribution::registry::METHODS.to_vec())?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(metrics::localization_iou, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::text_auroc, m)?)?;
    m.add_function(wrap_pyfunction!(run::run, m)?)?;
    m.add_function(wrap_pyfunction!(run::torch_build, m)?)?;
    m.add_function(wrap_pyfunction!(run::num_threads, m)?)?;
    Ok(())
}
