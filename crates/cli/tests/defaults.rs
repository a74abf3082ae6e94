//! Per-model defaults through the CLI: `attribute` needs no layer flags on the embedded model
//! (its m2ib.toml), a flag overrides only its own modality, a checkpoint without the file gets
//! the depth rule, every setting says where it came from, and a bottleneck after a tower's last
//! block is refused in the CLI and in TOML validation (with file:line).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use m2ib_testkit::repo_root as root;

use m2ib_testkit::tmp;

fn m2ib(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m2ib"))
        .args(args)
        .output()
        .unwrap()
}

/// A small scene with a red square.
fn image(dir: &Path) -> PathBuf {
    let p = dir.join("scene.png");
    let mut px = vec![60u8; 96 * 80 * 3];
    for y in 20..50 {
        for x in 30..60 {
            px[(y * 96 + x) * 3..(y * 96 + x) * 3 + 3].copy_from_slice(&[220, 30, 30]);
        }
    }
    image::save_buffer(&p, &px, 96, 80, image::ExtendedColorType::Rgb8).unwrap();
    p
}

fn sidecar(out: &Path) -> serde_json::Value {
    let dir = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    serde_json::from_str(&std::fs::read_to_string(dir.join("maps.json")).unwrap()).unwrap()
}

fn attribute(model: &Path, img: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "attribute",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--text",
        "a red square",
        "--steps",
        "2",
        "--copies",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    m2ib(&args)
}

#[test]
fn attribute_reads_the_models_defaults_and_records_their_source() {
    let d = tmp("a");
    let img = image(&d);
    let tiny = root().join("data/tiny-shapes-clip");
    let model_file: toml::Table =
        toml::from_str(&std::fs::read_to_string(tiny.join("m2ib.toml")).unwrap()).unwrap();
    let m = &model_file["methods"]["m2ib"];
    // No layer flags: the model's m2ib.toml.
    let out = d.join("plain");
    let o = attribute(&tiny, &img, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = sidecar(&out);
    assert_eq!(
        s["params"]["image"]["layer"],
        m["image_layer"].as_integer().unwrap()
    );
    assert_eq!(
        s["params"]["text"]["layer"],
        m["text_layer"].as_integer().unwrap()
    );
    assert_eq!(
        s["params"]["text"]["beta"],
        m["text_beta"].as_float().unwrap()
    );
    let src = &s["meta"]["settings_sources"];
    assert!(
        src["image_layer"].as_str().unwrap().starts_with("model: "),
        "{src}"
    );
    assert!(
        src["image_layer"].as_str().unwrap().ends_with("m2ib.toml"),
        "{src}"
    );
    assert_eq!(src["steps"], "flag");
    // A flag for one tower leaves the other tower's model setting alone.
    let out = d.join("flag");
    let o = attribute(&tiny, &img, &out, &["--image-layer", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = sidecar(&out);
    assert_eq!(s["params"]["image"]["layer"], 1);
    assert_eq!(
        s["params"]["text"]["layer"],
        m["text_layer"].as_integer().unwrap()
    );
    assert_eq!(s["meta"]["settings_sources"]["image_layer"], "flag");
    // A checkpoint without m2ib.toml: the depth rule (ckpt_a: 4 image, 3 text blocks).
    let ckpt_a = root().join("crates/clip/tests/golden/ckpt_a");
    let out = d.join("rule");
    let o = attribute(&ckpt_a, &img, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = sidecar(&out);
    assert_eq!(s["params"]["image"]["layer"], 2);
    assert_eq!(s["params"]["text"]["layer"], 1);
    assert!(s["meta"]["settings_sources"]["image_layer"]
        .as_str()
        .unwrap()
        .contains("depth rule"));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_bottleneck_after_the_last_block_is_refused() {
    let d = tmp("b");
    let img = image(&d);
    let tiny = root().join("data/tiny-shapes-clip");
    let o = attribute(&tiny, &img, &d.join("out"), &["--text-layer", "2"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("last of the text tower's 3 blocks") && err.contains("do not depend on beta"),
        "{err}"
    );
    let o = attribute(&tiny, &img, &d.join("out2"), &["--layer", "-1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("do not depend on beta"));
    // In an experiment: refused before any work, with file and line.
    let toml = format!(
        "name = \"x\"\n[model]\nname = \"tiny\"\npath = \"{}\"\n[dataset]\nreader = \"shapes\"\nn = 2\n[methods.m2ib]\nimage_layer = [0, 3]\n",
        tiny.display()
    );
    let exp = d.join("exp.toml");
    std::fs::write(&exp, toml).unwrap();
    let o = m2ib(&["run", exp.to_str().unwrap(), "--dry-run"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exp.toml:9")
            && err.contains("image_layer")
            && err.contains("do not depend on beta"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).ok();
}
