//! The metrics that need no model, on the caller's own maps, normalised as the runner does
//! before scoring (min-max; a constant map is an error, as it is a `degenerate_map` row there).
use crate::errors::{compute, invalid, not_one_of};
use m2ib_attribution::{normalize_image, normalize_text};
use m2ib_metrics::localization::{iou, Threshold};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

fn err(e: impl std::fmt::Display) -> PyErr {
    invalid(e.to_string())
}

/// IoU of the normalised map, thresholded at 0.75 (`value`) or at its 75th percentile
/// (`percentile`), with the union of `boxes` `[x0, y0, x1, y1]` in the map's pixels.
#[pyfunction]
#[pyo3(signature = (image_map, boxes, threshold = "value"))]
pub fn localization_iou(
    py: Python<'_>,
    image_map: PyReadonlyArray2<'_, f32>,
    boxes: Vec<[f64; 4]>,
    threshold: &str,
) -> PyResult<f64> {
    let mode = Threshold::from_name(threshold)
        .ok_or_else(|| not_one_of("threshold", threshold, Threshold::ALL.map(Threshold::name)))?;
    let (h, w) = (image_map.shape()[0], image_map.shape()[1]);
    let flat: Vec<f32> = image_map.as_array().iter().copied().collect();
    compute(py, || {
        let t = tch::Tensor::from_slice(&flat).view([h as i64, w as i64]);
        let norm = Vec::<f32>::try_from(normalize_image(&t)?.flatten(0, -1))?;
        Ok(iou(&norm, h, w, &boxes, mode)?)
    })
}

/// AUROC of the content tokens' scores with `positive` marking the tokens that name what is in
/// the image; `content` is false for start, end and padding positions.
#[pyfunction]
pub fn text_auroc(
    py: Python<'_>,
    token_scores: PyReadonlyArray1<'_, f32>,
    content: Vec<bool>,
    positive: Vec<bool>,
) -> PyResult<f64> {
    let scores: Vec<f32> = token_scores.as_array().iter().copied().collect();
    if scores.len() != content.len() || scores.len() != positive.len() {
        return Err(err(format!(
            "{} scores, {} content flags, {} positive flags: one of each per token",
            scores.len(),
            content.len(),
            positive.len()
        )));
    }
    compute(py, || {
        let norm = normalize_text(&scores, &content)?;
        Ok(m2ib_metrics::localization::text_auroc(
            &norm, &content, &positive,
        )?)
    })
}
