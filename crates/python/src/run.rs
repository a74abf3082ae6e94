//! `m2ib.run`: an experiment TOML into its run folder, as `m2ib run` does (resumable; several
//! processes may share the folder).
use crate::errors::{compute, Given};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

#[pyfunction]
#[pyo3(signature = (experiment, out = None, devices = None, quiet = false, dry_run = false))]
pub fn run<'py>(
    py: Python<'py>,
    experiment: PathBuf,
    out: Option<PathBuf>,
    devices: Option<String>,
    quiet: bool,
    dry_run: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let given = Given::of([experiment.clone()]);
    let s = compute(py, &given, || {
        m2ib_runner::run::run(
            &experiment,
            &m2ib_runner::run::RunOptions {
                out,
                shard: None,
                dry_run,
                quiet,
                seed: None,
                devices: devices.as_deref().map(m2ib_clip::devices::split_list),
                claim_timeout: None,
            },
        )
    })?;
    let d = PyDict::new(py);
    d.set_item("out", s.out)?;
    d.set_item("jobs", s.total)?;
    d.set_item("already_done", s.skipped)?;
    d.set_item("ran", s.ran)?;
    d.set_item("by_others", s.by_others)?;
    d.set_item("failed_samples", s.failed_samples)?;
    Ok(d)
}

/// `cpu` or `cuda`: the libtorch this module was built against.
#[pyfunction]
pub fn torch_build() -> &'static str {
    match m2ib_clip::devices::build() {
        m2ib_clip::devices::Build::Cpu => "cpu",
        m2ib_clip::devices::Build::Cuda => "cuda",
    }
}
