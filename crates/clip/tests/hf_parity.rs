//! Parity with transformers' CLIPModel on the golden checkpoints written by
//! scripts/python/make_clip_goldens.py. Rust decodes and preprocesses the image files itself.
//! Run with `--nocapture` to see the maxima.
use m2ib_clip::preprocess::pil_resize;
use m2ib_clip::{decode_image, Checkpoint, Pooling, Rgb8, TraceRequest};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

fn golden() -> PathBuf {
    m2ib_testkit::crate_dir().join("tests/golden")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden().join("manifest.json")).unwrap()).unwrap()
}

fn read(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(golden().join(name))
        .unwrap()
        .into_iter()
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape");
    f64::try_from(
        (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
            .abs()
            .max(),
    )
    .unwrap()
}

fn u8_tensor(img: &Rgb8) -> Tensor {
    Tensor::from_slice(&img.data).view([img.height as i64, img.width as i64, 3])
}

struct Maxima(Vec<(String, f64)>);
impl Maxima {
    fn check(&mut self, what: String, v: f64) {
        self.0.push((what.clone(), v));
        assert!(v <= TOL, "{what}: max abs error {v:e} > {TOL:e}");
    }
    fn print(&self, title: &str) {
        let worst =
            self.0
                .iter()
                .cloned()
                .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
        println!(
            "{title}: {} comparisons, worst {:.3e} ({})",
            self.0.len(),
            worst.1,
            worst.0
        );
    }
}

fn check_checkpoint(name: &str) {
    let m = manifest();
    let dir = golden().join(name);
    let ck = Checkpoint::load(&dir, Device::Cpu).unwrap();
    let out = read(&format!("{name}_outputs.safetensors"));
    let decoded = read("decoded.safetensors");
    let info = &m["checkpoints"][name];
    let images = m["images"].as_array().unwrap();

    for (i, im) in images.iter().enumerate() {
        let file = im["file"].as_str().unwrap();
        let mut mx = Maxima(vec![]);
        let img = decode_image(&golden().join("images").join(file)).unwrap();
        // Decode: PIL's RGB for JPEGs (PNG decoding is lossless).
        if let Some(d) = decoded.get(&format!("decoded.{i}")) {
            mx.check(
                format!("{file} decode (grey levels/255)"),
                max_abs(&u8_tensor(&img), d) / 255.0,
            );
        }
        let crop = ck.preprocessor.resize_crop(&img);
        let golden_crop = &out[&format!("crop.{i}")];
        let crop_err = max_abs(&u8_tensor(&crop), golden_crop);
        let pixels = ck.preprocessor.to_tensor(&crop);
        // HF's pixel values from its 8-bit crop (the script checks that reconstruction is exact).
        let mean = Tensor::from_slice(&ck.preprocessor.mean).view([3, 1, 1]);
        let std = Tensor::from_slice(&ck.preprocessor.std).view([3, 1, 1]);
        let hf_pixels = (golden_crop.permute([2, 0, 1]).to_kind(Kind::Float) / 255.0 - mean) / std;
        mx.check(format!("{file} pixels"), max_abs(&pixels, &hf_pixels));
        assert_eq!(
            crop_err, 0.0,
            "{file}: 8-bit crop differs by {crop_err} grey levels"
        );
        if let Some(p) = out.get(&format!("pixels.{i}")) {
            mx.check(format!("{file} float pixels"), max_abs(&pixels, p));
        }
        // Boxes through the same resize and crop.
        for (k, b) in im["boxes"].as_array().unwrap().iter().enumerate() {
            let b: Vec<f64> = b
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got = ck
                .preprocessor
                .map_box(img.width, img.height, [b[0], b[1], b[2], b[3]]);
            let want = &info["mapped_boxes"][i][k];
            match got {
                None => assert!(want.is_null(), "{file} box {k}: expected {want}"),
                Some(g) => {
                    for j in 0..4 {
                        mx.check(
                            format!("{file} box {k}"),
                            (g[j] - want[j].as_f64().unwrap()).abs(),
                        );
                    }
                }
            }
        }
        // Vision tower on Rust's own pixels.
        let req = TraceRequest {
            hidden_states: true,
            attentions: true,
        };
        let (embeds, trace) = ck.model.image_trace(&pixels.unsqueeze(0), req);
        for (k, h) in trace.hidden_states.iter().enumerate() {
            mx.check(
                format!("{file} vision hidden {k}"),
                max_abs(&h.get(0), &out[&format!("vision.{i}.hidden.{k}")]),
            );
        }
        for (k, a) in trace.attentions.iter().enumerate() {
            if let Some(g) = out.get(&format!("vision.{i}.attn.{k}")) {
                mx.check(
                    format!("{file} vision attention {k}"),
                    max_abs(&a.get(0), g),
                );
            }
        }
        mx.check(
            format!("{file} image embeds"),
            max_abs(&embeds.get(0), &out[&format!("vision.{i}.embeds")]),
        );
        mx.print(&format!("{name} / {file}"));
    }

    // Text: Rust tokenizes the captions itself.
    let mut mx = Maxima(vec![]);
    let caps: Vec<String> = info["captions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let enc: Vec<_> = caps
        .iter()
        .map(|c| ck.tokenizer.encode(c).unwrap())
        .collect();
    let input = ck.tokenizer.batch(&enc, Pooling::Eos);
    assert!(
        input.ids.equal(&out["text.ids"]),
        "{name}: token ids differ\n{}\n{}",
        input.ids,
        out["text.ids"]
    );
    assert!(
        input.attention_mask.equal(&out["text.mask"]),
        "{name}: attention masks differ"
    );
    let req = TraceRequest {
        hidden_states: true,
        attentions: true,
    };
    let (text_embeds, trace) = ck.model.text_trace(&input, req);
    let mask = out["text.mask"].unsqueeze(-1).to_kind(Kind::Float);
    for (k, h) in trace.hidden_states.iter().enumerate() {
        // Padded positions are compared too: both sides compute them the same way.
        let g = &out[&format!("text.hidden.{k}")];
        mx.check(
            format!("text hidden {k}"),
            max_abs(&(h * &mask), &(g * &mask)),
        );
    }
    for (k, a) in trace.attentions.iter().enumerate() {
        let q = out["text.mask"]
            .view([caps.len() as i64, 1, -1, 1])
            .to_kind(Kind::Float);
        mx.check(
            format!("text attention {k}"),
            max_abs(&(a * &q), &(&out[&format!("text.attn.{k}")] * &q)),
        );
    }
    mx.check(
        "text embeds".into(),
        max_abs(&text_embeds, &out["text.embeds"]),
    );
    // Logits over every image x caption pair.
    let pixels: Vec<Tensor> = images
        .iter()
        .map(|im| {
            ck.image(&golden().join("images").join(im["file"].as_str().unwrap()))
                .unwrap()
        })
        .collect();
    let image_embeds = ck.model.image_features(&Tensor::cat(&pixels, 0));
    let logits = ck.model.logits_per_image(&image_embeds, &text_embeds);
    mx.check(
        "logits_per_image".into(),
        max_abs(&logits, &out["logits_per_image"]),
    );
    mx.print(&format!("{name} / text + logits"));
}

#[test]
fn checkpoint_a_matches_transformers() {
    check_checkpoint("ckpt_a");
}

#[test]
fn checkpoint_b_matches_transformers() {
    check_checkpoint("ckpt_b");
}

#[test]
fn clip_tokenizer_matches_transformers() {
    let parity: Value = serde_json::from_str(
        &std::fs::read_to_string(golden().join("tokenizer_parity.json")).unwrap(),
    )
    .unwrap();
    let ck = Checkpoint::load(&golden().join("ckpt_a"), Device::Cpu).unwrap();
    let mut same = 0;
    let mut truncated = 0;
    for row in parity.as_array().unwrap() {
        let want: Vec<i64> = row["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = ck
            .tokenizer
            .encode(row["caption"].as_str().unwrap())
            .unwrap();
        assert_eq!(got.ids, want, "caption {:?}", row["caption"]);
        same += 1;
        truncated += (got.truncated > 0) as usize;
    }
    println!(
        "tokenizer parity: {same}/{} captions identical ({truncated} truncated to 77)",
        parity.as_array().unwrap().len()
    );
    assert!(same >= 300 && truncated > 0);
}

#[test]
fn pil_resize_matches_pil_on_decoded_jpegs() {
    // Isolates the resampler from the JPEG decoder: PIL's own decoded pixels as input.
    let m = manifest();
    let decoded = read("decoded.safetensors");
    let out = read("ckpt_b_outputs.safetensors");
    let ck = Checkpoint::load(&golden().join("ckpt_b"), Device::Cpu).unwrap();
    for (i, im) in m["images"].as_array().unwrap().iter().enumerate() {
        let Some(d) = decoded.get(&format!("decoded.{i}")) else {
            continue;
        };
        let (h, w) = (d.size()[0] as usize, d.size()[1] as usize);
        let mut data = vec![0u8; h * w * 3];
        d.flatten(0, -1).copy_data(&mut data, h * w * 3);
        let crop = ck.preprocessor.resize_crop(&Rgb8::new(w, h, data));
        assert_eq!(
            max_abs(&u8_tensor(&crop), &out[&format!("crop.{i}")]),
            0.0,
            "{}",
            im["file"]
        );
    }
    let _ = pil_resize;
}
