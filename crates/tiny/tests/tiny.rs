//! The embedded default's pieces: its tokenizer pools at the end token for every caption, and a
//! few training steps lower the contrastive loss; HF initialisation; captions true of other images
//! leave the loss.
use m2ib_clip::train::{contrastive_loss, train, TrainBatch, TrainConfig};
use m2ib_clip::{ClipConfig, ClipModel, ClipTokenizer, Pooling};
use m2ib_data::shapes::{Split, COLOURS, SHAPES};
use m2ib_tiny::{
    also_true, content_bits, encode_all, generate_many, hf_init, normalise, scenes_to_u8,
    tiny_config, write_tokenizer,
};
use tch::{Device, Kind, Tensor};

use m2ib_testkit::tmp;

#[test]
fn end_token_has_the_highest_id_and_is_the_pooled_position() {
    let d = tmp("tok");
    let vocab = write_tokenizer(&d.join("tokenizer.json")).unwrap();
    let end = vocab["<|endoftext|>"];
    assert_eq!(end as usize, vocab.len() - 1);
    let cfg_json = tiny_config(
        vocab.len() as i64,
        end as i64,
        vocab["<|startoftext|>"] as i64,
        vocab["<pad>"] as i64,
    );
    assert_eq!(
        cfg_json["text_config"]["eos_token_id"], end as i64,
        "the config carries the real end id, not 2"
    );
    std::fs::write(d.join("config.json"), cfg_json.to_string()).unwrap();
    let cfg = ClipConfig::from_file(&d.join("config.json")).unwrap();
    let tok = ClipTokenizer::from_file(&d.join("tokenizer.json"), &cfg.text_config).unwrap();
    assert_eq!(tok.end_id, end as i64);
    let mut caps: Vec<String> = generate_many(0, Split::Test, 0..300, true)
        .into_iter()
        .map(|s| s.caption)
        .collect();
    caps.extend(COLOURS.iter().flat_map(|c| {
        SHAPES
            .iter()
            .map(move |s| format!("a {} {}", c.0, s.word()))
    }));
    for c in &caps {
        let e = tok.encode(c).unwrap();
        assert!(!e.ids.contains(&0), "unknown word in {c:?}");
        let end_pos = e.ids.iter().position(|&t| t == end as i64).unwrap();
        assert_eq!(end_pos, e.ids.len() - 1);
        assert_eq!(Pooling::Eos.index(&e.ids, end as i64), end_pos, "{c}");
        assert_eq!(Pooling::HfArgmax.index(&e.ids, end as i64), end_pos, "{c}");
    }
}

#[test]
fn a_few_training_steps_lower_the_loss() {
    let d = tmp("train");
    let (mut model, tok) = small_model(&d);
    hf_init(&model, 1);
    let scenes = generate_many(2, Split::Train, 0..16, false);
    let caps: Vec<String> = scenes.iter().map(|s| s.caption.clone()).collect();
    let batch = || TrainBatch {
        pixels: normalise(&scenes_to_u8(&scenes), Device::Cpu),
        text: encode_all(&tok, &caps).unwrap(),
        negatives: None,
        also_true: None,
        negative_images: None,
    };
    let before = f64::try_from(tch::no_grad(|| contrastive_loss(&model, &batch()))).unwrap();
    let cfg = TrainConfig {
        steps: 30,
        lr: 1e-3,
        warmup_steps: 3,
        weight_decay: 0.0,
        logit_scale_lr_mult: 1.0,
    };
    let losses = train(&mut model, &cfg, |_| batch(), |_, _| {}).unwrap();
    let after = f64::try_from(tch::no_grad(|| contrastive_loss(&model, &batch()))).unwrap();
    assert_eq!(losses.len(), 30);
    assert!(after < before * 0.9, "loss {before} -> {after}");
}

/// A model smaller than the real one (vision width 32, one block), same geometry, and its
/// tokenizer.
fn small_model(d: &std::path::Path) -> (ClipModel, ClipTokenizer) {
    let vocab = write_tokenizer(&d.join("tokenizer.json")).unwrap();
    let mut cfg_json = tiny_config(
        vocab.len() as i64,
        vocab["<|endoftext|>"] as i64,
        vocab["<|startoftext|>"] as i64,
        vocab["<pad>"] as i64,
    );
    cfg_json["vision_config"]["hidden_size"] = 32.into();
    cfg_json["vision_config"]["intermediate_size"] = 64.into();
    cfg_json["vision_config"]["num_hidden_layers"] = 1.into();
    std::fs::write(d.join("config.json"), cfg_json.to_string()).unwrap();
    let cfg = ClipConfig::from_file(&d.join("config.json")).unwrap();
    let tok = ClipTokenizer::from_file(&d.join("tokenizer.json"), &cfg.text_config).unwrap();
    (ClipModel::new(cfg, Device::Cpu), tok)
}

