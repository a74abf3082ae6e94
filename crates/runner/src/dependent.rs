//! Jobs that depend on other jobs' cached output (DESIGN.md "Runner and results"): ROAR+ (the
//! shared clean fine-tuning of a repeat, then one score per method configuration from the cached
//! maps of the training pairs) and the sanity cascade against an explain job's cached maps.
//! A dependency missing from the cache (another shard's job) is computed on the spot.
use crate::explain::{batch_of, maps_of, prepare_chunk, value_row, Chunk, Source};
use crate::jobs::{hash64, split_seed, Job, JobKind};
use crate::run::RunContext;
use crate::samples::Listed;
use crate::store::Row;
use anyhow::Context;
use m2ib_attribution::Attribution;
use m2ib_clip::{Checkpoint, ClipModel};
use m2ib_metrics::roar::{roar_clean, roar_degraded, CleanLoss, RoarConfig, RoarData, RoarMaps};
use m2ib_metrics::MetricError;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// A fresh copy of the worker's model (fine-tuning and randomisation change weights in place).
fn copy_model(ck: &Checkpoint) -> Result<ClipModel, MetricError> {
    let mut m = ClipModel::new(ck.model.config.clone(), ck.model.device());
    m.vs.copy(&ck.model.vs)?;
    m.vs.freeze();
    Ok(m)
}

fn roar_config(ctx: &RunContext, repeat: usize) -> RoarConfig {
    let spec = ctx
        .exp
        .metrics
        .roar
        .as_ref()
        .expect("roar jobs need [metrics.roar]");
    spec.config(hash64(&[
        "roar",
        &ctx.exp.seed.to_string(),
        &repeat.to_string(),
    ]))
}

fn clean_path(out: &Path, job_id: &str) -> PathBuf {
    out.join("maps").join(format!("{job_id}.clean.json"))
}

pub fn is_clean_done(out: &Path, job_id: &str) -> bool {
    clean_path(out, job_id).exists()
}

/// Every pair of a ROAR+ listing as one chunk (samples that fail to load are left out).
fn all_pairs(ctx: &RunContext, ck: &Checkpoint, job: &Job, listed: &[Listed]) -> Chunk {
    let all = Job {
        samples: (0..listed.len()).collect(),
        ..job.clone()
    };
    prepare_chunk(ctx.exp, ck, &all, listed)
}

/// The ROAR+ training pairs of a repeat.
fn roar_pairs(ctx: &RunContext, ck: &Checkpoint, job: &Job) -> Chunk {
    all_pairs(ctx, ck, job, &ctx.roar_listed[job.repeat])
}

/// ROAR+'s fixed validation pairs (empty without `val_n`).
fn roar_val_pairs(ctx: &RunContext, ck: &Checkpoint, job: &Job) -> Chunk {
    all_pairs(ctx, ck, job, &ctx.roar_val)
}

/// The training pairs, then the fixed validation pairs (if any) as the data's last `val`.
fn roar_data(ck: &Checkpoint, train: &Chunk, val: &Chunk) -> RoarData {
    let t = &ck.tokenizer;
    let all = || train.prepared.iter().chain(&val.prepared);
    RoarData {
        val: val.prepared.len(),
        pixels: Tensor::stack(
            &all()
                .map(|(p, _)| p.pixels.shallow_clone())
                .collect::<Vec<_>>(),
            0,
        ),
        ids: all().map(|(p, _)| p.encoded.ids.clone()).collect(),
        content: all()
            .map(|(p, _)| {
                p.encoded
                    .ids
                    .iter()
                    .map(|&i| Some(i) != t.start_id && i != t.end_id)
                    .collect()
            })
            .collect(),
        end_id: t.end_id,
        pad_id: t.pad_id,
        text_mask_id: t.pad_id,
    }
}

/// The clean losses of a repeat: cached JSON, or fine-tune now and cache (atomically).
fn clean_losses(ctx: &RunContext, ck: &Checkpoint, job: &Job) -> anyhow::Result<Vec<CleanLoss>> {
    let path = clean_path(ctx.out, &job.id);
    if path.exists() {
        let s = std::fs::read_to_string(&path)?;
        return serde_json::from_str(&s).with_context(|| format!("reading {}", path.display()));
    }
    let chunk = roar_pairs(ctx, ck, job);
    anyhow::ensure!(
        chunk.prepared.len() >= 5,
        "ROAR+: only {} training pairs loaded (need 5)",
        chunk.prepared.len()
    );
    let val = roar_val_pairs(ctx, ck, job);
    let clean = roar_clean(
        &|| copy_model(ck),
        &roar_data(ck, &chunk, &val),
        &roar_config(ctx, job.repeat),
    )?;
    std::fs::create_dir_all(path.parent().expect("maps dir"))?;
    crate::store::write_atomic(&path, serde_json::to_string_pretty(&clean)?.as_bytes())?;
    Ok(clean)
}

