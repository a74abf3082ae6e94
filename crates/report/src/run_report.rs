//! The report of a run directory: Table 1 as Markdown and CSV (rows of incomplete labels
//! marked), the sanity curves and their summary, the M2IB grid heat maps, and the HTML index.
//! Takes the results as a DataFrame, so it knows nothing of how they were made.
use crate::table::{render, table};
use polars::prelude::{DataFrame, PolarsError};
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Figure(#[from] crate::FigureError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes `table.md`, `table.csv`, `figures/`, `sanity.md` and `index.html` under `dir` from the
/// run's results; `note` (Markdown) goes above the table, labels in `incomplete` are marked
/// `(incomplete)`, `sanity_steps` names the randomisation steps when the run has sanity rows.
/// Returns the table as Markdown.
pub fn write_run_report(
    dir: &Path,
    df: &DataFrame,
    note: String,
    incomplete: &BTreeSet<String>,
    sanity_steps: Option<&[String]>,
) -> Result<String, ReportError> {
    let mut t = table(df)?;
    if !incomplete.is_empty() {
        t = t
            .into_iter()
            .map(|((label, params), row)| {
                let label = if incomplete.contains(&label) {
                    format!("{label} (incomplete)")
                } else {
                    label
                };
                ((label, params), row)
            })
            .collect();
    }
    let (md, csv) = render(&t);
    let md = note + &md;
    let mut sections = vec![];
    if !t.is_empty() {
        std::fs::write(dir.join("table.md"), &md)?;
        std::fs::write(dir.join("table.csv"), csv)?;
        sections.push(("Table".to_string(), md.clone()));
    }
    let figs = dir.join("figures");
    std::fs::create_dir_all(&figs)?;
    if let Some(summary) = sanity_figures(dir, df, sanity_steps)? {
        std::fs::write(dir.join("sanity.md"), &summary)?;
        sections.push((
            "Sanity check: similarity to the intact model's maps after the last randomisation step (noise floor in brackets)".to_string(),
            summary,
        ));
    }
    // Hyper-parameter heat maps when M2IB ran a grid.
    let columns: std::collections::BTreeSet<(String, String, String)> =
        t.values().flat_map(|r| r.keys().cloned()).collect();
    for c in &columns {
        let g = crate::heatmap::m2ib_grid(&t, c);
        if !g.is_empty() {
            crate::heatmap::grid_png(
                &figs.join(format!("grid_{}_{}_{}.png", c.0, c.1, c.2)),
                &format!("M2IB grid: {} {} ({}), mean", c.0, c.1, c.2),
                &g,
                crate::table::higher_is_better(&c.1),
            )?;
        }
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let notes = format!(
        "{} result rows. Each cell: mean over repeats ± standard error across repeat means (± per-sample standard error; n used / n total samples, R repeats). Bold: the best method per column (lowest for drop; not oracle or random, which frame the table).",
        df.height()
    );
    crate::html::write_index(dir, &name, &sections, &notes)?;
    Ok(md)
}

/// Sanity curves (Figure 4 style) when the run has sanity rows, and a Markdown summary: per
/// method the similarity after the last step next to its noise floor.
fn sanity_figures(
    dir: &Path,
    df: &DataFrame,
    steps: Option<&[String]>,
) -> Result<Option<String>, ReportError> {
    let Some(steps) = steps else {
        return Ok(None);
    };
    let mut summary: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut header = vec![];
    for (modality, variant, label) in [
        ("image", "spearman", "image maps: Spearman rank correlation"),
        ("image", "ssim", "image maps: SSIM"),
        (
            "text",
            "spearman",
            "token scores: Spearman rank correlation",
        ),
    ] {
        let curves = crate::curves::sanity_curves(df, modality, variant, steps.len())?;
        if curves.is_empty() {
            continue;
        }
        header.push(format!("{modality} {variant}"));
        for c in &curves {
            let last = c.values.last().copied().unwrap_or(f64::NAN);
            summary
                .entry(c.method.clone())
                .or_default()
                .push(format!("{last:.3} ({:.3})", c.noise_floor));
        }
        crate::curves::sanity_png(
            &dir.join("figures")
                .join(format!("sanity_{modality}_{variant}.png")),
            &format!("Cascading randomisation, {label} (dashed: noise floor)"),
            steps,
            &curves,
        )?;
    }
    let mut md = format!(
        "| method | {} |\n|---|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for (m, cells) in summary {
        md += &format!("| {m} | {} |\n", cells.join(" | "));
    }
    Ok(Some(md))
}
