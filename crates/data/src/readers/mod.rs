//! Dataset readers. Each yields one `Result<Sample, SampleError>` per sample: a bad row is an
//! error naming the file, line and reason, and reading goes on with the next one.

pub mod cc;
pub mod mscxr;
pub mod roco;
pub mod rsicd;

use crate::sample::SampleError;
use std::path::Path;

pub(crate) fn row_error(
    file: &Path,
    line: Option<usize>,
    sample: Option<&str>,
    reason: impl Into<String>,
) -> SampleError {
    SampleError {
        file: file.display().to_string(),
        line,
        sample: sample.map(str::to_string),
        reason: reason.into(),
    }
}

/// Lines of a file as bytes (so a non-UTF-8 row is an error for that row, not the file), with
/// their 1-based numbers; a trailing `\r` is dropped.
pub(crate) fn byte_lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    data.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.is_empty())
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, SampleError> {
    std::fs::read(path).map_err(|e| row_error(path, None, None, format!("cannot read: {e}")))
}
