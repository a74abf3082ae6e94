//! The one place that knows the methods by name (used by the CLI and the runner): building one
//! from its parameters, translating an experiment's flat keys into them, checking the layers they
//! name against a model, and the per-row summary of resolved parameters. The runner and the CLI
//! never name a method's parameters themselves.
use crate::attributor::{AttributionError, Attributor};
use crate::chefer::Chefer;
use crate::gradcam::GradCam;
use crate::kernel_shap::KernelShap;
use crate::m2ib::M2ib;
use crate::rise::Rise;
use crate::saliency::Saliency;
use m2ib_clip::{resolve_layer, Layer};
use serde_json::{json, Map, Value};

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

/// A method's parameters from an experiment's (or the CLI's) flat keys. M2IB takes flat keys
/// `layer`/`image_layer`/`text_layer`, `beta`, `sigma` or `var`, `steps`, `copies` (both
/// modalities unless prefixed); the other methods take their parameters as written.
pub fn params_from_flat(name: &str, flat: &Value) -> Value {
    if name != "m2ib" {
        return flat.clone();
    }
    let p = flat.as_object().cloned().unwrap_or_default();
    let mut image = Map::new();
    let mut text = Map::new();
    for (k, v) in &p {
        let (target, key): (Vec<&mut Map<String, Value>>, &str) =
            if let Some(x) = k.strip_prefix("image_") {
                (vec![&mut image], x)
            } else if let Some(x) = k.strip_prefix("text_") {
                (vec![&mut text], x)
            } else {
                (vec![&mut image, &mut text], k.as_str())
            };
        for t in target {
            if key == "var" {
                t.insert("sigma".into(), json!(v.as_f64().map(f64::sqrt)));
            } else {
                t.insert(key.to_string(), v.clone());
            }
        }
    }
    json!({"image": image, "text": text})
}

/// `(base key, modalities it sets)` of a flat key, as `params_from_flat` reads it: `image_beta`
/// sets beta of the image tower, `beta` both; `var` and `sigma` are one setting (sigma =
/// sqrt(var)). Merging sources per modality (model defaults beneath an experiment) uses it.
pub fn flat_key_scope(key: &str) -> (String, Vec<&'static str>) {
    let (base, modalities) = if let Some(b) = key.strip_prefix("image_") {
        (b, vec!["image"])
    } else if let Some(b) = key.strip_prefix("text_") {
        (b, vec!["text"])
    } else {
        (key, vec!["image", "text"])
    };
    let base = if base == "var" { "sigma" } else { base };
    (base.to_string(), modalities)
}

/// Checks one flat key of method `name` that names a layer against the towers' depths
/// (`[image, text]`). Keys that name no layer pass. `Err((tower, reason))`.
pub fn check_flat_layer(
    name: &str,
    key: &str,
    value: &Value,
    depths: [usize; 2],
) -> Result<(), (&'static str, String)> {
    let Ok(l) = serde_json::from_value::<Layer>(value.clone()) else {
        return Ok(());
    };
    let towers: Vec<(&'static str, usize)> = match key {
        "layer" | "start_layer" => vec![("image", depths[0]), ("text", depths[1])],
        "image_layer" => vec![("image", depths[0])],
        "text_layer" => vec![("text", depths[1])],
        _ => return Ok(()),
    };
    for (tower, depth) in towers {
        let checked = if name == "m2ib" {
            crate::m2ib::bottleneck_block(l, depth, tower)
                .map(|_| ())
                .map_err(|e| match e {
                    AttributionError::InvalidParameter { message, .. } => message,
                    other => other.to_string(),
                })
        } else {
            match l {
                Layer::Block(b) => resolve_layer(b, depth)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Layer::Embeddings => Err(format!(
                    "`{}` names a block (integer); only M2IB's bottleneck can sit on the {}",
                    key,
                    m2ib_clip::config::EMBEDDINGS
                )),
            }
        };
        checked.map_err(|e| (tower, e))?;
    }
    Ok(())
}

/// The columns a result row carries of a method's resolved parameters for one modality.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowFields {
    /// The block as written (`"9"`, `"-2"`) or `"embeddings"`.
    pub layer: Option<String>,
    pub beta: Option<f64>,
    pub sigma: Option<f64>,
}

/// `RowFields` of resolved parameters (`params()`), per-modality tables first.
pub fn row_fields(params: &Value, modality: &str) -> RowFields {
    let p = params.get(modality).unwrap_or(params);
    let layer = p
        .get("layer")
        .or_else(|| params.get(format!("{modality}_layer")))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => n.as_i64().map(|l| l.to_string()),
            _ => None,
        });
    RowFields {
        layer,
        beta: p.get("beta").and_then(Value::as_f64),
        sigma: p.get("sigma").and_then(Value::as_f64),
    }
}

/// M2IB's bottleneck block by the depth rule: three quarters up the tower (ViT-B/32's 12 blocks
/// give block 9, the official setting), and never the last block (nothing after it to learn
/// through).
pub fn rule_layer(depth: usize) -> i64 {
    let l = (0.75 * depth as f64).round() as i64;
    l.min(depth as i64 - 2).max(0)
}

/// Each method's settings (flat keys) for a checkpoint that recommends none, from its towers'
/// depths: the official evaluation's M2IB settings (beta 0.1, sigma 1) at `rule_layer` of each
/// tower, Grad-CAM at the last block, Chefer's rule from the first block.
pub fn depth_defaults(vision_depth: usize, text_depth: usize) -> Vec<(&'static str, Value)> {
    vec![
        (
            "m2ib",
            json!({"image_layer": rule_layer(vision_depth), "text_layer": rule_layer(text_depth),
                   "beta": 0.1, "sigma": 1.0}),
        ),
        ("gradcam", json!({"image_layer": -1, "text_layer": -1})),
        ("chefer", json!({"start_layer": 0})),
    ]
}
