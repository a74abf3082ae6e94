//! Contrastive training (CLIP's symmetric loss with a learnable logit scale), AdamW with linear
//! warm-up and cosine decay. `m2ib train-tiny` and ROAR+ both use it.
use crate::model::{l2_normalize, ClipModel};
use crate::text::TextInput;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Reduction, Tensor};

/// OpenAI clamps the learnt temperature at 100.
pub const MAX_LOGIT_SCALE: f64 = 4.605170185988092; // ln 100

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    /// The learnt temperature's learning rate relative to `lr` (a lever when it moves too slowly).
    #[serde(default = "one")]
    pub logit_scale_lr_mult: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            lr: 1e-3,
            weight_decay: 0.1,
            warmup_steps: 100,
            logit_scale_lr_mult: 1.0,
        }
    }
}

/// Learning rate at `step`: linear warm-up, then cosine decay to 0.
pub fn lr_at(cfg: &TrainConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64
    } else {
        let t = (step - cfg.warmup_steps) as f64 / (cfg.steps - cfg.warmup_steps).max(1) as f64;
        cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// One training batch: row i of `text` describes image i; `negatives` (optional) are extra
/// captions that describe no image of the batch (hard negatives for the image -> text side).
pub struct TrainBatch {
    pub pixels: Tensor,
    pub text: TextInput,
    pub negatives: Option<TextInput>,
    /// [B, B] bool, true where caption j (j != i) is also true of image i: left out of both
    /// directions' softmax instead of being pushed apart as a negative (a one-object caption
    /// describes every image that holds that object).
    pub also_true: Option<Tensor>,
    /// Hard-negative images for the caption -> image side: (pixels [K, 3, H, W], rows [K] int64),
    /// image k an extra column of caption `rows[k]` only (e.g. its scene with two colours
    /// exchanged).
    pub negative_images: Option<(Tensor, Tensor)>,
}

/// Symmetric cross-entropy over the batch's image-text similarity matrix (HF `clip_loss`); hard
/// negative captions, when given, are extra columns of the image -> text side, hard-negative
/// images extra columns of the caption -> image side.
pub fn contrastive_loss(model: &ClipModel, b: &TrainBatch) -> Tensor {
    let i = l2_normalize(&model.image_features(&b.pixels));
    let t = l2_normalize(&model.text_features(&b.text));
    let scale = model.logit_scale.exp();
    let logits_t = t.matmul(&i.tr()) * &scale;
    let n = logits_t.size()[0];
    let labels = Tensor::arange(n, (Kind::Int64, logits_t.device()));
    // logits_t[j, i] = caption j vs image i; also_true[i, j] = caption j true of image i.
    let logits_t = match &b.also_true {
        Some(m) => logits_t.masked_fill(&m.tr().to_device(logits_t.device()), f64::NEG_INFINITY),
        None => logits_t,
    };
    // One extra column per caption: its own hard-negative image, or -inf where it has none.
    let logits_t = match &b.negative_images {
        Some((pixels, rows)) => {
            let ni = l2_normalize(&model.image_features(pixels));
            let rows = rows.to_device(ni.device());
            let sims =
                (t.index_select(0, &rows) * &ni).sum_dim_intlist(&[-1i64][..], false, Kind::Float)
                    * &scale;
            let column = Tensor::full([n], f64::NEG_INFINITY, (Kind::Float, ni.device()))
                .index_put(&[Some(rows)], &sims, false);
            Tensor::cat(&[logits_t.shallow_clone(), column.unsqueeze(1)], 1)
        }
        None => logits_t,
    };
    let square = logits_t.narrow(1, 0, n);
    let logits_i = match &b.negatives {
        Some(neg) => {
            let tn = l2_normalize(&model.text_features(neg));
            Tensor::cat(&[square.tr(), i.matmul(&tn.tr()) * &scale], 1)
        }
        None => square.tr(),
    };
    (logits_t.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0)
        + logits_i.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0))
        / 2.0
}

/// Trains all parameters for `cfg.steps` steps; `batch(step)` supplies data on the model's
/// device; `on_step(step, loss)` reports progress. Returns the loss of every step.
pub fn train(
    model: &mut ClipModel,
    cfg: &TrainConfig,
    mut batch: impl FnMut(usize) -> TrainBatch,
    mut on_step: impl FnMut(usize, f64),
) -> Result<Vec<f64>, tch::TchError> {
    // No draw from libtorch's generator here: it is process-wide, and seeding it outside
    // `rng::with_seed`'s lock would change what other workers' seeded draws return. Callers
    // order batches with their own seeded generators.
    model.vs.unfreeze();
    let mut opt = nn::AdamW {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&model.vs, cfg.lr)?;
    // No weight decay on biases, norms, the class token and the temperature (a decayed logit
    // scale shrinks towards 0 and the softmax never sharpens).
    opt.set_weight_decay_group(crate::layers::NO_DECAY, 0.0);
    opt.set_weight_decay_group(crate::layers::LOGIT_SCALE_GROUP, 0.0);
    let mut losses = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        let lr = lr_at(cfg, step);
        opt.set_lr(lr);
        opt.set_lr_group(
            crate::layers::LOGIT_SCALE_GROUP,
            lr * cfg.logit_scale_lr_mult,
        );
        let loss = contrastive_loss(model, &batch(step));
        opt.backward_step(&loss);
        tch::no_grad(|| {
            let _ = model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE);
        });
        let l = f64::try_from(&loss)?;
        losses.push(l);
        on_step(step, l);
    }
    model.vs.freeze();
    Ok(losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let cfg = TrainConfig {
            steps: 110,
            warmup_steps: 10,
            lr: 1.0,
            ..TrainConfig::default()
        };
        assert!((lr_at(&cfg, 0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cfg, 9) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 60) - 0.5).abs() < 1e-12);
        assert!(lr_at(&cfg, 109) < 0.001);
    }
}
