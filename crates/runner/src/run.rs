//! Runs an experiment: validates it against the model, expands jobs, skips finished ones, and
//! fans the rest over a worker pool (one model copy per device or CPU worker). Each job
//! explains a chunk of samples, caches the maps, computes the metrics and writes one Parquet part.
use crate::experiment::{line_of, Experiment, ExperimentError};
use crate::jobs::{in_shard, jobs, split_seed, Job, JobKind};
use crate::samples::{list, Listed};
use crate::store::{is_done, write_part, Row};
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2ib_clip::{resolve_layer, Checkpoint, ClipConfig, Layer};
use serde_json::json;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex};
use std::time::Instant;
use tch::Device;

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

/// One device name as a `tch::Device` (see `devices::parse_device`).
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    crate::devices::parse_device(s).map_err(anyhow::Error::msg)
}

/// Checks every layer of every cell against the model's depth, naming the key's line.
pub fn validate_layers(
    exp: &Experiment,
    source: &str,
    file: &str,
    config: &ClipConfig,
    defaults_origin: &str,
) -> Result<(), ExperimentError> {
    let depths = [
        ("image", config.vision_config.num_hidden_layers as usize),
        ("text", config.text_config.num_hidden_layers as usize),
    ];
    for cell in exp.cells() {
        let section = format!("methods.{}", cell.name());
        for (key, v) in cell.params.as_object().into_iter().flatten() {
            let Ok(l) = serde_json::from_value::<Layer>(v.clone()) else {
                continue;
            };
            let towers: Vec<(&str, usize)> = match key.as_str() {
                "layer" => depths.to_vec(),
                "image_layer" => vec![depths[0]],
                "text_layer" => vec![depths[1]],
                "start_layer" => depths.to_vec(),
                _ => continue,
            };
            for (tower, depth) in towers {
                let checked = if cell.method == "m2ib" {
                    m2ib_attribution::m2ib::bottleneck_block(l, depth, tower)
                        .map(|_| ())
                        .map_err(|e| match e {
                            m2ib_attribution::AttributionError::InvalidParameter {
                                message,
                                ..
                            } => message,
                            other => other.to_string(),
                        })
                } else {
                    match l {
                        Layer::Block(b) => resolve_layer(b, depth)
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Layer::Embeddings => Err(format!(
                            "`{}` names a block (integer); only M2IB's bottleneck can sit on the {}",
                            key,
                            m2ib_clip::config::EMBEDDINGS
                        )),
                    }
                };
                if let Err(e) = checked {
                    // A key the model's defaults gave is reported against the model's file.
                    let line = line_of(source, &section, key);
                    return Err(ExperimentError {
                        file: if line == 0 {
                            defaults_origin.into()
                        } else {
                            file.into()
                        },
                        line,
                        message: format!("`{section}.{key}` ({tower} tower): {e}"),
                    });
                }
            }
        }
    }
    Ok(())
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn weights_hash(dir: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(dir.join("model.safetensors"))
        .with_context(|| format!("reading {}/model.safetensors", dir.display()))?;
    Ok(sha1_smol::Sha1::from(&bytes).digest().to_string()[..16].to_string())
}

/// What every job of a run reads.
pub struct RunContext<'a> {
    pub exp: &'a Experiment,
    pub out: &'a Path,
    pub git: String,
    /// Per repeat: the experiment's samples and the ROAR+ training pairs.
    pub listed: Vec<Vec<Listed>>,
    pub roar_listed: Vec<Vec<Listed>>,
    /// ROAR+'s fixed validation pairs (`val_n`), the same for every repeat; empty without.
    pub roar_val: Vec<Listed>,
    /// Who runs which job, when several processes share `out`.
    pub claims: &'a crate::claims::Claims,
}

/// Whether a job's output exists (a rerun skips it).
fn is_finished(out: &Path, job: &Job) -> bool {
    match job.kind {
        JobKind::RoarMaps => crate::explain::maps_path(out, &job.id).exists(),
        JobKind::RoarClean => crate::dependent::is_clean_done(out, &job.id),
        _ => is_done(out, &job.id),
    }
}

