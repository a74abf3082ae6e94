//! `m2ib run`: load and plan the experiment, skip finished jobs, write the run directory's
//! records, and hand the rest to the worker pool (one model copy per device or CPU worker).
use crate::claims::{Claims, DEFAULT_STALE};
use crate::context::RunContext;
use crate::plan::{in_shard, plan, Job, Plan};
use crate::rundir::{write_atomic, RunDir};
use m2ib_clip::Checkpoint;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub out: Option<PathBuf>,
    pub shard: Option<(u64, u64)>,
    pub dry_run: bool,
    pub quiet: bool,
    /// Replaces the experiment's `seed` (the method seeds; `m2ib baseline` uses it).
    pub seed: Option<u64>,
    /// Replaces the experiment's `devices` (`--devices`): names, `cpu` or `auto`.
    pub devices: Option<Vec<String>>,
    /// A claim whose heartbeat is older than this is taken over (`claims::DEFAULT_STALE`).
    pub claim_timeout: Option<std::time::Duration>,
}

pub struct RunSummary {
    pub out: PathBuf,
    pub total: usize,
    pub skipped: usize,
    /// Jobs this process ran.
    pub ran: usize,
    /// Jobs another process sharing the folder finished while this one ran.
    pub by_others: usize,
    pub failed_samples: usize,
}

/// The checkout's commit, with `+dirty` when tracked files differ from it (the rows were then
/// computed by code no commit holds).
fn git_revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown".into(),
        Some(rev) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{rev}+dirty"),
            _ => rev,
        },
    }
}

/// `run.json`: what ran (the experiment's text, revision, devices, resolved settings and where
/// each came from).
fn write_run_info(
    dir: &RunDir,
    file: &str,
    plan: &Plan,
    devices: &[String],
    shard: Option<(u64, u64)>,
    git: &str,
) -> anyhow::Result<()> {
    let exp = &plan.exp;
    write_atomic(
        &dir.run_info(),
        serde_json::to_string_pretty(&json!({
            "experiment_file": file, "experiment": plan.source, "git_revision": git, "tool_version": env!("CARGO_PKG_VERSION"),
            "devices": devices, "weights_hash": plan.weights, "shard": shard.map(|s| format!("{}/{}", s.0, s.1)),
            "seed": exp.seed, "model_options": plan.options,
            "settings": match &exp.include {
                Some(p) => format!("selected: {} (included)", p.display()),
                None => "defaults: the experiment file's own values".to_string(),
            },
            "selected_settings": exp.include.as_ref().and_then(|p| std::fs::read_to_string(p).ok()),
            "model_defaults": plan.defaults.origin, "settings_sources": plan.settings_sources,
            "resolved_methods": exp.methods, "resolved_metrics": exp.metrics,
        }))?
        .as_bytes(),
    )?;
    Ok(())
}

pub fn run(path: &Path, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let plan = plan(path, opts.seed)?;
    let exp = &plan.exp;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&exp.name));
    let dir = RunDir::new(&out);
    let mine: Vec<Job> = plan
        .jobs
        .iter()
        .filter(|j| opts.shard.is_none_or(|s| in_shard(j, s)))
        .cloned()
        .collect();
    let todo: Vec<Job> = mine
        .iter()
        .filter(|j| !dir.is_finished(j))
        .cloned()
        .collect();
    let (devices, why) = match &opts.devices {
        Some(names) => m2ib_clip::devices::resolve(names, exp.workers),
        None => exp.device_list(),
    }
    .map_err(|e| anyhow::anyhow!("{}: devices: {e}", path.display()))?;
    if let Some(why) = why {
        eprintln!("{why}");
    }
    let summary = |ran: usize, failed_samples: usize| RunSummary {
        out: out.clone(),
        total: mine.len(),
        skipped: mine.len() - todo.len(),
        ran,
        by_others: if opts.dry_run { 0 } else { todo.len() - ran },
        failed_samples,
    };
    if opts.dry_run {
        plan.print_jobs(&mine, mine.len() - todo.len());
        return Ok(summary(0, 0));
    }
    std::fs::create_dir_all(&out)?;
    dir.write_jobs(&plan.jobs)?;
    let claims = Claims::new(&out, opts.claim_timeout.unwrap_or(DEFAULT_STALE))?;
    let swept = claims.sweep_temps(&[dir.results(), dir.maps_dir()]);
    if swept > 0 {
        eprintln!(
            "{}: removed {swept} temp file(s) a killed run left",
            out.display()
        );
    }
    let git = git_revision();
    write_run_info(
        &dir,
        &path.display().to_string(),
        &plan,
        &devices,
        opts.shard,
        &git,
    )?;
    let ctx = RunContext::new(exp, dir.clone(), git, &claims).map_err(anyhow::Error::msg)?;
    let threads = exp.threads_per_worker;
    if devices.iter().all(|d| d == "cpu") {
        tch::set_num_threads(threads);
    }
    let report = crate::pool::run_pool(
        &todo,
        &devices,
        opts.quiet,
        &dir,
        &claims,
        |dev| {
            let device = m2ib_clip::devices::parse_device(dev).map_err(anyhow::Error::msg)?;
            Ok(Checkpoint::load_with(
                &exp.model.path,
                device,
                &plan.options,
            )?)
        },
        |ck, job, dev| crate::exec::run_job(&ctx, ck, job, dev, threads),
    )?;
    if !report.errors.is_empty() {
        anyhow::bail!(
            "{} job(s) failed:\n{}",
            report.errors.len(),
            report.errors.join("\n")
        );
    }
    Ok(summary(report.ran, report.failed_samples))
}
