//! `m2ib run`, `m2ib merge`, `m2ib slurm`: thin wrappers over m2ib-runner.
use clap::Args;
use m2ib_runner::plan::parse_shard;
use m2ib_runner::run::{run, RunOptions};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  m2ib run experiments/smoke.toml                 # into reports/smoke, resumes if rerun
  m2ib run experiments/table1.toml --dry-run      # the jobs it would run
  m2ib run experiments/table1.toml --devices cuda:0,cuda:1
  m2ib run experiments/table1.toml --shard 0/4    # one of four slices (see `m2ib slurm`)

Several processes (or nodes sharing the folder) may run the same experiment into one folder:
each job is claimed (<out>/claims/) and done once; <out>/claims/ran.log says who ran what.

Paths in the TOML resolve against the TOML's own folder.")]
pub struct RunArgs {
    /// The experiment file, e.g. experiments/table1.toml.
    pub experiment: PathBuf,
    /// Print the expanded jobs and their count, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only the jobs whose id hash falls in slice k of n (`k/n`).
    #[arg(long)]
    pub shard: Option<String>,
    /// Output directory (default reports/<experiment name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bars (CI logs).
    #[arg(long)]
    pub quiet: bool,
    /// Devices, overriding the TOML's `devices`: `cpu`, `auto`, `cuda:N`, or a comma-separated
    /// list (one worker and one model copy each) [default: the TOML's].
    #[arg(long, visible_alias = "device")]
    pub devices: Option<String>,
    /// Seconds after which another process's claim on a job, with no heartbeat, counts as dead
    /// and is taken over (a dead process on this machine is noticed at once).
    #[arg(long, allow_negative_numbers = true, default_value_t = 120.0)]
    pub claim_timeout: f64,
}

pub fn run_cmd(a: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.claim_timeout >= 1.0,
        "--claim-timeout {}: must be at least 1 second (a live process's claim would count as dead)",
        a.claim_timeout
    );
    let shard = a
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let s = run(
        &a.experiment,
        &RunOptions {
            out: a.out,
            shard,
            dry_run: a.dry_run,
            quiet: a.quiet,
            seed: None,
            devices: a.devices.as_deref().map(m2ib_clip::devices::split_list),
            claim_timeout: Some(
                std::time::Duration::try_from_secs_f64(a.claim_timeout)
                    .map_err(|e| anyhow::anyhow!("--claim-timeout {}: {e}", a.claim_timeout))?,
            ),
        },
    )?;
    if !a.dry_run {
        let others = if s.by_others > 0 {
            format!(", {} by other processes sharing the folder", s.by_others)
        } else {
            String::new()
        };
        println!(
            "{}: {} jobs, {} already done, {} run here{others}, {} samples failed (see the `error` column)",
            s.out.display(),
            s.total,
            s.skipped,
            s.ran,
            s.failed_samples
        );
    }
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Example:
  m2ib merge reports/table1 other-node/reports/table1 --out table1.parquet")]
