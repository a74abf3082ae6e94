//! The one place that maps method names to implementations (used by the CLI and the runner).
use crate::attributor::{AttributionError, Attributor};
use crate::chefer::Chefer;
use crate::gradcam::GradCam;
use crate::kernel_shap::KernelShap;
use crate::m2ib::M2ib;
use crate::rise::Rise;
use crate::saliency::Saliency;
use serde_json::Value;

/// Every method name the registry knows.
pub const METHODS: &[&str] = &[
    "m2ib",
    "saliency",
    "gradcam",
    "kernel_shap",
    "rise",
    "chefer",
];

/// Builds a method from its name and parameters (a JSON object; absent keys take defaults).
pub fn method(name: &str, params: &Value) -> Result<Box<dyn Attributor>, AttributionError> {
    let bad = |message: String| AttributionError::InvalidParameter {
        name: name.to_string(),
        message,
    };
    match name {
        "m2ib" => {
            let m: M2ib = parse(params).map_err(bad)?;
            m.image.validate()?;
            m.text.validate()?;
            Ok(Box::new(m))
        }
        "saliency" => Ok(Box::new(parse::<Saliency>(params).map_err(bad)?)),
        "gradcam" => Ok(Box::new(parse::<GradCam>(params).map_err(bad)?)),
        "kernel_shap" => Ok(Box::new(parse::<KernelShap>(params).map_err(bad)?)),
        "rise" => Ok(Box::new(parse::<Rise>(params).map_err(bad)?)),
        "chefer" => Ok(Box::new(parse::<Chefer>(params).map_err(bad)?)),
        _ => Err(bad(format!(
            "unknown method (known: {})",
            METHODS.join(", ")
        ))),
    }
}

fn parse<T: serde::de::DeserializeOwned + Default>(params: &Value) -> Result<T, String> {
    if params.is_null() {
        Ok(T::default())
    } else {
        serde_json::from_value(params.clone()).map_err(|e| e.to_string())
    }
}
