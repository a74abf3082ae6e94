//! `m2ib report <grid> --select <metric>`: M2IB's best grid cell per modality by one Table 1
//! column, written as a TOML that an experiment can `include` (experiments/selected/<model>.toml).
use crate::site::Site;
use crate::table::{higher_is_better, Table};

/// One modality's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub modality: String,
    pub layer: Site,
    pub beta: f64,
    pub sigma: f64,
    pub column: (String, String, String),
    pub value: f64,
}

/// `metric` or `metric:variant`; the first variant of the metric when none is named.
pub fn select(t: &Table, metric: &str) -> Result<Vec<Choice>, String> {
    let (metric, variant) = match metric.split_once(':') {
        Some((m, v)) => (m, Some(v)),
        None => (metric, None),
    };
    let mut out = vec![];
    for modality in ["image", "text"] {
        let mut best: Option<Choice> = None;
        for ((method, params), row) in t {
            if method != "m2ib" {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(params).unwrap_or_default();
            let p = &v[modality];
            let (Some(layer), Some(beta), Some(sigma)) = (
                Site::from_json(&p["layer"]),
                p["beta"].as_f64(),
                p["sigma"].as_f64(),
            ) else {
                continue;
            };
            let col = row.iter().find(|(c, x)| {
                c.0 == modality
                    && c.1 == metric
                    && variant.is_none_or(|v| c.2 == v)
                    && x.mean.is_finite()
            });
            let Some((c, x)) = col else { continue };
            let better = match &best {
                None => true,
                Some(b) if higher_is_better(metric) => x.mean > b.value,
                Some(b) => x.mean < b.value,
            };
            if better {
                best = Some(Choice {
                    modality: modality.into(),
                    layer,
                    beta,
                    sigma,
                    column: c.clone(),
                    value: x.mean,
                });
            }
        }
        if let Some(b) = best {
            out.push(b);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no M2IB grid cell has a finite `{metric}` score (is it a metric of this run?)"
        ));
    }
    Ok(out)
}

/// The TOML an experiment includes; `origin` says where the choice came from.
pub fn to_toml(choices: &[Choice], origin: &str) -> String {
    let mut s = format!("# {origin}\n");
    for c in choices {
        s += &format!(
            "# {}: best {} {} ({}) = {:.4}\n",
            c.modality, c.column.0, c.column.1, c.column.2, c.value
        );
    }
    s += "[methods.m2ib]\n";
    for c in choices {
        s += &format!(
            "{m}_layer = {}\n{m}_beta = {:?}\n{m}_sigma = {:?}\n",
            c.layer.to_toml(),
            c.beta,
            c.sigma,
            m = c.modality
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Cell;

    #[test]
    fn picks_the_lowest_drop_per_modality() {
        let mut t = Table::new();
        for (l, b, drop_img, drop_txt) in [(1, 0.1, 5.0, 2.0), (2, 1.0, 3.0, 4.0)] {
            let p = format!(
                r#"{{"image":{{"beta":{b},"layer":{l},"sigma":1.0}},"text":{{"beta":{b},"layer":{l},"sigma":1.0}}}}"#
            );
            let row = t.entry(("m2ib".into(), p)).or_default();
            for (m, v) in [("image", drop_img), ("text", drop_txt)] {
                row.insert(
                    (m.into(), "drop".into(), "x".into()),
                    Cell {
                        mean: v,
                        se_repeats: 0.0,
                        se_samples: 0.0,
                        n_used: 1,
                        n_total: 1,
                        repeats: 1,
                    },
                );
            }
        }
        let c = select(&t, "drop").unwrap();
        assert_eq!((&c[0].layer, c[0].beta), (&Site::Block(2), 1.0));
        assert_eq!((&c[1].layer, c[1].beta), (&Site::Block(1), 0.1));
        let toml = to_toml(&c, "test");
        assert!(
            toml.contains("image_layer = 2\nimage_beta = 1.0") && toml.contains("text_layer = 1")
        );
        assert!(select(&t, "roar").is_err());
    }
}