/// One job on one worker's checkpoint; returns the number of failed samples.
fn run_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    device_name: &str,
    threads: i32,
) -> anyhow::Result<usize> {
    let exp = ctx.exp;
    let t0 = Instant::now();
    let method = if job.kind == JobKind::RoarClean {
        None
    } else {
        Some(crate::explain::Source::of(&job.cell).map_err(anyhow::Error::msg)?)
    };
    let roar_split = exp.metrics.roar.as_ref().map(|r| r.split.clone());
    let base = Row {
        experiment: exp.name.clone(),
        job_id: job.id.clone(),
        model: exp.model.name.clone(),
        dataset: exp.dataset.reader.clone(),
        split: match job.kind {
            JobKind::Roar | JobKind::RoarMaps | JobKind::RoarClean => {
                roar_split.unwrap_or_default()
            }
            _ => exp.dataset.split.clone(),
        },
        method: job.cell.method.clone(),
        label: job.cell.name().to_string(),
        params: method
            .as_ref()
            .map(|m| crate::jobs::canonical(&m.params()))
            .unwrap_or_default(),
        repeat: job.repeat as i64,
        split_seed: split_seed(exp.dataset.seed, job.repeat),
        device: device_name.to_string(),
        threads: threads as i64,
        git_revision: ctx.git.clone(),
        ..Row::default()
    };
    let (mut rows, failed) = match job.kind {
        JobKind::Explain => crate::explain::explain_job(ctx, ck, job, &base)?,
        JobKind::RoarMaps => {
            let chunk = crate::explain::prepare_chunk(exp, ck, job, &ctx.roar_listed[job.repeat]);
            if !chunk.prepared.is_empty() {
                let batch = crate::explain::batch_of(ck, &chunk.prepared);
                let m = method.as_ref().expect("method");
                if let Err(e) = crate::explain::maps_of(ctx.out, ck, job, m, &chunk, &batch)? {
                    // The ROAR+ job reports it (computing again finds the same failure).
                    eprintln!("roar maps of job {}: {e}", job.id);
                }
            }
            return Ok(chunk.failed.len());
        }
        JobKind::RoarClean => {
            crate::dependent::roar_clean_job(ctx, ck, job)?;
            return Ok(0);
        }
        JobKind::Roar => (crate::dependent::roar_job(ctx, ck, job, &base)?, 0),
        JobKind::Sanity => (crate::dependent::sanity_job(ctx, ck, job, &base)?, 0),
    };
    let wall = t0.elapsed().as_secs_f64() * 1000.0 / rows.len().max(1) as f64;
    for r in &mut rows {
        r.wall_ms = wall;
    }
    write_part(ctx.out, &job.id, &rows)
        .with_context(|| format!("writing the part of job {}", job.id))?;
    Ok(failed)
}

/// An experiment resolved against its model and expanded into jobs.
pub struct Plan {
    pub exp: Experiment,
    pub source: String,
    pub defaults: crate::defaults::ModelDefaults,
    /// Per method and key: where the setting came from.
    pub settings_sources:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    pub options: m2ib_clip::ModelOptions,
    pub weights: String,
    pub jobs: Vec<Job>,
}

/// Loads, resolves (model defaults beneath the experiment) and validates an experiment, and
/// lists its jobs; `seed` replaces the experiment's seed.
pub fn plan(path: &Path, seed: Option<u64>) -> anyhow::Result<Plan> {
    let (mut exp, source) = Experiment::load(path)?;
    if let Some(seed) = seed {
        exp.seed = seed;
    }
    let file = path.display().to_string();
    let config = ClipConfig::from_file(&exp.model.path.join("config.json"))?;
    let defaults = crate::defaults::load(&exp.model.path, &config).map_err(anyhow::Error::msg)?;
    let settings_sources = exp
        .apply_model_defaults(&defaults, &source)
        .map_err(anyhow::Error::msg)?;
    validate_layers(&exp, &source, &file, &config, &defaults.origin)?;
    let options = exp.model.options().map_err(anyhow::Error::msg)?;
    // Options change every output, so they are part of every job id.
    let weights = format!(
        "{}:{}",
        weights_hash(&exp.model.path)?,
        serde_json::to_string(&options)?
    );
    let jobs = jobs(&exp, &weights, exp.dataset.n);
    Ok(Plan {
        exp,
        source,
        defaults,
        settings_sources,
        options,
        weights,
        jobs,
    })
}

