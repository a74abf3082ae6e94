//! m2ib-metrics: the paper's evaluation (DESIGN.md "Metrics"), one file per metric, with the
//! shared statistics written once in `stats`.

pub mod calibration;
pub mod confidence;
pub mod intervention;
pub mod localization;
pub mod metric;
pub mod roar;
pub mod sanity;
pub mod stats;

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("{0}")]
    Undefined(String),
    #[error(transparent)]
    Attribution(#[from] m2ib_attribution::AttributionError),
    #[error(transparent)]
    Model(#[from] m2ib_clip::ClipError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
