//! The embedded default's pieces: its tokenizer pools at the end token for every caption, and a
//! few training steps lower the contrastive loss.
use m2ib_clip::train::{contrastive_loss, train, TrainBatch, TrainConfig};
use m2ib_clip::{ClipConfig, ClipModel, ClipTokenizer, Pooling};
use m2ib_data::shapes::{Split, COLOURS, SHAPES};
use m2ib_runner::tiny::{
    encode_all, generate_many, normalise, scenes_to_u8, tiny_config, write_tokenizer,
};
use tch::Device;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("m2ib-tiny-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

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
    let vocab = write_tokenizer(&d.join("tokenizer.json")).unwrap();
    let mut cfg_json = tiny_config(
        vocab.len() as i64,
        vocab["<|endoftext|>"] as i64,
        vocab["<|startoftext|>"] as i64,
        vocab["<pad>"] as i64,
    );
    // Smaller than the real one, same geometry.
    cfg_json["vision_config"]["hidden_size"] = 32.into();
    cfg_json["vision_config"]["intermediate_size"] = 64.into();
    cfg_json["vision_config"]["num_hidden_layers"] = 1.into();
    std::fs::write(d.join("config.json"), cfg_json.to_string()).unwrap();
    let cfg = ClipConfig::from_file(&d.join("config.json")).unwrap();
    let tok = ClipTokenizer::from_file(&d.join("tokenizer.json"), &cfg.text_config).unwrap();
    let mut model = ClipModel::new(cfg, Device::Cpu);
    let steps = m2ib_clip::randomize::randomization_steps(&model);
    for i in 0..steps.len() {
        m2ib_clip::randomize::randomize_step(&model, &steps, i, 1);
    }
    let scenes = generate_many(2, Split::Train, 0..16, false);
    let caps: Vec<String> = scenes.iter().map(|s| s.caption.clone()).collect();
    let batch = || TrainBatch {
        pixels: normalise(&scenes_to_u8(&scenes), Device::Cpu),
        text: encode_all(&tok, &caps).unwrap(),
        negatives: None,
    };
    let before = f64::try_from(tch::no_grad(|| contrastive_loss(&model, &batch()))).unwrap();
    let cfg = TrainConfig {
        steps: 30,
        lr: 3e-3,
        warmup_steps: 3,
        weight_decay: 0.0,
        logit_scale_lr_mult: 1.0,
    };
    let losses = train(&mut model, &cfg, |_| batch(), |_, _| {}).unwrap();
    let after = f64::try_from(tch::no_grad(|| contrastive_loss(&model, &batch()))).unwrap();
    assert_eq!(losses.len(), 30);
    assert!(after < before * 0.9, "loss {before} -> {after}");
}
