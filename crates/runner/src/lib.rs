//! m2ib-runner: experiment TOML -> plan (jobs) -> a worker pool -> Parquet parts in a run
//! directory (DESIGN.md "Runner and results"; README "Code layout" has the module map).
//!
//! Imports point one way: leaves (`seeds`, `bundled`, `defaults`) <- `experiment` <- `plan`,
//! `validate` <- `rundir` <- `samples`, `rows`, `claims`, `store` <- `context`, `cache` <- `exec`
//! <- `pool` <- `run`.

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
