//! ROAR+ (remove and retrain; DESIGN.md "Metrics"): degrade the training split by a method's
//! maps (image: the top `fraction` of pixels -> 0 in normalised space, the channel mean; text:
//! the top `fraction` of content tokens -> `text_mask_id`), fine-tune with the symmetric CLIP
//! loss, evaluate the loss on the ORIGINAL validation split. L_clean is the same fine-tuning on
//! clean data; score = (L_degraded - L_clean) / L_clean * 100; each split draws a new 80/20 split,
//! or, with a fixed validation set (`RoarData::val`), trains on every other pair in a new order.
use crate::MetricError;
use m2ib_attribution::perturb::{content_positions, mask_pixels, mask_positions};
use m2ib_clip::rng::splitmix64;
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::train::{contrastive_loss, train, TrainBatch, TrainConfig};
use m2ib_clip::{ClipModel, Pooling};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoarConfig {
    pub fraction: f64,
    /// Fine-tunings per score, each on its own split (or batch order, with a fixed validation set).
    pub splits: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub val_fraction: f64,
    /// The validation loss is the mean contrastive loss over batches of exactly this many pairs
    /// (a leftover smaller batch is not scored): the loss of a batch depends on its size (chance
    /// is ln(size)), so a tiny validation batch is near 0 and the score's denominator is noise.
    pub val_batch_size: usize,
    pub seed: u64,
}

/// The smallest validation batch a ROAR+ configuration may use (see `val_batch_size`).
pub const MIN_VAL_BATCH: usize = 8;

/// A clean validation loss below this is refused (an error row, not a score): the score divides
/// by it, so the validation pairs must not be trivially easy for the model.
pub const MIN_CLEAN_LOSS: f64 = 0.01;

impl Default for RoarConfig {
    fn default() -> Self {
        RoarConfig {
            fraction: 0.5,
            splits: 1,
            steps: 50,
            batch_size: 32,
            lr: 1e-4,
            val_fraction: 0.2,
            val_batch_size: 16,
            seed: 0,
        }
    }
}

/// The pairs ROAR+ trains on.
pub struct RoarData {
    /// [N, 3, H, W] normalised pixels (CPU).
    pub pixels: Tensor,
    /// Ids with start and end per caption.
    pub ids: Vec<Vec<i64>>,
    pub content: Vec<Vec<bool>>,
    pub end_id: i64,
    pub pad_id: i64,
    pub text_mask_id: i64,
    /// The last `val` pairs are a fixed validation set (the same for every repeat and split,
    /// never explained or degraded); 0: each split seed draws `val_fraction` of the pairs.
    pub val: usize,
}

/// One method's maps for every pair (any monotone scale: only ranks matter). A modality without
/// maps is left intact, so image and text ROAR+ are scored separately.
pub struct RoarMaps {
    /// [N, H, W].
    pub image: Option<Tensor>,
    pub text: Option<Vec<Vec<f32>>>,
}

/// The clean fine-tuning of one split: shared by every method (same split, same batch order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CleanLoss {
    /// Caches written before the field's rename call it `repeat`.
    #[serde(alias = "repeat")]
    pub split: usize,
    pub split_seed: u64,
    pub l_clean: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoarSplit {
    pub split: usize,
    pub split_seed: u64,
    pub l_clean: f64,
    pub l_degraded: f64,
    pub score: f64,
}

/// Number of items removed out of `n`: round(fraction * n).
fn removed(n: usize, fraction: f64) -> usize {
    ((n as f64) * fraction).round() as usize
}

/// The degraded copy of the data. Maps may cover only the first pairs (the training pairs of a
/// fixed validation set): the rest stay intact.
pub fn degrade(data: &RoarData, maps: &RoarMaps, fraction: f64) -> (Tensor, Vec<Vec<i64>>) {
    let (n, _, h, w) = data.pixels.size4().expect("[N, 3, H, W]");
    let pixels = match &maps.image {
        None => data.pixels.shallow_clone(),
        Some(image) => {
            let m = image.size()[0];
            let k = removed((h * w) as usize, fraction) as i64;
            let flat = image.view([m, h * w]);
            let top = flat.argsort(1, true).narrow(1, 0, k);
            let keep = Tensor::cat(
                &[
                    Tensor::ones([m, h * w], (Kind::Float, Device::Cpu))
                        .scatter_value(1, &top, 0.0),
                    Tensor::ones([n - m, h * w], (Kind::Float, Device::Cpu)),
                ],
                0,
            );
            mask_pixels(&data.pixels, &keep.view([n, h, w]))
        }
    };
    let Some(text) = &maps.text else {
        return (pixels, data.ids.clone());
    };
    let ids = data
        .ids
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            let Some(s) = text.get(i) else {
                return ids.clone();
            };
            let mut pos = content_positions(&data.content[i]);
            pos.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
            pos.truncate(removed(pos.len(), fraction));
            mask_positions(ids, &pos, data.text_mask_id)
        })
        .collect();
    (pixels, ids)
}

