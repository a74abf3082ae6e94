//! The map cache: a job's raw maps in `maps/<job>.safetensors`, read back when an earlier run (or
//! shard, or a dependent job) made them, otherwise computed from the cell's source and written
//! atomically. Sources are attribution methods or calibration references (oracle, random).
use crate::experiment::{method_from_cell, Cell};
use crate::plan::Job;
use crate::rundir::{temp_beside, RunDir};
use crate::samples::Chunk;
use anyhow::Context;
use m2ib_attribution::{Attribution, Attributor, Batch};
use m2ib_clip::Checkpoint;
use m2ib_metrics::calibration::{self, Reference};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// `maps/<job_id>.safetensors`: each sample's raw image map and token scores, written atomically.
fn write_maps(
    dir: &RunDir,
    job_id: &str,
    chunk: &Chunk,
    atts: &[Attribution],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.maps_dir())?;
    let mut named = vec![];
    for ((p, _), a) in chunk.prepared.iter().zip(atts) {
        named.push((format!("{}.image", p.id), a.image.shallow_clone()));
        named.push((format!("{}.text", p.id), Tensor::from_slice(&a.text)));
    }
    let tmp = temp_beside(&dir.maps(job_id));
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, dir.maps(job_id))?;
    Ok(())
}

fn read_maps(
    path: &Path,
    chunk: &Chunk,
    batch: &Batch,
    params: &Value,
) -> anyhow::Result<Vec<Attribution>> {
    let named: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("reading the map cache {}", path.display()))?
        .into_iter()
        .collect();
    chunk
        .prepared
        .iter()
        .enumerate()
        .map(|(k, (p, _))| {
            let get = |suffix: &str| {
                named.get(&format!("{}.{suffix}", p.id)).with_context(|| {
                    format!("{}: no {suffix} map for sample {}", path.display(), p.id)
                })
            };
            Ok(Attribution {
                image: get("image")?.shallow_clone(),
                text: Vec::<f32>::try_from(get("text")?)?,
                content: batch.content[k].clone(),
                params: params.clone(),
            })
        })
        .collect()
}

/// Where a cell's maps come from: an attribution method, or a calibration reference (oracle,
/// random) made from the sample's ground truth or a seed — never a method: not in sanity jobs,
/// `--method all`, bench or selection.
pub enum Source {
    Method(Box<dyn Attributor>),
    Reference(Reference),
}

impl Source {
    pub fn of(cell: &Cell) -> Result<Source, String> {
        match Reference::from_name(&cell.method) {
            Some(r) => Ok(Source::Reference(r)),
            None => method_from_cell(cell).map(Source::Method),
        }
    }

    pub fn params(&self) -> Value {
        match self {
            Source::Method(m) => m.params(),
            Source::Reference(_) => Value::Object(Default::default()),
        }
    }

    /// One attribution per prepared sample; a reference that lacks ground truth for a sample
    /// fails the chunk (shapes samples always have it).
    pub fn attribute(
        &self,
        ck: &Checkpoint,
        chunk: &Chunk,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, String> {
        let r = match self {
            Source::Method(m) => return m.attribute(&ck.model, batch).map_err(|e| e.to_string()),
            Source::Reference(r) => *r,
        };
        chunk
            .prepared
            .iter()
            .enumerate()
            .map(|(k, (p, seed))| {
                let (h, w) = (p.pixels.size()[1] as usize, p.pixels.size()[2] as usize);
                let image = calibration::image_map(r, h, w, p.boxes.as_deref(), *seed)
                    .map_err(|e| e.to_string())?;
                let text =
                    calibration::text_scores(r, p.encoded.ids.len(), p.present.as_deref(), *seed)
                        .map_err(|e| e.to_string())?;
                Ok(Attribution {
                    image: Tensor::from_slice(&image).view([h as i64, w as i64]),
                    text,
                    content: batch.content[k].clone(),
                    params: self.params(),
                })
            })
            .collect()
    }
}

/// The job's maps: from the cache when an earlier run (or shard) made them, otherwise computed
/// now and cached. `Err` of the inner result: the method failed for the whole chunk.
pub fn maps_of(
    dir: &RunDir,
    ck: &Checkpoint,
    job: &Job,
    source: &Source,
    chunk: &Chunk,
    batch: &Batch,
) -> anyhow::Result<Result<Vec<Attribution>, String>> {
    let path = dir.maps(&job.id);
    if path.exists() {
        return Ok(Ok(read_maps(&path, chunk, batch, &source.params())?));
    }
    match source.attribute(ck, chunk, batch) {
        Err(e) => Ok(Err(e)),
        Ok(atts) => {
            write_maps(dir, &job.id, chunk, &atts)?;
            Ok(Ok(atts))
        }
    }
}
