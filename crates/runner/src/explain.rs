//! Explain jobs: prepare a chunk of samples (decoding and preprocessing in parallel with rayon),
//! get their maps from the map cache or compute and cache them atomically, then score the
//! per-sample metrics (localization, confidence drop / increase) from those maps.
use crate::experiment::{method_from_cell, Cell, Experiment};
use crate::jobs::{sample_seed, Job};
use crate::run::RunContext;
use crate::samples::{prepare_cpu, sample_id, Listed, Prepared, PreparedCpu};
use crate::store::Row;
use anyhow::Context;
use m2ib_attribution::{normalize_image, normalize_text, Attribution, Attributor, Batch};
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::Checkpoint;
use m2ib_metrics::calibration::{self, Reference};
use m2ib_metrics::confidence::{image_change, keep_top, text_change, TextProtocol};
use m2ib_metrics::intervention;
use m2ib_metrics::localization::{iou, text_auroc, Threshold};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// A chunk's samples that loaded (with their seeds) and those that did not (id, seed, reason).
pub struct Chunk {
    pub prepared: Vec<(Prepared, u64)>,
    pub failed: Vec<(String, u64, String)>,
}

/// Decodes, preprocesses and tokenizes the job's samples; CPU work in parallel.
pub fn prepare_chunk(exp: &Experiment, ck: &Checkpoint, job: &Job, listed: &[Listed]) -> Chunk {
    let (pre, tok) = (&ck.preprocessor, &ck.tokenizer);
    let interventions = exp.metrics.intervention && job.kind == crate::jobs::JobKind::Explain;
    let results: Vec<(String, u64, Result<PreparedCpu, String>)> = job
        .samples
        .par_iter()
        .map(|&i| {
            let l = &listed[i];
            let id = sample_id(l).to_string();
            let seed = sample_seed(exp.seed, &id, job.repeat, &job.cell.method);
            let p = l
                .as_ref()
                .map_err(|e| e.1.clone())
                .and_then(|s| prepare_cpu(pre, tok, s, interventions));
            (id, seed, p)
        })
        .collect();
    let mut chunk = Chunk {
        prepared: vec![],
        failed: vec![],
    };
    for (id, seed, p) in results {
        match p {
            Ok(p) => chunk.prepared.push((p.finish(pre), seed)),
            Err(e) => chunk.failed.push((id, seed, e)),
        }
    }
    chunk
}

pub fn batch_of(ck: &Checkpoint, prepared: &[(Prepared, u64)]) -> Batch {
    let px: Vec<Tensor> = prepared
        .iter()
        .map(|(p, _)| p.pixels.shallow_clone())
        .collect();
    let enc: Vec<_> = prepared.iter().map(|(p, _)| p.encoded.clone()).collect();
    Batch::new(ck, &px, &enc, prepared.iter().map(|(_, s)| *s).collect())
}

pub fn maps_path(out: &Path, job_id: &str) -> PathBuf {
    out.join("maps").join(format!("{job_id}.safetensors"))
}

/// `maps/<job_id>.safetensors`: each sample's raw image map and token scores, written atomically.
fn write_maps(out: &Path, job_id: &str, chunk: &Chunk, atts: &[Attribution]) -> anyhow::Result<()> {
    let dir = out.join("maps");
    std::fs::create_dir_all(&dir)?;
    let mut named = vec![];
    for ((p, _), a) in chunk.prepared.iter().zip(atts) {
        named.push((format!("{}.image", p.id), a.image.shallow_clone()));
        named.push((format!("{}.text", p.id), Tensor::from_slice(&a.text)));
    }
    let tmp = crate::store::temp_beside(&maps_path(out, job_id));
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, maps_path(out, job_id))?;
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
    out: &Path,
    ck: &Checkpoint,
    job: &Job,
    source: &Source,
    chunk: &Chunk,
    batch: &Batch,
) -> anyhow::Result<Result<Vec<Attribution>, String>> {
    let path = maps_path(out, &job.id);
    if path.exists() {
        return Ok(Ok(read_maps(&path, chunk, batch, &source.params())?));
    }
    match source.attribute(ck, chunk, batch) {
        Err(e) => Ok(Err(e)),
        Ok(atts) => {
            write_maps(out, &job.id, chunk, &atts)?;
            Ok(Ok(atts))
        }
    }
}

