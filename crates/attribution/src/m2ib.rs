//! Multi-modal information bottleneck attribution (Wang et al., NeurIPS 2023; DESIGN.md "M2IB",
//! REFERENCE.md §1 for the official code this reproduces).
//!
//! For modality m with the other modality n: `h` = prefix output at layer l (fixed), `e_n` = the
//! clean embedding of n (fixed), `lam = sigmoid(alpha)`, alpha initialised to 5,
//! `z = lam * h + sigma * (1 - lam) * eps` over B noise copies, per-element capacity
//! `kl = -0.5 * (1 + ln((1 - lam)^2) - (lam * h / sigma)^2 - (1 - lam)^2)`,
//! loss = `beta * mean(kl) - mean_b cos(suffix(z)_b, e_n)`, Adam(lr 1) on alpha. The heatmap is
//! the capacity of the LAST forward pass (alpha after steps - 1 updates), summed over features.
//! With sigma = 1 this is exactly the official algorithm (whose variance is never used).
//!
//! Many samples run as one optimisation: each its own alpha, losses summed (Adam is elementwise,
//! so this equals separate runs), padded text masked out of attention and of each sample's KL
//! mean. Noise per (sample, modality, step) comes from the seeded protocol in `m2ib_clip::rng`,
//! so results do not depend on batching, workers or device.
use crate::attributor::{Attribution, AttributionError, Attributor, Batch, Modality};
use m2ib_clip::rng::{seeded_randn, torch_seed};
use m2ib_clip::{cosine, ClipModel, Layer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

/// Settings of one modality's bottleneck.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bottleneck {
    /// Where the bottleneck sits: a block's output (0-based; negative counts from the end) or
    /// the tower's embeddings (every block in the suffix).
    pub layer: Layer,
    pub beta: f64,
    /// Standard deviation of the prior (the paper's grid speaks of its variance: sigma^2).
    pub sigma: f64,
    pub steps: usize,
    /// Noise copies per step (the official batch of 10).
    pub copies: i64,
    pub lr: f64,
    /// Also run the last step's suffix to record its loss (the readout never needs it).
    #[serde(skip)]
    pub trace_last_loss: bool,
}

impl Default for Bottleneck {
    /// The official evaluation's settings for ViT-B/32 (REFERENCE.md §1.7).
    fn default() -> Self {
        Bottleneck {
            layer: Layer::Block(9),
            beta: 0.1,
            sigma: 1.0,
            steps: 10,
            copies: 10,
            lr: 1.0,
            trace_last_loss: false,
        }
    }
}

pub const ALPHA_INIT: f64 = 5.0;
pub const COSINE_EPS: f64 = 1e-6;
const ADAM_BETAS: (f64, f64) = (0.9, 0.999);
const ADAM_EPS: f64 = 1e-8;

impl Bottleneck {
    /// `var` is accepted as an alias: sigma = sqrt(var).
    pub fn with_var(mut self, var: f64) -> Self {
        self.sigma = var.sqrt();
        self
    }

    pub fn validate(&self) -> Result<(), AttributionError> {
        let bad = |name: &str, message: String| {
            Err(AttributionError::InvalidParameter {
                name: name.into(),
                message,
            })
        };
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return bad(
                "beta",
                format!("must be a finite number >= 0, got {}", self.beta),
            );
        }
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return bad(
                "sigma",
                format!("must be a finite number > 0, got {}", self.sigma),
            );
        }
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if self.copies < 1 {
            return bad("copies", format!("must be at least 1, got {}", self.copies));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be > 0, got {}", self.lr));
        }
        Ok(())
    }

    pub fn params(&self) -> Value {
        json!({
            "layer": self.layer, "beta": self.beta, "sigma": self.sigma, "var": self.sigma * self.sigma,
            "steps": self.steps, "copies": self.copies, "lr": self.lr, "alpha_init": ALPHA_INIT,
        })
    }
}

/// 1 - t (exactly torch's `1 - t`: negation is exact and addition commutes).
fn one_minus(t: &Tensor) -> Tensor {
    t.neg() + 1.0
}

