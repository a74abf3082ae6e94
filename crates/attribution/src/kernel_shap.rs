//! Kernel SHAP (Lundberg & Lee 2017) with Captum's `KernelShap` sampling, DESIGN.md
//! "Baselines": features = patch-grid cells (image) or content tokens (text); removed features
//! take 0 in normalised pixel space / `text_mask_id`. Samples: all features on, all off, then
//! k ~ p(k) ∝ (M - 1) / (k (M - k)) and a uniformly random subset of size k; weights 1e6 for the
//! first two, 1 otherwise; weighted least squares with intercept; attributions = coefficients.
use crate::attributor::{Attribution, AttributionError, Attributor, Batch, Modality};
use crate::common::{chunks, image_scores, text_scores};
use crate::perturb::{content_positions, mask_pixels, mask_tokens};
use m2ib_clip::rng::{torch_seed, with_seed};
use m2ib_clip::ClipModel;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelShap {
    pub image_samples: i64,
    pub text_samples: i64,
    pub batch_size: i64,
}

impl Default for KernelShap {
    fn default() -> Self {
        KernelShap {
            image_samples: 1024,
            text_samples: 256,
            batch_size: 64,
        }
    }
}

/// Captum's `inf_weight` for the all-on and all-off samples.
pub const INF_WEIGHT: f64 = 1e6;
const SHAP_STREAM: u64 = m2ib_clip::rng::stream::SHAP;

/// Binary coalitions [n, m] (f32), drawn exactly as Captum's `kernel_shap_perturb_generator`
/// (all on, all off, then per sample `Categorical(p).sample()` and `randn(1, m)` thresholded at
/// its (m - k)-th smallest value), so the same seed gives Captum's samples.
pub fn coalitions(m: i64, n: i64, seed: i64) -> Tensor {
    let cpu = (Kind::Float, Device::Cpu);
    let mut rows = vec![Tensor::ones([1, m], cpu), Tensor::zeros([1, m], cpu)];
    if n > 2 && m > 1 {
        let k = Tensor::arange(m, cpu);
        let denom = &k * (k.neg() + m as f64);
        let probs = Tensor::full([m], (m - 1) as f64, cpu) / denom;
        let _ = probs.get(0).fill_(0.0);
        let probs = (&probs / probs.sum_dim_intlist(&[-1i64][..], true, Kind::Float)).view([1, m]);
        with_seed(seed, || {
            for _ in 2..n {
                let k = i64::try_from(probs.multinomial(1, true)).expect("size");
                let r = Tensor::randn([1, m], cpu);
                let (threshold, _) = r.kthvalue(m - k, -1, false);
                rows.push(r.gt_tensor(&threshold.unsqueeze(-1)).to_kind(Kind::Float));
            }
        });
    }
    Tensor::cat(&rows, 0).narrow(0, 0, n.max(2))
}

/// Weighted least squares with intercept; returns the m coefficients.
pub fn fit(z: &Tensor, y: &Tensor) -> Result<Vec<f64>, AttributionError> {
    let n = z.size()[0];
    let mut w = vec![1.0f64; n as usize];
    w[0] = INF_WEIGHT;
    if n > 1 {
        w[1] = INF_WEIGHT;
    }
    let sw = Tensor::from_slice(&w).sqrt().unsqueeze(1);
    let x = Tensor::cat(
        &[
            Tensor::ones([n, 1], (Kind::Double, Device::Cpu)),
            z.to_kind(Kind::Double),
        ],
        1,
    );
    let (sol, _, _, _) =
        (&x * &sw).linalg_lstsq(&(y.to_kind(Kind::Double).unsqueeze(1) * &sw), None, "gelsd");
    Ok(Vec::<f64>::try_from(sol.squeeze_dim(1).narrow(
        0,
        1,
        z.size()[1],
    ))?)
}

/// Kernel SHAP of a scorer over m binary features: `eval(coalitions [k, m]) -> scores [k]`.
pub fn explain(
    m: i64,
    n: i64,
    batch: i64,
    seed: i64,
    eval: &mut dyn FnMut(&Tensor) -> Tensor,
) -> Result<Vec<f64>, AttributionError> {
    let z = coalitions(m, n, seed);
    let parts: Vec<Tensor> = chunks(z.size()[0], batch)
        .map(|(s, k)| eval(&z.narrow(0, s, k)))
        .collect();
    fit(&z, &Tensor::cat(&parts, 0))
}