/// Per-row fields of the method's resolved parameters for one modality.
pub fn hyper(params: &Value, modality: &str) -> (Option<String>, Option<f64>, Option<f64>) {
    let p = params.get(modality).unwrap_or(params);
    let layer = p
        .get("layer")
        .or_else(|| params.get(format!("{modality}_layer")))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => n.as_i64().map(|l| l.to_string()),
            _ => None,
        });
    (
        layer,
        p.get("beta").and_then(Value::as_f64),
        p.get("sigma").and_then(Value::as_f64),
    )
}

/// A metric value or the reason it has none; non-finite values become errors (never averaged).
pub fn value_row(base: &Row, params: &Value, modality: &str, v: Result<f64, String>) -> Row {
    let (layer, beta, sigma) = hyper(params, modality);
    let (value, error) = match v {
        Ok(v) if v.is_finite() => (Some(v), None),
        Ok(v) => (None, Some(format!("non-finite value {v}"))),
        Err(e) => (None, Some(e)),
    };
    Row {
        modality: modality.to_string(),
        layer,
        beta,
        sigma,
        var: sigma.map(|s| s * s),
        value,
        error,
        ..base.clone()
    }
}

/// The image confidence variant that keeps only the map's top 25 % of pixels.
pub const KEEP_TOP25: &str = "keep-top25";

/// The (modality, metric, variant) triples an explain job scores.
fn metric_list(exp: &Experiment) -> Vec<(&'static str, &'static str, String)> {
    let mut m = vec![];
    for mode in &exp.metrics.localization {
        m.push(("image", "localization_iou", mode.clone()));
    }
    if exp.metrics.text_localization {
        m.push(("text", "localization_auroc", "content".into()));
    }
    if !exp.metrics.confidence.is_empty() {
        for v in &exp.metrics.image_confidence {
            m.push(("image", "drop", v.clone()));
            m.push(("image", "increase", v.clone()));
        }
    }
    for p in &exp.metrics.confidence {
        m.push(("text", "drop", p.clone()));
        m.push(("text", "increase", p.clone()));
    }
    if exp.metrics.intervention {
        m.push(("image", "intervention", "spearman".into()));
        m.push(("text", "intervention", "spearman".into()));
    }
    m
}