/// Per-element capacity KL(N(lam h / sigma, (1 - lam)^2) || N(0, 1)).
pub fn capacity(lam: &Tensor, h: &Tensor, sigma: f64) -> Tensor {
    let var = one_minus(lam).square();
    let mu: Tensor = lam * h / sigma;
    (var.log() + 1.0 - mu.square() - &var) * -0.5
}

/// The noise of (sample, modality, step): `randn([copies, tokens, dim])` right after
/// `manual_seed(splitmix64(sample_seed ^ (modality << 32) ^ (step << 40)) & (2^63 - 1))`.
pub fn noise_seed(sample_seed: u64, modality: Modality, step: usize) -> i64 {
    torch_seed(sample_seed ^ ((modality as u64) << 32) ^ ((step as u64) << 40))
}

/// PyTorch's `torch.optim.Adam` (single-tensor path) on one tensor, bit for bit in its
/// arithmetic order.
struct Adam {
    m: Tensor,
    v: Tensor,
    t: i32,
    lr: f64,
}

impl Adam {
    fn new(like: &Tensor, lr: f64) -> Self {
        Adam {
            m: like.zeros_like(),
            v: like.zeros_like(),
            t: 0,
            lr,
        }
    }

    fn step(&mut self, param: &mut Tensor, grad: &Tensor) {
        let (b1, b2) = ADAM_BETAS;
        self.t += 1;
        tch::no_grad(|| {
            let _ = self.m.lerp_(grad, 1.0 - b1);
            let _ = self.v.g_mul_scalar_(b2);
            let _ = self.v.g_add_(&(grad * (1.0 - b2) * grad));
            let bc1 = 1.0 - b1.powi(self.t);
            let bc2 = 1.0 - b2.powi(self.t);
            let denom = (self.v.sqrt() / bc2.sqrt()) + ADAM_EPS;
            let _ = param.g_add_(&((&self.m / denom) * -(self.lr / bc1)));
        });
    }
}

/// What one modality's optimisation produced for a batch.
pub struct Capacity {
    /// Capacity of the last forward pass summed over features: [S, T].
    pub scores: Tensor,
    /// The same per element: [S, T, D].
    pub elements: Tensor,
    /// Per sample, the loss of every forward pass (the last one only with `trace_last_loss`).
    pub losses: Vec<Vec<f64>>,
}

/// Runs the bottleneck on `h` [S, T, D]. `valid` [S, T] marks real positions (text padding is 0).
/// `suffix` maps z [S*B, T, D] to embeddings [S*B, P]; `target` [S, P] is the other modality.
fn optimise(
    h: &Tensor,
    valid: &Tensor,
    target: &Tensor,
    suffix: &dyn Fn(&Tensor) -> Result<Tensor, AttributionError>,
    noise: &dyn Fn(usize) -> Tensor,
    s: &Bottleneck,
) -> Result<Capacity, AttributionError> {
    let (n, t, d) = h.size3()?;
    let b = s.copies;
    let device = h.device();
    let mut alpha =
        Tensor::full([n, t, d], ALPHA_INIT, (Kind::Float, device)).set_requires_grad(true);
    let mut adam = Adam::new(&alpha, s.lr);
    // Elements per sample in the KL mean: real positions x features.
    let count = valid.sum_dim_intlist(&[1i64][..], false, Kind::Float) * d as f64;
    let valid3 = valid.unsqueeze(-1);
    let target_rep = target.repeat_interleave_self_int(b, 0, None);
    let mut losses = vec![Vec::with_capacity(s.steps); n as usize];
    for step in 0..s.steps {
        let lam = alpha.sigmoid();
        let kl = capacity(&lam, h, s.sigma);
        let last = step + 1 == s.steps;
        if last && !s.trace_last_loss {
            // Readout from the last forward: only the capacity is needed, not the suffix.
            let elements = kl.detach() * valid3;
            let scores = elements.sum_dim_intlist(&[2i64][..], false, Kind::Float);
            return Ok(Capacity {
                scores,
                elements,
                losses,
            });
        }
        let eps = noise(step);
        let lam_b = lam.unsqueeze(1);
        let z = (&lam_b * h.unsqueeze(1) + one_minus(&lam_b).square().sqrt() * eps * s.sigma)
            .view([n * b, t, d]);
        let kl_mean = (&kl * &valid3).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float) / &count;
        let emb = suffix(&z)?;
        let cos = cosine(&emb, &target_rep, COSINE_EPS).view([n, b]).mean_dim(
            &[1i64][..],
            false,
            Kind::Float,
        );
        let loss = &kl_mean * s.beta - cos;
        for (i, l) in Vec::<f64>::try_from(loss.to_kind(Kind::Double).to_device(tch::Device::Cpu))?
            .into_iter()
            .enumerate()
        {
            losses[i].push(l);
        }
        if last {
            // Readout from the last forward; its backward and update would be wasted work.
            let elements = kl.detach() * valid3;
            let scores = elements.sum_dim_intlist(&[2i64][..], false, Kind::Float);
            return Ok(Capacity {
                scores,
                elements,
                losses,
            });
        }
        let grad =
            Tensor::run_backward(&[loss.sum(Kind::Float)], &[&alpha], false, false).remove(0);
        adam.step(&mut alpha, &grad);
    }
    unreachable!("steps >= 1 is validated")
}

