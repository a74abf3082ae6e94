//! Bad inputs (issue: robustness): each gives a specific error naming the file, row or field,
//! and a multi-pair run finishes the good pairs. Prints the table of messages with --nocapture.
use m2ib_clip::{decode_image, Checkpoint, ClipError, ClipModel};
use m2ib_metrics::localization::{iou, Threshold};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

use m2ib_testkit::clip_golden as golden;

fn tmp() -> PathBuf {
    m2ib_testkit::tmp("bad")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn expect_err<T>(
    table: &mut Vec<(String, String)>,
    case: &str,
    r: Result<T, ClipError>,
    needles: &[&str],
) {
    let msg = match r {
        Ok(_) => panic!("{case}: accepted"),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(msg.contains(n), "{case}: {msg:?} lacks {n:?}");
    }
    table.push((case.to_string(), msg));
}

/// A PNG whose header says 20000 x 20000 (the body is never read).
fn huge_png_header(path: &Path) {
    let crc = |t: &[u8], d: &[u8]| {
        let mut c = 0xFFFF_FFFFu32;
        for &b in t.iter().chain(d) {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    let mut ihdr = vec![];
    ihdr.extend(20000u32.to_be_bytes());
    ihdr.extend(20000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((ihdr.len() as u32).to_be_bytes());
    png.extend(b"IHDR");
    png.extend(&ihdr);
    png.extend(crc(b"IHDR", &ihdr).to_be_bytes());
    for name in [b"IDAT", b"IEND"] {
        png.extend(0u32.to_be_bytes());
        png.extend(name);
        png.extend(crc(name, &[]).to_be_bytes());
    }
    std::fs::write(path, png).unwrap();
}

#[test]
fn bad_inputs_give_specific_errors() {
    let d = tmp();
    let mut table = vec![];
    let jpg = std::fs::read(golden().join("images/tall_300x451.jpg")).unwrap();
    std::fs::write(d.join("truncated.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    expect_err(
        &mut table,
        "truncated JPEG",
        decode_image(&d.join("truncated.jpg")),
        &["truncated.jpg", "truncated JPEG"],
    );
    std::fs::write(d.join("empty.png"), b"").unwrap();
    expect_err(
        &mut table,
        "zero-byte file",
        decode_image(&d.join("empty.png")),
        &["empty.png", "0 bytes"],
    );
    std::fs::write(d.join("notes.jpg"), b"this is a text file, not an image\n").unwrap();
    expect_err(
        &mut table,
        "text file named .jpg",
        decode_image(&d.join("notes.jpg")),
        &["notes.jpg", "not a PNG or JPEG"],
    );
    huge_png_header(&d.join("huge.png"));
    expect_err(
        &mut table,
        "20000x20000 image",
        decode_image(&d.join("huge.png")),
        &["huge.png", "20000x20000", "pixel limit"],
    );
    expect_err(
        &mut table,
        "missing image path",
        decode_image(&d.join("nope.png")),
        &["nope.png"],
    );

    // Accepted with a documented rule: alpha dropped, grayscale replicated, 16-bit scaled, 1x1.
    let rgba = decode_image(&golden().join("images/rgba_200x320.png")).unwrap();
    assert_eq!(rgba.data.len(), 200 * 320 * 3);
    let gray = decode_image(&golden().join("images/gray_250x180.png")).unwrap();
    assert!(gray.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
    let img16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(4, 3, |x, _| {
        image::Rgb([65535, 257 * 128, x as u16 * 257])
    });
    img16.save(d.join("deep.png")).unwrap();
    let deep = decode_image(&d.join("deep.png")).unwrap();
    assert_eq!(&deep.data[..3], &[255, 128, 0]);
    image::RgbImage::from_pixel(1, 1, image::Rgb([10, 20, 30]))
        .save(d.join("one.png"))
        .unwrap();
    let ck = Checkpoint::load(&golden().join("ckpt_b"), Device::Cpu).unwrap();
    let px = ck.image(&d.join("one.png")).unwrap();
    assert_eq!(px.size(), [1, 3, 64, 64]);

    // Captions.
    expect_err(
        &mut table,
        "empty caption",
        ck.tokenizer.encode("   "),
        &["caption is empty"],
    );
    let long = vec!["red"; 500].join(" ");
    let e = ck.tokenizer.encode(&long).unwrap();
    assert_eq!((e.ids.len(), e.truncated), (16, 486));
    assert_eq!(*e.ids.last().unwrap(), ck.tokenizer.end_id);
    table.push((
        "500-word caption".into(),
        format!(
            "truncated to {} tokens ({} dropped, recorded)",
            e.ids.len(),
            e.truncated
        ),
    ));

    // Boxes wholly outside the crop: excluded with a reason.
    assert_eq!(
        ck.preprocessor.map_box(451, 300, [0.0, 0.0, 50.0, 50.0]),
        None
    );
    let r = iou(&[0.5; 16], 4, 4, &[], Threshold::Value)
        .unwrap_err()
        .to_string();
    assert!(r.contains("outside the crop"));
    table.push(("boxes outside the image".into(), r));

    // Model directories.
    let m = d.join("nan_model");
    copy_dir(&golden().join("ckpt_b"), &m);
    let t: Vec<(String, Tensor)> = Tensor::read_safetensors(m.join("model.safetensors")).unwrap();
    let k = t
        .iter()
        .position(|(n, _)| n == "text_model.final_layer_norm.weight")
        .unwrap();
    let _ = t[k].1.get(3).fill_(f64::NAN);
    Tensor::write_safetensors(&t, m.join("model.safetensors")).unwrap();
    expect_err(
        &mut table,
        "NaN in a weight tensor",
        ClipModel::load(&m, Device::Cpu),
        &[
            "model.safetensors",
            "text_model.final_layer_norm.weight",
            "NaN",
        ],
    );
    let m = d.join("contradicting");
    copy_dir(&golden().join("ckpt_b"), &m);
    let cfg = std::fs::read_to_string(m.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 96", "\"intermediate_size\": 100");
    std::fs::write(m.join("config.json"), cfg).unwrap();
    expect_err(
        &mut table,
        "config contradicting the weights",
        ClipModel::load(&m, Device::Cpu),
        &[
            "model.safetensors",
            "mlp.fc1.bias",
            "shape [96]",
            "the config implies [100]",
        ],
    );
    let m = d.join("badtok");
    copy_dir(&golden().join("ckpt_b"), &m);
    std::fs::write(m.join("tokenizer.json"), "{\"hello\": 1}").unwrap();
    expect_err(
        &mut table,
        "tokenizer.json that is not a tokenizer",
        Checkpoint::load(&m, Device::Cpu).map(|_| ()),
        &["tokenizer.json", "not a tokenizer.json"],
    );
    let m = d.join("missing_tensor");
    copy_dir(&golden().join("ckpt_b"), &m);
    let t: Vec<(String, Tensor)> = Tensor::read_safetensors(m.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n != "visual_projection.weight")
        .collect();
    Tensor::write_safetensors(&t, m.join("model.safetensors")).unwrap();
    expect_err(
        &mut table,
        "missing tensor",
        ClipModel::load(&m, Device::Cpu),
        &["missing tensor `visual_projection.weight`"],
    );

    println!("| bad input | message |\n|---|---|");
    for (case, msg) in &table {
        println!("| {case} | {} |", msg.replace('|', "\\|"));
    }
    let _ = Kind::Float;
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_multi_pair_run_finishes_the_good_pairs() {
    let d = tmp();
    std::fs::write(d.join("empty.png"), b"").unwrap();
    let img = golden().join("images/tall_300x451.jpg");
    // `caption<TAB>image`, the Conceptual Captions order.
    let tsv = format!(
        "a red circle\t{}\na blue square\tempty.png\na green star\tmissing.png\n   \t{}\nthe white ring\t{}\nno tab here\n",
        img.display(),
        img.display(),
        golden().join("images/small_97x61.png").display()
    );
    std::fs::write(d.join("pairs.tsv"), tsv).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_m2ib"))
        .args(["attribute", "--model"])
        .arg(golden().join("ckpt_b"))
        .arg("--pairs")
        .arg(d.join("pairs.tsv"))
        .args(["--method", "saliency", "--out"])
        .arg(d.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "failures are reported in the exit code"
    );
    assert!(
        stderr.contains("pairs.tsv:6: expected `caption<TAB>image`"),
        "{stderr}"
    );
    let _ = stderr;
    let out = Command::new(env!("CARGO_BIN_EXE_m2ib"))
        .args(["attribute", "--model"])
        .arg(golden().join("ckpt_b"))
        .arg("--pairs")
        .arg(d.join("pairs.tsv"))
        .args(["--method", "saliency", "--skip-bad-rows", "--out"])
        .arg(d.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("empty.png") && stderr.contains("0 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.png"), "{stderr}");
    assert!(stderr.contains("caption is empty"), "{stderr}");
    assert!(stdout.contains("wrote 2 of 5 pairs"), "{stdout}\n{stderr}");
    assert!(d.join("out/0000-tall_300x451/maps.safetensors").exists());
    assert!(d.join("out/0004-small_97x61/overlay.png").exists());
    std::fs::remove_dir_all(&d).ok();
}
