//! Table 1 from long-format results: per method configuration and (modality, metric, variant)
//! the mean over repeats of the per-repeat sample means, the standard error across repeat means,
//! the per-sample standard error, n used / n total and R (DESIGN.md "Means and errors"). Rows
//! with an error (degenerate maps, undefined metrics) are counted, never averaged.
use polars::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub mean: f64,
    pub se_repeats: f64,
    pub se_samples: f64,
    pub n_used: usize,
    pub n_total: usize,
    pub repeats: usize,
}

/// (label, params) -> (modality, metric, variant) -> cell (the label is the method unless a
/// method table names another).
pub type Table = BTreeMap<(String, String), BTreeMap<(String, String, String), Cell>>;

fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, f64::NAN);
    }
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0) / n).sqrt(),
    )
}

fn strings(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// Rows drawn as figures or kept as detail, not averaged into Table 1. The clean ROAR+ loss
/// (`roar_loss`, variant `clean`) stays: it is the denominator of every ROAR+ cell.
pub const NOT_IN_TABLE: [&str; 2] = ["sanity", "sanity_noise_floor"];

fn in_table(metric: &str, variant: &str) -> bool {
    !NOT_IN_TABLE.contains(&metric) && (metric != "roar_loss" || variant == "clean")
}

/// (label, params) of a table row.
type RowKey = (String, String);
/// (modality, metric, variant) of a table column.
type Column = (String, String, String);
/// Per repeat the values of a cell, and how many samples it had in all.
type PerRepeat = (BTreeMap<i64, Vec<f64>>, usize);

pub fn table(df: &DataFrame) -> PolarsResult<Table> {
    // A labelled method table (`[methods.m2ib-tuned]`) is its own row; results written before
    // labels existed have no `label` column.
    let method = match df.column("label") {
        Ok(_) => strings(df, "label")?,
        Err(_) => strings(df, "method")?,
    };
    let params = strings(df, "params")?;
    let modality = strings(df, "modality")?;
    let metric = strings(df, "metric")?;
    let variant = strings(df, "metric_variant")?;
    let repeat: Vec<Option<i64>> = df.column("repeat")?.i64()?.iter().collect();
    let value: Vec<Option<f64>> = df.column("value")?.f64()?.iter().collect();
    // key -> repeat -> values, plus totals.
    let mut acc: BTreeMap<(RowKey, Column), PerRepeat> = BTreeMap::new();
    for i in 0..df.height() {
        if !in_table(
            metric[i].as_deref().unwrap_or_default(),
            variant[i].as_deref().unwrap_or_default(),
        ) {
            continue;
        }
        let key = (
            (
                method[i].clone().unwrap_or_default(),
                params[i].clone().unwrap_or_default(),
            ),
            (
                modality[i].clone().unwrap_or_default(),
                metric[i].clone().unwrap_or_default(),
                variant[i].clone().unwrap_or_default(),
            ),
        );
        let e = acc.entry(key).or_default();
        e.1 += 1;
        if let Some(v) = value[i].filter(|v| v.is_finite()) {
            e.0.entry(repeat[i].unwrap_or(0)).or_default().push(v);
        }
    }
    let mut t = Table::new();
    for ((row, col), (by_repeat, total)) in acc {
        let repeat_means: Vec<f64> = by_repeat
            .values()
            .filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .collect();
        let all: Vec<f64> = by_repeat.values().flatten().copied().collect();
        let (mean, se_repeats) = if repeat_means.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            mean_se(&repeat_means)
        };
        let se_samples = if all.is_empty() {
            f64::NAN
        } else {
            mean_se(&all).1
        };
        t.entry(row).or_default().insert(
            col,
            Cell {
                mean,
                se_repeats,
                se_samples,
                n_used: all.len(),
                n_total: total,
                repeats: repeat_means.len(),
            },
        );
    }
    Ok(t)
}

/// Whether a larger value is better for the metric.
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "drop")
}

pub fn short_params(p: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(p).unwrap_or_default();
    match (v.get("image"), v.get("text")) {
        (Some(i), Some(t)) if i.get("layer").is_some() => {
            let layer = |p: &serde_json::Value| match crate::site::Site::from_json(&p["layer"]) {
                Some(crate::site::Site::Embeddings) => "emb".to_string(),
                Some(l) => format!("L{l}"),
                None => format!("L{}", p["layer"]),
            };
            format!(
                "img {} b{} s{}; txt {} b{} s{}",
                layer(i),
                i["beta"],
                i["sigma"],
                layer(t),
                t["beta"],
                t["sigma"]
            )
        }
        _ => String::new(),
    }
}