/// Image-side capacity for a batch: [S, 1 + grid^2] (class token included).
pub fn image_capacity(
    model: &ClipModel,
    batch: &Batch,
    s: &Bottleneck,
) -> Result<Capacity, AttributionError> {
    s.validate()?;
    s.layer.blocks_before(model.vision_depth())?;
    let (h, target) = tch::no_grad(|| -> Result<_, AttributionError> {
        Ok((
            model.image_prefix(&batch.pixels, s.layer)?,
            model.text_features(&batch.text),
        ))
    })?;
    let (n, t, d) = h.size3()?;
    let valid = Tensor::ones([n, t], (Kind::Float, h.device()));
    let noise = |step: usize| {
        let per: Vec<Tensor> = batch
            .seeds
            .iter()
            .map(|&seed| {
                seeded_randn(
                    noise_seed(seed, Modality::Image, step),
                    &[s.copies, t, d],
                    h.device(),
                )
            })
            .collect();
        Tensor::stack(&per, 0)
    };
    let suffix = |z: &Tensor| Ok(model.image_suffix(z, s.layer)?);
    optimise(&h, &valid, &target, &suffix, &noise, s)
}

/// Text-side capacity for a batch: [S, L] (padding positions 0).
pub fn text_capacity(
    model: &ClipModel,
    batch: &Batch,
    s: &Bottleneck,
) -> Result<Capacity, AttributionError> {
    s.validate()?;
    s.layer.blocks_before(model.text_depth())?;
    let (h, target) = tch::no_grad(|| -> Result<_, AttributionError> {
        Ok((
            model.text_prefix(&batch.text, s.layer)?,
            model.image_features(&batch.pixels),
        ))
    })?;
    let (_, l, d) = h.size3()?;
    let valid = batch.valid_mask();
    let text_rep = batch.text.repeat_rows(s.copies);
    let noise = |step: usize| {
        // Each sample draws noise of its own length, so padding never changes the numbers.
        let per: Vec<Tensor> = batch
            .seeds
            .iter()
            .zip(&batch.lengths)
            .map(|(&seed, &len)| {
                let e = seeded_randn(
                    noise_seed(seed, Modality::Text, step),
                    &[s.copies, len as i64, d],
                    h.device(),
                );
                e.constant_pad_nd([0, 0, 0, l - len as i64])
            })
            .collect();
        Tensor::stack(&per, 0)
    };
    let suffix = |z: &Tensor| Ok(model.text_suffix(z, s.layer, &text_rep)?);
    optimise(&h, &valid, &target, &suffix, &noise, s)
}