/// HF's `_init_weights`: q/k/v and fc2 ~ d^-0.5 (2L)^-0.5, out_proj and the projections
/// ~ d^-0.5, fc1 ~ (2d)^-0.5, embeddings 0.02, class token d^-0.5, norms 1/0, biases 0.
#[test]
fn hf_init_follows_the_width_and_depth() {
    let d = tmp("init");
    let (model, _) = small_model(&d);
    hf_init(&model, 5);
    let v = model.vs.variables();
    let std = |n: &str| f64::try_from(v[n].std(true)).unwrap();
    let mean = |n: &str| f64::try_from(v[n].mean(Kind::Float)).unwrap();
    let close = |n: &str, want: f64| {
        let got = std(n);
        assert!(
            (got / want - 1.0).abs() < 0.1,
            "{n}: std {got}, want {want}"
        );
    };
    // Text: width 64, 3 layers; vision: width 32, 1 layer.
    close(
        "text_model.encoder.layers.0.self_attn.q_proj.weight",
        64f64.powf(-0.5) / 6f64.sqrt(),
    );
    close(
        "text_model.encoder.layers.2.mlp.fc2.weight",
        64f64.powf(-0.5) / 6f64.sqrt(),
    );
    close(
        "text_model.encoder.layers.1.self_attn.out_proj.weight",
        0.125,
    );
    close(
        "text_model.encoder.layers.0.mlp.fc1.weight",
        128f64.powf(-0.5),
    );
    close("text_projection.weight", 0.125);
    close("text_model.embeddings.token_embedding.weight", 0.02);
    close(
        "vision_model.encoder.layers.0.self_attn.v_proj.weight",
        32f64.powf(-0.5) / 2f64.sqrt(),
    );
    close("visual_projection.weight", 32f64.powf(-0.5));
    close("vision_model.embeddings.class_embedding", 32f64.powf(-0.5));
    close("vision_model.embeddings.patch_embedding.weight", 0.02);
    assert_eq!(mean("vision_model.pre_layrnorm.weight"), 1.0);
    assert_eq!(std("vision_model.pre_layrnorm.weight"), 0.0);
    assert_eq!(mean("text_model.final_layer_norm.weight"), 1.0);
    assert_eq!(std("text_model.encoder.layers.0.mlp.fc1.bias"), 0.0);
    assert_eq!(mean("text_model.encoder.layers.0.mlp.fc1.bias"), 0.0);
    let scale = f64::try_from(&model.logit_scale).unwrap();
    assert!((scale - 2.6592).abs() < 1e-6);
    // Seeded: the same seed gives the same weights.
    let (other, _) = small_model(&d);
    hf_init(&other, 5);
    let w = "text_model.encoder.layers.0.self_attn.q_proj.weight";
    assert!(other.vs.variables()[w].equal(&v[w]));
}

/// A caption is "also true" of another image when every object it names is in that image.
#[test]
fn also_true_marks_captions_that_describe_other_images() {
    let scenes = generate_many(3, Split::Train, 0..120, false);
    let bits: Vec<(u64, u64)> = scenes.iter().map(content_bits).collect();
    let m = also_true(&bits);
    let mut marked = 0;
    for (i, si) in scenes.iter().enumerate() {
        let present: Vec<String> = si.objects.iter().map(|o| o.phrase()).collect();
        for (j, sj) in scenes.iter().enumerate() {
            let want = i != j
                && sj
                    .named
                    .iter()
                    .all(|&k| present.contains(&sj.objects[k].phrase()));
            assert_eq!(m.int64_value(&[i as i64, j as i64]) != 0, want, "{i} {j}");
            marked += want as usize;
        }
    }
    assert!(marked > 0, "no caption true of another image in 120 scenes");
}

/// Three training scenes on a seeded small model: (model, tokenizer, captions, pixels, text).
fn three_pairs(
    d: &std::path::Path,
    seed: u64,
) -> (
    ClipModel,
    ClipTokenizer,
    Vec<String>,
    Tensor,
    m2ib_clip::TextInput,
) {
    let (model, tok) = small_model(d);
    hf_init(&model, seed);
    let scenes = generate_many(1, Split::Train, 0..3, false);
    let caps: Vec<String> = scenes.iter().map(|s| s.caption.clone()).collect();
    let pixels = normalise(&scenes_to_u8(&scenes), Device::Cpu);
    let text = encode_all(&tok, &caps).unwrap();
    (model, tok, caps, pixels, text)
}