/// Three decimals, or `—` where the value is undefined (a standard error of one repeat or one
/// sample, a cell with no values): never NaN in a table.
pub fn fmt3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "—".to_string()
    }
}

/// The calibration rows' labels (m2ib-metrics' `Reference` names; this crate depends on no m2ib
/// crate). They frame a table; they are not candidates for "best".
pub const REFERENCE_ROWS: [&str; 2] = ["oracle", "random"];

/// Markdown and CSV renderings; the best method's mean per column is bold in Markdown (not a
/// calibration row's, and nothing where every method scores the same).
pub fn render(t: &Table) -> (String, String) {
    let cols: Vec<(String, String, String)> = {
        let mut c: Vec<_> = t.values().flat_map(|r| r.keys().cloned()).collect();
        c.sort();
        c.dedup();
        c
    };
    let best: Vec<f64> = cols
        .iter()
        .map(|c| {
            let vals: Vec<f64> = t
                .iter()
                .filter(|((label, _), _)| !REFERENCE_ROWS.contains(&label.as_str()))
                .filter_map(|(_, r)| r.get(c))
                .map(|x| x.mean)
                .filter(|m| m.is_finite())
                .collect();
            if vals.iter().all(|&v| v == vals[0]) {
                return f64::NAN; // no method is better than another here
            }
            if higher_is_better(&c.1) {
                vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            } else {
                vals.iter().copied().fold(f64::INFINITY, f64::min)
            }
        })
        .collect();
    let mut md = String::from("| method | ");
    md += &cols
        .iter()
        .map(|c| format!("{} {} ({})", c.0, c.1, c.2))
        .collect::<Vec<_>>()
        .join(" | ");
    md += " |\n|---|";
    md += &"---|".repeat(cols.len());
    md += "\n";
    let mut csv = String::from(
        "method,params,modality,metric,variant,mean,se_repeats,se_samples,n_used,n_total,repeats\n",
    );
    for ((m, p), row) in t {
        let sp = short_params(p);
        md += &format!(
            "| {m}{} |",
            if sp.is_empty() {
                String::new()
            } else {
                format!(" ({sp})")
            }
        );
        for (c, b) in cols.iter().zip(&best) {
            match row.get(c) {
                Some(x) => {
                    let v = format!(
                        "{} ± {} (±{}/sample; n={}/{}, R={})",
                        fmt3(x.mean),
                        fmt3(x.se_repeats),
                        fmt3(x.se_samples),
                        x.n_used,
                        x.n_total,
                        x.repeats
                    );
                    md += &if x.mean == *b && !REFERENCE_ROWS.contains(&m.as_str()) {
                        format!(" **{v}** |")
                    } else {
                        format!(" {v} |")
                    };
                    csv += &format!(
                        "{m},\"{}\",{},{},{},{},{},{},{},{},{}\n",
                        p.replace('"', "\"\""),
                        c.0,
                        c.1,
                        c.2,
                        x.mean,
                        x.se_repeats,
                        x.se_samples,
                        x.n_used,
                        x.n_total,
                        x.repeats
                    );
                }
                None => md += " — |",
            }
        }
        md += "\n";
    }
    (md, csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(mean: f64) -> Cell {
        Cell {
            mean,
            se_repeats: f64::NAN,
            se_samples: 0.0,
            n_used: 1,
            n_total: 1,
            repeats: 1,
        }
    }

    /// The oracle's perfect score is not "best"; a column where every method ties has no bold.
    #[test]
    fn bold_marks_the_best_method_not_a_calibration_row() {
        let mut t = Table::new();
        for (label, iou, loss) in [
            ("oracle", 1.0, 0.7),
            ("random", 0.1, 0.7),
            ("a", 0.3, 0.7),
            ("b", 0.5, 0.7),
        ] {
            let mut r = BTreeMap::new();
            r.insert(
                ("image".into(), "localization_iou".into(), "value".into()),
                cell(iou),
            );
            r.insert(
                ("image".into(), "roar_loss".into(), "clean".into()),
                cell(loss),
            );
            t.insert((label.to_string(), "{}".to_string()), r);
        }
        let (md, _) = render(&t);
        let line = |l: &str| {
            md.lines()
                .find(|x| x.starts_with(&format!("| {l} |")))
                .unwrap()
                .to_string()
        };
        assert!(line("b").contains("**0.500"), "{md}");
        assert!(!line("oracle").contains("**"), "{md}");
        assert!(!line("a").contains("**"), "{md}");
        assert!(!md.contains("**0.700"), "{md}");
    }
}
