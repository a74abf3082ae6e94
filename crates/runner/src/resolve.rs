//! One method as `m2ib attribute` and the Python module run it: the caller's settings above the
//! model's defaults (`<model>/m2ib.toml` or the depth rule) above the method's built-in defaults,
//! with where each setting came from. One function, so both front ends resolve alike.
use crate::defaults;
use crate::experiment::{method_from_cell, Cell};
use m2ib_attribution::registry::METHODS;
use m2ib_attribution::Attributor;
use m2ib_clip::Checkpoint;
use serde_json::{json, Map, Value};
use std::path::Path;

/// A method ready to run and, per flat key set above the built-in defaults, its source.
pub struct Resolved {
    pub method: Box<dyn Attributor>,
    pub sources: Value,
}

/// `all` is every method; any other name is itself (checked when resolved).
pub fn names(method: &str) -> Vec<String> {
    if method == "all" {
        METHODS.iter().map(|s| s.to_string()).collect()
    } else {
        vec![method.to_string()]
    }
}

/// `given` holds the caller's flat keys (an experiment's `[methods.<name>]` keys); `given_by`
/// names their source in `sources` (`flag`, `argument`). The method is refused when a setting
/// does not fit the checkpoint's depths.
pub fn method(
    model_dir: &Path,
    ck: &Checkpoint,
    name: &str,
    given: &toml::Table,
    given_by: &str,
) -> Result<Resolved, String> {
    let model = defaults::load(model_dir, &ck.model.config)?;
    let mut from: Map<String, Value> = given.keys().map(|k| (k.clone(), json!(given_by))).collect();
    let table = match model.methods.get(name) {
        Some(lower) => {
            let (merged, taken) = defaults::merge_beneath(given, lower);
            for k in taken {
                from.insert(k, json!(format!("model: {}", model.origin)));
            }
            merged
        }
        None => given.clone(),
    };
    let params = serde_json::to_value(&table).map_err(|e| e.to_string())?;
    let method = method_from_cell(&Cell::new(name, params))?;
    method
        .check_depths(ck.model.vision_depth(), ck.model.text_depth())
        .map_err(|e| e.to_string())?;
    Ok(Resolved {
        method,
        sources: Value::Object(from),
    })
}