impl Attributor for KernelShap {
    fn name(&self) -> &'static str {
        "kernel_shap"
    }

    fn params(&self) -> Value {
        json!({"image_samples": self.image_samples, "text_samples": self.text_samples, "batch_size": self.batch_size,
               "image_features": "patch-grid cells", "text_features": "content tokens", "image_removed": "0 (normalised)",
               "text_removed": "text_mask_id", "sampling": "captum", "inf_weight": INF_WEIGHT})
    }

    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let vc = &model.config.vision_config;
        let (g, patch) = (vc.grid(), vc.patch_size);
        batch.probe_each(model, self.params(), |s| {
            let seed = s.seed;
            let coef = explain(
                g * g,
                self.image_samples,
                self.batch_size,
                torch_seed(seed ^ SHAP_STREAM),
                &mut |z| {
                    let k = z.size()[0];
                    let mask = z
                        .view([k, g, g])
                        .repeat_interleave_self_int(patch, 1, None)
                        .repeat_interleave_self_int(patch, 2, None);
                    image_scores(
                        model,
                        &mut std::iter::once(mask_pixels(&s.pixels, &mask)),
                        &s.text_embedding,
                    )
                },
            )?;
            let cells = Tensor::from_slice(&coef).to_kind(Kind::Float).view([g, g]);
            let image = cells
                .repeat_interleave_self_int(patch, 0, None)
                .repeat_interleave_self_int(patch, 1, None);
            // Text: one feature per content token.
            let positions: Vec<i64> = content_positions(s.content)
                .into_iter()
                .map(|p| p as i64)
                .collect();
            let mut text = vec![0f32; batch.lengths[s.i]];
            if !positions.is_empty() {
                let pos = Tensor::from_slice(&positions);
                let mseed = torch_seed(seed ^ SHAP_STREAM ^ ((Modality::Text as u64) << 32));
                let coef = explain(
                    positions.len() as i64,
                    self.text_samples,
                    self.batch_size,
                    mseed,
                    &mut |z| {
                        // Features absent from the coalition (z = 0) are removed.
                        let k = z.size()[0];
                        let keep = Tensor::ones([k, s.ids.size()[0]], (Kind::Bool, Device::Cpu))
                            .index_copy(1, &pos, &z.to_kind(Kind::Bool));
                        let rows = mask_tokens(&s.ids.unsqueeze(0), &keep, batch.text_mask_id);
                        text_scores(
                            model,
                            &mut std::iter::once(rows),
                            s.pool,
                            &s.image_embedding,
                        )
                    },
                )?;
                for (p, c) in positions.iter().zip(coef) {
                    text[*p as usize] = c as f32;
                }
            }
            Ok((image, text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_coefficients_of_a_linear_scorer() {
        let coef = [0.5f64, -1.25, 2.0, 0.0, 3.5, -0.75];
        let w = Tensor::from_slice(&coef).to_kind(Kind::Float);
        let got = explain(6, 64, 16, 3, &mut |z| z.matmul(&w) + 0.25).unwrap();
        for (g, c) in got.iter().zip(coef) {
            assert!((g - c).abs() < 1e-4, "{got:?}");
        }
    }

    #[test]
    fn coalitions_follow_captum() {
        let z = coalitions(10, 500, 1);
        assert_eq!(z.size(), [500, 10]);
        assert!(z
            .get(0)
            .equal(&Tensor::ones([10], (Kind::Float, Device::Cpu))));
        assert!(z
            .get(1)
            .equal(&Tensor::zeros([10], (Kind::Float, Device::Cpu))));
        let sizes = Vec::<f32>::try_from(z.narrow(0, 2, 498).sum_dim_intlist(
            &[1i64][..],
            false,
            Kind::Float,
        ))
        .unwrap();
        assert!(sizes.iter().all(|&s| (1.0..=9.0).contains(&s)));
        // p(k) ∝ 1/(k(M-k)) is symmetric and heaviest at the ends.
        let ends = sizes.iter().filter(|&&s| s == 1.0 || s == 9.0).count();
        let middle = sizes.iter().filter(|&&s| s == 5.0).count();
        assert!(ends > 2 * middle, "{ends} vs {middle}");
    }

    #[test]
    fn single_feature_scorer_ranks_it_first() {
        let got = explain(8, 100, 32, 5, &mut |z| z.select(1, 3) * 2.0).unwrap();
        let best = got
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 3);
    }
}
