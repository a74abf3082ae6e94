//! RISE (Petsiuk et al. 2018), DESIGN.md "Baselines": image — N random binary s x s grids with
//! keep probability p, bilinearly upsampled to (s + 1) * cell and cropped at a random shift,
//! multiplying the normalised pixels; text — per content token Bernoulli(p), removed tokens
//! become `text_mask_id`. Map = sum_i score(x * M_i) M_i / (N p). Masks are made and scored
//! `batch_size` at a time, so memory does not grow with N.
use crate::attributor::{Attribution, AttributionError, Attributor, Batch, Modality};
use crate::common::{image_scores, text_scores};
use crate::perturb::{mask_pixels, mask_tokens};
use m2ib_clip::rng::{torch_seed, with_seed};
use m2ib_clip::ClipModel;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rise {
    pub image_masks: i64,
    pub text_masks: i64,
    /// Grid cells per side.
    pub grid: i64,
    /// Keep probability.
    pub p: f64,
    pub batch_size: i64,
}

impl Default for Rise {
    fn default() -> Self {
        Rise {
            image_masks: 2048,
            text_masks: 256,
            grid: 7,
            p: 0.5,
            batch_size: 64,
        }
    }
}

const RISE_STREAM: u64 = m2ib_clip::rng::stream::RISE;

fn chunk_seed(sample_seed: u64, modality: Modality, chunk: i64) -> i64 {
    torch_seed(sample_seed ^ RISE_STREAM ^ ((modality as u64) << 32) ^ ((chunk as u64) << 40))
}

/// `k` RISE image masks [k, size, size] in [0, 1] (CPU).
pub fn image_masks(k: i64, grid: i64, p: f64, size: i64, seed: i64) -> Tensor {
    let cell = (size + grid - 1) / grid;
    let up = (grid + 1) * cell;
    let (g, shifts) = with_seed(seed, || {
        let g = Tensor::rand([k, 1, grid, grid], (Kind::Float, Device::Cpu))
            .lt(p)
            .to_kind(Kind::Float);
        let shifts = Tensor::randint(cell, [k, 2], (Kind::Int64, Device::Cpu));
        (g, shifts)
    });
    let big = g.upsample_bilinear2d([up, up], false, None, None);
    let shifts: Vec<i64> = Vec::try_from(shifts.flatten(0, -1)).expect("shifts");
    let crops: Vec<Tensor> = (0..k as usize)
        .map(|i| {
            big.get(i as i64)
                .get(0)
                .narrow(0, shifts[2 * i], size)
                .narrow(1, shifts[2 * i + 1], size)
        })
        .collect();
    Tensor::stack(&crops, 0)
}

/// sum_i score(M_i) M_i / (N p) over `n` masks made `batch` at a time by `make(chunk, k)`.
pub fn accumulate(
    n: i64,
    batch: i64,
    p: f64,
    make: &mut dyn FnMut(i64, i64) -> Tensor,
    score: &mut dyn FnMut(&Tensor) -> Tensor,
) -> Tensor {
    let mut sal: Option<Tensor> = None;
    for (c, (_, k)) in crate::common::chunks(n, batch).enumerate() {
        let m = make(c as i64, k);
        let s = score(&m);
        let shape: Vec<i64> = std::iter::once(k)
            .chain(std::iter::repeat_n(1, m.dim() - 1))
            .collect();
        let contrib =
            (&m * s.view(shape.as_slice())).sum_dim_intlist(&[0i64][..], false, Kind::Float);
        sal = Some(match sal {
            None => contrib,
            Some(t) => t + contrib,
        });
    }
    sal.expect("n >= 1") / (n as f64 * p)
}

impl Attributor for Rise {
    fn name(&self) -> &'static str {
        "rise"
    }

    fn params(&self) -> Value {
        json!({"image_masks": self.image_masks, "text_masks": self.text_masks, "grid": self.grid, "p": self.p,
               "batch_size": self.batch_size, "upsampling": "bilinear + random shift", "image_removed": "0 (normalised)",
               "text_removed": "text_mask_id"})
    }

    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let size = model.config.vision_config.image_size;
        batch.probe_each(model, self.params(), |s| {
            let seed = s.seed;
            let image = accumulate(
                self.image_masks,
                self.batch_size,
                self.p,
                &mut |c, k| {
                    image_masks(
                        k,
                        self.grid,
                        self.p,
                        size,
                        chunk_seed(seed, Modality::Image, c),
                    )
                },
                &mut |m| {
                    image_scores(
                        model,
                        &mut std::iter::once(mask_pixels(&s.pixels, m)),
                        &s.text_embedding,
                    )
                },
            );
            let content =
                Tensor::from_slice(&s.content.iter().map(|&c| c as i64).collect::<Vec<_>>())
                    .to_kind(Kind::Bool);
            let l = s.ids.size()[0];
            let text = accumulate(
                self.text_masks,
                self.batch_size,
                self.p,
                &mut |c, k| {
                    let keep = with_seed(chunk_seed(seed, Modality::Text, c), || {
                        Tensor::rand([k, l], (Kind::Float, Device::Cpu)).lt(self.p)
                    });
                    // Start, end and padding are never removed.
                    keep.logical_or(&content.logical_not().unsqueeze(0))
                        .to_kind(Kind::Float)
                },
                &mut |m| {
                    let perturbed = mask_tokens(
                        &s.ids.unsqueeze(0),
                        &m.to_kind(Kind::Bool),
                        batch.text_mask_id,
                    );
                    text_scores(
                        model,
                        &mut std::iter::once(perturbed),
                        s.pool,
                        &s.image_embedding,
                    )
                },
            );
            Ok((image, Vec::<f32>::try_from(text)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_shifted_smooth_grids_in_0_1() {
        let m = image_masks(16, 7, 0.5, 224, 3);
        assert_eq!(m.size(), [16, 224, 224]);
        let (lo, hi) = (
            f64::try_from(m.min()).unwrap(),
            f64::try_from(m.max()).unwrap(),
        );
        assert!(lo >= 0.0 && hi <= 1.0 && hi > lo);
        let mean = f64::try_from(m.mean(Kind::Float)).unwrap();
        assert!((mean - 0.5).abs() < 0.1, "{mean}");
        assert!(m.equal(&image_masks(16, 7, 0.5, 224, 3)), "seeded");
    }

    #[test]
    fn single_feature_scorer_ranks_it_first() {
        // Scorer = the mask value at one token: RISE's map peaks there.
        let sal = accumulate(
            512,
            64,
            0.5,
            &mut |c, k| {
                with_seed(c, || {
                    Tensor::rand([k, 6], (Kind::Float, Device::Cpu))
                        .lt(0.5)
                        .to_kind(Kind::Float)
                })
            },
            &mut |m| m.select(1, 4),
        );
        let v = Vec::<f32>::try_from(sal).unwrap();
        let best = v
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 4, "{v:?}");
        // E[M_4 * M_4] / p = 1, E[M_4 * M_j] / p = p = 0.5.
        assert!(
            (v[4] - 1.0).abs() < 0.05 && (v[0] - 0.5).abs() < 0.1,
            "{v:?}"
        );
    }
}
