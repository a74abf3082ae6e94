//! Hyper-parameter heat maps (the paper's Figure 5 / Table 2): one panel per layer, beta on the
//! rows and sigma (or variance) on the columns, each cell coloured by the metric and labelled
//! with its value; the best cell is outlined.
use crate::colormap::jet;
use crate::figures::{ensure_font, err, FigureError, FONT_FAMILY};
use crate::site::Site;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// (layer, beta, sigma) -> value.
pub type Grid = BTreeMap<(Site, OrdF64, OrdF64), f64>;

/// f64 with a total order, for grid keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrdF64(pub f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

pub fn grid_png(
    path: &Path,
    title: &str,
    grid: &Grid,
    higher_is_better: bool,
) -> Result<(), FigureError> {
    ensure_font();
    let layers: Vec<Site> = {
        let mut v: Vec<Site> = grid.keys().map(|k| k.0.clone()).collect();
        v.dedup();
        v
    };
    let mut betas: Vec<OrdF64> = grid.keys().map(|k| k.1).collect();
    betas.sort();
    betas.dedup();
    let mut sigmas: Vec<OrdF64> = grid.keys().map(|k| k.2).collect();
    sigmas.sort();
    sigmas.dedup();
    let cell = 64i32;
    let panel_w = 70 + cell * sigmas.len() as i32 + 20;
    let panel_h = 50 + cell * betas.len() as i32 + 40;
    let w = (panel_w * layers.len() as i32).max(300) as u32;
    let h = (panel_h + 40) as u32;
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let font = (FONT_FAMILY, 13).into_font();
    root.draw(&Text::new(
        title.to_string(),
        (10, 8),
        (FONT_FAMILY, 18).into_font(),
    ))
    .map_err(|e| err(path, e))?;
    let finite: Vec<f64> = grid.values().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let best = if higher_is_better { hi } else { lo };
    for (li, layer) in layers.iter().enumerate() {
        let x0 = li as i32 * panel_w + 60;
        let y0 = 60;
        root.draw(&Text::new(
            match layer {
                Site::Embeddings => layer.to_string(),
                block => format!("layer {block}"),
            },
            (x0, y0 - 22),
            font.clone(),
        ))
        .map_err(|e| err(path, e))?;
        for (bi, b) in betas.iter().enumerate() {
            if li == 0 {
                root.draw(&Text::new(
                    format!("β={}", b.0),
                    (x0 - 58, y0 + bi as i32 * cell + cell / 2 - 6),
                    font.clone(),
                ))
                .map_err(|e| err(path, e))?;
            }
            for (si, s) in sigmas.iter().enumerate() {
                let (cx, cy) = (x0 + si as i32 * cell, y0 + bi as i32 * cell);
                let v = grid
                    .get(&(layer.clone(), *b, *s))
                    .copied()
                    .unwrap_or(f64::NAN);
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                // Jet's middle (cyan to yellow) is light: dark labels there.
                let ink = if v.is_finite() && (0.3..0.75).contains(&t) {
                    BLACK
                } else {
                    WHITE
                };
                let colour = if v.is_finite() {
                    let c = jet(t as f32);
                    RGBColor(c[0], c[1], c[2])
                } else {
                    RGBColor(220, 220, 220)
                };
                root.draw(&Rectangle::new(
                    [(cx, cy), (cx + cell - 2, cy + cell - 2)],
                    colour.filled(),
                ))
                .map_err(|e| err(path, e))?;
                if v == best {
                    root.draw(&Rectangle::new(
                        [(cx, cy), (cx + cell - 2, cy + cell - 2)],
                        BLACK.stroke_width(3),
                    ))
                    .map_err(|e| err(path, e))?;
                }
                let label = if v.is_finite() {
                    format!("{v:.2}")
                } else {
                    "—".into()
                };
                root.draw(&Text::new(
                    label,
                    (cx + 8, cy + cell / 2 - 6),
                    font.clone().color(&ink),
                ))
                .map_err(|e| err(path, e))?;
            }
        }
        for (si, s) in sigmas.iter().enumerate() {
            root.draw(&Text::new(
                format!("σ={}", s.0),
                (
                    x0 + si as i32 * cell + 8,
                    y0 + betas.len() as i32 * cell + 6,
                ),
                font.clone(),
            ))
            .map_err(|e| err(path, e))?;
        }
    }
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// M2IB's grid for one Table 1 column: (layer, beta, sigma) of `modality` from each cell's
/// resolved parameters -> the column's mean. Empty when M2IB has fewer than two cells.
pub fn m2ib_grid(t: &crate::table::Table, column: &(String, String, String)) -> Grid {
    let mut g = Grid::new();
    for ((method, params), row) in t {
        if method != "m2ib" {
            continue;
        }
        let Some(cell) = row.get(column) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(params).unwrap_or_default();
        let p = &v[&column.0];
        if let (Some(l), Some(b), Some(s)) = (
            Site::from_json(&p["layer"]),
            p["beta"].as_f64(),
            p["sigma"].as_f64(),
        ) {
            g.insert((l, OrdF64(b), OrdF64(s)), cell.mean);
        }
    }
    if g.len() < 2 {
        g.clear();
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_grid_with_a_missing_cell() {
        let mut g = Grid::new();
        for (l, site) in [Site::Embeddings, Site::Block(1), Site::Block(2)]
            .into_iter()
            .enumerate()
        {
            for b in [0.1, 1.0] {
                for s in [0.5, 1.0] {
                    g.insert((site.clone(), OrdF64(b), OrdF64(s)), l as f64 * b + s);
                }
            }
        }
        g.insert((Site::Block(2), OrdF64(1.0), OrdF64(1.0)), f64::NAN);
        let p = std::env::temp_dir().join(format!("m2ib-grid-{}.png", std::process::id()));
        grid_png(&p, "drop (image)", &g, false).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() > 1000);
        if std::env::var_os("M2IB_KEEP_FIGURES").is_none() {
            std::fs::remove_file(&p).ok();
        }
    }
}
