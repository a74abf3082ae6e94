//! Runs an experiment: validates it against the model, expands jobs, skips finished ones, and
//! fans the rest over a worker pool (one model copy per device or CPU worker). Each job
//! explains a chunk of samples, caches the maps, computes the metrics and writes one Parquet part.
use crate::experiment::{line_of, method_from_cell, Experiment, ExperimentError};
use crate::jobs::{in_shard, jobs, sample_seed, split_seed, Job};
use crate::samples::{list, prepare, sample_id, Listed, Prepared};
use crate::store::{is_done, write_part, Row};
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2ib_attribution::{normalize_image, normalize_text, Attribution, Batch};
use m2ib_clip::{resolve_layer, Checkpoint, ClipConfig};
use m2ib_metrics::confidence::{image_change, text_change, TextProtocol};
use m2ib_metrics::localization::{iou, text_auroc, Threshold};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use tch::{Device, Tensor};

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub out: Option<PathBuf>,
    pub shard: Option<(u64, u64)>,
    pub dry_run: bool,
    pub quiet: bool,
}

pub struct RunSummary {
    pub out: PathBuf,
    pub total: usize,
    pub skipped: usize,
    pub ran: usize,
    pub failed_samples: usize,
}

pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    Ok(match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => anyhow::bail!("unknown device `{s}` (cpu, cuda, cuda:N)"),
        },
    })
}

