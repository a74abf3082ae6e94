//! The baselines on the golden checkpoints: shapes and finiteness for every method, saliency
//! against finite differences, a non-constant default Grad-CAM, Chefer's rule on a one-layer
//! model computed by hand, and bounded, seeded perturbation methods.
use m2ib_attribution::chefer::Chefer;
use m2ib_attribution::registry::{method, METHODS};
use m2ib_attribution::saliency::gradients;
use m2ib_attribution::{normalize_image, normalize_text, Attributor, Batch};
use m2ib_clip::randomize::{randomization_steps, randomize_step};
use m2ib_clip::{cosine, Checkpoint, ClipConfig, ClipModel, Pooling, TraceRequest};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use m2ib_testkit::clip_golden;

fn batch(ck: &Checkpoint) -> Batch {
    let pairs = [
        ("tall_300x451.jpg", "a red circle and a blue square", 1u64),
        ("gray_250x180.png", "the purple triangle", 2),
    ];
    let pixels: Vec<Tensor> = pairs
        .iter()
        .map(|(i, _, _)| {
            ck.image(&clip_golden().join("images").join(i))
                .unwrap()
                .squeeze_dim(0)
        })
        .collect();
    let enc: Vec<_> = pairs
        .iter()
        .map(|(_, c, _)| ck.tokenizer.encode(c).unwrap())
        .collect();
    Batch::new(ck, &pixels, &enc, pairs.iter().map(|p| p.2).collect())
}

fn small(name: &str) -> serde_json::Value {
    match name {
        "m2ib" => json!({"image": {"layer": 2}, "text": {"layer": 0}}),
        "rise" => json!({"image_masks": 96, "text_masks": 64, "batch_size": 32}),
        "kernel_shap" => json!({"image_samples": 96, "text_samples": 48, "batch_size": 32}),
        _ => serde_json::Value::Null,
    }
}

