//! Pieces the baselines share: the target score (cosine of the two embeddings), scoring many
//! perturbed inputs in bounded batches, and turning patch-grid scores into a map.
use m2ib_clip::{cosine, ClipModel, TextInput};
use tch::{Kind, Tensor};

/// Cosine eps of the target score (as torch's default).
pub const SCORE_EPS: f64 = 1e-8;

/// Scores of perturbed images [K, 3, H, W] against a fixed text embedding [P], `batch_size` at a
/// time, so memory does not grow with K. Returns [K] on the CPU.
pub fn image_scores(
    model: &ClipModel,
    images: &mut dyn Iterator<Item = Tensor>,
    target: &Tensor,
) -> Tensor {
    let parts: Vec<Tensor> = images
        .map(|chunk| {
            tch::no_grad(|| {
                let e = model.image_features(&chunk.to_device(model.device()));
                cosine(&e, &target.unsqueeze(0).expand_as(&e), SCORE_EPS)
                    .to_device(tch::Device::Cpu)
            })
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Scores of perturbed id rows [K, L] (same length, no padding; pooled at `pool`) against a
/// fixed image embedding [P], in chunks. Returns [K] on the CPU.
pub fn text_scores(
    model: &ClipModel,
    rows: &mut dyn Iterator<Item = Tensor>,
    pool: i64,
    target: &Tensor,
) -> Tensor {
    let parts: Vec<Tensor> = rows
        .map(|ids| {
            let ids = ids.to_device(model.device());
            let k = ids.size()[0];
            let input = TextInput {
                attention_mask: ids.ones_like(),
                pool_index: Tensor::full([k], pool, (Kind::Int64, ids.device())),
                ids,
            };
            tch::no_grad(|| {
                let e = model.text_features(&input);
                cosine(&e, &target.unsqueeze(0).expand_as(&e), SCORE_EPS)
                    .to_device(tch::Device::Cpu)
            })
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Splits `0..n` into chunks of `size` (at least 1).
pub fn chunks(n: i64, size: i64) -> impl Iterator<Item = (i64, i64)> {
    let size = size.max(1);
    (0..n)
        .step_by(size as usize)
        .map(move |s| (s, (n - s).min(size)))
}

/// Patch-grid scores [B, g*g] (row-major) -> maps [B, size, size], bilinear, align_corners = false.
pub fn grid_to_map(scores: &Tensor, grid: i64, size: i64) -> Tensor {
    let b = scores.size()[0];
    scores
        .view([b, 1, grid, grid])
        .upsample_bilinear2d([size, size], false, None, None)
        .view([b, size, size])
}

/// Each sample's own text input (its real length), for methods that run text per sample.
pub fn sample_ids(batch: &crate::Batch, i: usize) -> (Tensor, i64) {
    let len = batch.lengths[i] as i64;
    let ids = batch
        .text
        .ids
        .get(i as i64)
        .narrow(0, 0, len)
        .to_device(tch::Device::Cpu);
    let pool = i64::try_from(batch.text.pool_index.get(i as i64)).unwrap_or(len - 1);
    (ids, pool)
}