pub struct MergeArgs {
    /// Run directories, each holding results/ (e.g. the shards' output folders).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The Parquet file to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn merge_cmd(a: MergeArgs) -> anyhow::Result<()> {
    for d in &a.dirs {
        anyhow::ensure!(
            d.join("results").is_dir(),
            "{}: not a run directory (no results/ folder in it)",
            d.display()
        );
    }
    let n = m2ib_runner::store::merge(&a.dirs, &a.out)?;
    println!("merged {n} rows into {}", a.out.display());
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Examples:
  m2ib slurm experiments/table1.toml --shards 8 --partition gpu --gres gpu:1 --submit
  m2ib slurm experiments/table1.toml --shards 4 --time 02:00:00 --mem 32G   # write, submit by hand

Writes two scripts: <out> (an array of --shards tasks, each `m2ib run --shard k/n` into one run
folder) and <out stem>-report.sbatch (after the array succeeds: `m2ib report` and `m2ib merge`).
Paths in them are absolute, so they run from any folder.")]
pub struct SlurmArgs {
    /// The experiment file; validated (keys, layers, model) before anything is written.
    pub experiment: PathBuf,
    /// Array tasks, each running one slice of the jobs.
    #[arg(long, allow_negative_numbers = true)]
    pub shards: u64,
    /// The array script; the report script is written beside it as <stem>-report.sbatch.
    #[arg(long, default_value = "slurm.sbatch")]
    pub out: PathBuf,
    /// The run folder every task writes into [default: reports/<experiment name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Wall-clock limit per array task.
    #[arg(long, default_value = "04:00:00")]
    pub time: String,
    /// Memory per array task.
    #[arg(long, default_value = "16G")]
    pub mem: String,
    /// CPUs per array task [default: workers x threads_per_worker on CPU, 4 per GPU].
    #[arg(long, allow_negative_numbers = true)]
    pub cpus_per_task: Option<u32>,
    /// Slurm partition [default: the cluster's default].
    #[arg(long)]
    pub partition: Option<String>,
    /// Generic resources per task, e.g. `gpu:2` [default: one GPU per `cuda:N` in the TOML's
    /// devices, none for `cpu`; `auto` asks for none unless given].
    #[arg(long)]
    pub gres: Option<String>,
    /// Submit both scripts with sbatch (the report job with --dependency=afterok:<array id>)
    /// and print both job ids.
    #[arg(long)]
    pub submit: bool,
}

fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Shell-quoted, for the generated scripts.
fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

pub fn slurm_cmd(a: SlurmArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.shards > 0, "--shards must be at least 1");
    let plan = m2ib_runner::plan::plan(&a.experiment, None)?;
    let exp = &plan.exp;
    let names = exp
        .device_names()
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.experiment.display()))?;
    let gpus = names
        .iter()
        .filter(|n| n.starts_with("cuda"))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let gres = a
        .gres
        .clone()
        .or_else(|| (gpus > 0).then(|| format!("gpu:{gpus}")));
    if gres.is_none() && names.iter().any(|n| n == "auto") {
        eprintln!(
            "note: {} has devices = \"auto\": no GPU asked for (add --gres gpu:1 to run each task on a GPU)",
            a.experiment.display()
        );
    }
    let cpus = a.cpus_per_task.unwrap_or(if gres.is_some() {
        4 * gpus.max(1) as u32
    } else {
        (exp.workers as i64 * exp.threads_per_worker.max(1) as i64).max(1) as u32
    });
    // Slurm numbers the GPUs it grants from 0: name them so, whatever the TOML says.
    let devices_flag = if gpus > 0 {
        format!(
            " --devices {}",
            (0..gpus)
                .map(|i| format!("cuda:{i}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    } else {
        String::new()
    };
    let exe = std::env::current_exe()?.canonicalize()?;
    let toml = absolute(&a.experiment)?.canonicalize()?;
    let run_dir = absolute(
        &a.run_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("reports").join(&exp.name)),
    )?;
    let logs = run_dir.join("slurm");
    std::fs::create_dir_all(&logs)?;
    let cwd = std::env::current_dir()?;
    let n = a.shards;
    let mut directives = vec![
        format!("--job-name=m2ib-{}", exp.name),
        format!("--array=0-{}", n - 1),
        format!("--time={}", a.time),
        format!("--mem={}", a.mem),
        format!("--cpus-per-task={cpus}"),
    ];
    if let Some(p) = &a.partition {
        directives.push(format!("--partition={p}"));
    }
    if let Some(g) = &gres {
        directives.push(format!("--gres={g}"));
    }
    directives.push(format!("--output={}/%A_%a.out", logs.display()));
    let header = |d: &[String]| {
        d.iter()
            .map(|x| format!("#SBATCH {x}\n"))
            .collect::<String>()
    };
    let report_path = a.out.with_file_name(format!(
        "{}-report.sbatch",
        a.out
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    let array = format!(
        "#!/bin/bash\n# Generated by `m2ib slurm`: {jobs} jobs of {toml} in {n} shards into {run}.\n\
         # Submit: id=$(sbatch --parsable {out}) && sbatch --dependency=afterok:$id {report}\n{dirs}\
         set -euo pipefail\n# srun does not inherit --cpus-per-task from sbatch (Slurm >= 22.05).\nif [ -n \"${{SLURM_CPUS_PER_TASK:-}}\" ]; then export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK; fi\ncd {cwd}\nsrun {exe} run {tq} --shard \"$SLURM_ARRAY_TASK_ID/{n}\" --out {rq} --quiet{devs}\n",
        devs = devices_flag,
        jobs = plan.jobs.len(),
        toml = toml.display(),
        run = run_dir.display(),
        out = a.out.display(),
        report = report_path.display(),
        dirs = header(&directives),
        cwd = q(&cwd),
        exe = q(&exe),
        tq = q(&toml),
        rq = q(&run_dir),
    );
    let mut report_dirs = vec![
        format!("--job-name=m2ib-{}-report", exp.name),
        "--time=00:30:00".to_string(),
        "--mem=8G".to_string(),
        "--cpus-per-task=2".to_string(),
    ];
    if let Some(p) = &a.partition {
        report_dirs.push(format!("--partition={p}"));
    }
    report_dirs.push(format!("--output={}/report-%j.out", logs.display()));
    let report = format!(
        "#!/bin/bash\n# Generated by `m2ib slurm`: after every shard of {toml} succeeded, the report and one merged file.\n{dirs}\
         set -euo pipefail\ncd {cwd}\n{exe} report {rq}\n{exe} merge {rq} --out {mq}\n",
        toml = toml.display(),
        dirs = header(&report_dirs),
        cwd = q(&cwd),
        exe = q(&exe),
        rq = q(&run_dir),
        mq = q(&run_dir.join("merged.parquet")),
    );
    std::fs::write(&a.out, array)?;
    std::fs::write(&report_path, report)?;
    println!(
        "wrote {} ({n} array tasks, {} jobs) and {}",
        a.out.display(),
        plan.jobs.len(),
        report_path.display()
    );
    if a.submit {
        let sbatch = |args: &[String]| -> anyhow::Result<String> {
            let o = std::process::Command::new("sbatch")
                .args(args)
                .output()
                .map_err(|e| anyhow::anyhow!("cannot run sbatch: {e}"))?;
            anyhow::ensure!(
                o.status.success(),
                "sbatch {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            // --parsable prints `id` or `id;cluster`.
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Ok(out.split(';').next().unwrap_or_default().to_string())
        };
        let array_id = sbatch(&["--parsable".into(), a.out.display().to_string()])?;
        let report_id = sbatch(&[
            "--parsable".into(),
            format!("--dependency=afterok:{array_id}"),
            report_path.display().to_string(),
        ])?;
        println!("submitted array job {array_id} ({n} tasks) and report job {report_id} (runs after the array succeeds)");
    }
    Ok(())
}
