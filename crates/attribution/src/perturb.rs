//! Perturbing inputs: the one place where pixels are multiplied by masks and content tokens are
//! replaced by the mask id. Kernel SHAP and RISE (attribution), confidence drop / increase and
//! ROAR+ (metrics) all perturb through here, so "removed" means the same thing everywhere.
use crate::{Attribution, AttributionError, Batch};
use m2ib_clip::ClipModel;
use tch::Tensor;

/// Pixels `[.., 3, H, W]` times masks `[K, H, W]`, broadcast over the channels: one image
/// `[3, H, W]` with K masks gives `[K, 3, H, W]`; N images `[N, 3, H, W]` with N masks (one per
/// image) give `[N, 3, H, W]`.
pub fn mask_pixels(pixels: &Tensor, masks: &Tensor) -> Tensor {
    pixels * masks.unsqueeze(-3)
}

/// Id rows `[.., L]` with every position where `keep` `[K, L]` (bool) is false replaced by
/// `mask_id`.
pub fn mask_tokens(ids: &Tensor, keep: &Tensor, mask_id: i64) -> Tensor {
    ids.where_self(keep, &Tensor::from(mask_id))
}

/// `ids` with the given positions replaced by `mask_id`.
pub fn mask_positions(ids: &[i64], positions: &[usize], mask_id: i64) -> Vec<i64> {
    let mut out = ids.to_vec();
    for &p in positions {
        out[p] = mask_id;
    }
    out
}

/// The positions of content tokens (not start, end or padding): the only ones ever removed.
pub fn content_positions(content: &[bool]) -> Vec<usize> {
    content
        .iter()
        .enumerate()
        .filter(|(_, c)| **c)
        .map(|(p, _)| p)
        .collect()
}

/// Content flags of an id row: false for the start and end ids.
pub fn content_of(ids: &[i64], start_id: Option<i64>, end_id: i64) -> Vec<bool> {
    ids.iter()
        .map(|&i| Some(i) != start_id && i != end_id)
        .collect()
}

/// One pair of a batch as a black-box method probes it.
pub struct Probe<'a> {
    /// Index in the batch.
    pub i: usize,
    pub seed: u64,
    /// [3, H, W] normalised pixels on the CPU.
    pub pixels: Tensor,
    /// [L] real ids (start and end included) on the CPU, and the pooling position.
    pub ids: Tensor,
    pub pool: i64,
    pub content: &'a [bool],
    /// The caption's clean embedding: perturbed images are scored against it.
    pub text_embedding: Tensor,
    /// The image's clean embedding: perturbed captions are scored against it.
    pub image_embedding: Tensor,
}

impl Batch {
    /// The clean embeddings (image [S, P], text [S, P]) every perturbation is scored against.
    pub fn clean_embeddings(&self, model: &ClipModel) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            (
                model.image_features(&self.pixels),
                model.text_features(&self.text),
            )
        })
    }

    /// A perturbation method over every pair: `f` gives a pair's raw image map and token scores;
    /// the attribution around them (content flags, parameters) is filled in here.
    pub fn probe_each(
        &self,
        model: &ClipModel,
        params: serde_json::Value,
        mut f: impl FnMut(&Probe) -> Result<(Tensor, Vec<f32>), AttributionError>,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let (img_e, txt_e) = self.clean_embeddings(model);
        (0..self.len())
            .map(|i| {
                let (ids, pool) = crate::common::sample_ids(self, i);
                let (image, text) = f(&Probe {
                    i,
                    seed: self.seeds[i],
                    pixels: self.pixels.get(i as i64).to_device(tch::Device::Cpu),
                    ids,
                    pool,
                    content: &self.content[i],
                    text_embedding: txt_e.get(i as i64),
                    image_embedding: img_e.get(i as i64),
                })?;
                Ok(Attribution {
                    image,
                    text,
                    content: self.content[i].clone(),
                    params: params.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn masks_broadcast_over_channels_and_tokens_are_replaced() {
        let px = Tensor::ones([3, 2, 2], (Kind::Float, Device::Cpu)) * 2.0;
        let masks = Tensor::from_slice(&[1f32, 0., 0.5, 1., 0., 0., 0., 1.]).view([2, 2, 2]);
        let out = mask_pixels(&px, &masks);
        assert_eq!(out.size(), [2, 3, 2, 2]);
        let v = Vec::<f32>::try_from(out.get(0).get(2).flatten(0, -1)).unwrap();
        assert_eq!(v, [2., 0., 1., 2.]);
        // One mask per image.
        let two = Tensor::stack(&[&px, &px], 0);
        assert_eq!(mask_pixels(&two, &masks).size(), [2, 3, 2, 2]);
        let ids = Tensor::from_slice(&[10i64, 11, 12, 13]);
        let keep = Tensor::from_slice(&[true, false, true, false]).view([1, 4]);
        let m = Vec::<i64>::try_from(mask_tokens(&ids.unsqueeze(0), &keep, 0).view([-1])).unwrap();
        assert_eq!(m, [10, 0, 12, 0]);
        assert_eq!(mask_positions(&[5, 6, 7], &[1], 9), [5, 9, 7]);
        let content = content_of(&[1, 5, 6, 2], Some(1), 2);
        assert_eq!(content, [false, true, true, false]);
        assert_eq!(content_positions(&content), [1, 2]);
    }
}
