//! Grad-CAM (Selvaraju et al. 2017; pytorch-grad-cam semantics), DESIGN.md "Baselines": the
//! target activation is the input of a block's attention (its `layer_norm1` output; under CLS
//! pooling the last block's own output gets no gradient on patch tokens). Image: tokens on the
//! patch grid (CLS dropped), weights = mean gradient over tokens, ReLU of the weighted sum,
//! bilinear upsampling. Text: the same with the tokens on a 1 x L layout.
use crate::attributor::{Attribution, AttributionError, Attributor, Batch};
use crate::common::{grid_to_map, SCORE_EPS};
use m2ib_clip::{cosine, resolve_layer, ClipModel};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradCam {
    /// Block whose attention input is the target (negative counts from the end).
    pub image_layer: i64,
    pub text_layer: i64,
}

impl Default for GradCam {
    fn default() -> Self {
        GradCam {
            image_layer: -1,
            text_layer: -1,
        }
    }
}

/// Activation [B, T, D] at the attention input of `layer` and the embedding computed through it.
fn observed(
    encoder: &m2ib_clip::layers::Encoder,
    h_before: Tensor,
    layer: usize,
    mask: Option<&Tensor>,
) -> (Tensor, Tensor) {
    // Weights are frozen: the block input must carry gradients for the activation to get one.
    let h_before = h_before.detach().set_requires_grad(true);
    encoder.block_observed(&h_before, layer, mask)
}

/// Grad-CAM over tokens: relu(sum_d mean_t(grad)[d] * act[t, d]) for each token t of `act`.
pub fn cam(act: &Tensor, grad: &Tensor) -> Tensor {
    let w = grad.mean_dim(&[1i64][..], true, Kind::Float);
    (act * w)
        .sum_dim_intlist(&[-1i64][..], false, Kind::Float)
        .relu()
}

impl GradCam {
    /// The image CAM on the patch grid, [B, grid^2] (before upsampling).
    pub fn image_grid(&self, model: &ClipModel, batch: &Batch) -> Result<Tensor, AttributionError> {
        let vl = resolve_layer(self.image_layer, model.vision_depth())?;
        // Run to the block before, observe its attention input, finish the tower.
        let h = if vl == 0 {
            model.vision.embed(&batch.pixels)
        } else {
            model.vision.prefix(&batch.pixels, vl - 1)
        };
        let (act, out) = observed(&model.vision.encoder, h, vl, None);
        let img = model.project_image(&model.vision.suffix(&out, vl));
        let txt = tch::no_grad(|| model.text_features(&batch.text));
        let score = cosine(&img, &txt, SCORE_EPS).sum(Kind::Float);
        let grad = Tensor::run_backward(&[score], &[&act], false, false).remove(0);
        let patches = |t: &Tensor| t.narrow(1, 1, t.size()[1] - 1);
        Ok(cam(&patches(&act), &patches(&grad)).detach())
    }
}

impl Attributor for GradCam {
    fn name(&self) -> &'static str {
        "gradcam"
    }

    fn params(&self) -> Value {
        json!({"image_layer": self.image_layer, "text_layer": self.text_layer, "target": "cosine",
               "activation": "layer_norm1 output (attention input)", "reduce": "relu(sum_d mean_t(grad) * act)"})
    }

    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let tl = resolve_layer(self.text_layer, model.text_depth())?;
        let vc = &model.config.vision_config;
        let maps = grid_to_map(&self.image_grid(model, batch)?, vc.grid(), vc.image_size)
            .to_device(tch::Device::Cpu);
        // Text side.
        let mask = batch.text.additive_mask(model.text.causal);
        let emb = model.text.embed(&batch.text.ids);
        let h = if tl == 0 {
            emb
        } else {
            model.text.prefix_from_embeddings(emb, &batch.text, tl - 1)
        };
        let (act_t, out) = observed(&model.text.encoder, h, tl, Some(&mask));
        let txt = model.project_text(&model.text.suffix(&out, tl, &batch.text));
        let img_fixed = tch::no_grad(|| model.image_features(&batch.pixels));
        let score = cosine(&txt, &img_fixed, SCORE_EPS).sum(Kind::Float);
        let g_t = Tensor::run_backward(&[score], &[&act_t], false, false).remove(0);
        // Weights average the gradient over real positions only.
        let valid = batch.valid_mask().unsqueeze(-1);
        let w = (&g_t * &valid).sum_dim_intlist(&[1i64][..], true, Kind::Float)
            / valid.sum_dim_intlist(&[1i64][..], true, Kind::Float);
        let text = (&act_t * w)
            .sum_dim_intlist(&[-1i64][..], false, Kind::Float)
            .relu()
            .to_device(tch::Device::Cpu);
        batch.split(&maps, &text, &self.params())
    }
}
