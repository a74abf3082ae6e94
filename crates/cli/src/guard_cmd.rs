//! `m2ib baseline` (run an experiment under several seeds, write per-cell scores and tolerances)
//! and `m2ib guard` (run it once more and compare): the CI regression check of metric scores.
use anyhow::Context;
use clap::Args;
use m2ib_report::guard::{baseline, check, read_baseline, to_csv};
use m2ib_report::table::table;
use m2ib_runner::run::{run, RunOptions};
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(after_help = "Example:
  m2ib baseline smoke --seeds 0 1 2   # rewrites reports/baselines/smoke.csv (intended score changes only)")]
pub struct BaselineArgs {
    /// Experiment name (experiments/<name>.toml) or file.
    pub experiment: String,
    /// Method seeds; the first must be the experiment's own (it is what the guard reruns).
    #[arg(allow_negative_numbers = true, long, num_args = 1.., default_values_t = [0u64, 1, 2])]
    pub seeds: Vec<u64>,
    /// Where the per-seed runs go (kept, so a rerun resumes).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Default reports/baselines/<name>.csv.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "Example:
  m2ib guard smoke   # exit code 1 and a table of drifted cells when a score moved")]
pub struct GuardArgs {
    /// Experiment name (experiments/<name>.toml) or file.
    pub experiment: String,
    /// Default reports/baselines/<name>.csv.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Run directory (default reports/<name>-guard).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn experiment_file(s: &str) -> PathBuf {
    let p = PathBuf::from(s);
    if p.extension().is_some_and(|e| e == "toml") {
        p
    } else {
        PathBuf::from("experiments").join(format!("{s}.toml"))
    }
}

fn name_of(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Runs `file` with `seed` into `out` (quiet) and returns its table.
pub fn run_table(
    file: &Path,
    seed: Option<u64>,
    out: &Path,
) -> anyhow::Result<m2ib_report::table::Table> {
    run(
        file,
        &RunOptions {
            out: Some(out.to_path_buf()),
            quiet: true,
            seed,
            ..RunOptions::default()
        },
    )?;
    let (df, _) = m2ib_runner::store::read_current(out)?;
    Ok(table(&df)?)
}

pub fn baseline_cmd(a: BaselineArgs) -> anyhow::Result<()> {
    let file = experiment_file(&a.experiment);
    let name = name_of(&file);
    let (exp, _) = m2ib_runner::experiment::Experiment::load(&file)?;
    anyhow::ensure!(
        a.seeds.first() == Some(&exp.seed),
        "the first seed must be the experiment's own ({}), the one the guard reruns",
        exp.seed
    );
    let work = a
        .work
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{name}-baseline")));
    let mut tables = vec![];
    for s in &a.seeds {
        eprintln!("baseline: {name} with seed {s}");
        tables.push(run_table(&file, Some(*s), &work.join(format!("seed-{s}")))?);
    }
    let cells = baseline(&tables);
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("reports/baselines").join(format!("{name}.csv")));
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&out, to_csv(&cells, &a.seeds))
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} cells, seeds {:?})",
        out.display(),
        cells.len(),
        a.seeds
    );
    Ok(())
}

pub fn guard_cmd(a: GuardArgs) -> anyhow::Result<()> {
    let file = experiment_file(&a.experiment);
    let name = name_of(&file);
    let base_path = a
        .baseline
        .unwrap_or_else(|| PathBuf::from("reports/baselines").join(format!("{name}.csv")));
    let base = read_baseline(&base_path).map_err(anyhow::Error::msg)?;
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{name}-guard")));
    let t = run_table(&file, None, &out)?;
    match check(&t, &base) {
        Ok(md) => {
            println!(
                "{md}\nall {} cells within tolerance of {}",
                base.len(),
                base_path.display()
            );
            Ok(())
        }
        Err(md) => anyhow::bail!("{md}"),
    }
}
