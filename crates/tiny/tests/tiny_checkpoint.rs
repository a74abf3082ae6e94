//! The committed embedded default reproduces the quality recorded when it was trained
//! (data/tiny-shapes-clip/training.json), and meets the gates of the shapes benchmark.
use m2ib_clip::{Checkpoint, ClipTokenizer};
use m2ib_tiny::evaluate;
use serde_json::Value;
use tch::Device;

#[test]
fn committed_checkpoint_reproduces_its_recorded_scores() {
    let dir = m2ib_testkit::tiny_model();
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("training.json")).unwrap()).unwrap();
    let ck = Checkpoint::load(&dir, Device::Cpu).unwrap();
    let tok: &ClipTokenizer = &ck.tokenizer;
    let q = &recorded["quality"];
    let n = q["test_scenes"].as_u64().unwrap() as usize;
    let now = evaluate(&ck.model, tok, recorded["seed"].as_u64().unwrap(), n).unwrap();
    for key in [
        "image_to_caption_top1",
        "caption_to_image_top1",
        "absent_object_accuracy",
        "colour_swap_binding",
    ] {
        let (a, b) = (now[key].as_f64().unwrap(), q[key].as_f64().unwrap());
        assert!((a - b).abs() <= 0.005, "{key}: now {a}, recorded {b}");
    }
    // The gates every version of the embedded default must pass.
    assert!(now["absent_object_accuracy"].as_f64().unwrap() >= 0.9);
    for key in ["image_to_caption_top1", "caption_to_image_top1"] {
        assert!(
            now[key].as_f64().unwrap() >= 0.4,
            "{key} below the 0.40 gate"
        );
    }
}
