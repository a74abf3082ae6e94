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

/// What a job does. Explain jobs and the ROAR+ map jobs run first; sanity, the shared clean
/// ROAR+ fine-tuning and then the per-method ROAR+ scores depend on their cached outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Explain a chunk of samples, cache the maps, compute the per-sample metrics.
    Explain,
    /// Explain a chunk of the ROAR+ training pairs (maps only).
    RoarMaps,
    /// The clean fine-tuning of a repeat (shared by every method).
    RoarClean,
    /// ROAR+ scores of one method configuration and repeat.
    Roar,
    /// Cascading randomisation of one chunk against its explain job's maps.
    Sanity,
}

impl JobKind {
    pub fn phase(&self) -> usize {
        match self {
            JobKind::Explain | JobKind::RoarMaps => 0,
            JobKind::Sanity | JobKind::RoarClean => 1,
            JobKind::Roar => 2,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Explain => "explain",
            JobKind::RoarMaps => "roar-maps",
            JobKind::RoarClean => "roar-clean",
            JobKind::Roar => "roar",
            JobKind::Sanity => "sanity",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub cell: Cell,
    pub repeat: usize,
    pub chunk: usize,
    /// Sample indices (into the repeat's subset, or the ROAR+ pairs) of this chunk.
    pub samples: Vec<usize>,
    /// Jobs whose cached output this one reads (computed on the spot when missing, e.g. in
    /// another shard).
    pub deps: Vec<Job>,
}

fn dataset_key(d: &crate::experiment::DatasetSpec) -> String {
    format!(
        "{}:{}:{}:{}:{}:{:?}",
        d.reader, d.split, d.n, d.seed, d.absent, d.file
    )
}

fn chunks(n: usize, size: usize) -> Vec<Vec<usize>> {
    (0..n)
        .step_by(size)
        .map(|s| (s..(s + size).min(n)).collect())
        .collect()
}

fn id_of(parts: &[&str]) -> String {
    format!("{:016x}", hash64(parts))
}

/// Every job of the experiment: cells x repeats x chunks, plus the dependent ROAR+ and sanity
/// jobs when the metrics ask for them.
pub fn jobs(exp: &Experiment, weights_hash: &str, n_samples: usize) -> Vec<Job> {
    let mut metrics = serde_json::json!({
        "localization": exp.metrics.localization, "text_localization": exp.metrics.text_localization,
        "confidence": exp.metrics.confidence,
    });
    // Only when asked for, so that the ids of experiments without it stay as they were.
    if exp.metrics.intervention {
        metrics["intervention"] = true.into();
    }
    if exp.metrics.image_confidence != ["whole-map"] {
        metrics["image_confidence"] = serde_json::json!(exp.metrics.image_confidence);
    }
    let dataset = dataset_key(&exp.dataset);
    let mut out = vec![];
    let clean_cell = Cell::new("clean", serde_json::json!({}));
    for repeat in 0..exp.repeats {
        let r = repeat.to_string();
        let roar = exp.metrics.roar.as_ref().map(|spec| {
            let ds = dataset_key(&spec.dataset(&exp.dataset));
            let spec_key = canonical(&serde_json::to_value(spec).expect("json"));
            let clean = Job {
                id: id_of(&[weights_hash, &ds, &spec_key, "roar-clean", &r]),
                kind: JobKind::RoarClean,
                cell: clean_cell.clone(),
                repeat,
                chunk: 0,
                samples: (0..spec.n).collect(),
                deps: vec![],
            };
            (ds, spec_key, clean, chunks(spec.n, exp.chunk_size))
        });
        if let Some((_, _, clean, _)) = &roar {
            out.push(clean.clone());
        }
        for cell in exp.cells() {
            let params = canonical(&cell.params);
            for (chunk, samples) in chunks(n_samples, exp.chunk_size).into_iter().enumerate() {
                let c = chunk.to_string();
                let explain = Job {
                    id: id_of(&[
                        weights_hash,
                        &dataset,
                        &cell.id_key(),
                        &params,
                        &canonical(&metrics),
                        &r,
                        &c,
                    ]),
                    kind: JobKind::Explain,
                    cell: cell.clone(),
                    repeat,
                    chunk,
                    samples,
                    deps: vec![],
                };
                let reference =
                    m2ib_metrics::calibration::Reference::from_name(&cell.method).is_some();
                if exp.metrics.sanity && !reference {
                    out.push(Job {
                        id: id_of(&[
                            weights_hash,
                            &dataset,
                            &cell.id_key(),
                            &params,
                            "sanity",
                            &r,
                            &c,
                        ]),
                        kind: JobKind::Sanity,
                        deps: vec![explain.clone()],
                        ..explain.clone()
                    });
                }
                out.push(explain);
            }
            if let Some((ds, spec_key, clean, roar_chunks)) = &roar {
                let maps: Vec<Job> = roar_chunks
                    .iter()
                    .enumerate()
                    .map(|(chunk, samples)| Job {
                        id: id_of(&[
                            weights_hash,
                            ds,
                            &cell.id_key(),
                            &params,
                            "roar-maps",
                            &r,
                            &chunk.to_string(),
                        ]),
                        kind: JobKind::RoarMaps,
                        cell: cell.clone(),
                        repeat,
                        chunk,
                        samples: samples.clone(),
                        deps: vec![],
                    })
                    .collect();
                out.extend(maps.iter().cloned());
                let mut deps = maps;
                deps.push(clean.clone());
                out.push(Job {
                    id: id_of(&[
                        weights_hash,
                        ds,
                        &cell.id_key(),
                        &params,
                        spec_key,
                        "roar",
                        &r,
                    ]),
                    kind: JobKind::Roar,
                    cell: cell.clone(),
                    repeat,
                    chunk: 0,
                    samples: vec![],
                    deps,
                });
            }
        }
    }
    out.sort_by_key(|j| j.kind.phase());
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