/// Capacity per patch -> raw image map at the model's input size: drop the class token, reshape
/// to the patch grid (row-major), bilinear upsampling with align_corners = false.
pub fn patch_scores_to_map(scores: &Tensor, grid: i64, size: i64) -> Tensor {
    crate::common::grid_to_map(&scores.narrow(1, 1, grid * grid), grid, size)
}

/// M2IB for both modalities.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct M2ib {
    pub image: Bottleneck,
    pub text: Bottleneck,
}

/// The number of blocks before the bottleneck (0 for the embeddings), refusing the last block
/// of a tower: after it come only the final norm and pooling, so the maps would not depend on
/// beta (no suffix block to learn through). The capacity functions stay permissive (the
/// official code allows it; goldens).
pub fn bottleneck_block(
    layer: Layer,
    depth: usize,
    tower: &str,
) -> Result<usize, AttributionError> {
    let n = layer.blocks_before(depth)?;
    if n == depth {
        return Err(AttributionError::InvalidParameter {
            name: format!("{tower}_layer"),
            message: format!(
                "layer {layer} is the last of the {tower} tower's {depth} blocks: a bottleneck there has no block after it (only the final norm and pooling), so its maps do not depend on beta; use {}..={} ({}..={} from the end) or \"embeddings\"",
                0,
                depth as i64 - 2,
                -(depth as i64),
                -2
            ),
        });
    }
    Ok(n)
}

