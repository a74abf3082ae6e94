//! m2ib-runner: experiment TOML -> plan (jobs) -> a worker pool -> Parquet parts in a run
//! directory (DESIGN.md "Runner and results"; README "Layout" has the module map).
//!
//! Imports point one way (each module imports only from modules above it in this list):
//! `seeds`, `bundled`, `defaults` (leaves); `experiment`; `resolve`, `validate`; `plan`; `rundir`,
//! `samples`, `rows`; `claims`, `store`; `context`, `cache`; `exec`; `pool`; `run`.

pub mod bundled;
pub mod cache;
pub mod claims;
pub mod context;
pub mod defaults;
pub mod exec;
pub mod experiment;
pub mod plan;
pub mod pool;
pub mod resolve;
pub mod rows;
pub mod run;
pub mod rundir;
pub mod samples;
pub mod seeds;
pub mod store;
pub mod validate;

/// The cause chain as one sentence: `a: b: c`, leaving out a cause whose text its parent already
/// carries (io errors are often wrapped by a message that quotes them). The CLI and the Python
/// module print errors with it.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || out.contains(text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    out
}
