//! OpenAI-format checkpoints converted by scripts/python/convert_openai_clip.py (goldens by
//! make_openai_goldens.py, OpenAI's own clip/model.py as the reference): ViT-B/16 (from an fp16
//! state dict) and ViT-L/14-336 geometries, and the `cxr-repair-compat` preset against the
//! official M2IB wrapper's text path.
use m2ib_clip::{Checkpoint, ModelOptions};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn golden() -> PathBuf {
    m2ib_testkit::crate_dir().join("tests/golden")
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
fn converted_checkpoints_match_openai_and_the_compat_preset_matches_the_wrapper() {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(golden().join("openai.json")).unwrap())
            .unwrap();
    let gold: HashMap<String, Tensor> =
        Tensor::read_safetensors(golden().join("openai.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let compat = ModelOptions::preset("cxr-repair-compat").unwrap();
    for (name, info) in meta["checkpoints"].as_object().unwrap() {
        let dir = golden().join(name);
        let ck = Checkpoint::load(&dir, Device::Cpu).unwrap();
        let vc = &ck.model.config.vision_config;
        assert_eq!(vc.image_size, info["image_size"].as_i64().unwrap());
        assert_eq!(vc.grid(), info["grid"].as_i64().unwrap());
        let mut worst = 0f64;
        for (i, img) in meta["images"].as_array().unwrap().iter().enumerate() {
            let px = ck
                .image(&golden().join("images").join(img.as_str().unwrap()))
                .unwrap();
            assert_eq!(px.size()[3], vc.image_size);
            let got = tch::no_grad(|| ck.model.image_features(&px));
            worst = worst.max(max_abs(&got, &gold[&format!("{name}.image.{i}")]));
        }
        let with_compat = Checkpoint::load_with(&dir, Device::Cpu, &compat).unwrap();
        let mut worst_compat = 0f64;
        for (i, cap) in meta["captions"].as_array().unwrap().iter().enumerate() {
            let t = ck.caption(cap.as_str().unwrap()).unwrap();
            let got = tch::no_grad(|| ck.model.text_features(&t));
            worst = worst.max(max_abs(&got, &gold[&format!("{name}.text.{i}")]));
            let t = with_compat.caption(cap.as_str().unwrap()).unwrap();
            let got = tch::no_grad(|| with_compat.model.text_features(&t));
            let want = &gold[&format!("{name}.compat_text.{i}")];
            worst_compat = worst_compat.max(max_abs(&got, want));
            // The preset really changes the embedding (mask, pooling and projection matter).
            assert!(max_abs(&got, &gold[&format!("{name}.text.{i}")]) > 1e-3);
        }
        println!("{name}: Rust vs OpenAI {worst:.2e}, compat preset vs official wrapper {worst_compat:.2e}");
        assert!(
            worst < 1e-4 && worst_compat < 1e-4,
            "{name}: {worst:e} / {worst_compat:e}"
        );
    }
}

#[test]
fn presets_are_named_and_the_second_projection_needs_a_square_one() {
    assert!(ModelOptions::preset("nope")
        .unwrap_err()
        .to_string()
        .contains("allowed: hf, cxr-repair-compat"));
    // ckpt_b: text width 32, projection 16.
    let e = Checkpoint::load_with(
        &golden().join("ckpt_b"),
        Device::Cpu,
        &ModelOptions::preset("cxr-repair-compat").unwrap(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("text_projection_twice") && e.contains("config.json"),
        "{e}"
    );
}
