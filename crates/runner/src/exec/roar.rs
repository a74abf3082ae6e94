//! ROAR+ jobs (DESIGN.md "Runner and results"): a method's maps of the training pairs (cached),
//! the shared clean fine-tunings of a repeat (cached), then one score per method configuration
//! and repeat. A dependency missing from the cache (another shard's job) is computed on the spot.
use crate::cache::{maps_of, Source};
use crate::context::RunContext;
use crate::plan::{Job, JobKind};
use crate::rows::{value_row, Row};
use crate::rundir::write_atomic;
use crate::samples::{batch_of, prepare_chunk, Chunk, Listed};
use crate::seeds::roar_seed;
use anyhow::Context;
use m2ib_attribution::perturb::content_of;
use m2ib_attribution::{Attribution, Modality};
use m2ib_clip::Checkpoint;
use m2ib_metrics::roar::{roar_clean, roar_degraded, CleanLoss, RoarConfig, RoarData, RoarMaps};
use tch::Tensor;

/// A chunk of ROAR+ training pairs explained and cached (maps only; the ROAR+ job scores them).
/// Returns the number of pairs that failed to load.
pub fn roar_maps_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    source: &Source,
) -> anyhow::Result<usize> {
    let chunk = prepare_chunk(ctx.exp, ck, job, &ctx.roar_listed[job.repeat]);
    if !chunk.prepared.is_empty() {
        let batch = batch_of(ck, &chunk.prepared);
        if let Err(e) = maps_of(&ctx.dir, ck, job, source, &chunk, &batch)? {
            // The ROAR+ job reports it (computing again finds the same failure).
            eprintln!("roar maps of job {}: {e}", job.id);
        }
    }
    Ok(chunk.failed.len())
}

fn roar_config(ctx: &RunContext, repeat: usize) -> RoarConfig {
    let spec = ctx
        .exp
        .metrics
        .roar
        .as_ref()
        .expect("roar jobs need [metrics.roar]");
    spec.config(roar_seed(ctx.exp.seed, repeat))
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
            .map(|(p, _)| content_of(&p.encoded.ids, t.start_id, t.end_id))
            .collect(),
        end_id: t.end_id,
        pad_id: t.pad_id,
        text_mask_id: t.pad_id,
    }
}

/// The clean losses of a repeat: cached JSON, or fine-tune now and cache (atomically).
fn clean_losses(ctx: &RunContext, ck: &Checkpoint, job: &Job) -> anyhow::Result<Vec<CleanLoss>> {
    let path = ctx.dir.clean_losses(&job.id);
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
        &|| Ok(ck.model.try_clone()?),
        &roar_data(ck, &chunk, &val),
        &roar_config(ctx, job.repeat),
    )?;
    std::fs::create_dir_all(ctx.dir.maps_dir())?;
    write_atomic(&path, serde_json::to_string_pretty(&clean)?.as_bytes())?;
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
    method: &Source,
    base: &Row,
) -> anyhow::Result<Vec<Row>> {
    let spec = ctx.exp.metrics.roar.as_ref().expect("roar spec");
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
            .map(|m| error_row(m.name(), reason.clone()))
            .collect()
    };
    for dep in &job.deps {
        match dep.kind {
            JobKind::RoarMaps => {
                // Another process may be computing it: wait for it rather than do it twice.
                let claim = ctx
                    .claims
                    .claim_when_missing(&dep.id, || ctx.dir.maps(&dep.id).exists())?;
                let chunk = prepare_chunk(ctx.exp, ck, dep, listed);
                if chunk.prepared.is_empty() {
                    continue;
                }
                let batch = batch_of(ck, &chunk.prepared);
                let maps = maps_of(&ctx.dir, ck, dep, method, &chunk, &batch)?;
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
                    .claim_when_missing(&dep.id, || ctx.dir.clean_losses(&dep.id).exists())?;
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
    for &m in &spec.modalities {
        let maps = if m == Modality::Image {
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
        match roar_degraded(&|| Ok(ck.model.try_clone()?), &data, &maps, &cfg, &clean) {
            Err(e) => rows.push(error_row(m.name(), e.to_string())),
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
                        step: Some(r.split as i64),
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
                        rows.push(value_row(&b, &params, m.name(), value));
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
