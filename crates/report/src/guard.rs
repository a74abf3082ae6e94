//! The CI score guard: a run's Table 1 cells against `reports/baselines/<name>.csv` (scores and
//! per-cell tolerances written by `m2ib baseline`: max(3 x the standard deviation across seeds,
//! 1e-6)). A drift beyond tolerance, or a cell that disappeared, fails with a table of old vs new.
use crate::table::Table;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct BaselineCell {
    pub method: String,
    pub params: String,
    pub modality: String,
    pub metric: String,
    pub variant: String,
    pub score: f64,
    pub tolerance: f64,
}

pub const HEADER: &str = "method,params,modality,metric,variant,score,tolerance,seeds";

/// Per-cell score (the first seed's mean) and tolerance from the tables of several seeds.
pub fn baseline(tables: &[Table]) -> Vec<BaselineCell> {
    let mut out = vec![];
    let Some(first) = tables.first() else {
        return out;
    };
    for ((method, params), row) in first {
        for ((modality, metric, variant), cell) in row {
            let vals: Vec<f64> = tables
                .iter()
                .filter_map(|t| t.get(&(method.clone(), params.clone())))
                .filter_map(|r| r.get(&(modality.clone(), metric.clone(), variant.clone())))
                .map(|c| c.mean)
                .filter(|m| m.is_finite())
                .collect();
            if !cell.mean.is_finite() {
                continue;
            }
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let sd = if vals.len() > 1 {
                (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            out.push(BaselineCell {
                method: method.clone(),
                params: params.clone(),
                modality: modality.clone(),
                metric: metric.clone(),
                variant: variant.clone(),
                score: cell.mean,
                tolerance: (3.0 * sd).max(1e-6),
            });
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn to_csv(cells: &[BaselineCell], seeds: &[u64]) -> String {
    let seeds = seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let mut s = format!("{HEADER}\n");
    for c in cells {
        s += &format!(
            "{},{},{},{},{},{:.17e},{:.17e},{}\n",
            c.method,
            quote(&c.params),
            c.modality,
            c.metric,
            c.variant,
            c.score,
            c.tolerance,
            seeds
        );
    }
    s
}

pub fn read_baseline(path: &Path) -> Result<Vec<BaselineCell>, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let header = r
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if header != HEADER {
        return Err(format!("{}: header is not `{HEADER}`", path.display()));
    }
    r.records()
        .map(|rec| {
            let f = rec.map_err(|e| format!("{}: {e}", path.display()))?;
            let line = f.position().map(|p| p.line()).unwrap_or(0);
            if f.len() < 7 {
                return Err(format!(
                    "{}:{line}: expected 8 fields, found {}",
                    path.display(),
                    f.len()
                ));
            }
            let num = |k: usize, name: &str| {
                f[k].parse::<f64>().map_err(|_| {
                    format!("{}:{line}: field `{name}` is not a number", path.display())
                })
            };
            Ok(BaselineCell {
                method: f[0].to_string(),
                params: f[1].to_string(),
                modality: f[2].to_string(),
                metric: f[3].to_string(),
                variant: f[4].to_string(),
                score: num(5, "score")?,
                tolerance: num(6, "tolerance")?,
            })
        })
        .collect()
}

/// Compares a run's table with the baseline; `Err` holds the Markdown table of the cells that
/// drifted or vanished (and every other cell, for context).
pub fn check(table: &Table, base: &[BaselineCell]) -> Result<String, String> {
    let mut md = String::from("| method | modality | metric | variant | baseline | now | |diff| | tolerance | |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut bad = 0;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for b in base {
        *seen
            .entry((b.method.clone(), b.params.clone()))
            .or_default() += 1;
        let now = table
            .get(&(b.method.clone(), b.params.clone()))
            .and_then(|r| r.get(&(b.modality.clone(), b.metric.clone(), b.variant.clone())))
            .map(|c| c.mean);
        let (now_s, diff, ok) = match now {
            Some(v) if v.is_finite() => {
                let d = (v - b.score).abs();
                (format!("{v:.6}"), format!("{d:.2e}"), d <= b.tolerance)
            }
            _ => ("missing".into(), "—".into(), false),
        };
        if !ok {
            bad += 1;
        }
        md += &format!(
            "| {} | {} | {} | {} | {:.6} | {} | {} | {:.1e} | {} |\n",
            b.method,
            b.modality,
            b.metric,
            b.variant,
            b.score,
            now_s,
            diff,
            b.tolerance,
            if ok { "ok" } else { "**DRIFT**" }
        );
    }
    if bad > 0 {
        Err(format!(
            "{bad} of {} baseline cells drifted beyond tolerance:\n\n{md}",
            base.len()
        ))
    } else {
        Ok(md)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Cell;

    fn table(v: f64) -> Table {
        let mut t = Table::new();
        t.entry(("m".into(), "{\"a\":1}".into()))
            .or_default()
            .insert(
                ("image".into(), "drop".into(), "whole-map".into()),
                Cell {
                    mean: v,
                    se_repeats: 0.0,
                    se_samples: 0.0,
                    n_used: 1,
                    n_total: 1,
                    repeats: 1,
                },
            );
        t
    }

    #[test]
    fn tolerance_is_three_sd_with_a_floor_and_round_trips() {
        let b = baseline(&[table(1.0), table(2.0), table(3.0)]);
        assert_eq!(b[0].score, 1.0);
        assert!((b[0].tolerance - 3.0).abs() < 1e-12, "sd of 1, 2, 3 is 1");
        assert_eq!(baseline(&[table(1.0), table(1.0)])[0].tolerance, 1e-6);
        let p = std::env::temp_dir().join(format!("m2ib-guard-{}.csv", std::process::id()));
        std::fs::write(&p, to_csv(&b, &[0, 1, 2])).unwrap();
        assert_eq!(read_baseline(&p).unwrap(), b);
        std::fs::remove_file(&p).ok();
        assert!(check(&table(3.9), &b).is_ok());
        let e = check(&table(4.1), &b).unwrap_err();
        assert!(e.contains("DRIFT") && e.contains("1 of 1"), "{e}");
        assert!(check(&Table::new(), &b).unwrap_err().contains("missing"));
    }
}
