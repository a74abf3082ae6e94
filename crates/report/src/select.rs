//! `m2ib report <grid> --select <columns>`: M2IB's best grid settings per modality, written as a
//! TOML that an experiment can `include` (experiments/selected/<model>.toml).
//!
//! One column (`drop`, `metric:variant`) picks the best value. Several (`drop,increase,...`)
//! pick by **mean rank**: per modality, each distinct setting (layer, beta, sigma) is ranked on
//! every named column it has (1 = best, ties share the mean rank) and the lowest mean rank wins
//! (ties: the first column's value). A column without a variant takes the metric's first variant
//! in sorted order. With `top > 1` the best few are written as candidates (`m2ib-c1`, ...) for a
//! second draw of the tune split to re-score, which shrinks the winner's-curse bias of picking
//! the best of many noisy cells (README "Table 2").
use crate::site::Site;
use crate::table::{higher_is_better, Table};

/// One modality's setting with its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub modality: String,
    pub layer: Site,
    pub beta: f64,
    pub sigma: f64,
    /// Mean rank over the columns (1 = best everywhere); with one column, its value.
    pub score: f64,
    /// Each column's value, "metric variant = value".
    pub values: Vec<String>,
}

/// The labels a selection run scores: the plain method table and labelled M2IB tables.
fn is_m2ib(label: &str) -> bool {
    label == "m2ib" || label.starts_with("m2ib-")
}

/// Per modality (image, then text), the settings best first.
pub fn select(t: &Table, spec: &str) -> Result<Vec<Vec<Choice>>, String> {
    let columns: Vec<(&str, Option<&str>)> = spec
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| match c.split_once(':') {
            Some((m, v)) => (m, Some(v)),
            None => (c, None),
        })
        .collect();
    if columns.is_empty() {
        return Err("`--select` names no column".into());
    }
    let mut out = vec![];
    for modality in ["image", "text"] {
        // Distinct settings and their column values, in table order.
        type Values = Vec<Option<(String, f64)>>;
        let mut settings: Vec<((Site, f64, f64), Values)> = vec![];
        for ((label, params), row) in t {
            if !is_m2ib(label) {
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
            let key = (layer, beta, sigma);
            if settings.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let values = columns
                .iter()
                .map(|(metric, variant)| {
                    let mut cols: Vec<_> = row
                        .iter()
                        .filter(|(c, _)| {
                            c.0 == modality && c.1 == *metric && variant.is_none_or(|v| c.2 == v)
                        })
                        .collect();
                    cols.sort_by(|a, b| a.0.cmp(b.0));
                    cols.first()
                        .filter(|(_, x)| x.mean.is_finite())
                        .map(|(c, x)| (format!("{} {}", c.1, c.2), x.mean))
                })
                .collect();
            settings.push((key, values));
        }
        if settings.is_empty() {
            continue;
        }
        let scored: Vec<(f64, f64)> = if columns.len() == 1 {
            settings
                .iter()
                .map(|(_, v)| match &v[0] {
                    Some((_, x)) => {
                        let s = if higher_is_better(columns[0].0) {
                            -x
                        } else {
                            *x
                        };
                        (s, s)
                    }
                    None => (f64::INFINITY, f64::INFINITY),
                })
                .collect()
        } else {
            let ranks: Vec<Vec<Option<f64>>> = (0..columns.len())
                .map(|c| {
                    let higher = higher_is_better(columns[c].0);
                    let vals: Vec<Option<f64>> = settings
                        .iter()
                        .map(|(_, v)| v[c].as_ref().map(|x| if higher { -x.1 } else { x.1 }))
                        .collect();
                    vals.iter()
                        .map(|a| {
                            let a = (*a)?;
                            let better = vals.iter().flatten().filter(|&&b| b < a).count();
                            let equal = vals.iter().flatten().filter(|&&b| b == a).count();
                            Some(better as f64 + (equal as f64 + 1.0) / 2.0)
                        })
                        .collect()
                })
                .collect();
            (0..settings.len())
                .map(|i| {
                    let r: Vec<f64> = ranks.iter().filter_map(|c| c[i]).collect();
                    let mean = if r.is_empty() {
                        f64::INFINITY
                    } else {
                        r.iter().sum::<f64>() / r.len() as f64
                    };
                    let first = settings[i].1[0].as_ref().map_or(f64::INFINITY, |x| {
                        if higher_is_better(columns[0].0) {
                            -x.1
                        } else {
                            x.1
                        }
                    });
                    (mean, first)
                })
                .collect()
        };
        let mut order: Vec<usize> = (0..settings.len())
            .filter(|&i| scored[i].0.is_finite())
            .collect();
        order.sort_by(|&a, &b| {
            scored[a]
                .0
                .total_cmp(&scored[b].0)
                .then(scored[a].1.total_cmp(&scored[b].1))
        });
        let list: Vec<Choice> = order
            .into_iter()
            .map(|i| {
                let ((layer, beta, sigma), values) = &settings[i];
                Choice {
                    modality: modality.into(),
                    layer: layer.clone(),
                    beta: *beta,
                    sigma: *sigma,
                    score: if columns.len() == 1 {
                        values[0].as_ref().map_or(f64::NAN, |x| x.1)
                    } else {
                        scored[i].0
                    },
                    values: values
                        .iter()
                        .flatten()
                        .map(|(c, x)| format!("{c} = {x:.4}"))
                        .collect(),
                }
            })
            .collect();
        if !list.is_empty() {
            out.push(list);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no M2IB grid cell has a finite score on `{spec}` (are these metrics of this run?)"
        ));
    }
    Ok(out)
}