/// -log softmax of `pos` among `pos` and `others`.
fn ce(pos: f64, others: &[f64]) -> f64 {
    let z: f64 = others.iter().map(|x| x.exp()).sum::<f64>() + pos.exp();
    z.ln() - pos
}

/// Masked pairs leave both softmaxes: the loss equals the hand-written symmetric cross-entropy
/// with those logits removed.
#[test]
fn also_true_pairs_leave_the_loss() {
    let d = tmp("mask");
    let (model, tok, caps, pixels, text) = three_pairs(&d, 2);
    // Caption 1 declared true of image 0.
    let mask = Tensor::from_slice(&[false, true, false, false, false, false, false, false, false])
        .view([3, 3]);
    let batch = TrainBatch {
        pixels: pixels.shallow_clone(),
        text: encode_all(&tok, &caps).unwrap(),
        negatives: None,
        also_true: Some(mask),
        negative_images: None,
    };
    let got = f64::try_from(tch::no_grad(|| contrastive_loss(&model, &batch))).unwrap();
    let (img, txt, scale) = tch::no_grad(|| {
        (
            m2ib_clip::l2_normalize(&model.image_features(&pixels)),
            m2ib_clip::l2_normalize(&model.text_features(&text)),
            f64::try_from(model.logit_scale.exp()).unwrap(),
        )
    });
    let s = |i: i64, j: i64| -> f64 {
        scale * f64::try_from((img.get(i) * txt.get(j)).sum(Kind::Float)).unwrap()
    };
    // Image -> text: image 0 without caption 1.
    let i2t = ce(s(0, 0), &[s(0, 2)])
        + ce(s(1, 1), &[s(1, 0), s(1, 2)])
        + ce(s(2, 2), &[s(2, 0), s(2, 1)]);
    // Text -> image: caption 1 without image 0.
    let t2i = ce(s(0, 0), &[s(1, 0), s(2, 0)])
        + ce(s(1, 1), &[s(2, 1)])
        + ce(s(2, 2), &[s(0, 2), s(1, 2)]);
    let want = (i2t / 3.0 + t2i / 3.0) / 2.0;
    assert!((got - want).abs() < 1e-5, "loss {got}, by hand {want}");
}

/// A hard-negative image is one extra column of its own caption's softmax (caption -> image) and
/// of no other row; captions without one are unchanged.
#[test]
fn negative_images_join_only_their_captions_softmax() {
    let d = tmp("negimg");
    let (model, tok, caps, pixels, text) = three_pairs(&d, 3);
    let extra = generate_many(1, Split::Train, 10..11, false);
    let extra_px = normalise(&scenes_to_u8(&extra), Device::Cpu);
    let batch = TrainBatch {
        pixels: pixels.shallow_clone(),
        text: encode_all(&tok, &caps).unwrap(),
        negatives: None,
        also_true: None,
        negative_images: Some((extra_px.shallow_clone(), Tensor::from_slice(&[2i64]))),
    };
    let got = f64::try_from(tch::no_grad(|| contrastive_loss(&model, &batch))).unwrap();
    let (img, txt, neg, scale) = tch::no_grad(|| {
        (
            m2ib_clip::l2_normalize(&model.image_features(&pixels)),
            m2ib_clip::l2_normalize(&model.text_features(&text)),
            m2ib_clip::l2_normalize(&model.image_features(&extra_px)),
            f64::try_from(model.logit_scale.exp()).unwrap(),
        )
    });
    let dot = |a: &Tensor, b: &Tensor| scale * f64::try_from((a * b).sum(Kind::Float)).unwrap();
    let s = |i: i64, j: i64| dot(&img.get(i), &txt.get(j));
    let i2t = ce(s(0, 0), &[s(0, 1), s(0, 2)])
        + ce(s(1, 1), &[s(1, 0), s(1, 2)])
        + ce(s(2, 2), &[s(2, 0), s(2, 1)]);
    let t2i = ce(s(0, 0), &[s(1, 0), s(2, 0)])
        + ce(s(1, 1), &[s(0, 1), s(2, 1)])
        + ce(s(2, 2), &[s(0, 2), s(1, 2), dot(&neg.get(0), &txt.get(2))]);
    let want = (i2t / 3.0 + t2i / 3.0) / 2.0;
    assert!((got - want).abs() < 1e-5, "loss {got}, by hand {want}");
}
