//! Explain jobs: a chunk of samples' maps (from the map cache, or computed and cached), then the
//! per-sample metrics (localization, confidence drop / increase, intervention) from those maps.
use crate::cache::{maps_of, Source};
use crate::context::RunContext;
use crate::plan::Job;
use crate::rows::{value_row, Row};
use crate::samples::{batch_of, prepare_chunk, Prepared};
use m2ib_attribution::{normalize_image, normalize_text, Attribution, Batch};
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::Checkpoint;
use m2ib_metrics::confidence::{image_change, keep_top, text_change, TextProtocol, KEEP_TOP25};
use m2ib_metrics::intervention;
use m2ib_metrics::localization::{iou, text_auroc, Threshold};
use std::collections::HashMap;
use tch::Tensor;

/// The (modality, metric, variant) triples an explain job scores.
fn metric_list(exp: &crate::experiment::Experiment) -> Vec<(&'static str, &'static str, String)> {
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
    let atts = match maps_of(&ctx.dir, ck, job, &method, &chunk, &batch)? {
        Ok(a) => a,
        Err(e) => {
            for (p, s) in &chunk.prepared {
                error_rows(&mut rows, &p.id, *s, &e);
            }
            return Ok((rows, failed + chunk.prepared.len()));
        }
    };
    let (img_e, txt_e) = batch.clean_embeddings(&ck.model);
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
                    &m2ib_metrics::confidence::Caption {
                        ids: ids,
                        pool: pool,
                        text_mask_id: batch.text_mask_id,
                        end_id: ck.tokenizer.end_id,
                    },
                    &a.text,
                    &img_e.get(k as i64),
                    protocol,
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
