//! Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018; DESIGN.md
//! "Metrics"): re-initialise from the top down (`m2ib_clip::randomize`), re-explain with the
//! method's seed fixed, and compare |raw| maps with the original: Spearman (image and text) and
//! SSIM (image; 7 x 7 window, data range 1, maps min-max scaled to [0, 1]). The noise floor is
//! the same comparison between two method seeds on the intact model.
use crate::stats::{spearman, ssim};
use crate::MetricError;
use m2ib_attribution::{Attribution, Attributor, Batch};
use m2ib_clip::randomize::{randomization_steps, randomize_step};
use m2ib_clip::ClipModel;
use serde::{Deserialize, Serialize};
use tch::Kind;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    pub image_spearman: f64,
    pub image_ssim: f64,
    pub text_spearman: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SanityStep {
    /// `projections`, `final_norms`, `layer -1`, ..., `embeddings`.
    pub step: String,
    /// One per sample.
    pub similarity: Vec<Similarity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SanityCurve {
    pub steps: Vec<SanityStep>,
    pub noise_floor: Vec<Similarity>,
}

fn scaled(v: &[f64]) -> Vec<f64> {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    v.iter().map(|x| (x - lo) / (hi - lo)).collect()
}

/// Similarity of two explanations of one sample (|raw| values).
pub fn compare(a: &Attribution, b: &Attribution) -> Result<Similarity, MetricError> {
    let (h, w) = (a.image.size()[0] as usize, a.image.size()[1] as usize);
    let fa: Vec<f64> = Vec::try_from(a.image.abs().to_kind(Kind::Double).flatten(0, -1))?;
    let fb: Vec<f64> = Vec::try_from(b.image.abs().to_kind(Kind::Double).flatten(0, -1))?;
    let content = |t: &[f32]| -> Vec<f64> {
        t.iter()
            .zip(&a.content)
            .filter(|(_, c)| **c)
            .map(|(v, _)| v.abs() as f64)
            .collect()
    };
    Ok(Similarity {
        image_spearman: spearman(&fa, &fb),
        image_ssim: ssim(&scaled(&fa), &scaled(&fb), h, w, 1.0),
        text_spearman: spearman(&content(&a.text), &content(&b.text)),
    })
}

/// The whole cascade for a batch. `load` gives a fresh intact model (randomisation mutates it).
pub fn sanity(
    load: &dyn Fn() -> Result<ClipModel, MetricError>,
    method: &dyn Attributor,
    batch: &Batch,
    seed: u64,
) -> Result<SanityCurve, MetricError> {
    let model = load()?;
    let original = method.attribute(&model, batch)?;
    sanity_against(&original, model, method, batch, seed)
}

/// The cascade against given original explanations (the runner reads them from its map cache);
/// `model` must be the intact model the originals came from. It is randomised in place.
pub fn sanity_against(
    original: &[Attribution],
    model: ClipModel,
    method: &dyn Attributor,
    batch: &Batch,
    seed: u64,
) -> Result<SanityCurve, MetricError> {
    // Noise floor: the method with other seeds on the intact model.
    let other = batch.with_seeds(
        batch
            .seeds
            .iter()
            .map(|s| m2ib_clip::rng::splitmix64(s ^ m2ib_clip::rng::stream::SANITY_NOISE_FLOOR))
            .collect(),
    );
    let reseeded = method.attribute(&model, &other)?;
    let noise_floor = original
        .iter()
        .zip(&reseeded)
        .map(|(a, b)| compare(a, b))
        .collect::<Result<_, _>>()?;
    let steps = randomization_steps(&model);
    let mut curve = Vec::with_capacity(steps.len());
    for k in 0..steps.len() {
        randomize_step(&model, &steps, k, seed);
        let now = method.attribute(&model, batch)?;
        curve.push(SanityStep {
            step: steps[k].name.clone(),
            similarity: original
                .iter()
                .zip(&now)
                .map(|(a, b)| compare(a, b))
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(SanityCurve {
        steps: curve,
        noise_floor,
    })
}
