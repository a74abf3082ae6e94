//! m2ib-attribution: one trait every method answers (`Attributor`), M2IB, and the baselines,
//! each in its own file. DESIGN.md "The Attributor trait".

pub mod attributor;
pub mod chefer;
pub mod common;
pub mod gradcam;
pub mod kernel_shap;
pub mod m2ib;
pub mod normalize;
pub mod perturb;
pub mod registry;
pub mod rise;
pub mod saliency;

pub use attributor::{Attribution, AttributionError, Attributor, Batch, Modality};
pub use m2ib::{Bottleneck, M2ib};
pub use normalize::{normalize_image, normalize_text};
