//! Errors as Python sees them: `m2ib.Error` (a ValueError) with the CLI's one-line message, or
//! FileNotFoundError when a path the caller gave does not exist. A panic inside the library
//! becomes `m2ib.Error` too, never a PanicException.
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

pyo3::create_exception!(
    _m2ib,
    Error,
    PyValueError,
    "An m2ib error; its message is the one the m2ib command prints."
);

/// The paths a call was given: an error while any of them is missing is a FileNotFoundError.
#[derive(Default, Clone)]
pub struct Given(pub Vec<PathBuf>);

impl Given {
    pub fn of(paths: impl IntoIterator<Item = PathBuf>) -> Given {
        Given(paths.into_iter().collect())
    }

    fn exception(&self, message: String) -> PyErr {
        if self.0.iter().any(|p| !p.exists()) {
            PyFileNotFoundError::new_err(message)
        } else {
            Error::new_err(message)
        }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f` with the GIL released; errors and panics become Python exceptions.
pub fn compute<T: Send>(
    py: Python<'_>,
    given: &Given,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let out = py.allow_threads(|| catch_unwind(AssertUnwindSafe(f)));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(given.exception(m2ib_runner::one_line(&e))),
        Err(p) => {
            let msg = panic_message(p);
            // libtorch's own messages run to pages: the first line says what went wrong.
            let first = msg.lines().next().unwrap_or_default().to_string();
            Err(Error::new_err(format!("internal error: {first}")))
        }
    }
}

/// An error raised before any compute (argument checks): m2ib.Error.
pub fn invalid(message: impl Into<String>) -> PyErr {
    Error::new_err(message.into())
}