pub fn roar_clean_job(ctx: &RunContext, ck: &Checkpoint, job: &Job) -> anyhow::Result<()> {
    clean_losses(ctx, ck, job).map(|_| ())
}

/// ROAR+ rows of one method configuration and repeat: per modality and split, the score and the
/// two losses behind it (`roar_loss` clean / degraded).
pub fn roar_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    base: &Row,
) -> anyhow::Result<Vec<Row>> {
    let spec = ctx.exp.metrics.roar.as_ref().expect("roar spec");
    let method = Source::of(&job.cell).map_err(anyhow::Error::msg)?;
    let params = method.params();
    let listed = &ctx.roar_listed[job.repeat];
    let (mut prepared, mut atts): (Vec<_>, Vec<Attribution>) = (vec![], vec![]);
    let mut clean = None;
    let error_row = |m: &str, reason: String| -> Row {
        let b = Row {
            metric: "roar".into(),
            metric_variant: variant(spec.fraction),
            ..base.clone()
        };
        value_row(&b, &params, m, Err(reason))
    };
    let fail = |reason: String| -> Vec<Row> {
        spec.modalities
            .iter()
            .map(|m| error_row(m, reason.clone()))
            .collect()
    };
    for dep in &job.deps {
        match dep.kind {
            JobKind::RoarMaps => {
                // Another process may be computing it: wait for it rather than do it twice.
                let claim = ctx.claims.claim_when_missing(&dep.id, || {
                    crate::explain::maps_path(ctx.out, &dep.id).exists()
                })?;
                let chunk = prepare_chunk(ctx.exp, ck, dep, listed);
                if chunk.prepared.is_empty() {
                    continue;
                }
                let batch = batch_of(ck, &chunk.prepared);
                let maps = maps_of(ctx.out, ck, dep, &method, &chunk, &batch)?;
                if claim.is_some() {
                    ctx.claims.record(&dep.id, "roar-maps (on the spot)");
                }
                drop(claim);
                match maps {
                    Ok(a) => atts.extend(a),
                    Err(e) => return Ok(fail(format!("explaining the training pairs: {e}"))),
                }
                prepared.extend(chunk.prepared);
            }
            JobKind::RoarClean => {
                let claim = ctx
                    .claims
                    .claim_when_missing(&dep.id, || is_clean_done(ctx.out, &dep.id))?;
                clean = Some(clean_losses(ctx, ck, dep)?);
                if claim.is_some() {
                    ctx.claims.record(&dep.id, "roar-clean (on the spot)");
                }
            }
            _ => {}
        }
    }
    let clean = clean.context("ROAR+ job without its clean job")?;
    if prepared.len() < 5 {
        return Ok(fail(format!(
            "only {} training pairs explained",
            prepared.len()
        )));
    }
    let chunk = Chunk {
        prepared,
        failed: vec![],
    };
    let data = roar_data(ck, &chunk, &roar_val_pairs(ctx, ck, job));
    let cfg = roar_config(ctx, job.repeat);
    let mut rows = vec![];
    for m in &spec.modalities {
        let maps = if m == "image" {
            RoarMaps {
                image: Some(Tensor::stack(
                    &atts
                        .iter()
                        .map(|a| a.image.shallow_clone())
                        .collect::<Vec<_>>(),
                    0,
                )),
                text: None,
            }
        } else {
            RoarMaps {
                image: None,
                text: Some(atts.iter().map(|a| a.text.clone()).collect()),
            }
        };
        match roar_degraded(&|| copy_model(ck), &data, &maps, &cfg, &clean) {
            Err(e) => rows.push(error_row(m, e.to_string())),
            Ok(reps) => {
                for r in reps {
                    let score = if r.l_clean < m2ib_metrics::roar::MIN_CLEAN_LOSS {
                        Err(format!(
                            "clean validation loss {:.2e} is below the floor {}: the validation batches are too easy for the model, so the score's denominator is noise (raise val_batch_size or n)",
                            r.l_clean,
                            m2ib_metrics::roar::MIN_CLEAN_LOSS
                        ))
                    } else {
                        Ok(r.score)
                    };
                    let b = Row {
                        step: Some(r.repeat as i64),
                        seed: cfg.seed,
                        split_seed: r.split_seed,
                        ..base.clone()
                    };
                    for (metric, v, value) in [
                        ("roar", variant(spec.fraction), score),
                        ("roar_loss", "clean".to_string(), Ok(r.l_clean)),
                        ("roar_loss", "degraded".to_string(), Ok(r.l_degraded)),
                    ] {
                        let b = Row {
                            metric: metric.into(),
                            metric_variant: v,
                            ..b.clone()
                        };
                        rows.push(value_row(&b, &params, m, value));
                    }
                }
            }
        }
    }
    Ok(rows)
}