pub fn run(path: &Path, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let Plan {
        exp,
        source,
        defaults,
        settings_sources,
        options,
        weights,
        jobs: all,
    } = plan(path, opts.seed)?;
    let file = path.display().to_string();
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&exp.name));
    let n = exp.dataset.n;
    let mine: Vec<Job> = all
        .iter()
        .filter(|j| opts.shard.is_none_or(|s| in_shard(j, s)))
        .cloned()
        .collect();
    let todo: Vec<Job> = mine
        .iter()
        .filter(|j| !is_finished(&out, j))
        .cloned()
        .collect();
    let (devices, why) = match &opts.devices {
        Some(names) => crate::devices::resolve(names, exp.workers),
        None => exp.device_list(),
    }
    .map_err(|e| anyhow::anyhow!("{}: devices: {e}", path.display()))?;
    if let Some(why) = why {
        eprintln!("{why}");
    }
    if opts.dry_run {
        let explain = all.iter().filter(|j| j.kind == JobKind::Explain).count();
        println!(
            "{} jobs: {explain} explain ({} cells x {} repeats x {} chunks), {} dependent (ROAR+, sanity); {} in this shard, {} already done",
            all.len(),
            exp.cells().len(),
            exp.repeats,
            n.div_ceil(exp.chunk_size),
            all.len() - explain,
            mine.len(),
            mine.len() - todo.len()
        );
        for j in &mine {
            println!(
                "{}  {:<10} {:<12} repeat {} chunk {}  {}",
                j.id,
                j.kind.name(),
                j.cell.name(),
                j.repeat,
                j.chunk,
                crate::jobs::canonical(&j.cell.params)
            );
        }
        return Ok(RunSummary {
            out,
            total: mine.len(),
            skipped: mine.len() - todo.len(),
            ran: 0,
            by_others: 0,
            failed_samples: 0,
        });
    }
    std::fs::create_dir_all(&out)?;
    let listed_jobs: Vec<crate::store::JobEntry> = all
        .iter()
        .map(|j| crate::store::JobEntry {
            id: j.id.clone(),
            kind: j.kind.name().to_string(),
            label: j.cell.name().to_string(),
            repeat: j.repeat,
            chunk: j.chunk,
        })
        .collect();
    // Atomic: another process on this folder may be writing the same file.
    crate::store::write_atomic(
        &crate::store::jobs_path(&out),
        serde_json::to_string(&listed_jobs)?.as_bytes(),
    )?;
    let claims = crate::claims::Claims::new(
        &out,
        opts.claim_timeout.unwrap_or(crate::claims::DEFAULT_STALE),
    )?;
    let swept = claims.sweep_temps(&[out.join("results"), out.join("maps")]);
    if swept > 0 {
        eprintln!(
            "{}: removed {swept} temp file(s) a killed run left",
            out.display()
        );
    }
    let git = git_revision();
    crate::store::write_atomic(
        &out.join("run.json"),
        serde_json::to_string_pretty(&json!({
            "experiment_file": file, "experiment": source, "git_revision": git, "tool_version": env!("CARGO_PKG_VERSION"),
            "devices": devices, "weights_hash": weights, "shard": opts.shard.map(|s| format!("{}/{}", s.0, s.1)),
            "seed": exp.seed, "model_options": options,
            "settings": match &exp.include {
                Some(p) => format!("selected: {} (included)", p.display()),
                None => "defaults: the experiment file's own values".to_string(),
            },
            "selected_settings": exp.include.as_ref().and_then(|p| std::fs::read_to_string(p).ok()),
            "model_defaults": defaults.origin, "settings_sources": settings_sources,
            "resolved_methods": exp.methods,
        }))?
        .as_bytes(),
    )?;
    // Samples per repeat, listed once.
    let listed: Vec<Vec<Listed>> = (0..exp.repeats)
        .map(|r| list(&exp.dataset, split_seed(exp.dataset.seed, r)))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let roar_val: Vec<Listed> = match &exp.metrics.roar {
        Some(r) if r.val_n.is_some() => list(
            &r.val_dataset(&exp.dataset),
            crate::jobs::hash64(&["roar-val"]),
        )
        .map_err(anyhow::Error::msg)?,
        _ => vec![],
    };
    let val_ids: std::collections::HashSet<String> =
        roar_val.iter().flatten().map(|s| s.id.clone()).collect();
    let roar_listed: Vec<Vec<Listed>> = match &exp.metrics.roar {
        None => vec![vec![]; exp.repeats],
        Some(r) => (0..exp.repeats)
            .map(|k| {
                list(&r.dataset(&exp.dataset), split_seed(exp.dataset.seed, k)).map(|l| {
                    // A training pair that is also a validation pair is left out (never for
                    // shapes: the validation pairs come from their own stream).
                    l.into_iter()
                        .map(|x| match x {
                            Ok(s) if val_ids.contains(&s.id) => {
                                Err((s.id, "also a ROAR+ validation pair".to_string()))
                            }
                            x => x,
                        })
                        .collect()
                })
            })
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
    };
    // One queue per phase; workers wait for each other between phases (dependent jobs read the
    // cache the previous phase wrote).
    let phases: Vec<Mutex<VecDeque<Job>>> = (0..3)
        .map(|p| {
            Mutex::new(
                todo.iter()
                    .filter(|j| j.kind.phase() == p)
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    let barrier = Barrier::new(devices.len());
    let mp = MultiProgress::new();
    if opts.quiet {
        mp.set_draw_target(ProgressDrawTarget::hidden());
    }
    let overall = mp.add(ProgressBar::new(todo.len() as u64));
    overall.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} jobs  {per_sec}  eta {eta}  {msg}",
    )?);
    let failed = Mutex::new(0usize);
    let ctx = RunContext {
        exp: &exp,
        out: &out,
        git,
        listed,
        roar_listed,
        roar_val,
        claims: &claims,
    };
    let threads = exp.threads_per_worker;
    if devices.iter().all(|d| d == "cpu") {
        tch::set_num_threads(threads);
    }
    let errors: Mutex<Vec<String>> = Mutex::new(vec![]);
    let finished = std::sync::atomic::AtomicBool::new(false);
    let workers_left = std::sync::atomic::AtomicUsize::new(devices.len());
    let ran_here = std::sync::atomic::AtomicUsize::new(0);
    let ran_here_ref = &ran_here;
    std::thread::scope(|s| {
        // Heartbeat of this process's claims (others take a claim over once it stops).
        let (claims, finished) = (&claims, &finished);
        s.spawn(move || {
            let tick = std::time::Duration::from_millis(50);
            let mut since = std::time::Duration::ZERO;
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(tick);
                since += tick;
                if since >= claims.heartbeat_every() {
                    claims.heartbeat();
                    since = std::time::Duration::ZERO;
                }
            }
        });
        let workers_left = &workers_left;
        for (w, dev) in devices.iter().enumerate() {
            let (phases, barrier, overall, failed, ctx, errors, options) = (
                &phases, &barrier, &overall, &failed, &ctx, &errors, &options,
            );
            let line = mp.add(ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("  worker {prefix} {msg}").expect("template"),
            );
            line.set_prefix(format!("{w} ({dev})"));
            s.spawn(move || {
                // Stops the heartbeat once every worker is done, panicked ones included.
                struct Leaving<'a>(
                    &'a std::sync::atomic::AtomicUsize,
                    &'a std::sync::atomic::AtomicBool,
                );
                impl Drop for Leaving<'_> {
                    fn drop(&mut self) {
                        if self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                            self.1.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                let _leaving = Leaving(workers_left, finished);
                let ck = match parse_device(dev)
                    .and_then(|d| Ok(Checkpoint::load_with(&ctx.exp.model.path, d, options)?))
                {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("worker {w} ({dev}): {e:#}"));
                        None
                    }
                };
                for queue in phases {
                    while let Some(ck) = &ck {
                        let Some(job) = queue.lock().unwrap().pop_front() else {
                            break;
                        };
                        if is_finished(ctx.out, &job) {
                            // Another process sharing the folder did it.
                            overall.inc(1);
                            continue;
                        }
                        let claim = match ctx.claims.try_claim(&job.id) {
                            Ok(Some(c)) => c,
                            Ok(None) => {
                                // A live process holds it: come back to it after the others.
                                queue.lock().unwrap().push_back(job);
                                std::thread::sleep(std::time::Duration::from_millis(100));
                                continue;
                            }
                            Err(e) => {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("claiming job {}: {e}", job.id));
                                overall.inc(1);
                                continue;
                            }
                        };
                        if is_finished(ctx.out, &job) {
                            overall.inc(1);
                            continue;
                        }
                        line.set_message(format!(
                            "{} {} repeat {} chunk {}",
                            job.kind.name(),
                            job.cell.name(),
                            job.repeat,
                            job.chunk
                        ));
                        ran_here_ref.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        match run_job(ctx, ck, &job, dev, threads) {
                            Ok(f) => {
                                *failed.lock().unwrap() += f;
                                ctx.claims.record(&job.id, job.kind.name());
                            }
                            Err(e) => errors.lock().unwrap().push(format!(
                                "job {} ({}): {e:#}",
                                job.id,
                                job.kind.name()
                            )),
                        }
                        drop(claim);
                        overall.inc(1);
                    }
                    barrier.wait();
                }
                line.finish_and_clear();
            });
        }
    });
    overall.finish_and_clear();
    let errors = errors.into_inner().unwrap();
    if !errors.is_empty() {
        anyhow::bail!("{} job(s) failed:\n{}", errors.len(), errors.join("\n"));
    }
    Ok(RunSummary {
        out,
        total: mine.len(),
        skipped: mine.len() - todo.len(),
        ran: ran_here.load(std::sync::atomic::Ordering::SeqCst),
        by_others: todo.len() - ran_here.load(std::sync::atomic::Ordering::SeqCst),
        failed_samples: failed.into_inner().unwrap(),
    })
}
