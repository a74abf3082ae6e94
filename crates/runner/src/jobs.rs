//! Seeds and job ids (DESIGN.md "Runner and results"). sample_seed = f(experiment seed, sample
//! id, repeat, method): hyper-parameters are NOT in it, so the cells of a grid share noise.
//! job_id = hash(weights, dataset + subset, method, canonical params, metric options, repeat,
//! chunk): device and git revision are not in it.
use crate::experiment::{Cell, Experiment};
use serde_json::Value;

/// 64 bits of sha1 over the parts joined by a separator.
pub fn hash64(parts: &[&str]) -> u64 {
    let d = sha1_smol::Sha1::from(parts.join("\u{1f}")).digest().bytes();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

pub fn sample_seed(experiment_seed: u64, sample_id: &str, repeat: usize, method: &str) -> u64 {
    hash64(&[
        &experiment_seed.to_string(),
        sample_id,
        &repeat.to_string(),
        method,
    ])
}

/// The subset seed of a repeat (a new subset per repeat).
pub fn split_seed(dataset_seed: u64, repeat: usize) -> u64 {
    hash64(&["subset", &dataset_seed.to_string(), &repeat.to_string()])
}

/// JSON with sorted keys (serde_json's map is sorted), so equal params hash equally.
pub fn canonical(v: &Value) -> String {
    serde_json::to_string(v).expect("json")
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: String,
    pub cell: Cell,
    pub repeat: usize,
    pub chunk: usize,
    /// Sample indices (into the repeat's subset) of this chunk.
    pub samples: Vec<usize>,
}

/// Every job of the experiment: cells x repeats x chunks.
pub fn jobs(exp: &Experiment, weights_hash: &str, n_samples: usize) -> Vec<Job> {
    let metrics = serde_json::json!({
        "localization": exp.metrics.localization, "text_localization": exp.metrics.text_localization,
        "confidence": exp.metrics.confidence,
    });
    let d = &exp.dataset;
    let dataset = format!(
        "{}:{}:{}:{}:{}:{:?}",
        d.reader, d.split, d.n, d.seed, d.absent, d.file
    );
    let mut out = vec![];
    for cell in exp.cells() {
        for repeat in 0..exp.repeats {
            for (chunk, start) in (0..n_samples).step_by(exp.chunk_size).enumerate() {
                let samples: Vec<usize> =
                    (start..(start + exp.chunk_size).min(n_samples)).collect();
                let id = hash64(&[
                    weights_hash,
                    &dataset,
                    &cell.method,
                    &canonical(&cell.params),
                    &canonical(&metrics),
                    &repeat.to_string(),
                    &chunk.to_string(),
                ]);
                out.push(Job {
                    id: format!("{id:016x}"),
                    cell: cell.clone(),
                    repeat,
                    chunk,
                    samples,
                });
            }
        }
    }
    out
}

/// `--shard k/n`: the jobs whose id hash falls in slice k.
pub fn in_shard(job: &Job, shard: (u64, u64)) -> bool {
    u64::from_str_radix(&job.id, 16)
        .map(|h| h % shard.1 == shard.0)
        .unwrap_or(false)
}

pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("--shard {s:?}: expected k/n"))?;
    let (k, n): (u64, u64) = (
        k.parse().map_err(|_| format!("--shard {s:?}: k"))?,
        n.parse().map_err(|_| format!("--shard {s:?}: n"))?,
    );
    if n == 0 || k >= n {
        return Err(format!("--shard {s:?}: need 0 <= k < n"));
    }
    Ok((k, n))
}