fn variant(fraction: f64) -> String {
    format!("top{}", (fraction * 100.0).round())
}

/// The randomisation steps' names, for the report's x axis (`maps/sanity-steps.json`).
pub fn sanity_steps_path(out: &Path) -> PathBuf {
    out.join("maps").join("sanity-steps.json")
}

/// Sanity rows of one chunk: per randomisation step and sample, Spearman (image, text) and SSIM
/// (image) against the cached maps; the noise floor (two method seeds, intact model) with no step.
pub fn sanity_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    base: &Row,
) -> anyhow::Result<Vec<Row>> {
    let source = Source::of(&job.cell).map_err(anyhow::Error::msg)?;
    let Source::Method(method) = &source else {
        anyhow::bail!("sanity jobs are for attribution methods, not calibration references");
    };
    let params = method.params();
    let dep = job
        .deps
        .first()
        .context("sanity job without its explain job")?;
    let chunk = prepare_chunk(ctx.exp, ck, dep, &ctx.listed[job.repeat]);
    let mut rows = vec![];
    let err_rows = |rows: &mut Vec<Row>, id: &str, seed: u64, e: &str| {
        for (m, v) in [
            ("image", "spearman"),
            ("image", "ssim"),
            ("text", "spearman"),
        ] {
            let b = Row {
                sample_id: Some(id.to_string()),
                metric: "sanity".into(),
                metric_variant: v.into(),
                seed,
                ..base.clone()
            };
            rows.push(value_row(&b, &params, m, Err(e.to_string())));
        }
    };
    for (id, seed, e) in &chunk.failed {
        err_rows(&mut rows, id, *seed, e);
    }
    if chunk.prepared.is_empty() {
        return Ok(rows);
    }
    let batch = batch_of(ck, &chunk.prepared);
    let claim = ctx.claims.claim_when_missing(&dep.id, || {
        crate::explain::maps_path(ctx.out, &dep.id).exists()
    })?;
    let original = maps_of(ctx.out, ck, dep, &source, &chunk, &batch)?;
    drop(claim);
    let original = match original {
        Ok(a) => a,
        Err(e) => {
            for (p, s) in &chunk.prepared {
                err_rows(&mut rows, &p.id, *s, &e);
            }
            return Ok(rows);
        }
    };
    let model = copy_model(ck)?;
    let names: Vec<String> = m2ib_clip::randomize::randomization_steps(&model)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let seed = split_seed(ctx.exp.seed ^ 0x5A17, job.repeat);
    let curve =
        match m2ib_metrics::sanity::sanity_against(&original, model, method.as_ref(), &batch, seed)
        {
            Ok(c) => c,
            Err(e) => {
                for (p, s) in &chunk.prepared {
                    err_rows(&mut rows, &p.id, *s, &e.to_string());
                }
                return Ok(rows);
            }
        };
    let steps_file = sanity_steps_path(ctx.out);
    if !steps_file.exists() {
        crate::store::write_atomic(&steps_file, serde_json::to_string(&names)?.as_bytes())?;
    }
    let push = |rows: &mut Vec<Row>,
                k: usize,
                step: Option<i64>,
                metric: &str,
                s: &m2ib_metrics::sanity::Similarity| {
        let (p, seed) = &chunk.prepared[k];
        for (m, v, x) in [
            ("image", "spearman", s.image_spearman),
            ("image", "ssim", s.image_ssim),
            ("text", "spearman", s.text_spearman),
        ] {
            let b = Row {
                sample_id: Some(p.id.clone()),
                metric: metric.into(),
                metric_variant: v.into(),
                step,
                seed: *seed,
                ..base.clone()
            };
            rows.push(value_row(&b, &params, m, Ok(x)));
        }
    };
    for (k, s) in curve.noise_floor.iter().enumerate() {
        push(&mut rows, k, None, "sanity_noise_floor", s);
    }
    for (i, step) in curve.steps.iter().enumerate() {
        for (k, s) in step.similarity.iter().enumerate() {
            push(&mut rows, k, Some(i as i64), "sanity", s);
        }
    }
    Ok(rows)
}