impl Attributor for M2ib {
    fn name(&self) -> &'static str {
        "m2ib"
    }

    fn check_depths(&self, vision_depth: usize, text_depth: usize) -> Result<(), AttributionError> {
        bottleneck_block(self.image.layer, vision_depth, "image")?;
        bottleneck_block(self.text.layer, text_depth, "text")?;
        Ok(())
    }

    fn params(&self) -> Value {
        json!({ "image": self.image.params(), "text": self.text.params() })
    }

    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError> {
        bottleneck_block(self.image.layer, model.vision_depth(), "image")?;
        bottleneck_block(self.text.layer, model.text_depth(), "text")?;
        let img = image_capacity(model, batch, &self.image)?;
        let txt = text_capacity(model, batch, &self.text)?;
        let vc = &model.config.vision_config;
        let maps =
            patch_scores_to_map(&img.scores, vc.grid(), vc.image_size).to_device(tch::Device::Cpu);
        let text = txt.scores.to_device(tch::Device::Cpu);
        let params = self.params();
        batch.split(&maps, &text, &params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn capacity_at_alpha_5_is_the_closed_form() {
        // lam = sigmoid(5): kl = 4.50674 + 0.49333 h^2 / sigma^2 (DESIGN.md).
        let lam = Tensor::full([5], ALPHA_INIT, (Kind::Float, Device::Cpu)).sigmoid();
        let h = t(&[0.0, 1.0, -2.0, 3.5, 10.0]);
        for sigma in [1.0, 0.5, 2.0] {
            let want = (h.square() / (sigma * sigma)) * 0.49333 + 4.50674;
            let got = capacity(&lam, &h, sigma);
            let rel = f64::try_from(((&got - &want) / &want).abs().max()).unwrap();
            assert!(rel < 2e-5, "sigma {sigma}: {got} vs {want}");
        }
    }

    #[test]
    fn capacity_scales_with_sigma() {
        // kl(h, sigma) == kl(h / sigma, 1)
        let lam = t(&[0.1, 0.5, 0.9, 0.99]);
        let h = t(&[0.3, -1.7, 2.2, 5.0]);
        for sigma in [0.1, 0.7, 3.0] {
            let a = capacity(&lam, &h, sigma);
            let rel = (&a - capacity(&lam, &(&h / sigma), 1.0)).abs() / a.abs();
            assert!(f64::try_from(rel.max()).unwrap() < 1e-6);
        }
    }

    #[test]
    fn noise_variance_is_sigma_squared_times_one_minus_lambda_squared() {
        let n = 100_000;
        let lam = 0.3f64;
        let sigma = 1.7f64;
        let h = 2.0f64;
        let eps = m2ib_clip::rng::seeded_randn(1, &[n], Device::Cpu);
        let lam_t = Tensor::full([n], lam, (Kind::Float, Device::Cpu));
        let z = &lam_t * h + one_minus(&lam_t).square().sqrt() * eps * sigma;
        let var = f64::try_from(z.var(true)).unwrap();
        let want = sigma * sigma * (1.0 - lam) * (1.0 - lam);
        assert!((var / want - 1.0).abs() < 0.01, "{var} vs {want}");
        let mean = f64::try_from(z.mean(Kind::Float)).unwrap();
        assert!((mean - lam * h).abs() < 0.01);
    }

    /// A stand-in for the suffix: the mean over tokens, then a fixed projection.
    fn toy() -> (
        Tensor,
        Tensor,
        impl Fn(&Tensor) -> Result<Tensor, AttributionError>,
    ) {
        let h = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.1, 1.5, -0.3]).view([1, 3, 2]);
        let target = Tensor::from_slice(&[1.0f32, -0.5, 0.25]).view([1, 3]);
        let w = Tensor::from_slice(&[1.0f32, 0.0, 0.5, 0.0, 1.0, -1.0]).view([3, 2]);
        (h, target, move |z: &Tensor| {
            Ok(z.mean_dim(&[1i64][..], false, Kind::Float).matmul(&w.tr()))
        })
    }

    #[test]
    fn readout_is_the_last_forward_after_steps_minus_one_updates() {
        let (h, target, suffix) = toy();
        let valid = Tensor::ones([1, 3], (Kind::Float, Device::Cpu));
        let noise =
            |step: usize| m2ib_clip::rng::seeded_randn(step as i64, &[1, 4, 3, 2], Device::Cpu);
        let s = |steps| Bottleneck {
            steps,
            copies: 4,
            beta: 0.5,
            trace_last_loss: true,
            ..Bottleneck::default()
        };
        let at5 = capacity(
            &Tensor::full([1, 3, 2], ALPHA_INIT, (Kind::Float, Device::Cpu)).sigmoid(),
            &h,
            1.0,
        );
        // One step: no update has happened.
        let one = optimise(&h, &valid, &target, &suffix, &noise, &s(1)).unwrap();
        assert!(one.elements.equal(&at5));
        // Two steps: exactly one Adam update, which moves every alpha by about -lr * sign(grad).
        let two = optimise(&h, &valid, &target, &suffix, &noise, &s(2)).unwrap();
        let at4 = capacity(
            &Tensor::full([1, 3, 2], 4.0, (Kind::Float, Device::Cpu)).sigmoid(),
            &h,
            1.0,
        );
        let at6 = capacity(
            &Tensor::full([1, 3, 2], 6.0, (Kind::Float, Device::Cpu)).sigmoid(),
            &h,
            1.0,
        );
        let near = |a: &Tensor| (&two.elements - a).abs().le(1e-3);
        assert!(
            bool::try_from(near(&at4).logical_or(&near(&at6)).all()).unwrap(),
            "{}",
            two.elements
        );
        assert!(!bool::try_from(near(&at5).all()).unwrap());
        assert_eq!(two.losses[0].len(), 2);
        assert_eq!(two.losses[0][0], one.losses[0][0]);
    }

    #[test]
    fn noise_seeds_follow_the_protocol() {
        use m2ib_clip::rng::splitmix64;
        let want = (splitmix64(77 ^ (1 << 32) ^ (3 << 40)) & (u64::MAX >> 1)) as i64;
        assert_eq!(noise_seed(77, Modality::Text, 3), want);
        assert_ne!(
            noise_seed(77, Modality::Image, 3),
            noise_seed(77, Modality::Text, 3)
        );
    }

    #[test]
    fn var_is_an_alias_of_sigma_squared() {
        let b = Bottleneck::default().with_var(0.25);
        assert_eq!(b.sigma, 0.5);
        assert_eq!(b.params()["var"], 0.25);
        assert!(Bottleneck {
            beta: -1.0,
            ..Bottleneck::default()
        }
        .validate()
        .is_err());
    }
}
