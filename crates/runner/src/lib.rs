//! m2ib-runner: experiment TOML -> jobs -> a worker pool -> Parquet parts (DESIGN.md "Runner and
//! results"), plus the embedded default's training (`tiny`).

pub mod bundled;
pub mod claims;
pub mod defaults;
pub mod dependent;
pub mod devices;
pub mod experiment;
pub mod explain;
pub mod jobs;
pub mod run;
pub mod samples;
pub mod store;
pub mod tiny;
