//! Baselines against the Python libraries that define them (goldens by
//! scripts/python/make_baseline_goldens.py on ckpt_a): Captum Saliency and KernelShap (same
//! interpretable space and seeds, hence the same coalitions), pytorch-grad-cam GradCAM.
use m2ib_attribution::common::grid_to_map;
use m2ib_attribution::gradcam::GradCam;
use m2ib_attribution::kernel_shap::KernelShap;
use m2ib_attribution::saliency::Saliency;
use m2ib_attribution::{normalize_image, Attributor, Batch};
use m2ib_clip::Checkpoint;
use serde_json::Value;
use std::collections::HashMap;
use tch::{Device, Tensor};

fn setup() -> (Checkpoint, Batch, HashMap<String, Tensor>) {
    let root = m2ib_testkit::crate_dir();
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/baselines.json")).unwrap(),
    )
    .unwrap();
    let golden = root.join("../clip/tests/golden");
    let ck = Checkpoint::load(&golden.join("ckpt_a"), Device::Cpu).unwrap();
    let px = ck
        .image(&golden.join("images").join(meta["image"].as_str().unwrap()))
        .unwrap()
        .squeeze_dim(0);
    let enc = ck
        .tokenizer
        .encode(meta["caption"].as_str().unwrap())
        .unwrap();
    let b = Batch::new(&ck, &[px], &[enc], vec![meta["seed"].as_u64().unwrap()]);
    assert_eq!(b.text_mask_id, meta["text_mask_id"].as_i64().unwrap());
    let g = Tensor::read_safetensors(root.join("tests/golden/baselines.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    (ck, b, g)
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap()
}

#[test]
fn saliency_matches_captum() {
    let (ck, b, g) = setup();
    let a = Saliency::default()
        .attribute(&ck.model, &b)
        .unwrap()
        .remove(0);
    let ei = rel(&a.image, &g["saliency.image"]);
    let et = rel(&Tensor::from_slice(&a.text), &g["saliency.text"]);
    println!("saliency vs Captum: image {ei:.2e}, text {et:.2e} (relative max abs)");
    assert!(ei < 1e-4 && et < 1e-4);
}

#[test]
fn gradcam_matches_pytorch_grad_cam() {
    let (ck, b, g) = setup();
    let grid = GradCam::default().image_grid(&ck.model, &b).unwrap();
    // pytorch-grad-cam min-max normalises the grid (with its 1e-7), resizes bilinearly, and
    // min-max normalises the resized map again (`aggregate_multi_layers`).
    let n = (&grid - grid.min()) / (grid.max() - grid.min() + 1e-7);
    let up = grid_to_map(&n, 7, 224).get(0);
    let map = (&up - up.min()) / (up.max() - up.min() + 1e-7);
    // The method's own output, normalised by the shared helper, is the same map.
    let a = GradCam::default()
        .attribute(&ck.model, &b)
        .unwrap()
        .remove(0);
    let own = normalize_image(&a.image).unwrap();
    assert!(f64::try_from((&own - &map).abs().max()).unwrap() < 1e-5);
    let e = f64::try_from((&map - &g["gradcam.image"]).abs().max()).unwrap();
    println!("gradcam vs pytorch-grad-cam: {e:.2e} (max abs, normalised map)");
    assert!(e < 1e-4);
}

#[test]
fn kernel_shap_matches_captum_with_the_same_samples() {
    let (ck, b, g) = setup();
    let ks = KernelShap {
        image_samples: 200,
        text_samples: 64,
        batch_size: 64,
    };
    let a = ks.attribute(&ck.model, &b).unwrap().remove(0);
    let cells = a
        .image
        .view([7, 32, 7, 32])
        .select(3, 0)
        .select(1, 0)
        .flatten(0, -1);
    let ei = rel(&cells, &g["kernel_shap.image_cells"]);
    let content: Vec<f32> = a.text[1..a.text.len() - 1].to_vec();
    let et = rel(
        &Tensor::from_slice(&content),
        &g["kernel_shap.text_content"],
    );
    println!("kernel_shap vs Captum: image {ei:.2e}, text {et:.2e} (relative max abs)");
    assert!(ei < 1e-3 && et < 1e-3);
}
