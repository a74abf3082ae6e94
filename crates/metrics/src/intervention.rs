//! Intervention agreement (in the spirit of FunnyBirds' part interventions): a ground truth the
//! model itself vouches for. The shapes generator re-renders a scene without one object (same
//! layout, background where it was); that object's importance for THIS model is the drop of the
//! image-caption cosine when it is gone. For text, a phrase's importance is the drop when the
//! caption loses that phrase. Per sample, the score is the Spearman correlation between these
//! importances and the attribution mass a map puts on each object's pixels (text: on each
//! phrase's tokens). No mask-shape leakage and no out-of-distribution grey boxes: the perturbed
//! inputs are scenes the generator could have drawn.
use crate::stats::spearman;
use crate::MetricError;
use m2ib_attribution::common::SCORE_EPS;
use m2ib_clip::{cosine, ClipModel, TextInput};
use tch::Tensor;

/// Sum of the map over each mask (row-major, the map's own size).
pub fn masses(map: &[f32], masks: &[Vec<bool>]) -> Vec<f64> {
    masks
        .iter()
        .map(|m| {
            map.iter()
                .zip(m)
                .filter(|(_, &inside)| inside)
                .map(|(&v, _)| v as f64)
                .sum()
        })
        .collect()
}

/// Sum of the token scores over each group of positions.
pub fn token_masses(scores: &[f32], groups: &[Vec<usize>]) -> Vec<f64> {
    groups
        .iter()
        .map(|g| g.iter().map(|&p| scores[p] as f64).sum())
        .collect()
}

/// Spearman of importances and masses; undefined with fewer than two items or a constant side.
pub fn agreement(importance: &[f64], mass: &[f64]) -> Result<f64, MetricError> {
    if importance.len() < 2 {
        return Err(MetricError::Undefined(
            "fewer than two objects: nothing to rank".into(),
        ));
    }
    let r = spearman(importance, mass);
    if !r.is_finite() {
        return Err(MetricError::Undefined(
            "constant importances or masses: no rank correlation".into(),
        ));
    }
    Ok(r)
}

/// Per variant: cos(clean image, caption) - cos(variant image, caption). `variants` [K, 3, H, W].
pub fn image_importance(
    model: &ClipModel,
    pixels: &Tensor,
    variants: &Tensor,
    text_emb: &Tensor,
) -> Result<Vec<f64>, MetricError> {
    let dev = model.device();
    let all = Tensor::cat(&[pixels.unsqueeze(0), variants.shallow_clone()], 0).to_device(dev);
    let e = tch::no_grad(|| model.image_features(&all));
    let t = text_emb.to_device(dev).view([1, -1]);
    let c =
        Vec::<f64>::try_from(cosine(&e, &t.expand_as(&e), SCORE_EPS).to_kind(tch::Kind::Double))?;
    Ok(c[1..].iter().map(|v| c[0] - v).collect())
}

/// Per variant: cos(image, clean caption) - cos(image, variant caption). `input` holds the clean
/// caption first, then the variants.
pub fn text_importance(
    model: &ClipModel,
    input: &TextInput,
    image_emb: &Tensor,
) -> Result<Vec<f64>, MetricError> {
    let dev = model.device();
    let e = tch::no_grad(|| model.text_features(&input.to_device(dev)));
    let i = image_emb.to_device(dev).view([1, -1]);
    let c =
        Vec::<f64>::try_from(cosine(&e, &i.expand_as(&e), SCORE_EPS).to_kind(tch::Kind::Double))?;
    Ok(c[1..].iter().map(|v| c[0] - v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masses_and_agreement_by_hand() {
        let map = [0.0f32, 1.0, 0.5, 0.25];
        let masks = vec![
            vec![true, true, false, false],
            vec![false, false, true, true],
        ];
        assert_eq!(masses(&map, &masks), vec![1.0, 0.75]);
        assert_eq!(token_masses(&map, &[vec![1, 2], vec![3]]), vec![1.5, 0.25]);
        // Same order: 1; reversed: -1; one item or a constant side: undefined.
        assert_eq!(agreement(&[0.3, 0.1, 0.0], &[5.0, 2.0, 1.0]).unwrap(), 1.0);
        assert_eq!(agreement(&[0.3, 0.1, 0.0], &[1.0, 2.0, 5.0]).unwrap(), -1.0);
        assert!(agreement(&[0.3], &[1.0]).is_err());
        assert!(agreement(&[0.3, 0.1], &[1.0, 1.0]).is_err());
    }
}
