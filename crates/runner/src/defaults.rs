//! Per-model method defaults. A checkpoint's recommended settings travel with it as
//! `<model dir>/m2ib.toml` (`[methods.<name>]` tables with an experiment's flat keys). They sit
//! beneath an experiment's `[methods]` and beneath `m2ib attribute`'s flags, merged per modality.
//! A checkpoint without the file gets a rule from its towers' depths (`depth_rule`).
use m2ib_attribution::registry::flat_key_scope;
use m2ib_clip::ClipConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The file name inside a model directory.
pub const FILE: &str = "m2ib.toml";

/// A model's recommended settings and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDefaults {
    pub methods: BTreeMap<String, toml::Table>,
    /// `<dir>/m2ib.toml`, or `depth rule (...)`.
    pub origin: String,
}

/// Settings for a checkpoint with no `m2ib.toml`: each method's depth rule
/// (`registry::depth_defaults`).
pub fn depth_rule(config: &ClipConfig) -> ModelDefaults {
    let vd = config.vision_config.num_hidden_layers as usize;
    let td = config.text_config.num_hidden_layers as usize;
    let methods = m2ib_attribution::registry::depth_defaults(vd, td)
        .into_iter()
        .map(|(name, flat)| {
            let table = match toml::Value::try_from(flat) {
                Ok(toml::Value::Table(t)) => t,
                other => unreachable!("flat keys are a TOML table: {other:?}"),
            };
            (name.to_string(), table)
        })
        .collect();
    ModelDefaults {
        methods,
        origin: format!(
            "depth rule ({vd} image / {td} text blocks; no {FILE} in the model directory)"
        ),
    }
}

/// The model directory's `m2ib.toml`, or the depth rule when it has none.
pub fn load(model_dir: &Path, config: &ClipConfig) -> Result<ModelDefaults, String> {
    let path = model_dir.join(FILE);
    if !path.exists() {
        return Ok(depth_rule(config));
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        methods: BTreeMap<String, toml::Table>,
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start].matches('\n').count() + 1)
            .unwrap_or(0);
        format!("{}:{line}: {}", path.display(), e.message())
    })?;
    for name in f.methods.keys() {
        if !m2ib_attribution::registry::METHODS.contains(&name.as_str()) {
            return Err(format!(
                "{}: unknown method `{name}`; allowed: {}",
                path.display(),
                m2ib_attribution::registry::METHODS.join(", ")
            ));
        }
    }
    Ok(ModelDefaults {
        methods: f.methods,
        origin: path.display().to_string(),
    })
}

/// `higher` with every setting of `lower` that `higher` does not give, per modality: a more
/// specific source's `layer` is never overridden by a less specific source's `image_layer`, nor
/// the reverse. Returns the merged table and the keys taken from `lower`.
pub fn merge_beneath(higher: &toml::Table, lower: &toml::Table) -> (toml::Table, Vec<String>) {
    let covered = |base: &str, m: &str| {
        higher.keys().any(|k| {
            let (b, ms) = flat_key_scope(k);
            b == base && ms.contains(&m)
        })
    };
    let mut out = higher.clone();
    let mut taken = vec![];
    for (k, v) in lower {
        let (base, ms) = flat_key_scope(k);
        let open: Vec<&str> = ms.iter().copied().filter(|m| !covered(&base, m)).collect();
        if open.is_empty() {
            continue;
        }
        let key = if open.len() == ms.len() {
            k.clone()
        } else {
            // `layer` from below where above set only `text_layer`: the image half only.
            format!("{}_{k}", open[0])
        };
        if !out.contains_key(&key) {
            out.insert(key.clone(), v.clone());
            taken.push(key);
        }
    }
    (out, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn the_rule_is_official_at_12_blocks_and_never_the_last_block() {
        assert_eq!(m2ib_attribution::registry::rule_layer(12), 9);
        assert_eq!(m2ib_attribution::registry::rule_layer(4), 2);
        assert_eq!(m2ib_attribution::registry::rule_layer(3), 1);
        assert_eq!(m2ib_attribution::registry::rule_layer(2), 0);
        for d in 2..40 {
            assert!(
                m2ib_attribution::registry::rule_layer(d) <= d as i64 - 2,
                "{d}"
            );
        }
    }

    #[test]
    fn merging_is_per_modality_and_the_higher_source_wins() {
        // The experiment's `layer` (both towers) is not overridden by the model's image_layer.
        let (m, taken) = merge_beneath(
            &t("layer = [0, 1]"),
            &t("image_layer = 2\ntext_layer = 1\nbeta = 0.1"),
        );
        assert_eq!(m, t("layer = [0, 1]\nbeta = 0.1"));
        assert_eq!(taken, vec!["beta"]);
        // The experiment's text_layer leaves the model's `layer` for the image tower only.
        let (m, _) = merge_beneath(&t("text_layer = 0"), &t("layer = 2\nsigma = 1.0"));
        assert_eq!(m, t("text_layer = 0\nimage_layer = 2\nsigma = 1.0"));
        // var and sigma are one setting.
        let (m, _) = merge_beneath(&t("image_var = 0.25"), &t("sigma = 1.0"));
        assert_eq!(m, t("image_var = 0.25\ntext_sigma = 1.0"));
        // Nothing from below where everything is given above.
        let (m, taken) = merge_beneath(&t("image_layer = 1\ntext_layer = 0"), &t("layer = 5"));
        assert_eq!(m, t("image_layer = 1\ntext_layer = 0"));
        assert!(taken.is_empty());
    }
}
