//! m2ib-runner: experiment TOML -> plan (jobs) -> a worker pool -> Parquet parts in a run
//! directory (DESIGN.md "Runner and results"; README "Layout" has the module map).
//!
//! Imports point one way (each module imports only from modules above it in this list):
//! `seeds`, `bundled`, `defaults` (leaves); `experiment`; `validate`; `plan`; `rundir`,
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
pub mod rows;
pub mod run;
pub mod rundir;
pub mod samples;
pub mod seeds;
pub mod store;
pub mod validate;
