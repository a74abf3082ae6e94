//! Saliency (Simonyan et al. 2014; Captum `Saliency`), DESIGN.md "Baselines": target = cosine of
//! the two embeddings; image map = |d score / d normalised pixels| reduced by the max over
//! channels; text = L2 norm of d score / d token embeddings per position.
use crate::attributor::{Attribution, AttributionError, Attributor, Batch};
use crate::common::SCORE_EPS;
use m2ib_clip::{cosine, ClipModel};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saliency {}

/// Per sample d score / d inputs for image and text at once (each sample's score depends only on
/// its own inputs, so the gradient of the sum separates).
pub fn gradients(model: &ClipModel, batch: &Batch) -> Result<(Tensor, Tensor), AttributionError> {
    let pixels = batch.pixels.detach().set_requires_grad(true);
    let tokens = model
        .text
        .token_embeds(&batch.text.ids)
        .detach()
        .set_requires_grad(true);
    let img = model.image_features(&pixels);
    let txt = model.project_text(&model.text.forward_from_token_embeds(&tokens, &batch.text));
    let score = cosine(&img, &txt, SCORE_EPS).sum(Kind::Float);
    let mut g = Tensor::run_backward(&[score], &[&pixels, &tokens], false, false);
    let gt = g.pop().expect("token gradient");
    let gp = g.pop().expect("pixel gradient");
    Ok((gp, gt))
}

impl Attributor for Saliency {
    fn name(&self) -> &'static str {
        "saliency"
    }

    fn params(&self) -> Value {
        json!({"target": "cosine", "image_reduce": "max_abs_over_channels", "text_reduce": "l2_over_embedding"})
    }

    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let (gp, gt) = gradients(model, batch)?;
        let maps = gp
            .abs()
            .amax(&[1i64][..], false)
            .to_device(tch::Device::Cpu);
        let text = gt
            .norm_scalaropt_dim(2.0, &[-1i64][..], false)
            .to_device(tch::Device::Cpu);
        batch.split(&maps, &text, &self.params())
    }
}
