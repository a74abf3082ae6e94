//! M2IB against the official algorithm in PyTorch (scripts/python/m2ib_reference.py, goldens by
//! make_m2ib_goldens.py) with the same noise protocol, plus batching invariance.
use m2ib_attribution::m2ib::{image_capacity, patch_scores_to_map, text_capacity, Bottleneck};
use m2ib_attribution::{normalize_image, Batch};
use m2ib_clip::{Checkpoint, Layer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

use m2ib_testkit::clip_golden;

fn golden() -> PathBuf {
    m2ib_testkit::crate_dir().join("tests/golden")
}

struct Case {
    key: String,
    checkpoint: String,
    image: String,
    caption: String,
    seed: u64,
    modality: i64,
    setting: Bottleneck,
}

fn cases(stem: &str) -> Vec<Case> {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(golden().join(format!("{stem}.json"))).unwrap(),
    )
    .unwrap();
    meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            key: c["key"].as_str().unwrap().into(),
            checkpoint: c["checkpoint"].as_str().unwrap().into(),
            image: c["image"].as_str().unwrap().into(),
            caption: c["caption"].as_str().unwrap().into(),
            seed: c["seed"].as_u64().unwrap(),
            modality: c["modality"].as_i64().unwrap(),
            setting: Bottleneck {
                layer: serde_json::from_value(c["layer"].clone()).unwrap(),
                beta: c["beta"].as_f64().unwrap(),
                sigma: c["sigma"].as_f64().unwrap(),
                trace_last_loss: true,
                ..Bottleneck::default()
            },
        })
        .collect()
}

