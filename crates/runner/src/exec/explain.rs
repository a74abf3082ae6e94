//! Explain jobs: a chunk of samples' maps (from the map cache, or computed and cached), then the
//! per-sample metrics (localization, confidence drop / increase, intervention) from those maps.
use crate::cache::{maps_of, Source};
use crate::context::RunContext;
use crate::experiment::ImageTarget;
use crate::plan::Job;
use crate::rows::{value_row, Row};
use crate::samples::{batch_of, prepare_chunk, Prepared};
use m2ib_attribution::{normalize_image, normalize_text, Attribution, Batch, Modality};
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::Checkpoint;
use m2ib_metrics::confidence::{image_change, keep_top, text_change, Caption, Change};
use m2ib_metrics::intervention;
use m2ib_metrics::localization::{iou, text_auroc};
use m2ib_metrics::metric::{Direction, ImageProtocol, Metric};
use std::collections::HashMap;
use tch::Tensor;

/// The metrics an explain job scores, in row order.
fn metric_list(exp: &crate::experiment::Experiment) -> Vec<Metric> {
    let m = &exp.metrics;
    Metric::list(
        &m.localization,
        m.text_localization,
        &m.confidence,
        &m.image_confidence,
        m.intervention,
    )
}

/// Rows of one explain job; also returns the number of samples that failed.
pub fn explain_job(
    ctx: &RunContext,
    ck: &Checkpoint,
    job: &Job,
    method: &Source,
    base: &Row,
) -> anyhow::Result<(Vec<Row>, usize)> {
    let exp = ctx.exp;
    let metrics = metric_list(exp);
    let chunk = prepare_chunk(exp, ck, job, &ctx.listed[job.repeat]);
    let mut rows = vec![];
    let error_rows = |rows: &mut Vec<Row>, id: &str, seed: u64, err: &str| {
        for m in &metrics {
            rows.push(Row {
                sample_id: Some(id.to_string()),
                modality: m.modality().to_string(),
                metric: m.name().to_string(),
                metric_variant: m.variant().to_string(),
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
    let atts = match maps_of(&ctx.dir, ck, job, method, &chunk, &batch)? {
        Ok(a) => a,
        Err(e) => {
            for (p, s) in &chunk.prepared {
                error_rows(&mut rows, &p.id, *s, &e);
            }
            return Ok((rows, failed + chunk.prepared.len()));
        }
    };
    let (img_e, txt_e) = batch.clean_embeddings(&ck.model);
    // Without an image perturbation nothing reads the target: no text forward for it.
    let target = if exp.metrics.perturbs_images() {
        exp.metrics.image_target
    } else {
        ImageTarget::Caption
    };
    let target_e = image_targets(ck, &chunk.prepared, &txt_e, target);
    for (k, ((p, seed), a)) in chunk.prepared.iter().zip(&atts).enumerate() {
        let mut sample_rows = vec![];
        let r = sample_metrics(
            ck,
            p,
            a,
            &batch,
            k,
            &img_e,
            &target_e,
            &metrics,
            &mut sample_rows,
        );
        if let Err(e) = r {
            error_rows(&mut rows, &p.id, *seed, &e);
            failed += 1;
            continue;
        }
        for (m, value) in sample_rows {
            let b = Row {
                sample_id: Some(p.id.clone()),
                metric: m.name().to_string(),
                metric_variant: m.variant().to_string(),
                seed: *seed,
                ..base.clone()
            };
            rows.push(value_row(&b, &a.params, m.modality(), value));
        }
    }
    Ok((rows, failed))
}

type MetricRow = (Metric, Result<f64, String>);

/// Per sample, the text embedding its image perturbations are scored against
/// (`metrics.image_target`): the caption's own, or its true part's where it names an absent
/// object (the other rows are `txt_e`'s, unchanged).
fn image_targets(
    ck: &Checkpoint,
    prepared: &[(Prepared, u64)],
    txt_e: &Tensor,
    target: ImageTarget,
) -> Tensor {
    let present: Vec<(usize, &Vec<i64>)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(k, (p, _))| p.present_caption.as_ref().map(|ids| (k, ids)))
        .collect();
    if target == ImageTarget::Caption || present.is_empty() {
        return txt_e.shallow_clone();
    }
    let t = &ck.tokenizer;
    let rows: Vec<Vec<i64>> = present.iter().map(|(_, ids)| (*ids).clone()).collect();
    let input = text_input(&rows, t.pad_id, t.end_id, ck.pooling).to_device(ck.model.device());
    let e = tch::no_grad(|| ck.model.text_features(&input));
    let out = txt_e.copy();
    for (j, (k, _)) in present.iter().enumerate() {
        out.get(*k as i64).copy_(&e.get(j as i64));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn sample_metrics(
    ck: &Checkpoint,
    p: &Prepared,
    a: &Attribution,
    batch: &Batch,
    k: usize,
    img_e: &Tensor,
    target_e: &Tensor,
    metrics: &[Metric],
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
    // One forward pass per protocol serves both its drop and its increase row.
    let change_of = |protocol: ImageProtocol| -> Result<Change, String> {
        let image = image.as_ref().map_err(Clone::clone)?;
        let map = match protocol {
            ImageProtocol::KeepTop25 => keep_top(image, 0.25).map_err(|e| e.to_string())?,
            ImageProtocol::WholeMap => image.shallow_clone(),
        };
        image_change(&ck.model, &p.pixels, &map, &target_e.get(k as i64)).map_err(|e| e.to_string())
    };
    let by_direction = |c: Change, d: Direction| match d {
        Direction::Drop => c.drop(),
        Direction::Increase => c.increase(),
    };
    let mut image_conf: HashMap<ImageProtocol, Result<Change, String>> = HashMap::new();
    for &metric in metrics {
        let v: Result<f64, String> = match metric {
            m if m.modality() == "image" && image.is_err() => {
                Err(image.as_ref().err().cloned().unwrap_or_default())
            }
            m if m.modality() == "text" && text.is_err() => {
                Err(text.as_ref().err().cloned().unwrap_or_default())
            }
            Metric::LocalizationIou(threshold) => match &p.boxes {
                None => Err("sample has no boxes".into()),
                Some(b) => {
                    let (map, h, w) = flat.as_ref().expect("image map");
                    iou(map, *h, *w, b, threshold).map_err(|e| e.to_string())
                }
            },
            Metric::TextAuroc => match &p.present {
                None => Err("sample has no token ground truth".into()),
                Some(present) => text_auroc(text.as_ref().expect("text map"), &a.content, present)
                    .map_err(|e| e.to_string()),
            },
            Metric::Intervention(Modality::Image) => match &p.interventions {
                None => Err("sample has no interventions (shapes scenes only)".into()),
                Some(iv) => intervention::image_importance(
                    &ck.model,
                    &p.pixels,
                    &iv.images,
                    &target_e.get(k as i64),
                )
                .and_then(|imp| {
                    let map = &flat.as_ref().expect("image map").0;
                    intervention::agreement(&imp, &intervention::masses(map, &iv.masks))
                })
                .map_err(|e| e.to_string()),
            },
            Metric::Intervention(Modality::Text) => match &p.interventions {
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
            Metric::ImageConfidence(protocol, d) => image_conf
                .entry(protocol)
                .or_insert_with(|| change_of(protocol))
                .clone()
                .map(|c| by_direction(c, d)),
            Metric::TextConfidence(protocol, d) => text_change(
                &ck.model,
                &Caption {
                    ids,
                    pool,
                    text_mask_id: batch.text_mask_id,
                    end_id: ck.tokenizer.end_id,
                },
                &a.text,
                &img_e.get(k as i64),
                protocol,
            )
            .map(|c| by_direction(c, d))
            .map_err(|e| e.to_string()),
        };
        out.push((metric, v));
    }
    Ok(())
}
