//! Chefer et al. 2021, "Generic attention-model explainability", DESIGN.md "Baselines":
//! R = I; for every block b from `start_layer`: R += mean_heads(relu(dy/dA_b * A_b)) @ R, with
//! y = the cosine of the two embeddings. Image = the CLS row over patches; text = the pooled
//! position's row.
use crate::attributor::{Attribution, AttributionError, Attributor, Batch};
use crate::common::{grid_to_map, SCORE_EPS};
use m2ib_clip::{cosine, resolve_layer, ClipModel, TraceRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chefer {
    /// First block used (0 = all blocks, as Chefer's first version; -1 = the last only).
    pub start_layer: i64,
}

/// The relevance rule over attention maps `a` and their gradients `g` (each [B, H, T, T]).
pub fn relevance(attn: &[Tensor], grads: &[Tensor]) -> Tensor {
    let (b, _, t, _) = attn[0].size4().expect("[B, H, T, T]");
    let mut r = Tensor::eye(t, (Kind::Float, attn[0].device()))
        .unsqueeze(0)
        .repeat([b, 1, 1]);
    for (a, g) in attn.iter().zip(grads) {
        let abar = (g * a).relu().mean_dim(&[1i64][..], false, Kind::Float);
        r = &r + abar.bmm(&r);
    }
    r
}

impl Attributor for Chefer {
    fn name(&self) -> &'static str {
        "chefer"
    }

    fn params(&self) -> Value {
        json!({"start_layer": self.start_layer, "target": "cosine", "rule": "R += mean_heads(relu(grad*A)) @ R"})
    }

    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let req = TraceRequest {
            hidden_states: false,
            attentions: true,
        };
        let vs = resolve_layer(self.start_layer, model.vision_depth())?;
        let ts = resolve_layer(self.start_layer, model.text_depth())?;
        let pixels = batch.pixels.detach().set_requires_grad(true);
        let (img, vtrace) = model.image_trace(&pixels, req);
        let txt_fixed = tch::no_grad(|| model.text_features(&batch.text));
        let score = cosine(&img, &txt_fixed, SCORE_EPS).sum(Kind::Float);
        let va: Vec<&Tensor> = vtrace.attentions[vs..].iter().collect();
        let vg = Tensor::run_backward(&[score], &va, false, false);
        let va: Vec<Tensor> = va.into_iter().map(|t| t.detach()).collect();
        let rv = relevance(&va, &vg);
        let vc = &model.config.vision_config;
        let cls = rv.select(1, 0);
        let maps = grid_to_map(
            &cls.narrow(1, 1, cls.size()[1] - 1),
            vc.grid(),
            vc.image_size,
        )
        .to_device(tch::Device::Cpu);

        let (txt, ttrace) = model.text_trace_differentiable(&batch.text, req);
        let img_fixed = tch::no_grad(|| model.image_features(&batch.pixels));
        let score = cosine(&txt, &img_fixed, SCORE_EPS).sum(Kind::Float);
        let ta: Vec<&Tensor> = ttrace.attentions[ts..].iter().collect();
        let tg = Tensor::run_backward(&[score], &ta, false, false);
        let ta: Vec<Tensor> = ta.into_iter().map(|t| t.detach()).collect();
        let rt = relevance(&ta, &tg);
        let l = rt.size()[1];
        let pool = batch
            .text
            .pool_index
            .view([-1, 1, 1])
            .expand([-1, 1, l], false);
        let rows = rt
            .gather(1, &pool, false)
            .squeeze_dim(1)
            .to_device(tch::Device::Cpu);
        batch.split(&maps, &rows, &self.params())
    }
}