fn batch(ck: &Checkpoint, pairs: &[(&str, &str, u64)]) -> Batch {
    let pixels: Vec<Tensor> = pairs
        .iter()
        .map(|(img, _, _)| {
            ck.image(&clip_golden().join("images").join(img))
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

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    f64::try_from((&a - &b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from(
        (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
            .abs()
            .max(),
    )
    .unwrap()
}

#[test]
fn matches_the_official_algorithm() {
    check_against("m2ib");
}

/// The bottleneck on each tower's embeddings (make_m2ib_goldens.py's EMBEDDING_CASES: the
/// official hook moved to `pre_layrnorm` / the text embeddings module).
#[test]
fn embeddings_match_the_official_algorithm() {
    let n = cases("m2ib_embeddings").len();
    assert!(n >= 4, "{n} embedding cases");
    check_against("m2ib_embeddings");
}

fn check_against(stem: &str) {
    let gold: HashMap<String, Tensor> =
        Tensor::read_safetensors(golden().join(format!("{stem}.safetensors")))
            .unwrap()
            .into_iter()
            .collect();
    let mut cks: HashMap<String, Checkpoint> = HashMap::new();
    let (mut worst_norm, mut worst_rel, mut worst_loss) = (0f64, 0f64, 0f64);
    for c in cases(stem) {
        let ck = cks.entry(c.checkpoint.clone()).or_insert_with(|| {
            Checkpoint::load(&clip_golden().join(&c.checkpoint), Device::Cpu).unwrap()
        });
        let b = batch(ck, &[(&c.image, &c.caption, c.seed)]);
        let cap = if c.modality == 0 {
            image_capacity(&ck.model, &b, &c.setting).unwrap()
        } else {
            text_capacity(&ck.model, &b, &c.setting).unwrap()
        };
        let want = &gold[&format!("{}.scores", c.key)];
        let got = cap.scores.get(0);
        // Raw capacities are sums of hundreds of terms of size ~5: compare relatively, and the
        // min-max normalised map (what users see) absolutely.
        let rel = rel_err(&got, want);
        let norm = |t: &Tensor| {
            let t = t.to_kind(Kind::Double);
            (&t - t.min()) / (t.max() - t.min())
        };
        let n = max_abs(&norm(&got), &norm(want));
        let losses: Vec<f64> = Vec::try_from(&gold[&format!("{}.losses", c.key)]).unwrap();
        let l = cap.losses[0]
            .iter()
            .zip(&losses)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{}: normalised {:.2e}, raw relative {:.2e}, loss trace {:.2e}",
            c.key, n, rel, l
        );
        assert!(
            n <= 1e-4 && rel <= 1e-5 && l <= 1e-4,
            "{}: normalised {n:e}, relative {rel:e}, loss {l:e}",
            c.key
        );
        assert_eq!(cap.losses[0].len(), c.setting.steps);
        worst_norm = worst_norm.max(n);
        worst_rel = worst_rel.max(rel);
        worst_loss = worst_loss.max(l);
        if let Some(map) = gold.get(&format!("{}.map", c.key)) {
            let vc = &ck.model.config.vision_config;
            let m = patch_scores_to_map(&cap.scores, vc.grid(), vc.image_size).get(0);
            // ViT-B/32 7x7, B/16 14x14, L/14-336 24x24 grids: the map has the input's size.
            assert_eq!(m.size(), [vc.image_size, vc.image_size], "{}", c.key);
            assert_eq!(
                cap.scores.size()[1],
                vc.grid() * vc.grid() + 1,
                "{} (class token + patches)",
                c.key
            );
            let e = max_abs(
                &normalize_image(&m).unwrap(),
                &normalize_image(map).unwrap(),
            );
            println!("{}: upsampled map (normalised) {:.2e}", c.key, e);
            assert!(e <= 1e-4);
        }
    }
    println!(
        "worst: normalised {worst_norm:.2e}, raw relative {worst_rel:.2e}, loss {worst_loss:.2e}"
    );
}

#[test]
fn batched_equals_one_at_a_time() {
    let ck = Checkpoint::load(&clip_golden().join("ckpt_b"), Device::Cpu).unwrap();
    let pairs = [
        ("tall_300x451.jpg", "a red circle", 33),
        (
            "gray_250x180.png",
            "the purple triangle next to an orange ring",
            44,
        ),
        ("small_97x61.png", "a zebra and a red cross", 55),
    ];
    let s = Bottleneck {
        layer: Layer::Block(2),
        beta: 0.1,
        sigma: 0.5,
        ..Bottleneck::default()
    };
    // Text at block 0 and on the embeddings (padding is masked out of both).
    let text_settings =
        [Layer::Block(0), Layer::Embeddings].map(|layer| Bottleneck { layer, ..s.clone() });
    let all = batch(&ck, &pairs);
    let img = image_capacity(&ck.model, &all, &s).unwrap();
    let txt: Vec<_> = text_settings
        .iter()
        .map(|t| text_capacity(&ck.model, &all, t).unwrap())
        .collect();
    // A different composition: the last two, reversed.
    let other = batch(&ck, &[pairs[2], pairs[1]]);
    let img2 = image_capacity(&ck.model, &other, &s).unwrap();
    let mut worst = 0f64;
    for (i, p) in pairs.iter().enumerate() {
        let one = batch(&ck, &[*p]);
        let a = image_capacity(&ck.model, &one, &s).unwrap();
        let ei = rel_err(&img.scores.get(i as i64), &a.scores.get(0));
        worst = worst.max(ei);
        assert!(ei <= 1e-5, "sample {i}: image {ei:e}");
        for (ts, tb) in text_settings.iter().zip(&txt) {
            let t = text_capacity(&ck.model, &one, ts).unwrap();
            let len = one.lengths[0] as i64;
            let et = rel_err(&tb.scores.get(i as i64).narrow(0, 0, len), &t.scores.get(0));
            worst = worst.max(et);
            assert!(et <= 1e-5, "sample {i}: text at {} {et:e}", ts.layer);
        }
    }
    let e = rel_err(&img2.scores.get(0), &img.scores.get(2))
        .max(rel_err(&img2.scores.get(1), &img.scores.get(1)));
    assert!(e <= 1e-5, "composition changed results by {e:e}");
    println!("batched vs one-at-a-time: worst relative {worst:.2e}; other composition {e:.2e}");
}
