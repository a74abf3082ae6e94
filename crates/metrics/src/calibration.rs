//! Calibration maps, not attribution methods: `oracle` is exactly the sample's ground truth (its
//! named objects' boxes; its present-object tokens) and `random` is seeded uniform noise. Every
//! table of the shapes benchmark carries both rows, so a reader sees on the same cells what a
//! perfect and a useless map score: a metric that cannot tell them apart measures nothing here.
//!
//! The oracle's ties are broken by a seeded jitter far below the 0/1 step, so top-k and
//! percentile rules pick inside the ground truth at random rather than in sort order.
use crate::localization::box_mask;
use crate::MetricError;
use m2ib_clip::rng::splitmix64;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    Oracle,
    Random,
}

/// Jitter amplitude on the oracle's 0/1 values (normalisation keeps it below 0.001 of the range).
pub const JITTER: f32 = 1e-3;

impl Reference {
    /// Both references, in table order.
    pub const ALL: [Reference; 2] = [Reference::Oracle, Reference::Random];

    /// The name in `metrics.calibration` and in the rows' `method` column.
    pub fn name(self) -> &'static str {
        match self {
            Reference::Oracle => "oracle",
            Reference::Random => "random",
        }
    }

    pub fn from_name(name: &str) -> Option<Reference> {
        Reference::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Uniform draws in [0, 1) from a splitmix64 stream (24 bits: exact in f32).
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = splitmix64(s);
        (s >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// An [h, w] image map (row-major). The oracle needs the boxes in model coordinates.
pub fn image_map(
    r: Reference,
    h: usize,
    w: usize,
    boxes: Option<&[[f64; 4]]>,
    seed: u64,
) -> Result<Vec<f32>, MetricError> {
    let mut u = uniform(seed ^ 0x1);
    match r {
        Reference::Random => Ok((0..h * w).map(|_| u()).collect()),
        Reference::Oracle => {
            let boxes = boxes
                .ok_or_else(|| MetricError::Undefined("oracle: the sample has no boxes".into()))?;
            Ok(box_mask(boxes, h, w)
                .into_iter()
                .map(|inside| inside as u8 as f32 + JITTER * u())
                .collect())
        }
    }
}

/// Per-token scores. The oracle needs the sample's present-object tokens.
pub fn text_scores(
    r: Reference,
    n_tokens: usize,
    present: Option<&[bool]>,
    seed: u64,
) -> Result<Vec<f32>, MetricError> {
    let mut u = uniform(seed ^ 0x2);
    match r {
        Reference::Random => Ok((0..n_tokens).map(|_| u()).collect()),
        Reference::Oracle => {
            let present = present.ok_or_else(|| {
                MetricError::Undefined("oracle: the sample has no token ground truth".into())
            })?;
            Ok(present
                .iter()
                .map(|&p| p as u8 as f32 + JITTER * u())
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oracle_is_the_box_mask_with_small_seeded_ties() {
        let m = image_map(Reference::Oracle, 4, 4, Some(&[[1.0, 1.0, 3.0, 3.0]]), 7).unwrap();
        for y in 0..4 {
            for x in 0..4 {
                let inside = (1..3).contains(&x) && (1..3).contains(&y);
                let v = m[y * 4 + x];
                assert!(
                    v >= inside as u8 as f32 && v < inside as u8 as f32 + JITTER,
                    "{v}"
                );
            }
        }
        // Ties are broken (no two equal values), by a seed.
        let mut s = m.clone();
        s.sort_by(f32::total_cmp);
        s.dedup();
        assert_eq!(s.len(), 16);
        assert_eq!(
            m,
            image_map(Reference::Oracle, 4, 4, Some(&[[1.0, 1.0, 3.0, 3.0]]), 7).unwrap()
        );
        assert_ne!(
            m,
            image_map(Reference::Oracle, 4, 4, Some(&[[1.0, 1.0, 3.0, 3.0]]), 8).unwrap()
        );
        assert!(image_map(Reference::Oracle, 4, 4, None, 7).is_err());
    }

    #[test]
    fn the_text_oracle_ranks_present_tokens_first_and_random_is_uniform() {
        let present = [false, true, false, true, false];
        let t = text_scores(Reference::Oracle, 5, Some(&present), 1).unwrap();
        let min_present = t[1].min(t[3]);
        assert!([0, 2, 4].iter().all(|&i| t[i] < min_present));
        let r = text_scores(Reference::Random, 10_000, None, 1).unwrap();
        let mean = r.iter().sum::<f32>() / r.len() as f32;
        assert!((mean - 0.5).abs() < 0.01 && r.iter().all(|v| (0.0..1.0).contains(v)));
        assert_eq!(r.len(), 10_000);
    }
}