/// Checks every layer of every cell against the model's depth, naming the key's line.
pub fn validate_layers(
    exp: &Experiment,
    source: &str,
    file: &str,
    config: &ClipConfig,
) -> Result<(), ExperimentError> {
    let depths = [
        ("image", config.vision_config.num_hidden_layers as usize),
        ("text", config.text_config.num_hidden_layers as usize),
    ];
    for cell in exp.cells() {
        let section = format!("methods.{}", cell.method);
        for (key, v) in cell.params.as_object().into_iter().flatten() {
            let Some(l) = v.as_i64() else { continue };
            let towers: Vec<(&str, usize)> = match key.as_str() {
                "layer" => depths.to_vec(),
                "image_layer" => vec![depths[0]],
                "text_layer" => vec![depths[1]],
                "start_layer" => depths.to_vec(),
                _ => continue,
            };
            for (tower, depth) in towers {
                if let Err(e) = resolve_layer(l, depth) {
                    return Err(ExperimentError {
                        file: file.into(),
                        line: line_of(source, &section, key),
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

/// Per-row fields of the method's resolved parameters for one modality.
fn hyper(params: &Value, modality: &str) -> (Option<i64>, Option<f64>, Option<f64>) {
    let p = params.get(modality).unwrap_or(params);
    let layer = p
        .get("layer")
        .or_else(|| params.get(format!("{modality}_layer")))
        .and_then(Value::as_i64);
    (
        layer,
        p.get("beta").and_then(Value::as_f64),
        p.get("sigma").and_then(Value::as_f64),
    )
}

struct Context_<'a> {
    exp: &'a Experiment,
    out: &'a Path,
    git: String,
}

/// One job on one worker's checkpoint.
fn run_job(
    ctx: &Context_,
    ck: &Checkpoint,
    job: &Job,
    listed: &[Listed],
    device_name: &str,
    threads: i32,
) -> anyhow::Result<usize> {
    let exp = ctx.exp;
    let t0 = Instant::now();
    let method = method_from_cell(&job.cell).map_err(anyhow::Error::msg)?;
    let subset_seed = split_seed(exp.dataset.seed, job.repeat);
    let base = Row {
        experiment: exp.name.clone(),
        job_id: job.id.clone(),
        model: exp.model.name.clone(),
        dataset: exp.dataset.reader.clone(),
        split: exp.dataset.split.clone(),
        method: job.cell.method.clone(),
        params: crate::jobs::canonical(&method.params()),
        repeat: job.repeat as i64,
        split_seed: subset_seed,
        device: device_name.to_string(),
        threads: threads as i64,
        git_revision: ctx.git.clone(),
        ..Row::default()
    };
    let metric_list: Vec<(&str, &str, String)> = {
        let mut m = vec![];
        for mode in &exp.metrics.localization {
            m.push(("image", "localization_iou", mode.clone()));
        }
        if exp.metrics.text_localization {
            m.push(("text", "localization_auroc", "content".into()));
        }
        if !exp.metrics.confidence.is_empty() {
            m.push(("image", "drop", "whole-map".into()));
            m.push(("image", "increase", "whole-map".into()));
        }
        for p in &exp.metrics.confidence {
            m.push(("text", "drop", p.clone()));
            m.push(("text", "increase", p.clone()));
        }
        m
    };
    let mut rows = vec![];
    let error_rows = |rows: &mut Vec<Row>, id: &str, seed: u64, err: &str| {
        for (modality, metric, variant) in &metric_list {
            rows.push(Row {
                sample_id: Some(id.to_string()),
                modality: modality.to_string(),
                metric: metric.to_string(),
                metric_variant: variant.clone(),
                seed,
                error: Some(err.to_string()),
                ..base.clone()
            });
        }
    };
    let mut prepared: Vec<(Prepared, u64)> = vec![];
    for &i in &job.samples {
        let l = &listed[i];
        let seed = sample_seed(exp.seed, sample_id(l), job.repeat, &job.cell.method);
        match l
            .as_ref()
            .map_err(|e| e.1.clone())
            .and_then(|s| prepare(ck, s))
        {
            Ok(p) => prepared.push((p, seed)),
            Err(e) => error_rows(&mut rows, sample_id(l), seed, &e),
        }
    }
    let mut failed = rows.len() / metric_list.len().max(1);
    if !prepared.is_empty() {
        let px: Vec<Tensor> = prepared
            .iter()
            .map(|(p, _)| p.pixels.shallow_clone())
            .collect();
        let enc: Vec<_> = prepared.iter().map(|(p, _)| p.encoded.clone()).collect();
        let batch = Batch::new(ck, &px, &enc, prepared.iter().map(|(_, s)| *s).collect());
        match method.attribute(&ck.model, &batch) {
            Err(e) => {
                for (p, s) in &prepared {
                    error_rows(&mut rows, &p.id, *s, &e.to_string());
                }
                failed += prepared.len();
            }
            Ok(atts) => {
                cache_maps(ctx.out, &job.id, &prepared, &atts)?;
                let (img_e, txt_e) = tch::no_grad(|| {
                    (
                        ck.model.image_features(&batch.pixels),
                        ck.model.text_features(&batch.text),
                    )
                });
                for (k, ((p, seed), a)) in prepared.iter().zip(&atts).enumerate() {
                    let mut sample_rows = vec![];
                    let r = sample_metrics(
                        ck,
                        exp,
                        p,
                        a,
                        &batch,
                        k,
                        &img_e,
                        &txt_e,
                        &metric_list,
                        &mut sample_rows,
                    );
                    if let Err(e) = r {
                        error_rows(&mut rows, &p.id, *seed, &e);
                        failed += 1;
                        continue;
                    }
                    for (modality, metric, variant, value) in sample_rows {
                        let (layer, beta, sigma) = hyper(&a.params, modality);
                        let (value, error) = match value {
                            Ok(v) if v.is_finite() => (Some(v), None),
                            Ok(v) => (None, Some(format!("non-finite value {v}"))),
                            Err(e) => (None, Some(e)),
                        };
                        rows.push(Row {
                            sample_id: Some(p.id.clone()),
                            modality: modality.to_string(),
                            metric: metric.to_string(),
                            metric_variant: variant,
                            layer,
                            beta,
                            sigma,
                            var: sigma.map(|s| s * s),
                            seed: *seed,
                            value,
                            error,
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64() * 1000.0 / rows.len().max(1) as f64;
    for r in &mut rows {
        r.wall_ms = wall;
    }
    write_part(ctx.out, &job.id, &rows)
        .with_context(|| format!("writing the part of job {}", job.id))?;
    Ok(failed)
}

type MetricRow = (&'static str, &'static str, String, Result<f64, String>);

#[allow(clippy::too_many_arguments)]
fn sample_metrics(
    ck: &Checkpoint,
    exp: &Experiment,
    p: &Prepared,
    a: &Attribution,
    batch: &Batch,
    k: usize,
    img_e: &Tensor,
    txt_e: &Tensor,
    metric_list: &[(&str, &str, String)],
    out: &mut Vec<MetricRow>,
) -> Result<(), String> {
    let image = normalize_image(&a.image).map_err(|e| e.to_string())?;
    let text = normalize_text(&a.text, &a.content).map_err(|e| e.to_string())?;
    let (h, w) = (image.size()[0] as usize, image.size()[1] as usize);
    let flat: Vec<f32> =
        Vec::try_from(image.flatten(0, -1)).map_err(|e: tch::TchError| e.to_string())?;
    let ids = &p.encoded.ids;
    let pool =
        i64::try_from(batch.text.pool_index.get(k as i64)).map_err(|e| e.to_string())? as usize;
    let image_conf = if exp.metrics.confidence.is_empty() {
        None
    } else {
        Some(
            image_change(&ck.model, &p.pixels, &image, &txt_e.get(k as i64))
                .map_err(|e| e.to_string())?,
        )
    };
    for (modality, metric, variant) in metric_list {
        let v: Result<f64, String> = match (*modality, *metric) {
            ("image", "localization_iou") => match &p.boxes {
                None => Err("sample has no boxes".into()),
                Some(b) => iou(
                    &flat,
                    h,
                    w,
                    b,
                    if variant == "percentile" {
                        Threshold::Percentile
                    } else {
                        Threshold::Value
                    },
                )
                .map_err(|e| e.to_string()),
            },
            ("text", "localization_auroc") => match &p.present {
                None => Err("sample has no token ground truth".into()),
                Some(present) => text_auroc(&text, &a.content, present).map_err(|e| e.to_string()),
            },
            ("image", "drop") => Ok(image_conf.expect("confidence").drop()),
            ("image", "increase") => Ok(image_conf.expect("confidence").increase()),
            ("text", m) => {
                let protocol = if variant == "official" {
                    TextProtocol::Official
                } else {
                    TextProtocol::Padded
                };
                text_change(
                    &ck.model,
                    ids,
                    &a.text,
                    &img_e.get(k as i64),
                    protocol,
                    batch.text_mask_id,
                    ck.tokenizer.end_id,
                    pool,
                )
                .map(|c| if m == "drop" { c.drop() } else { c.increase() })
                .map_err(|e| e.to_string())
            }
            _ => continue,
        };
        let m: &'static str = match *metric {
            "localization_iou" => "localization_iou",
            "localization_auroc" => "localization_auroc",
            "drop" => "drop",
            _ => "increase",
        };
        out.push((
            if *modality == "image" {
                "image"
            } else {
                "text"
            },
            m,
            variant.clone(),
            v,
        ));
    }
    Ok(())
}

/// `maps/<job_id>.safetensors`: each sample's raw image map and token scores, written atomically.
fn cache_maps(
    out: &Path,
    job_id: &str,
    prepared: &[(Prepared, u64)],
    atts: &[Attribution],
) -> anyhow::Result<()> {
    let dir = out.join("maps");
    std::fs::create_dir_all(&dir)?;
    let mut named = vec![];
    for ((p, _), a) in prepared.iter().zip(atts) {
        named.push((format!("{}.image", p.id), a.image.shallow_clone()));
        named.push((format!("{}.text", p.id), Tensor::from_slice(&a.text)));
    }
    let tmp = dir.join(format!(".{job_id}.tmp-{}", std::process::id()));
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, dir.join(format!("{job_id}.safetensors")))?;
    Ok(())
}

pub fn run(path: &Path, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let (exp, source) = Experiment::load(path)?;
    let file = path.display().to_string();
    let config = ClipConfig::from_file(&exp.model.path.join("config.json"))?;
    validate_layers(&exp, &source, &file, &config)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&exp.name));
    let weights = weights_hash(&exp.model.path)?;
    let n = exp.dataset.n;
    let all = jobs(&exp, &weights, n);
    let mine: Vec<Job> = all
        .iter()
        .filter(|j| opts.shard.is_none_or(|s| in_shard(j, s)))
        .cloned()
        .collect();
    let todo: Vec<Job> = mine
        .iter()
        .filter(|j| !is_done(&out, &j.id))
        .cloned()
        .collect();
    let devices = exp.device_list().map_err(anyhow::Error::msg)?;
    if opts.dry_run {
        println!(
            "{} jobs ({} cells x {} repeats x {} chunks); {} in this shard, {} already done",
            all.len(),
            exp.cells().len(),
            exp.repeats,
            n.div_ceil(exp.chunk_size),
            mine.len(),
            mine.len() - todo.len()
        );
        for j in &mine {
            println!(
                "{}  {:<12} repeat {} chunk {}  {}",
                j.id,
                j.cell.method,
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
            failed_samples: 0,
        });
    }
    std::fs::create_dir_all(&out)?;
    let git = git_revision();
    std::fs::write(
        out.join("run.json"),
        serde_json::to_string_pretty(&json!({
            "experiment_file": file, "experiment": source, "git_revision": git, "tool_version": env!("CARGO_PKG_VERSION"),
            "devices": devices, "weights_hash": weights, "shard": opts.shard.map(|s| format!("{}/{}", s.0, s.1)),
        }))?,
    )?;
    // Samples per repeat, listed once.
    let listed: Vec<Vec<Listed>> = (0..exp.repeats)
        .map(|r| list(&exp.dataset, split_seed(exp.dataset.seed, r)))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let queue = Mutex::new(todo.iter().cloned().collect::<VecDeque<Job>>());
    let mp = MultiProgress::new();
    if opts.quiet {
        mp.set_draw_target(ProgressDrawTarget::hidden());
    }
    let overall = mp.add(ProgressBar::new(todo.len() as u64));
    overall.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} jobs  {per_sec}  eta {eta}  {msg}",
    )?);
    let failed = Mutex::new(0usize);
    let ctx = Context_ {
        exp: &exp,
        out: &out,
        git,
    };
    let threads = exp.threads_per_worker;
    if devices.iter().all(|d| d == "cpu") {
        tch::set_num_threads(threads);
    }
    let errors: Mutex<Vec<String>> = Mutex::new(vec![]);
    std::thread::scope(|s| {
        for (w, dev) in devices.iter().enumerate() {
            let (queue, overall, failed, ctx, listed, errors) =
                (&queue, &overall, &failed, &ctx, &listed, &errors);
            let line = mp.add(ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("  worker {prefix} {msg}").expect("template"),
            );
            line.set_prefix(format!("{w} ({dev})"));
            s.spawn(move || {
                let ck = match parse_device(dev)
                    .and_then(|d| Ok(Checkpoint::load(&ctx.exp.model.path, d)?))
                {
                    Ok(c) => c,
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("worker {w} ({dev}): {e:#}"));
                        return;
                    }
                };
                loop {
                    let Some(job) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    line.set_message(format!(
                        "{} repeat {} chunk {}",
                        job.cell.method, job.repeat, job.chunk
                    ));
                    match run_job(ctx, &ck, &job, &listed[job.repeat], dev, threads) {
                        Ok(f) => *failed.lock().unwrap() += f,
                        Err(e) => errors
                            .lock()
                            .unwrap()
                            .push(format!("job {}: {e:#}", job.id)),
                    }
                    overall.inc(1);
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
        ran: todo.len(),
        failed_samples: failed.into_inner().unwrap(),
    })
}
