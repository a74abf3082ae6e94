//! Errors as Python sees them: `m2ib.Error` (a ValueError) with the CLI's one-line message, or
//! FileNotFoundError when the error is about a path the caller gave that does not exist. A panic inside the library
//! becomes `m2ib.Error` too, never a PanicException.
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

pyo3::create_exception!(
    m2ib,
    Error,
    PyValueError,
    "An m2ib error; its message is the one the m2ib command prints."
);

/// The error of a path the caller gave that does not exist: raised as FileNotFoundError.
#[derive(Debug)]
pub struct Missing(String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Missing {}

/// `e` as it is, or marked as a missing path's error when `path` does not exist (the message
/// stays the CLI's).
pub fn about(path: &Path, e: anyhow::Error) -> anyhow::Error {
    if path.exists() {
        e
    } else {
        anyhow::Error::new(Missing(m2ib_runner::one_line(&e)))
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
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let out = py.allow_threads(|| catch_unwind(AssertUnwindSafe(f)));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.downcast_ref::<Missing>().is_some() => {
            Err(PyFileNotFoundError::new_err(m2ib_runner::one_line(&e)))
        }
        Ok(Err(e)) => Err(Error::new_err(m2ib_runner::one_line(&e))),
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

/// The error for a name outside a closed set (`from_name` gave None), listing the allowed names.
pub fn not_one_of<const N: usize>(what: &str, given: &str, allowed: [&str; N]) -> PyErr {
    invalid(format!("{what} {given:?}; allowed: {}", allowed.join(", ")))
}
