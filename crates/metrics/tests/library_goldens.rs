//! Metric helpers against the libraries that define them (goldens by
//! scripts/python/make_metric_goldens.py): scipy spearmanr, scikit-image SSIM, and
//! pytorch-grad-cam DropInConfidence / IncreaseInConfidence on ckpt_b with fixed maps.
use m2ib_clip::Checkpoint;
use m2ib_metrics::confidence::image_change;
use m2ib_metrics::stats::{spearman, ssim};
use serde_json::Value;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

use m2ib_testkit::crate_dir as root;

fn golden() -> (Value, HashMap<String, Tensor>) {
    let meta = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/metrics.json")).unwrap(),
    )
    .unwrap();
    let t = Tensor::read_safetensors(root().join("tests/golden/metrics.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    (meta, t)
}

fn vec(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn scaled(v: &[f64]) -> Vec<f64> {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    v.iter().map(|x| (x - lo) / (hi - lo)).collect()
}

#[test]
fn spearman_and_ssim_match_scipy_and_skimage() {
    let (meta, t) = golden();
    for k in 0..4 {
        let (a, b) = (
            vec(&t[&format!("pair.{k}.a")]),
            vec(&t[&format!("pair.{k}.b")]),
        );
        let s = spearman(&a, &b);
        let want = meta["spearman"][k].as_f64().unwrap();
        assert!((s - want).abs() < 1e-12, "spearman {k}: {s} vs {want}");
        let m = ssim(&scaled(&a), &scaled(&b), 30, 40, 1.0);
        let want = meta["ssim"][k].as_f64().unwrap();
        assert!((m - want).abs() < 1e-9, "ssim {k}: {m} vs {want}");
    }
}

#[test]
fn drop_and_increase_match_pytorch_grad_cam() {
    let (meta, t) = golden();
    let dir = root().join("../clip/tests/golden");
    let ck = Checkpoint::load(&dir.join("ckpt_b"), Device::Cpu).unwrap();
    for (k, c) in meta["confidence"].as_array().unwrap().iter().enumerate() {
        let px = ck
            .image(&dir.join("images").join(c["image"].as_str().unwrap()))
            .unwrap();
        let txt = ck.caption(c["caption"].as_str().unwrap()).unwrap();
        let temb = tch::no_grad(|| ck.model.text_features(&txt));
        let ch = image_change(
            &ck.model,
            &px.get(0),
            &t[&format!("conf.{k}.map")],
            &temb.get(0),
        )
        .unwrap();
        let diff = ch.after - ch.before;
        let want = c["after_minus_before"].as_f64().unwrap();
        assert!((diff - want).abs() < 1e-6, "{k}: {diff} vs {want}");
        assert!((ch.drop() - c["drop"].as_f64().unwrap()).abs() < 1e-4);
        assert_eq!(ch.increase(), c["increase"].as_f64().unwrap());
    }
}
