//! m2ib-runner: drives models, data, methods and metrics; for now the embedded default's
//! training and quality report (`tiny`).

pub mod tiny;
