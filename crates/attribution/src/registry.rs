//! The one place that maps method names to implementations (used by the CLI and the runner).
use crate::attributor::{AttributionError, Attributor};
use crate::m2ib::M2ib;
use serde_json::Value;

/// Every method name the registry knows.
pub const METHODS: &[&str] = &["m2ib"];

/// Builds a method from its name and parameters (a JSON object; absent keys take defaults).
pub fn method(name: &str, params: &Value) -> Result<Box<dyn Attributor>, AttributionError> {
    let bad = |message: String| AttributionError::InvalidParameter {
        name: name.to_string(),
        message,
    };
    match name {
        "m2ib" => {
            let m: M2ib = if params.is_null() {
                M2ib::default()
            } else {
                serde_json::from_value(params.clone()).map_err(|e| bad(e.to_string()))?
            };
            m.image.validate()?;
            m.text.validate()?;
            Ok(Box::new(m))
        }
        _ => Err(bad(format!(
            "unknown method (known: {})",
            METHODS.join(", ")
        ))),
    }
}
