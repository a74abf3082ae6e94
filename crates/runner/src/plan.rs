//! An experiment resolved against its model and expanded into jobs (DESIGN.md "Runner and
//! results"). job_id = hash(weights, dataset + subset, method, canonical params, metric options,
//! repeat, chunk): device and git revision are not in it.
use crate::experiment::{Cell, DatasetSpec, Experiment, ImageTarget, Reader, RoarSpec};
use crate::seeds::{canonical, id_of};
use anyhow::Context;
use m2ib_clip::ClipConfig;
use std::path::Path;

/// What a job does. Explain jobs, the ROAR+ map jobs and the shared clean ROAR+ fine-tunings run
/// first; sanity and then the per-method ROAR+ scores depend on their cached outputs.
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
    /// Jobs of a phase wait for every earlier phase. The clean ROAR+ fine-tunings need nothing,
    /// so they run beside the explain jobs (in phase 1 one worker did them while the others
    /// waited).
    pub fn phase(&self) -> usize {
        match self {
            JobKind::Explain | JobKind::RoarMaps | JobKind::RoarClean => 0,
            JobKind::Sanity => 1,
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

fn dataset_key(d: &DatasetSpec) -> String {
    format!(
        "{}:{}:{}:{}:{}:{:?}",
        d.reader.name(),
        d.split,
        d.n,
        d.seed,
        d.absent,
        d.file
    )
}

fn chunks(n: usize, size: usize) -> Vec<Vec<usize>> {
    (0..n)
        .step_by(size)
        .map(|s| (s..(s + size).min(n)).collect())
        .collect()
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
    if exp.metrics.image_confidence != [m2ib_metrics::metric::ImageProtocol::WholeMap] {
        metrics["image_confidence"] = serde_json::json!(exp.metrics.image_confidence);
    }
    // Only where it changes a value (image perturbations scored on captions naming an absent
    // object), so that other ids stay.
    let (d, m) = (&exp.dataset, &exp.metrics);
    if m.image_target == ImageTarget::Present
        && m.perturbs_images()
        && d.reader == Reader::Shapes
        && d.absent
    {
        metrics["image_target"] = serde_json::json!(exp.metrics.image_target);
    }
    let dataset = dataset_key(&exp.dataset);
    let mut out = vec![];
    let clean_cell = Cell::new("clean", serde_json::json!({}));
    for repeat in 0..exp.repeats {
        let r = repeat.to_string();
        let roar = exp
            .metrics
            .roar
            .as_ref()
            .filter(|spec| spec.runs_on(repeat, exp.repeats))
            .map(|spec| {
                let ds = dataset_key(&spec.dataset(&exp.dataset));
                // `repeats` says which jobs exist, not what one computes: not part of the ids.
                let spec_key = canonical(
                    &serde_json::to_value(RoarSpec {
                        repeats: None,
                        ..spec.clone()
                    })
                    .expect("json"),
                );
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

/// The first 16 hex digits of the weights file's sha1 (part of every job id).
fn weights_hash(dir: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(dir.join("model.safetensors"))
        .with_context(|| format!("reading {}/model.safetensors", dir.display()))?;
    Ok(sha1_smol::Sha1::from(&bytes).digest().to_string()[..16].to_string())
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
    crate::validate::validate_layers(&exp, &source, &file, &config, &defaults.origin)?;
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

impl Plan {
    /// `m2ib run --dry-run`: the job counts and one line per job of this shard.
    pub fn print_jobs(&self, mine: &[Job], done: usize) {
        let (exp, all) = (&self.exp, &self.jobs);
        let explain = all.iter().filter(|j| j.kind == JobKind::Explain).count();
        println!(
            "{} jobs: {explain} explain ({} cells x {} repeats x {} chunks), {} dependent (ROAR+, sanity); {} in this shard, {} already done",
            all.len(),
            exp.cells().len(),
            exp.repeats,
            exp.dataset.n.div_ceil(exp.chunk_size),
            all.len() - explain,
            mine.len(),
            done
        );
        for j in mine {
            println!(
                "{}  {:<10} {:<12} repeat {} chunk {}  {}",
                j.id,
                j.kind.name(),
                j.cell.name(),
                j.repeat,
                j.chunk,
                canonical(&j.cell.params)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[metrics.roar] repeats = 1`: ROAR+ maps, clean and score jobs for the first repeat only;
    /// the explain jobs still cover every repeat.
    #[test]
    fn roar_runs_on_its_own_number_of_repeats() {
        let src = "name = \"t\"\nrepeats = 3\nchunk_size = 4\n[model]\nname = \"m\"\npath = \"x\"\n[dataset]\nreader = \"shapes\"\nn = 4\n[methods.saliency]\n[metrics]\ncalibration = []\n[metrics.roar]\nn = 8\nval_n = 16\nrepeats = 1\nsplits = 5\n";
        let exp = Experiment::parse(src, "t.toml").unwrap();
        let all = jobs(&exp, "w", 4);
        let count = |k: JobKind| all.iter().filter(|j| j.kind == k).count();
        let repeats = |k: JobKind| {
            let mut r: Vec<usize> = all
                .iter()
                .filter(|j| j.kind == k)
                .map(|j| j.repeat)
                .collect();
            r.dedup();
            r
        };
        assert_eq!(repeats(JobKind::Roar), [0]);
        assert_eq!(repeats(JobKind::RoarClean), [0]);
        assert_eq!(repeats(JobKind::RoarMaps), [0]);
        assert_eq!(count(JobKind::RoarMaps), 2, "8 pairs in chunks of 4");
        assert_eq!(repeats(JobKind::Explain), [0, 1, 2]);
        let without = Experiment::parse(&src.replace("repeats = 1\n", ""), "t.toml").unwrap();
        let all = jobs(&without, "w", 4);
        assert_eq!(all.iter().filter(|j| j.kind == JobKind::Roar).count(), 3);
    }

    /// `metrics.image_target` enters the ids only where it changes a value: shapes captions that
    /// name an absent object, scored against their true part.
    #[test]
    fn image_target_changes_ids_only_where_it_changes_values() {
        let ids_of = |absent: bool, metrics: &str, target: &str| {
            let src = format!("name = \"t\"\n[model]\nname = \"m\"\npath = \"x\"\n[dataset]\nreader = \"shapes\"\nn = 4\nabsent = {absent}\n[methods.saliency]\n[metrics]\n{metrics}\n{target}");
            let exp = Experiment::parse(&src, "t.toml").unwrap();
            jobs(&exp, "w", 4)
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        };
        let ids =
            |absent: bool, target: &str| ids_of(absent, "confidence = [\"official\"]", target);
        let caption = "image_target = \"caption\"\n";
        let present = "image_target = \"present\"\n";
        assert_eq!(ids(false, ""), ids(false, caption));
        assert_eq!(ids(false, ""), ids(false, present));
        assert_eq!(ids(true, ""), ids(true, present), "present is the default");
        assert_ne!(ids(true, ""), ids(true, caption));
        assert_ne!(
            ids(true, caption),
            ids(false, caption),
            "the dataset is in the id"
        );
        let no_perturbation = |target: &str| ids_of(true, "localization = [\"value\"]", target);
        assert_eq!(no_perturbation(""), no_perturbation(caption));
    }
}
