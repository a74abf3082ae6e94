//! Cascading parameter randomisation for the sanity check (Adebayo et al. 2018; DESIGN.md
//! "Model"): from the top down — projections, final norms, layers last to first (the j-th last
//! block of each tower in one step), embeddings — covering every tensor exactly once.
//!
//! Distributions follow HF's init, except LayerNorms, which are perturbed so that they are really
//! randomised: linear/conv weights and embeddings ~ N(0, 0.02), biases 0, LayerNorm weight
//! ~ N(1, 0.02), LayerNorm bias ~ N(0, 0.02), logit_scale reset to its init value.
use crate::model::ClipModel;
use crate::rng::{torch_seed, with_seed};
use tch::{Device, Kind, Tensor};

pub const INIT_STD: f64 = 0.02;

#[derive(Clone, Debug, PartialEq)]
pub struct RandomizationStep {
    /// `projections`, `final_norms`, `layer -1`, ..., `embeddings`.
    pub name: String,
    /// HF parameter names, sorted.
    pub params: Vec<String>,
}

fn is_norm(name: &str) -> bool {
    [
        "layer_norm1.",
        "layer_norm2.",
        "pre_layrnorm.",
        "post_layernorm.",
        "final_layer_norm.",
    ]
    .iter()
    .any(|n| name.contains(n))
}

/// The ordered steps for this model.
pub fn randomization_steps(model: &ClipModel) -> Vec<RandomizationStep> {
    let mut names: Vec<String> = model.vs.variables().into_keys().collect();
    names.sort();
    let take = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        names.iter().filter(|n| pred(n)).cloned().collect()
    };
    let mut steps = vec![
        RandomizationStep {
            name: "projections".into(),
            params: take(&|n| {
                n.starts_with("visual_projection.")
                    || n.starts_with("text_projection.")
                    || n == "logit_scale"
            }),
        },
        RandomizationStep {
            name: "final_norms".into(),
            params: take(&|n| {
                n.starts_with("vision_model.post_layernorm.")
                    || n.starts_with("text_model.final_layer_norm.")
            }),
        },
    ];
    // Aligned from the top: step `layer -j` holds the j-th last block of each tower.
    let (vd, td) = (model.vision_depth(), model.text_depth());
    for j in 1..=vd.max(td) {
        let v = vd
            .checked_sub(j)
            .map(|k| format!("vision_model.encoder.layers.{k}."));
        let t = td
            .checked_sub(j)
            .map(|k| format!("text_model.encoder.layers.{k}."));
        let has = |prefix: &Option<String>, n: &str| {
            prefix.as_ref().is_some_and(|p| n.starts_with(p.as_str()))
        };
        steps.push(RandomizationStep {
            name: format!("layer -{j}"),
            params: take(&|n| has(&v, n) || has(&t, n)),
        });
    }
    steps.push(RandomizationStep {
        name: "embeddings".into(),
        params: take(&|n| {
            n.starts_with("vision_model.embeddings.")
                || n.starts_with("vision_model.pre_layrnorm.")
                || n.starts_with("text_model.embeddings.")
        }),
    });
    steps
}

/// Re-initialises the parameters of step `index`, seeded by (seed, index).
pub fn randomize_step(model: &ClipModel, steps: &[RandomizationStep], index: usize, seed: u64) {
    let vars = model.vs.variables();
    let init_scale = model.config.logit_scale_init_value;
    with_seed(torch_seed(seed ^ ((index as u64) << 32)), || {
        for name in &steps[index].params {
            let mut var = vars[name].shallow_clone();
            let shape = var.size();
            let cpu = (Kind::Float, Device::Cpu);
            let value = if name == "logit_scale" {
                Tensor::full(shape.as_slice(), init_scale, cpu)
            } else if is_norm(name) && name.ends_with(".weight") {
                Tensor::randn(shape.as_slice(), cpu) * INIT_STD + 1.0
            } else if is_norm(name) {
                Tensor::randn(shape.as_slice(), cpu) * INIT_STD
            } else if name.ends_with(".bias") {
                Tensor::zeros(shape.as_slice(), cpu)
            } else {
                Tensor::randn(shape.as_slice(), cpu) * INIT_STD
            };
            tch::no_grad(|| var.copy_(&value));
        }
    });
}
