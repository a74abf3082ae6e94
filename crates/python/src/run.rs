//! `m2ib.run`: an experiment TOML into its run folder, as `m2ib run` does (resumable; several
//! processes may share the folder).
use crate::errors::{about, compute};
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
    let s = compute(py, || {
        // The runner sets libtorch's intra-op threads per worker; the caller's process keeps its own.
        let threads = tch::get_num_threads();
        let s = m2ib_runner::run::run(
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
        );
        tch::set_num_threads(threads);
        s.map_err(|e| about(&experiment, e))
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

/// libtorch's intra-op threads in this process (what `m2ib.run` leaves as it found).
#[pyfunction]
pub fn num_threads() -> i32 {
    tch::get_num_threads()
}
