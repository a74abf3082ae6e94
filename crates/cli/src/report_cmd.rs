//! `m2ib report` and `m2ib reproduce`: tables (Markdown + CSV), a Figure 1-style gallery and the
//! HTML index of a run directory.
use crate::attribute::{run as attribute, AttributeArgs};
use anyhow::Context;
use clap::Args;
use m2ib_data::shapes::{generate, Split, SIZE};
use m2ib_report::table::{render, table};
use m2ib_runner::run::{run, RunOptions};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReportArgs {
    /// A run directory (reports/<name>) or an experiment name.
    pub run: String,
}

fn run_dir(s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.join("results").exists() {
        p
    } else {
        PathBuf::from("reports").join(s)
    }
}

pub fn report(dir: &Path) -> anyhow::Result<String> {
    let df = m2ib_runner::store::read_all(&[dir.to_path_buf()])
        .with_context(|| format!("reading {}/results", dir.display()))?;
    anyhow::ensure!(
        df.height() > 0,
        "{}: no results (run the experiment first)",
        dir.display()
    );
    let (md, csv) = render(&table(&df)?);
    std::fs::write(dir.join("table.md"), &md)?;
    std::fs::write(dir.join("table.csv"), csv)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let notes = format!(
        "{} result rows. Each cell: mean over repeats ± standard error across repeat means (± per-sample standard error; n used / n total samples, R repeats). Bold: best per column (lowest for drop).",
        df.height()
    );
    m2ib_report::html::write_index(dir, &name, &[("Table".into(), md.clone())], &notes)?;
    Ok(md)
}

pub fn report_cmd(a: ReportArgs) -> anyhow::Result<()> {
    let dir = run_dir(&a.run);
    println!("{}", report(&dir)?);
    println!("wrote {}/table.md, table.csv, index.html", dir.display());
    Ok(())
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
                toml::Value::Array(a) => a.first().and_then(|x| x.as_integer()),
                other => other.as_integer(),
            })
    };
    let scenes_dir = dir.join("gallery-inputs");
    std::fs::create_dir_all(&scenes_dir)?;
    let (mut images, mut texts) = (vec![], vec![]);
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
        texts.push(s.caption);
    }
    let out = dir.join("gallery");
    let mut args = AttributeArgs::for_gallery(model.to_path_buf(), images, texts, out.clone());
    args.image_layer = layer("image_layer").or(layer("layer"));
    args.text_layer = layer("text_layer").or(layer("layer"));
    attribute(args)?;
    let figs = dir.join("figures");
    std::fs::create_dir_all(&figs)?;
    for (k, e) in std::fs::read_dir(&out)?.filter_map(|e| e.ok()).enumerate() {
        if e.path().join("grid.png").exists() {
            std::fs::copy(
                e.path().join("grid.png"),
                figs.join(format!("figure1_gallery_{k}.png")),
            )?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ReproduceArgs {
    /// table1 (experiments/table1.toml).
    pub experiment: String,
}

pub fn reproduce_cmd(a: ReproduceArgs) -> anyhow::Result<()> {
    let file = PathBuf::from("experiments").join(format!("{}.toml", a.experiment));
    anyhow::ensure!(file.exists(), "{} does not exist", file.display());
    let t0 = std::time::Instant::now();
    let s = run(&file, &RunOptions::default())?;
    let (exp, _) = m2ib_runner::experiment::Experiment::load(&file)?;
    gallery(&exp, &s.out)?;
    let md = report(&s.out)?;
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
