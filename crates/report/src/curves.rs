//! Sanity-check curves (the paper's Figure 4): per randomisation step, the mean similarity of
//! each method's maps to its maps on the intact model, with the method's noise floor (two seeds,
//! intact model) as a dashed line of the same colour.
use crate::figures::{ensure_font, err, FigureError, FONT_FAMILY};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One method's curve: mean similarity per step (NaN where undefined) and its noise floor.
pub struct Curve {
    pub method: String,
    pub values: Vec<f64>,
    pub noise_floor: f64,
}

pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws the curves of one similarity (e.g. image Spearman) over the named steps.
pub fn sanity_png(
    path: &Path,
    title: &str,
    steps: &[String],
    curves: &[Curve],
) -> Result<(), FigureError> {
    ensure_font();
    let root = BitMapBackend::new(path, (900, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let n = steps.len().max(1);
    let lo = curves
        .iter()
        .flat_map(|c| c.values.iter().chain([&c.noise_floor]))
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - 0.05)..1.05f64)
        .map_err(|e| err(path, e))?;
    let names = steps.to_vec();
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_style((FONT_FAMILY, 12))
        .y_desc("similarity to the intact model")
        .label_style((FONT_FAMILY, 13))
        .draw()
        .map_err(|e| err(path, e))?;
    for (k, c) in curves.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let pts: Vec<(f64, f64)> = c
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| (i as f64, *v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label(c.method.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
            .map_err(|e| err(path, e))?;
        if c.noise_floor.is_finite() {
            // Dashed: short segments every half step.
            for i in 0..(2 * n) {
                let x0 = -0.5 + i as f64 * 0.5;
                chart
                    .draw_series(LineSeries::new(
                        vec![(x0, c.noise_floor), (x0 + 0.25, c.noise_floor)],
                        colour.stroke_width(1),
                    ))
                    .map_err(|e| err(path, e))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT_FAMILY, 13))
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// Mean of the finite values per key.
pub fn means<K: Ord>(pairs: impl IntoIterator<Item = (K, f64)>) -> BTreeMap<K, f64> {
    let mut acc: BTreeMap<K, (f64, usize)> = BTreeMap::new();
    for (k, v) in pairs {
        if v.is_finite() {
            let e = acc.entry(k).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// The sanity curves of one similarity (`modality`, `variant` = spearman | ssim) from the
/// results: per method configuration, the mean over samples and repeats at every step, and the
/// mean noise floor. `steps` is the number of randomisation steps.
pub fn sanity_curves(
    df: &polars::prelude::DataFrame,
    modality: &str,
    variant: &str,
    steps: usize,
) -> polars::prelude::PolarsResult<Vec<Curve>> {
    let s = |c: &str| -> polars::prelude::PolarsResult<Vec<Option<String>>> {
        Ok(df
            .column(c)?
            .str()?
            .iter()
            .map(|x| x.map(str::to_string))
            .collect())
    };
    let (method, params, m, metric, var) = (
        s("method")?,
        s("params")?,
        s("modality")?,
        s("metric")?,
        s("metric_variant")?,
    );
    let step: Vec<Option<i64>> = df.column("step")?.i64()?.iter().collect();
    let value: Vec<Option<f64>> = df.column("value")?.f64()?.iter().collect();
    let mut at_step = vec![];
    let mut floor = vec![];
    for i in 0..df.height() {
        if m[i].as_deref() != Some(modality) || var[i].as_deref() != Some(variant) {
            continue;
        }
        let key = (
            method[i].clone().unwrap_or_default(),
            params[i].clone().unwrap_or_default(),
        );
        let v = value[i].unwrap_or(f64::NAN);
        match (metric[i].as_deref(), step[i]) {
            (Some("sanity"), Some(k)) => at_step.push(((key, k), v)),
            (Some("sanity_noise_floor"), _) => floor.push((key, v)),
            _ => {}
        }
    }
    let per_step = means(at_step);
    let floors = means(floor);
    let mut keys: Vec<(String, String)> = per_step.keys().map(|(k, _)| k.clone()).collect();
    keys.dedup();
    let several: BTreeMap<&str, usize> = keys.iter().fold(BTreeMap::new(), |mut acc, k| {
        *acc.entry(k.0.as_str()).or_default() += 1;
        acc
    });
    Ok(keys
        .iter()
        .map(|k| Curve {
            method: if several[k.0.as_str()] > 1 {
                format!("{} ({})", k.0, crate::table::short_params(&k.1))
            } else {
                k.0.clone()
            },
            values: (0..steps as i64)
                .map(|s| per_step.get(&(k.clone(), s)).copied().unwrap_or(f64::NAN))
                .collect(),
            noise_floor: floors.get(k).copied().unwrap_or(f64::NAN),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_skip_non_finite_values() {
        let m = means([
            ("a", 1.0),
            ("a", 3.0),
            ("a", f64::NAN),
            ("b", f64::INFINITY),
        ]);
        assert_eq!(m.get("a"), Some(&2.0));
        assert_eq!(m.get("b"), None);
    }

    #[test]
    fn draws_a_png() {
        let p = std::env::temp_dir().join(format!("m2ib-curves-{}.png", std::process::id()));
        let steps: Vec<String> = ["projections", "final_norms", "layer -1"]
            .map(String::from)
            .to_vec();
        sanity_png(
            &p,
            "image Spearman",
            &steps,
            &[Curve {
                method: "m2ib".into(),
                values: vec![0.9, 0.5, f64::NAN],
                noise_floor: 0.8,
            }],
        )
        .unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);
        std::fs::remove_file(&p).ok();
    }
}