/// Rows of one explain job; also returns the number of samples that failed.
pub fn explain_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    base: &Row,
) -> anyhow::Result<(Vec<Row>, usize)> {
    let exp = ctx.exp;
    let method = Source::of(&job.cell).map_err(anyhow::Error::msg)?;
    let metrics = metric_list(exp);
    let chunk = prepare_chunk(exp, ck, job, &ctx.listed[job.repeat]);
    let mut rows = vec![];
    let error_rows = |rows: &mut Vec<Row>, id: &str, seed: u64, err: &str| {
        for (modality, metric, variant) in &metrics {
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
    for (id, seed, e) in &chunk.failed {
        error_rows(&mut rows, id, *seed, e);
    }
    let mut failed = chunk.failed.len();
    if chunk.prepared.is_empty() {
        return Ok((rows, failed));
    }
    let batch = batch_of(ck, &chunk.prepared);
    let atts = match maps_of(ctx.out, ck, job, &method, &chunk, &batch)? {
        Ok(a) => a,
        Err(e) => {
            for (p, s) in &chunk.prepared {
                error_rows(&mut rows, &p.id, *s, &e);
            }
            return Ok((rows, failed + chunk.prepared.len()));
        }
    };
    let (img_e, txt_e) = tch::no_grad(|| {
        (
            ck.model.image_features(&batch.pixels),
            ck.model.text_features(&batch.text),
        )
    });
    for (k, ((p, seed), a)) in chunk.prepared.iter().zip(&atts).enumerate() {
        let mut sample_rows = vec![];
        let r = sample_metrics(
            ck,
            p,
            a,
            &batch,
            k,
            &img_e,
            &txt_e,
            &metrics,
            &mut sample_rows,
        );
        if let Err(e) = r {
            error_rows(&mut rows, &p.id, *seed, &e);
            failed += 1;
            continue;
        }
        for (modality, metric, variant, value) in sample_rows {
            let b = Row {
                sample_id: Some(p.id.clone()),
                metric: metric.to_string(),
                metric_variant: variant,
                seed: *seed,
                ..base.clone()
            };
            rows.push(value_row(&b, &a.params, modality, value));
        }
    }
    Ok((rows, failed))
}

type MetricRow = (&'static str, &'static str, String, Result<f64, String>);

#[allow(clippy::too_many_arguments)]
fn sample_metrics(
    ck: &Checkpoint,

    p: &Prepared,
    a: &Attribution,
    batch: &Batch,
    k: usize,
    img_e: &Tensor,
    txt_e: &Tensor,
    metric_list: &[(&str, &str, String)],
    out: &mut Vec<MetricRow>,
) -> Result<(), String> {
    // Each modality is scored on its own: a degenerate map of one never removes the other's rows.
    let image = normalize_image(&a.image).map_err(|e| e.to_string());
    let text = normalize_text(&a.text, &a.content).map_err(|e| e.to_string());
    let flat: Result<(Vec<f32>, usize, usize), String> =
        image.as_ref().map_err(Clone::clone).and_then(|image| {
            let (h, w) = (image.size()[0] as usize, image.size()[1] as usize);
            let flat: Vec<f32> =
                Vec::try_from(image.flatten(0, -1)).map_err(|e: tch::TchError| e.to_string())?;
            Ok((flat, h, w))
        });
    let ids = &p.encoded.ids;
    let pool =
        i64::try_from(batch.text.pool_index.get(k as i64)).map_err(|e| e.to_string())? as usize;
    // Per image protocol: the whole normalised map multiplies the pixels (the paper), or only
    // its top 25 % of pixels are kept (`keep-top25`; README "Results on the embedded default").
    // One forward pass per variant serves both its drop and its increase row.
    let change_of = |variant: &str| -> Result<m2ib_metrics::confidence::Change, String> {
        let image = image.as_ref().map_err(Clone::clone)?;
        let map = if variant == KEEP_TOP25 {
            keep_top(image, 0.25).map_err(|e| e.to_string())?
        } else {
            image.shallow_clone()
        };
        image_change(&ck.model, &p.pixels, &map, &txt_e.get(k as i64)).map_err(|e| e.to_string())
    };
    let mut image_conf: HashMap<&str, Result<m2ib_metrics::confidence::Change, String>> =
        HashMap::new();
    for (modality, metric, variant) in metric_list {
        let v: Result<f64, String> = match (*modality, *metric) {
            ("image", _) if image.is_err() => {
                Err(image.as_ref().err().cloned().unwrap_or_default())
            }
            ("text", _) if text.is_err() => Err(text.as_ref().err().cloned().unwrap_or_default()),
            ("image", "localization_iou") => match &p.boxes {
                None => Err("sample has no boxes".into()),
                Some(b) => {
                    let (map, h, w) = flat.as_ref().expect("image map");
                    iou(
                        map,
                        *h,
                        *w,
                        b,
                        if variant == "percentile" {
                            Threshold::Percentile
                        } else {
                            Threshold::Value
                        },
                    )
                    .map_err(|e| e.to_string())
                }
            },
            ("text", "localization_auroc") => match &p.present {
                None => Err("sample has no token ground truth".into()),
                Some(present) => text_auroc(text.as_ref().expect("text map"), &a.content, present)
                    .map_err(|e| e.to_string()),
            },
            ("image", "intervention") => match &p.interventions {
                None => Err("sample has no interventions (shapes scenes only)".into()),
                Some(iv) => intervention::image_importance(
                    &ck.model,
                    &p.pixels,
                    &iv.images,
                    &txt_e.get(k as i64),
                )
                .and_then(|imp| {
                    let map = &flat.as_ref().expect("image map").0;
                    intervention::agreement(&imp, &intervention::masses(map, &iv.masks))
                })
                .map_err(|e| e.to_string()),
            },
            ("text", "intervention") => match &p.interventions {
                None => Err("sample has no interventions (shapes scenes only)".into()),
                Some(iv) if iv.captions.is_empty() => {
                    Err("the caption names one object: nothing to rank".into())
                }
                Some(iv) => {
                    let t = &ck.tokenizer;
                    let mut rows = vec![ids.clone()];
                    rows.extend(iv.captions.iter().cloned());
                    let input = text_input(&rows, t.pad_id, t.end_id, ck.pooling);
                    intervention::text_importance(&ck.model, &input, &img_e.get(k as i64))
                        .and_then(|imp| {
                            let scores = text.as_ref().expect("text map");
                            intervention::agreement(
                                &imp,
                                &intervention::token_masses(scores, &iv.phrase_tokens),
                            )
                        })
                        .map_err(|e| e.to_string())
                }
            },
            ("image", "drop" | "increase") => {
                let c = image_conf
                    .entry(variant.as_str())
                    .or_insert_with(|| change_of(variant))
                    .clone();
                c.map(|c| {
                    if *metric == "drop" {
                        c.drop()
                    } else {
                        c.increase()
                    }
                })
            }
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
            "intervention" => "intervention",
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
