//! Confidence drop / increase (pytorch-grad-cam `DropInConfidence` / `IncreaseInConfidence`
//! semantics; DESIGN.md "Metrics"): s = cosine on the clean inputs, s' on the perturbed ones;
//! drop = max(0, s - s') * 100, increase = [s' > s] * 100.
//!
//! Image: the whole normalised map multiplies the normalised pixels (broadcast over channels).
//! Text, protocol "official" (M2IB's eval.py): strip start and end, keep tokens above the 50th
//! percentile of the stripped map, removed ids become 0, both scores on the stripped ids pooled
//! by HF's legacy argmax. Protocol "padded": keep start and end, removed tokens become
//! `text_mask_id`, pool at the original end position.
use crate::stats::percentile;
use crate::MetricError;
use m2ib_attribution::common::SCORE_EPS;
use m2ib_attribution::perturb::{mask_pixels, mask_positions};
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::{cosine, ClipModel, Pooling};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextProtocol {
    Official,
    Padded,
}

impl TextProtocol {
    pub fn name(self) -> &'static str {
        match self {
            TextProtocol::Official => "official",
            TextProtocol::Padded => "padded",
        }
    }

    /// Every variant, in the order error messages list them.
    pub const ALL: [TextProtocol; 2] = [TextProtocol::Official, TextProtocol::Padded];

    pub fn from_name(s: &str) -> Option<TextProtocol> {
        TextProtocol::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Scores before and after a perturbation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub before: f64,
    pub after: f64,
}

impl Change {
    pub fn drop(&self) -> f64 {
        (self.before - self.after).max(0.0) * 100.0
    }
    pub fn increase(&self) -> f64 {
        if self.after > self.before {
            100.0
        } else {
            0.0
        }
    }
}

fn cos1(a: &Tensor, b: &Tensor) -> Result<f64, MetricError> {
    Ok(f64::try_from(
        cosine(a, &b.view([1, -1]), SCORE_EPS).get(0),
    )?)
}

/// Image: the clean pixels [3, H, W] vs pixels * normalised map [H, W], against `text_emb` [P].
pub fn image_change(
    model: &ClipModel,
    pixels: &Tensor,
    map: &Tensor,
    text_emb: &Tensor,
) -> Result<Change, MetricError> {
    let dev = model.device();
    let px = pixels.to_device(dev).unsqueeze(0);
    let perturbed = mask_pixels(&px, &map.to_device(dev).unsqueeze(0));
    let e = tch::no_grad(|| model.image_features(&Tensor::cat(&[px, perturbed], 0)));
    let t = text_emb.to_device(dev);
    Ok(Change {
        before: cos1(&e.get(0).unsqueeze(0), &t)?,
        after: cos1(&e.get(1).unsqueeze(0), &t)?,
    })
}

/// The image protocols' names (`metrics.image_confidence`): the paper's whole-map product, and
/// keeping only the map's top 25 % of pixels (`keep_top`).
pub const WHOLE_MAP: &str = "whole-map";
pub const KEEP_TOP25: &str = "keep-top25";

/// The binary mask of the top `fraction` of a map's pixels (strictly above its
/// (1 - fraction) percentile, numpy's linear interpolation): the "keep" variant of the image
/// protocol. The whole-map product keeps every pixel at its map value, so a spatially uniform
/// map (random noise, mean 0.5 everywhere) keeps all content at half strength and barely moves
/// the model; keeping only the top pixels makes a map choose what survives.
pub fn keep_top(map: &Tensor, fraction: f64) -> Result<Tensor, MetricError> {
    let v = Vec::<f64>::try_from(map.flatten(0, -1).to_kind(tch::Kind::Double))?;
    let t = percentile(&v, (1.0 - fraction) * 100.0);
    Ok(map.gt(t).to_kind(map.kind()))
}

/// One caption as the text metrics read it: ids with start and end, the position its embedding
/// pools at, the id a removed token becomes ("padded" protocol) and the end id.
#[derive(Clone, Copy, Debug)]
pub struct Caption<'a> {
    pub ids: &'a [i64],
    pub pool: usize,
    pub text_mask_id: i64,
    pub end_id: i64,
}

/// Text: `scores` one per position of `caption.ids`, against `image_emb`.
pub fn text_change(
    model: &ClipModel,
    caption: &Caption,
    scores: &[f32],
    image_emb: &Tensor,
    protocol: TextProtocol,
) -> Result<Change, MetricError> {
    let Caption {
        ids,
        pool,
        text_mask_id,
        end_id,
    } = *caption;
    let n = ids.len();
    if n < 3 {
        return Err(MetricError::Undefined(
            "caption has no content tokens".into(),
        ));
    }
    let (clean, perturbed, pooling) = match protocol {
        TextProtocol::Official => {
            let stripped: Vec<i64> = ids[1..n - 1].to_vec();
            let m: Vec<f64> = scores[1..n - 1].iter().map(|&v| v as f64).collect();
            let t = percentile(&m, 50.0);
            let kept: Vec<i64> = stripped
                .iter()
                .zip(&m)
                .map(|(&id, &v)| if v > t { id } else { 0 })
                .collect();
            (stripped, kept, Pooling::HfArgmax)
        }
        TextProtocol::Padded => {
            let content: Vec<f64> = scores[1..n - 1].iter().map(|&v| v as f64).collect();
            let t = percentile(&content, 50.0);
            let removed: Vec<usize> = (1..n - 1).filter(|&k| (scores[k] as f64) <= t).collect();
            let kept = mask_positions(ids, &removed, text_mask_id);
            (ids.to_vec(), kept, Pooling::Eos)
        }
    };
    let dev = model.device();
    let mut input = text_input(&[clean, perturbed], 0, end_id, pooling).to_device(dev);
    if protocol == TextProtocol::Padded {
        input.pool_index = Tensor::from_slice(&[pool as i64, pool as i64]).to_device(dev);
    }
    let e = tch::no_grad(|| model.text_features(&input));
    let i = image_emb.to_device(dev);
    Ok(Change {
        before: cos1(&e.get(0).unsqueeze(0), &i)?,
        after: cos1(&e.get(1).unsqueeze(0), &i)?,
    })
}

/// Convenience: the embedding of one side for the other side's target, on the CPU.
pub fn embeddings(
    model: &ClipModel,
    pixels: &Tensor,
    input: &m2ib_clip::TextInput,
) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        (
            model
                .image_features(&pixels.to_device(model.device()))
                .to_device(Device::Cpu),
            model
                .text_features(&input.to_device(model.device()))
                .to_device(Device::Cpu),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_and_increase_follow_pytorch_grad_cam() {
        let c = Change {
            before: 0.30,
            after: 0.25,
        };
        assert!((c.drop() - 5.0).abs() < 1e-9);
        assert_eq!(c.increase(), 0.0);
        let c = Change {
            before: 0.30,
            after: 0.31,
        };
        assert_eq!(c.drop(), 0.0);
        assert_eq!(c.increase(), 100.0);
    }
}
