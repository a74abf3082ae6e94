//! m2ib-data: the `Sample` every reader yields and the synthetic `shapes` benchmark.

pub mod fetch;
pub mod readers;
pub mod sample;
pub mod shapes;

pub use sample::{BoxXyxy, ImageSource, Sample, SampleError};
