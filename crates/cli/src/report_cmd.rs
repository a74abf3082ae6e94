//! `m2ib report` and `m2ib reproduce`: tables (Markdown + CSV), a Figure 1-style gallery and the
//! HTML index of a run directory.
use crate::attribute::{run as attribute, AttributeArgs};
use anyhow::Context;
use clap::Args;
use m2ib_data::shapes::{generate, Split, SIZE};
use m2ib_report::table::table;
use m2ib_runner::run::{run, RunOptions};
use m2ib_runner::rundir::{JobEntry, RunDir};
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Examples:
  m2ib report table1                  # reports/table1: table.md, table.csv, figures/, index.html
  m2ib report table2_grid --select drop,increase,intervention --top 3")]
pub struct ReportArgs {
    /// A run directory (reports/<name>) or an experiment name.
    pub run: String,
    /// Pick M2IB's best grid setting per modality by one column (`drop`, `increase`, `roar`,
    /// `intervention`, `localization_iou`, `metric:variant`) or by the mean rank over several
    /// (`drop,increase,intervention`) and write it as `[methods.m2ib-tuned]` to
    /// <selected-dir>/<model>.toml.
    #[arg(long)]
    pub select: Option<String>,
    /// Write the best N settings per modality as candidates `[methods.m2ib-c1]`...
    /// (<selected-dir>/<model>-candidates.toml) for a second tune draw to re-score.
    #[arg(allow_negative_numbers = true, long, default_value_t = 1)]
    pub top: usize,
    /// Where --select writes.
    #[arg(long, default_value = "experiments/selected")]
    pub selected_dir: PathBuf,
    /// Report even when jobs of the run have no results yet (rows with missing jobs are marked
    /// `(incomplete)` and the missing jobs listed above the table).
    #[arg(long)]
    pub allow_partial: bool,
}

pub fn run_dir(s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.join("results").exists() {
        p
    } else {
        PathBuf::from("reports").join(s)
    }
}

/// The jobs of `dir` (jobs.json, every shard's) that have no result part yet: an error naming
/// them, or with `allow_partial` a Markdown note and the labels whose rows are incomplete.
fn missing(
    dir: &Path,
    allow_partial: bool,
) -> anyhow::Result<(String, std::collections::BTreeSet<String>)> {
    let run = RunDir::new(dir);
    let jobs = run
        .read_jobs()
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let missing: Vec<&JobEntry> = jobs.iter().filter(|j| run.is_missing(j)).collect();
    if missing.is_empty() {
        return Ok((String::new(), Default::default()));
    }
    let total = jobs.iter().filter(|j| j.writes_results()).count();
    let mut listed: Vec<String> = missing
        .iter()
        .take(12)
        .map(|j| {
            format!(
                "{} {} repeat {} chunk {}",
                j.kind, j.label, j.repeat, j.chunk
            )
        })
        .collect();
    if missing.len() > listed.len() {
        listed.push(format!("and {} more", missing.len() - listed.len()));
    }
    let summary = format!(
        "{}: {} of {total} jobs have no results yet ({}): another shard's, still running, killed or failed",
        dir.display(),
        missing.len(),
        listed.join("; ")
    );
    anyhow::ensure!(
        allow_partial,
        "{summary}; run `m2ib run` on the experiment again (or merge the other shards' folders), or pass --allow-partial"
    );
    eprintln!("warning: {summary}");
    let labels = missing.iter().map(|j| j.label.clone()).collect();
    Ok((
        format!("**Incomplete run**: {summary}. Rows marked `(incomplete)` lack some of their jobs.\n\n"),
        labels,
    ))
}

/// Writes the report of a run directory; returns Table 1 as Markdown and the results it read.
pub fn report(
    dir: &Path,
    allow_partial: bool,
) -> anyhow::Result<(String, polars::prelude::DataFrame)> {
    let (note, incomplete) = missing(dir, allow_partial)?;
    let (df, stale) = m2ib_runner::store::read_current(dir)
        .with_context(|| format!("reading {}/results", dir.display()))?;
    if stale > 0 {
        eprintln!(
            "{}: {stale} result rows of jobs the experiment no longer has (an earlier version of its TOML) left out",
            dir.display()
        );
    }
    anyhow::ensure!(
        df.height() > 0,
        "{}: no results (run the experiment first)",
        dir.display()
    );
    let steps_file = RunDir::new(dir).sanity_steps();
    let steps: Option<Vec<String>> = match std::fs::read_to_string(&steps_file) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("reading {}", steps_file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", steps_file.display())),
    };
    let md =
        m2ib_report::run_report::write_run_report(dir, &df, note, &incomplete, steps.as_deref())?;
    Ok((md, df))
}

