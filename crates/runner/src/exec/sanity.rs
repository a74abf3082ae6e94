//! Sanity jobs: cascading randomisation of the model (Adebayo et al.), each step's maps of one
//! chunk against the explain job's cached maps; the noise floor is two method seeds on the
//! intact model.
use crate::cache::{maps_of, Source};
use crate::context::RunContext;
use crate::plan::Job;
use crate::rows::{value_row, Row};
use crate::rundir::write_atomic;
use crate::samples::{batch_of, prepare_chunk};
use crate::seeds::sanity_seed;
use anyhow::Context;
use m2ib_clip::Checkpoint;

/// Sanity rows of one chunk: per randomisation step and sample, Spearman (image, text) and SSIM
/// (image) against the cached maps; the noise floor (two method seeds, intact model) with no step.
pub fn sanity_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    source: &Source,
    base: &Row,
) -> anyhow::Result<Vec<Row>> {
    let Source::Method(method) = source else {
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
    let claim = ctx
        .claims
        .claim_when_missing(&dep.id, || ctx.dir.maps(&dep.id).exists())?;
    let original = maps_of(&ctx.dir, ck, dep, source, &chunk, &batch)?;
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
    let model = ck.model.try_clone()?;
    let names: Vec<String> = m2ib_clip::randomize::randomization_steps(&model)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let seed = sanity_seed(ctx.exp.seed, job.repeat);
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
    let steps_file = ctx.dir.sanity_steps();
    if !steps_file.exists() {
        write_atomic(&steps_file, serde_json::to_string(&names)?.as_bytes())?;
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
