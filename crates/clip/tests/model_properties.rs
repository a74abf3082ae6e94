//! Properties of the model that need no reference: the split forward is the full forward, and
//! the sanity-check randomisation covers every parameter exactly once.
use m2ib_clip::randomize::{randomization_steps, randomize_step};
use m2ib_clip::{Checkpoint, ClipError, Layer, Pooling};
use std::collections::HashSet;
use tch::{Device, Tensor};

fn ckpt(name: &str) -> Checkpoint {
    Checkpoint::load(
        &m2ib_testkit::crate_dir().join("tests/golden").join(name),
        Device::Cpu,
    )
    .unwrap()
}

fn pixels(ck: &Checkpoint) -> Tensor {
    ck.image(&m2ib_testkit::crate_dir().join("tests/golden/images/wide_451x300.png"))
        .unwrap()
}

/// Bit for bit for every layer but the last: the full forward computes the last block at the
/// pooled position only (a 1.6x faster M2IB), while `prefix(x, -1)` must return every position,
/// so there the two paths differ by float rounding (checked to 1e-6).
fn same(a: &Tensor, b: &Tensor, l: i64) -> bool {
    if l == -1 {
        f64::try_from((a - b).abs().max()).unwrap() <= 1e-6
    } else {
        a.equal(b)
    }
}

#[test]
fn suffix_of_prefix_is_the_full_forward_bit_for_bit() {
    for name in ["ckpt_a", "ckpt_b"] {
        let ck = ckpt(name);
        let m = &ck.model;
        let px = pixels(&ck);
        let full = m.image_features(&px);
        let depth = m.vision_depth() as i64;
        for l in -depth..depth {
            let e = m.image_suffix(&m.image_prefix(&px, l).unwrap(), l).unwrap();
            let l_neg = if l >= 0 { l - depth } else { l };
            assert!(same(&e, &full, l_neg), "{name}: vision layer {l}");
        }
        let enc: Vec<_> = ["a red circle", "a blue square and a green star"]
            .iter()
            .map(|c| ck.tokenizer.encode(c).unwrap())
            .collect();
        let input = ck.tokenizer.batch(&enc, Pooling::Eos);
        let full = m.text_features(&input);
        let depth = m.text_depth() as i64;
        for l in -depth..depth {
            let e = m
                .text_suffix(&m.text_prefix(&input, l).unwrap(), l, &input)
                .unwrap();
            let l_neg = if l >= 0 { l - depth } else { l };
            assert!(same(&e, &full, l_neg), "{name}: text layer {l}");
        }
        // The embeddings: the encoder input, every block in the suffix.
        let e = m
            .image_suffix(
                &m.image_prefix(&px, Layer::Embeddings).unwrap(),
                Layer::Embeddings,
            )
            .unwrap();
        assert!(e.equal(&m.image_features(&px)), "{name}: vision embeddings");
        let h = m.text_prefix(&input, Layer::Embeddings).unwrap();
        assert!(
            h.equal(&m.text.embed(&input.ids)),
            "{name}: text encoder input"
        );
        let e = m.text_suffix(&h, Layer::Embeddings, &input).unwrap();
        assert!(e.equal(&full), "{name}: text embeddings");
        assert!(matches!(
            m.image_prefix(&px, m.vision_depth() as i64),
            Err(ClipError::LayerOutOfRange { .. })
        ));
    }
}

#[test]
fn padding_does_not_change_a_caption_embedding() {
    let ck = ckpt("ckpt_b");
    let short = ck.tokenizer.encode("a red circle").unwrap();
    let long = ck
        .tokenizer
        .encode("the purple triangle next to an orange ring")
        .unwrap();
    let alone = ck.model.text_features(
        &ck.tokenizer
            .batch(std::slice::from_ref(&short), Pooling::Eos),
    );
    let padded = ck
        .model
        .text_features(&ck.tokenizer.batch(&[short, long], Pooling::Eos));
    let diff = f64::try_from((alone.get(0) - padded.get(0)).abs().max()).unwrap();
    assert!(diff < 1e-6, "{diff}");
}

#[test]
fn randomisation_covers_every_parameter_once_top_down() {
    let ck = ckpt("ckpt_b");
    let steps = randomization_steps(&ck.model);
    let all: HashSet<String> = ck.model.vs.variables().into_keys().collect();
    let mut seen = HashSet::new();
    for s in &steps {
        for p in &s.params {
            assert!(seen.insert(p.clone()), "{p} in two steps");
        }
    }
    assert_eq!(seen, all);
    assert_eq!(steps[0].name, "projections");
    assert_eq!(steps[1].name, "final_norms");
    assert_eq!(steps[2].name, "layer -1");
    assert_eq!(steps.last().unwrap().name, "embeddings");
    // Vision depth 5, text depth 2: `layer -1` holds vision block 4 and text block 1.
    assert!(steps[2]
        .params
        .iter()
        .any(|p| p.starts_with("vision_model.encoder.layers.4.")));
    assert!(steps[2]
        .params
        .iter()
        .any(|p| p.starts_with("text_model.encoder.layers.1.")));

    // Every step changes its tensors (biases are set to 0, which they are not in the goldens)
    // and leaves the others alone; the same seed gives the same values.
    let before: Vec<(String, Tensor)> = ck
        .model
        .vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    randomize_step(&ck.model, &steps, 2, 7);
    let after = ck.model.vs.variables();
    for (k, v) in &before {
        let changed = !v.equal(&after[k]);
        assert_eq!(changed, steps[2].params.contains(k), "{k}");
    }
    let snapshot: Vec<Tensor> = steps[2].params.iter().map(|p| after[p].copy()).collect();
    randomize_step(&ck.model, &steps, 2, 7);
    for (p, s) in steps[2].params.iter().zip(&snapshot) {
        assert!(after[p].equal(s), "{p} not reproducible");
    }
    // LayerNorm weights are drawn around 1, others around 0.
    let ln = &after["vision_model.encoder.layers.4.layer_norm1.weight"];
    let m = f64::try_from(ln.mean(tch::Kind::Float)).unwrap();
    assert!((m - 1.0).abs() < 0.05, "{m}");
}