pub fn report_cmd(a: ReportArgs) -> anyhow::Result<()> {
    let dir = run_dir(&a.run);
    let (md, df) = report(&dir, a.allow_partial)?;
    println!("{md}");
    println!(
        "wrote {}/table.md, table.csv, figures/, index.html",
        dir.display()
    );
    if let Some(metric) = &a.select {
        let model = df
            .column("model")?
            .str()?
            .get(0)
            .unwrap_or("model")
            .to_string();
        let split = df.column("split")?.str()?.get(0).unwrap_or("?").to_string();
        let choices =
            m2ib_report::select::select(&table(&df)?, metric).map_err(anyhow::Error::msg)?;
        let origin = format!(
            "Selected by `m2ib report {} --select {metric} --top {}` from {} ({split} split, dataset seed {}).",
            a.run,
            a.top,
            dir.display(),
            dataset_seed(&dir).unwrap_or_else(|| "?".into())
        );
        std::fs::create_dir_all(&a.selected_dir)?;
        let path = match a.top {
            0 | 1 => a.selected_dir.join(format!("{model}.toml")),
            _ => a.selected_dir.join(format!("{model}-candidates.toml")),
        };
        let text = m2ib_report::select::to_toml(&choices, a.top, &origin);
        std::fs::write(&path, &text)?;
        println!("{text}wrote {}", path.display());
    }
    Ok(())
}

/// The dataset seed recorded in a run's run.json (which draw of the split was scored).
fn dataset_seed(dir: &Path) -> Option<String> {
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).ok()?).ok()?;
    let exp: toml::Table = toml::from_str(run["experiment"].as_str()?).ok()?;
    Some(exp.get("dataset")?.get("seed")?.to_string())
}

/// A Figure 1-style gallery: every method on two test scenes of the shapes benchmark.
fn gallery(exp: &m2ib_runner::experiment::Experiment, dir: &Path) -> anyhow::Result<()> {
    let model = &exp.model.path;
    // M2IB's layers as the experiment sets them (the first value of a grid).
    let layer = |k: &str| {
        exp.methods
            .get("m2ib")
            .and_then(|t| t.get(k))
            .and_then(|v| match v {
                toml::Value::Array(a) => a.first().cloned(),
                other => Some(other.clone()),
            })
            .and_then(|v| v.try_into::<m2ib_clip::Layer>().ok())
    };
    let scenes_dir = dir.join("gallery-inputs");
    std::fs::create_dir_all(&scenes_dir)?;
    let (mut images, mut texts, mut notes) = (vec![], vec![], vec![]);
    for i in 0..2 {
        let s = generate(7, Split::Test, i, true);
        let p = scenes_dir.join(format!("scene{i}.png"));
        image::save_buffer(
            &p,
            &s.rgb,
            SIZE as u32,
            SIZE as u32,
            image::ExtendedColorType::Rgb8,
        )?;
        images.push(p);
        // Say which named object is not in the picture: its maps should not find it.
        let absent: Vec<String> = s
            .phrases()
            .into_iter()
            .filter(|(_, o)| o.is_none())
            .map(|(p, _)| format!("\"{p}\" is not in the image"))
            .collect();
        notes.push(absent.join("; "));
        texts.push(s.caption);
    }
    let out = dir.join("gallery");
    let mut args = AttributeArgs::for_gallery(model.to_path_buf(), images, texts, out.clone());
    args.notes = notes;
    args.image_layer = layer("image_layer").or(layer("layer"));
    args.text_layer = layer("text_layer").or(layer("layer"));
    attribute(args)?;
    let figs = dir.join("figures");
    std::fs::create_dir_all(&figs)?;
    let mut grids: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("grid.png"))
        .filter(|p| p.exists())
        .collect();
    grids.sort();
    for (k, g) in grids.iter().enumerate() {
        std::fs::copy(g, figs.join(format!("figure1_gallery_{k}.png")))?;
    }
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:
  m2ib reproduce table1                       # experiments/table1.toml -> reports/table1
  m2ib reproduce experiments/smoke.toml --devices auto")]
pub struct ReproduceArgs {
    /// An experiment name (experiments/<name>.toml) or a TOML file.
    pub experiment: String,
    /// Devices, overriding the TOML's `devices`: `cpu`, `auto`, `cuda:N`, or a comma-separated
    /// list [default: the TOML's].
    #[arg(long, visible_alias = "device")]
    pub devices: Option<String>,
    /// No progress bars (CI logs).
    #[arg(long)]
    pub quiet: bool,
}

pub fn reproduce_cmd(a: ReproduceArgs) -> anyhow::Result<()> {
    let file = crate::guard_cmd::experiment_file(&a.experiment);
    anyhow::ensure!(
        file.is_file(),
        "{} does not exist (give a name in experiments/ or a TOML file)",
        file.display()
    );
    let t0 = std::time::Instant::now();
    let s = run(
        &file,
        &RunOptions {
            quiet: a.quiet,
            devices: a.devices.as_deref().map(m2ib_clip::devices::split_list),
            ..RunOptions::default()
        },
    )?;
    let (exp, _) = m2ib_runner::experiment::Experiment::load(&file)?;
    gallery(&exp, &s.out)?;
    let (md, _) = report(&s.out, false)?;
    println!("{md}");
    println!(
        "{}: {} jobs ({} already done) in {:.0}s; see {}/index.html",
        a.experiment,
        s.total,
        s.skipped,
        t0.elapsed().as_secs_f64(),
        s.out.display()
    );
    Ok(())
}