/// Training and validation indices: the fixed validation set when the data has one, else a
/// seeded draw of `val_fraction`.
fn split_of(data: &RoarData, cfg: &RoarConfig, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n = data.ids.len();
    match data.val {
        0 => split(n, cfg.val_fraction, seed),
        v => ((0..n - v).collect(), (n - v..n).collect()),
    }
}

fn split(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut s = seed;
    for i in (1..n).rev() {
        s = splitmix64(s);
        idx.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let n_val = ((n as f64) * val_fraction).round().max(1.0) as usize;
    let val = idx.split_off(n - n_val);
    (idx, val)
}

fn select(
    pixels: &Tensor,
    ids: &[Vec<i64>],
    idx: &[usize],
    data: &RoarData,
    device: Device,
) -> TrainBatch {
    let t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let rows: Vec<Vec<i64>> = idx.iter().map(|&i| ids[i].clone()).collect();
    TrainBatch {
        pixels: pixels.index_select(0, &t).to_device(device),
        text: text_input(&rows, data.pad_id, data.end_id, Pooling::Eos).to_device(device),
        negatives: None,
        also_true: None,
        negative_images: None,
    }
}

/// Fine-tunes a fresh model on (pixels, ids) restricted to `train_idx`; returns the mean
/// contrastive loss on the original validation pairs.
fn finetune_and_validate(
    load: &dyn Fn() -> Result<ClipModel, MetricError>,
    pixels: &Tensor,
    ids: &[Vec<i64>],
    (train_idx, val_idx): (&[usize], &[usize]),
    data: &RoarData,
    cfg: &RoarConfig,
    order_seed: u64,
) -> Result<f64, MetricError> {
    let mut model = load()?;
    let device = model.device();
    let tc = TrainConfig {
        steps: cfg.steps,
        lr: cfg.lr,
        weight_decay: 0.0,
        warmup_steps: (cfg.steps / 10).max(1),
        logit_scale_lr_mult: 1.0,
    };
    let mut s = order_seed;
    train(
        &mut model,
        &tc,
        |_| {
            let idx: Vec<usize> = (0..cfg.batch_size.min(train_idx.len()))
                .map(|_| {
                    s = splitmix64(s);
                    train_idx[(s % train_idx.len() as u64) as usize]
                })
                .collect();
            select(pixels, ids, &idx, data, device)
        },
        |_, _| {},
    )?;
    if val_idx.len() < cfg.val_batch_size {
        return Err(MetricError::Undefined(format!(
            "ROAR+: {} validation pairs, fewer than one validation batch of {}",
            val_idx.len(),
            cfg.val_batch_size
        )));
    }
    let mut total = 0.0;
    let mut count = 0.0;
    for chunk in val_idx.chunks_exact(cfg.val_batch_size) {
        let b = select(&data.pixels, &data.ids, chunk, data, device);
        total += f64::try_from(tch::no_grad(|| contrastive_loss(&model, &b)))? * chunk.len() as f64;
        count += chunk.len() as f64;
    }
    Ok(total / count)
}

fn split_seed_of(cfg: &RoarConfig, r: usize) -> u64 {
    splitmix64(cfg.seed ^ (r as u64) << 16)
}

/// L_clean of every split (the same for every method: compute it once and share it).
pub fn roar_clean(
    load: &dyn Fn() -> Result<ClipModel, MetricError>,
    data: &RoarData,
    cfg: &RoarConfig,
) -> Result<Vec<CleanLoss>, MetricError> {
    (0..cfg.splits)
        .map(|r| {
            let split_seed = split_seed_of(cfg, r);
            let (train_idx, val_idx) = split_of(data, cfg, split_seed);
            let l_clean = finetune_and_validate(
                load,
                &data.pixels,
                &data.ids,
                (&train_idx, &val_idx),
                data,
                cfg,
                splitmix64(split_seed),
            )?;
            Ok(CleanLoss {
                split: r,
                split_seed,
                l_clean,
            })
        })
        .collect()
}

/// ROAR+ for one method given the shared clean losses: each split fine-tunes on the degraded
/// data with the clean run's split and batch order.
pub fn roar_degraded(
    load: &dyn Fn() -> Result<ClipModel, MetricError>,
    data: &RoarData,
    maps: &RoarMaps,
    cfg: &RoarConfig,
    clean: &[CleanLoss],
) -> Result<Vec<RoarSplit>, MetricError> {
    let (deg_pixels, deg_ids) = degrade(data, maps, cfg.fraction);
    clean
        .iter()
        .map(|c| {
            let (train_idx, val_idx) = split_of(data, cfg, c.split_seed);
            let l_degraded = finetune_and_validate(
                load,
                &deg_pixels,
                &deg_ids,
                (&train_idx, &val_idx),
                data,
                cfg,
                splitmix64(c.split_seed),
            )?;
            Ok(RoarSplit {
                split: c.split,
                split_seed: c.split_seed,
                l_clean: c.l_clean,
                l_degraded,
                score: (l_degraded - c.l_clean) / c.l_clean * 100.0,
            })
        })
        .collect()
}

/// ROAR+ for one method: `cfg.splits` fine-tunings, each a new split; the clean and the degraded
/// fine-tuning of a split see the same batch order.
pub fn roar_plus(
    load: &dyn Fn() -> Result<ClipModel, MetricError>,
    data: &RoarData,
    maps: &RoarMaps,
    cfg: &RoarConfig,
) -> Result<Vec<RoarSplit>, MetricError> {
    roar_degraded(load, data, maps, cfg, &roar_clean(load, data, cfg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrade_removes_the_top_half() {
        let data = RoarData {
            pixels: Tensor::ones([1, 3, 2, 2], (Kind::Float, Device::Cpu)),
            ids: vec![vec![9, 1, 2, 3, 4, 10]],
            content: vec![vec![false, true, true, true, true, false]],
            end_id: 10,
            pad_id: 0,
            text_mask_id: 0,
            val: 0,
        };
        let maps = RoarMaps {
            image: Some(Tensor::from_slice(&[0.1f32, 0.9, 0.5, 0.2]).view([1, 2, 2])),
            text: Some(vec![vec![5.0, 0.1, 0.9, 0.5, 0.2, 5.0]]),
        };
        let (px, ids) = degrade(&data, &maps, 0.5);
        let v = Vec::<f32>::try_from(px.get(0).get(0).flatten(0, -1)).unwrap();
        assert_eq!(v, vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(ids[0], vec![9, 1, 0, 0, 4, 10]);
        let image_only = RoarMaps { text: None, ..maps };
        let (_, ids) = degrade(&data, &image_only, 0.5);
        assert_eq!(ids[0], data.ids[0], "text left intact");
    }

    #[test]
    fn maps_of_the_training_pairs_leave_the_fixed_validation_pairs_intact() {
        let data = RoarData {
            pixels: Tensor::ones([3, 3, 2, 2], (Kind::Float, Device::Cpu)),
            ids: vec![vec![9, 1, 2, 10]; 3],
            content: vec![vec![false, true, true, false]; 3],
            end_id: 10,
            pad_id: 0,
            text_mask_id: 0,
            val: 1,
        };
        let maps = RoarMaps {
            image: Some(
                Tensor::from_slice(&[0.1f32, 0.9, 0.5, 0.2, 0.1, 0.9, 0.5, 0.2]).view([2, 2, 2]),
            ),
            text: Some(vec![vec![0.0, 0.2, 0.9, 0.0]; 2]),
        };
        let (px, ids) = degrade(&data, &maps, 0.5);
        assert_eq!(f64::try_from(px.get(1).sum(Kind::Float)).unwrap(), 6.0);
        assert_eq!(f64::try_from(px.get(2).sum(Kind::Float)).unwrap(), 12.0);
        assert_eq!(
            ids,
            [vec![9, 1, 0, 10], vec![9, 1, 0, 10], vec![9, 1, 2, 10]]
        );
        let cfg = RoarConfig::default();
        assert_eq!(split_of(&data, &cfg, 1), (vec![0, 1], vec![2]));
        assert_eq!(split_of(&data, &cfg, 2), (vec![0, 1], vec![2]));
    }

    #[test]
    fn splits_are_80_20_and_disjoint() {
        let (t, v) = split(50, 0.2, 3);
        assert_eq!((t.len(), v.len()), (40, 10));
        assert!(v.iter().all(|i| !t.contains(i)));
        assert_ne!(split(50, 0.2, 4).1, v);
    }
}
