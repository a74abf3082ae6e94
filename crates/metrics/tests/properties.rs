//! Metric properties on the golden checkpoint ckpt_b (64 px, the shapes vocabulary): ROAR+
//! detects a map that removes the named objects; the sanity check leaves a model-independent map
//! at similarity 1 on every step; confidence drop/increase on real forwards.
use m2ib_attribution::registry::method;
use m2ib_attribution::{Attribution, AttributionError, Attributor, Batch};
use m2ib_clip::{Checkpoint, ClipModel, Rgb8};
use m2ib_data::shapes::{generate, Split, SIZE};
use m2ib_metrics::confidence::{image_change, text_change, TextProtocol};
use m2ib_metrics::roar::{roar_plus, RoarConfig, RoarData, RoarMaps};
use m2ib_metrics::sanity::sanity;
use m2ib_metrics::MetricError;
use serde_json::{json, Value};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn dir() -> PathBuf {
    m2ib_testkit::clip_golden().join("ckpt_b")
}

fn load() -> Result<ClipModel, MetricError> {
    Ok(ClipModel::load(&dir(), Device::Cpu)?)
}

#[test]
fn roar_plus_detects_removing_the_named_objects() {
    let ck = Checkpoint::load(&dir(), Device::Cpu).unwrap();
    let n = 80;
    let (mut pixels, mut ids, mut content, mut truth) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let s = generate(1, Split::Train, i, false);
        let p = &ck.preprocessor;
        pixels.push(p.preprocess(&Rgb8::new(SIZE, SIZE, s.rgb.clone())));
        // Ground-truth map: the named objects' pixels, resized like the image.
        let mut m = vec![0u8; SIZE * SIZE * 3];
        for &k in &s.named {
            for &px in &s.masks[k] {
                m[px as usize * 3..px as usize * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        truth.push(p.resize_crop(&Rgb8::new(SIZE, SIZE, m)));
        let e = ck.tokenizer.encode(&s.caption).unwrap();
        content.push(
            e.ids
                .iter()
                .map(|&t| Some(t) != ck.tokenizer.start_id && t != ck.tokenizer.end_id)
                .collect(),
        );
        ids.push(e.ids);
    }
    let data = RoarData {
        pixels: Tensor::stack(&pixels, 0),
        ids,
        content,
        end_id: ck.tokenizer.end_id,
        pad_id: ck.tokenizer.pad_id,
        text_mask_id: ck.tokenizer.pad_id,
        val: 0,
    };
    let hw = 64i64;
    let truth_maps: Vec<Tensor> = truth
        .iter()
        .map(|t| {
            Tensor::from_slice(&t.data)
                .view([hw, hw, 3])
                .select(2, 0)
                .to_kind(Kind::Float)
        })
        .collect();
    // Text left intact for both (scores all equal, fraction applies to images only via ties).
    let flat_text: Vec<Vec<f32>> = data.ids.iter().map(|r| vec![0.0; r.len()]).collect();
    let true_maps = RoarMaps {
        image: Some(
            Tensor::stack(&truth_maps, 0)
                + Tensor::rand([n as i64, hw, hw], (Kind::Float, Device::Cpu)) * 1e-3,
        ),
        text: Some(flat_text.clone()),
    };
    let random_maps = RoarMaps {
        image: Some(m2ib_clip::rng::seeded_randn(
            9,
            &[n as i64, hw, hw],
            Device::Cpu,
        )),
        text: Some(flat_text),
    };
    let cfg = RoarConfig {
        splits: 2,
        steps: 60,
        batch_size: 32,
        lr: 2e-3,
        ..RoarConfig::default()
    };
    let t = roar_plus(&load, &data, &true_maps, &cfg).unwrap();
    let r = roar_plus(&load, &data, &random_maps, &cfg).unwrap();
    let mean = |v: &[m2ib_metrics::roar::RoarSplit]| {
        v.iter().map(|x| x.score).sum::<f64>() / v.len() as f64
    };
    println!(
        "ROAR+ score: true object masks {:.2}, random maps {:.2}",
        mean(&t),
        mean(&r)
    );
    assert_eq!(t[0].l_clean, r[0].l_clean, "clean fine-tuning is shared");
    assert!(
        mean(&t) > mean(&r),
        "removing the named objects should hurt more: {t:?} vs {r:?}"
    );
}

/// Ignores the model: Sobel edges of the pixels, token position for text.
struct Edges;

impl Attributor for Edges {
    fn name(&self) -> &'static str {
        "edges"
    }
    fn params(&self) -> Value {
        json!({})
    }
    fn attribute(&self, _: &ClipModel, b: &Batch) -> Result<Vec<Attribution>, AttributionError> {
        let k = Tensor::from_slice(&[-1.0f32, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0])
            .view([1, 1, 3, 3]);
        let gray = b.pixels.mean_dim(&[1i64][..], true, Kind::Float);
        let gx = gray.conv2d(&k, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let gy = gray.conv2d(
            &k.transpose(2, 3),
            None::<Tensor>,
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        );
        let e = (gx.square() + gy.square()).sqrt().squeeze_dim(1);
        Ok((0..b.len())
            .map(|i| Attribution {
                image: e.get(i as i64),
                text: (0..b.lengths[i]).map(|p| p as f32).collect(),
                content: b.content[i].clone(),
                params: json!({}),
            })
            .collect())
    }
}

fn batch(ck: &Checkpoint) -> Batch {
    let golden = m2ib_testkit::clip_golden().join("images");
    let px = vec![
        ck.image(&golden.join("tall_300x451.jpg"))
            .unwrap()
            .squeeze_dim(0),
        ck.image(&golden.join("odd_227x225.png"))
            .unwrap()
            .squeeze_dim(0),
    ];
    let enc = vec![
        ck.tokenizer.encode("a red circle and a blue star").unwrap(),
        ck.tokenizer.encode("the green ring").unwrap(),
    ];
    Batch::new(ck, &px, &enc, vec![3, 4])
}

#[test]
fn sanity_keeps_a_model_independent_map_at_one() {
    let ck = Checkpoint::load(&dir(), Device::Cpu).unwrap();
    let b = batch(&ck);
    let curve = sanity(&load, &Edges, &b, 5).unwrap();
    assert_eq!(curve.steps.len(), 2 + 5 + 1);
    for s in curve.steps.iter() {
        for sim in &s.similarity {
            assert!(
                (sim.image_spearman - 1.0).abs() < 1e-9 && (sim.image_ssim - 1.0).abs() < 1e-9,
                "{}",
                s.step
            );
            assert!((sim.text_spearman - 1.0).abs() < 1e-9);
        }
    }
    // A model-dependent method moves away from its original map once layers are randomised.
    let m = method("saliency", &Value::Null).unwrap();
    let curve = sanity(&load, m.as_ref(), &b, 5).unwrap();
    let last = &curve.steps.last().unwrap().similarity[0];
    assert!(last.image_spearman < 0.9, "{last:?}");
    assert!(
        (curve.noise_floor[0].image_spearman - 1.0).abs() < 1e-9,
        "saliency has no randomness"
    );
}

#[test]
fn confidence_changes_on_real_forwards() {
    let ck = Checkpoint::load(&dir(), Device::Cpu).unwrap();
    let b = batch(&ck).select(0);
    let (img, txt) = tch::no_grad(|| {
        (
            ck.model.image_features(&b.pixels),
            ck.model.text_features(&b.text),
        )
    });
    // An all-ones map changes nothing; an all-zeros map changes the score.
    let ones = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
    let c = image_change(&ck.model, &b.pixels.get(0), &ones, &txt.get(0)).unwrap();
    assert!((c.before - c.after).abs() < 1e-6 && c.drop() < 1e-4 && c.increase() == 0.0);
    let c0 = image_change(&ck.model, &b.pixels.get(0), &ones.zeros_like(), &txt.get(0)).unwrap();
    assert!((c0.before - c.before).abs() < 1e-6 && (c0.after - c0.before).abs() > 1e-4);
    let ids: Vec<i64> = Vec::try_from(b.text.ids.get(0)).unwrap();
    let scores: Vec<f32> = (0..ids.len()).map(|p| p as f32).collect();
    for protocol in [TextProtocol::Official, TextProtocol::Padded] {
        let c = text_change(
            &ck.model,
            &m2ib_metrics::confidence::Caption {
                ids: &ids,
                pool: ids.len() - 1,
                text_mask_id: ck.tokenizer.pad_id,
                end_id: ck.tokenizer.end_id,
            },
            &scores,
            &img.get(0),
            protocol,
        )
        .unwrap();
        assert!(
            c.before.is_finite() && c.after.is_finite() && c.before != c.after,
            "{protocol:?}"
        );
    }
    // Padded protocol: the clean score is the model's own cosine.
    let c = text_change(
        &ck.model,
        &m2ib_metrics::confidence::Caption {
            ids: &ids,
            pool: ids.len() - 1,
            text_mask_id: ck.tokenizer.pad_id,
            end_id: ck.tokenizer.end_id,
        },
        &scores,
        &img.get(0),
        TextProtocol::Padded,
    )
    .unwrap();
    let own = f64::try_from(m2ib_clip::cosine(&img, &txt, 1e-8).get(0)).unwrap();
    assert!((c.before - own).abs() < 1e-6);
}
