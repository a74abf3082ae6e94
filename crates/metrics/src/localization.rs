//! Localization (DESIGN.md "Metrics"): the normalised map thresholded strictly (> 0.75, or > its
//! 75th percentile), IoU with the union of the ground-truth boxes in model coordinates; and for
//! text (shapes benchmark) the AUROC of content-token scores, present-object tokens vs the rest.
use crate::stats::{auroc, percentile};
use crate::MetricError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Threshold {
    /// map > 0.75 (the default).
    Value,
    /// map > its 75th percentile (numpy linear interpolation).
    Percentile,
}

impl Threshold {
    pub fn name(self) -> &'static str {
        match self {
            Threshold::Value => "value",
            Threshold::Percentile => "percentile",
        }
    }

    /// Every variant, in the order error messages list them.
    pub const ALL: [Threshold; 2] = [Threshold::Value, Threshold::Percentile];

    pub fn from_name(s: &str) -> Option<Threshold> {
        Threshold::ALL.into_iter().find(|t| t.name() == s)
    }
}

pub const LEVEL: f64 = 0.75;

/// Pixels whose centre (x + 0.5, y + 0.5) lies inside any box [x0, y0, x1, y1].
pub fn box_mask(boxes: &[[f64; 4]], h: usize, w: usize) -> Vec<bool> {
    let mut m = vec![false; h * w];
    for b in boxes {
        for y in 0..h {
            let cy = y as f64 + 0.5;
            if cy < b[1] || cy >= b[3] {
                continue;
            }
            for x in 0..w {
                let cx = x as f64 + 0.5;
                if cx >= b[0] && cx < b[2] {
                    m[y * w + x] = true;
                }
            }
        }
    }
    m
}

/// IoU of the thresholded normalised map with the boxes (already in model coordinates, clipped;
/// an empty list means every box was cropped away: the sample is excluded).
pub fn iou(
    map: &[f32],
    h: usize,
    w: usize,
    boxes: &[[f64; 4]],
    mode: Threshold,
) -> Result<f64, MetricError> {
    if boxes.is_empty() {
        return Err(MetricError::Undefined(
            "boxes fall wholly outside the crop: sample excluded".into(),
        ));
    }
    if map.iter().any(|v| !v.is_finite()) {
        return Err(MetricError::Undefined("map holds non-finite values".into()));
    }
    let t = match mode {
        Threshold::Value => LEVEL,
        Threshold::Percentile => percentile(
            &map.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            LEVEL * 100.0,
        ),
    };
    let gt = box_mask(boxes, h, w);
    let (mut inter, mut union) = (0usize, 0usize);
    for (v, g) in map.iter().zip(&gt) {
        let p = (*v as f64) > t;
        inter += (p && *g) as usize;
        union += (p || *g) as usize;
    }
    Ok(if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    })
}

/// AUROC of content-token scores: tokens naming present objects are the positives.
pub fn text_auroc(scores: &[f32], content: &[bool], positive: &[bool]) -> Result<f64, MetricError> {
    let (s, p): (Vec<f64>, Vec<bool>) = scores
        .iter()
        .zip(content)
        .zip(positive)
        .filter(|((_, c), _)| **c)
        .map(|((s, _), p)| (*s as f64, *p))
        .unzip();
    auroc(&s, &p).ok_or_else(|| {
        MetricError::Undefined("text AUROC needs both present and other content tokens".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_by_hand() {
        // 4x4 map; prediction = the left half (values 1), box = the top half.
        let map: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
        let boxes = [[0.0, 0.0, 4.0, 2.0]];
        // inter = 4, union = 8 + 8 - 4 = 12.
        assert!((iou(&map, 4, 4, &boxes, Threshold::Value).unwrap() - 4.0 / 12.0).abs() < 1e-12);
        // Strict: exactly 0.75 is not predicted.
        let flat = vec![0.75f32; 16];
        assert_eq!(iou(&flat, 4, 4, &boxes, Threshold::Value).unwrap(), 0.0);
        assert!(iou(&map, 4, 4, &[], Threshold::Value).is_err());
    }

    #[test]
    fn percentile_mode_keeps_the_top_quarter() {
        let map: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        // 75th percentile of 0..15 / 15 = 11.25 / 15: pixels 12..15 are predicted (bottom row).
        let boxes = [[0.0, 3.0, 4.0, 4.0]];
        assert_eq!(iou(&map, 4, 4, &boxes, Threshold::Percentile).unwrap(), 1.0);
    }

    #[test]
    fn boxes_use_pixel_centres() {
        let m = box_mask(&[[0.6, 0.0, 2.4, 1.0]], 1, 4);
        // centres 0.5 (out), 1.5 (in), 2.5 (out), 3.5 (out)
        assert_eq!(m, vec![false, true, false, false]);
    }

    #[test]
    fn text_auroc_ignores_special_tokens() {
        let scores = [9.0, 0.8, 0.1, 0.9, -9.0];
        let content = [false, true, true, true, false];
        let positive = [false, true, false, true, false];
        assert_eq!(text_auroc(&scores, &content, &positive).unwrap(), 1.0);
    }
}
