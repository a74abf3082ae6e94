//! One function per job kind, each turning a job into rows (or cache files); `run_job` picks it
//! and writes the job's Parquet part.
pub mod explain;
pub mod roar;
pub mod sanity;

use crate::cache::Source;
use crate::context::RunContext;
use crate::plan::{Job, JobKind};
use crate::rows::job_row;
use crate::seeds::canonical;
use crate::store::write_part;
use anyhow::Context;
use m2ib_clip::Checkpoint;
use std::time::Instant;

/// One job on one worker's checkpoint; returns the number of failed samples.
pub fn run_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    device_name: &str,
    threads: i32,
) -> anyhow::Result<usize> {
    let t0 = Instant::now();
    if job.kind == JobKind::RoarClean {
        // Caches the clean losses; no rows.
        roar::roar_clean_job(ctx, ck, job)?;
        return Ok(0);
    }
    // The cell's source, built once for the job.
    let source = Source::of(&job.cell).map_err(anyhow::Error::msg)?;
    let params = canonical(&source.params());
    let base = job_row(ctx.exp, job, params, device_name, threads, &ctx.git);
    let (mut rows, failed) = match job.kind {
        JobKind::Explain => explain::explain_job(ctx, ck, job, &source, &base)?,
        JobKind::RoarMaps => return roar::roar_maps_job(ctx, ck, job, &source),
        JobKind::Roar => (roar::roar_job(ctx, ck, job, &source, &base)?, 0),
        JobKind::Sanity => (sanity::sanity_job(ctx, ck, job, &source, &base)?, 0),
        JobKind::RoarClean => unreachable!("handled above"),
    };
    let wall = t0.elapsed().as_secs_f64() * 1000.0 / rows.len().max(1) as f64;
    for r in &mut rows {
        r.wall_ms = wall;
    }
    write_part(&ctx.dir, &job.id, &rows)
        .with_context(|| format!("writing the part of job {}", job.id))?;
    Ok(failed)
}