/// The TOML an experiment includes: the best setting per modality as `[methods.m2ib-tuned]`, or
/// with `top > 1` the best `top` as `[methods.m2ib-c1]`... (candidate k pairs the k-th image and
/// the k-th text setting). `origin` says where the choice came from.
pub fn to_toml(per_modality: &[Vec<Choice>], top: usize, origin: &str) -> String {
    let mut s = format!("# {origin}\n");
    let top = top.max(1);
    for k in 0..top {
        let label = if top == 1 {
            "m2ib-tuned".to_string()
        } else {
            format!("m2ib-c{}", k + 1)
        };
        let picks: Vec<&Choice> = per_modality.iter().filter_map(|l| l.get(k)).collect();
        if picks.is_empty() {
            break;
        }
        for c in &picks {
            s += &format!(
                "# {label} {}: score {:.4} ({})\n",
                c.modality,
                c.score,
                c.values.join(", ")
            );
        }
        s += &format!("[methods.{label}]\nmethod = \"m2ib\"\n");
        for c in picks {
            s += &format!(
                "{m}_layer = {}\n{m}_beta = {:?}\n{m}_sigma = {:?}\n",
                c.layer.to_toml(),
                c.beta,
                c.sigma,
                m = c.modality
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Cell;

    fn cell(mean: f64) -> Cell {
        Cell {
            mean,
            se_repeats: 0.0,
            se_samples: 0.0,
            n_used: 1,
            n_total: 1,
            repeats: 1,
        }
    }

    /// (label, layer, beta, [(modality, metric, mean)]) per row.
    type GridRow<'a> = (&'a str, i64, f64, &'a [(&'a str, &'a str, f64)]);

    fn grid(rows: &[GridRow]) -> Table {
        let mut t = Table::new();
        for (label, l, b, cols) in rows {
            let p = format!(
                r#"{{"image":{{"beta":{b},"layer":{l},"sigma":1.0}},"text":{{"beta":{b},"layer":"embeddings","sigma":1.0}}}}"#
            );
            let row = t.entry((label.to_string(), p)).or_default();
            for (m, metric, v) in cols.iter() {
                row.insert((m.to_string(), metric.to_string(), "x".into()), cell(*v));
            }
        }
        t
    }

    #[test]
    fn picks_the_lowest_drop_per_modality() {
        let t = grid(&[
            (
                "m2ib",
                1,
                0.1,
                &[("image", "drop", 5.0), ("text", "drop", 2.0)],
            ),
            (
                "m2ib",
                2,
                1.0,
                &[("image", "drop", 3.0), ("text", "drop", 4.0)],
            ),
            ("saliency", 0, 0.0, &[("image", "drop", 0.0)]),
        ]);
        let c = select(&t, "drop").unwrap();
        assert_eq!((&c[0][0].layer, c[0][0].beta), (&Site::Block(2), 1.0));
        assert_eq!(c[0][0].score, 3.0);
        assert_eq!((&c[1][0].layer, c[1][0].beta), (&Site::Embeddings, 0.1));
        let toml = to_toml(&c, 1, "test");
        assert!(toml.contains(
            "[methods.m2ib-tuned]\nmethod = \"m2ib\"\nimage_layer = 2\nimage_beta = 1.0"
        ));
        assert!(toml.contains("text_layer = \"embeddings\"\ntext_beta = 0.1"));
        assert!(select(&t, "roar").is_err());
    }

    #[test]
    fn mean_rank_over_columns_with_shared_ranks() {
        // Image: A ranks 1, 2 (mean 1.5); B 2, 1 (1.5) but worse on the first column; C 3, 3.
        let t = grid(&[
            (
                "m2ib-c1",
                0,
                1.0,
                &[("image", "drop", 1.0), ("image", "intervention", 0.5)],
            ),
            (
                "m2ib-c2",
                1,
                1.0,
                &[("image", "drop", 2.0), ("image", "intervention", 0.9)],
            ),
            (
                "m2ib-c3",
                2,
                1.0,
                &[("image", "drop", 3.0), ("image", "intervention", 0.1)],
            ),
            ("m2ib-c4", 3, 1.0, &[("image", "drop", 3.0)]),
        ]);
        let c = select(&t, "drop, intervention").unwrap();
        let order: Vec<(Site, f64)> = c[0].iter().map(|x| (x.layer.clone(), x.score)).collect();
        // Layers 2 and 3 tie on drop (rank 3.5 each); layer 2 is last on intervention (3), layer
        // 3 has no intervention column: 3.25 vs 3.5.
        assert_eq!(
            order,
            [
                (Site::Block(0), 1.5),
                (Site::Block(1), 1.5),
                (Site::Block(2), 3.25),
                (Site::Block(3), 3.5)
            ]
        );
        let toml = to_toml(&c, 2, "test");
        assert!(toml.contains("[methods.m2ib-c1]\nmethod = \"m2ib\"\nimage_layer = 0\n"));
        assert!(toml.contains("[methods.m2ib-c2]\nmethod = \"m2ib\"\nimage_layer = 1\n"));
        assert!(!toml.contains("m2ib-c3"));
    }
}