#[test]
fn every_method_gives_finite_maps_of_the_right_shape() {
    let ck = Checkpoint::load(&clip_golden().join("ckpt_b"), Device::Cpu).unwrap();
    let b = batch(&ck);
    for name in METHODS {
        let m = method(name, &small(name)).unwrap();
        let out = m.attribute(&ck.model, &b).unwrap();
        assert_eq!(out.len(), 2);
        for (i, a) in out.iter().enumerate() {
            assert_eq!(a.image.size(), [64, 64], "{name}");
            assert_eq!(a.text.len(), b.lengths[i], "{name}");
            assert!(a.text.iter().all(|v| v.is_finite()), "{name}");
            assert!(
                normalize_image(&a.image).is_ok(),
                "{name}: image map degenerate"
            );
            assert!(
                normalize_text(&a.text, &a.content).is_ok(),
                "{name}: text map degenerate"
            );
        }
        // Batched equals one at a time.
        let one = m.attribute(&ck.model, &b.select(1)).unwrap().remove(0);
        let d = f64::try_from((&one.image - &out[1].image).abs().max()).unwrap();
        let scale = f64::try_from(out[1].image.abs().max()).unwrap().max(1e-12);
        assert!(d / scale < 1e-4, "{name}: batched vs single {d:e}");
    }
    assert!(method("nope", &serde_json::Value::Null).is_err());
    let e = method("rise", &json!({"masks": 3}))
        .err()
        .expect("unknown key refused")
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn saliency_matches_finite_differences() {
    let ck = Checkpoint::load(&clip_golden().join("ckpt_b"), Device::Cpu).unwrap();
    let b = batch(&ck).select(0);
    let (gp, _) = gradients(&ck.model, &b).unwrap();
    let score = |px: &Tensor| {
        let i = ck.model.image_features(px);
        let t = ck.model.text_features(&b.text);
        f64::try_from(cosine(&i, &t, 1e-8).sum(Kind::Double)).unwrap()
    };
    // Central differences in float32: accurate to about 1 % at this step size.
    let px = b.pixels.copy();
    let h = 1e-2f64;
    for &(c, y, x) in &[(0i64, 10i64, 20i64), (1, 33, 40), (2, 60, 5), (0, 31, 31)] {
        let bump = |d: f64| {
            let p = px.copy();
            let _ = p.get(0).get(c).get(y).get(x).g_add_scalar_(d);
            p
        };
        let fd = tch::no_grad(|| (score(&bump(h)) - score(&bump(-h))) / (2.0 * h));
        let g = f64::try_from(gp.get(0).get(c).get(y).get(x)).unwrap();
        assert!(
            (fd - g).abs() <= 0.02 * g.abs().max(1e-4),
            "({c},{y},{x}): fd {fd:e} vs grad {g:e}"
        );
    }
}

#[test]
fn default_gradcam_is_not_constant() {
    let ck = Checkpoint::load(&clip_golden().join("ckpt_a"), Device::Cpu).unwrap();
    let px = ck
        .image(&clip_golden().join("images/wide_451x300.png"))
        .unwrap()
        .squeeze_dim(0);
    let enc = ck.tokenizer.encode("a photo of a cat").unwrap();
    let b = Batch::new(&ck, &[px], &[enc], vec![0]);
    let a = method("gradcam", &serde_json::Value::Null)
        .unwrap()
        .attribute(&ck.model, &b)
        .unwrap()
        .remove(0);
    let range = f64::try_from(a.image.max() - a.image.min()).unwrap();
    assert!(range > 1e-6, "Grad-CAM map is constant ({range:e})");
}

#[test]
fn chefer_on_a_one_layer_model_by_hand() {
    let mut cfg = ClipConfig::vit_b32();
    cfg.vision_config.hidden_size = 32;
    cfg.vision_config.intermediate_size = 64;
    cfg.vision_config.num_hidden_layers = 1;
    cfg.vision_config.num_attention_heads = 2;
    cfg.text_config.hidden_size = 16;
    cfg.text_config.intermediate_size = 32;
    cfg.text_config.num_hidden_layers = 1;
    cfg.text_config.num_attention_heads = 2;
    cfg.text_config.vocab_size = 50;
    cfg.projection_dim = 8;
    let model = ClipModel::new(cfg, Device::Cpu);
    let steps = randomization_steps(&model);
    for i in 0..steps.len() {
        randomize_step(&model, &steps, i, 11);
    }
    model.vs.variables().values_mut().for_each(|v| {
        let _ = v.set_requires_grad(false);
    });
    let px = m2ib_clip::rng::seeded_randn(5, &[3, 224, 224], Device::Cpu);
    let rows = vec![vec![48i64, 5, 9, 17, 49]];
    let b = Batch::from_ids(
        Device::Cpu,
        &[px],
        &rows,
        [Some(48), Some(49)],
        0,
        Pooling::Eos,
        vec![0],
    );
    let a = Chefer::default().attribute(&model, &b).unwrap().remove(0);
    // By hand: one block, so R = I + mean_heads(relu(dy/dA * A)); the image map is R[0, 1:].
    let px = b.pixels.detach().set_requires_grad(true);
    let (img, trace) = model.image_trace(
        &px,
        TraceRequest {
            hidden_states: false,
            attentions: true,
        },
    );
    let t = tch::no_grad(|| model.text_features(&b.text));
    let y = cosine(&img, &t, 1e-8).sum(Kind::Float);
    let att = &trace.attentions[0];
    let g = Tensor::run_backward(&[y], &[att], false, false).remove(0);
    let abar = (&g * att.detach())
        .relu()
        .mean_dim(&[1i64][..], false, Kind::Float)
        .get(0);
    let r = abar + Tensor::eye(50, (Kind::Float, Device::Cpu));
    let want =
        m2ib_attribution::common::grid_to_map(&r.get(0).narrow(0, 1, 49).unsqueeze(0), 7, 224)
            .get(0);
    let d = f64::try_from((&a.image - want).abs().max()).unwrap();
    assert!(d < 1e-6, "{d:e}");
    // Text: the pooled (end) row.
    let (txt, tt) = model.text_trace_differentiable(
        &b.text,
        TraceRequest {
            hidden_states: false,
            attentions: true,
        },
    );
    let i = tch::no_grad(|| model.image_features(&b.pixels));
    let y = cosine(&txt, &i, 1e-8).sum(Kind::Float);
    let g = Tensor::run_backward(&[y], &[&tt.attentions[0]], false, false).remove(0);
    let abar = (&g * tt.attentions[0].detach())
        .relu()
        .mean_dim(&[1i64][..], false, Kind::Float)
        .get(0);
    let r = abar + Tensor::eye(5, (Kind::Float, Device::Cpu));
    let want: Vec<f32> = Vec::try_from(r.get(4)).unwrap();
    for (g, w) in a.text.iter().zip(want) {
        assert!((g - w).abs() < 1e-6);
    }
}

#[test]
fn perturbation_methods_are_seeded() {
    let ck = Checkpoint::load(&clip_golden().join("ckpt_b"), Device::Cpu).unwrap();
    let b = batch(&ck).select(0);
    for name in ["rise", "kernel_shap"] {
        let m = method(name, &small(name)).unwrap();
        let x = m.attribute(&ck.model, &b).unwrap().remove(0);
        let y = m.attribute(&ck.model, &b).unwrap().remove(0);
        assert!(x.image.equal(&y.image) && x.text == y.text, "{name}");
    }
}
