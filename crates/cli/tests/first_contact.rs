//! A newcomer's first commands (issue "first contact"): one-line errors, negative numbers read as
//! numbers, GPUs refused politely on the CPU build, merge and report that say what is missing,
//! the bundled model by name, TOML paths beside the TOML, the shipped model kept from
//! `train-tiny`. Runs on the small golden checkpoint; seconds.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use m2ib_testkit::repo_root as root;

use m2ib_testkit::tmp;

fn m2ib(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m2ib"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The error of a failed command: exactly one line, starting with `error:`.
fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "accepted: {}", stderr(o));
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(!e.contains("Caused by") && !e.contains("panicked"), "{e}");
    lines[0].to_string()
}

fn scene(dir: &Path) -> PathBuf {
    let s = m2ib_data::shapes::generate(1, m2ib_data::shapes::Split::Test, 0, false);
    let p = dir.join("scene.png");
    let n = m2ib_data::shapes::SIZE as u32;
    image::save_buffer(&p, &s.rgb, n, n, image::ExtendedColorType::Rgb8).unwrap();
    p
}

#[test]
fn errors_fit_on_one_line_and_name_what_to_do() {
    let d = tmp("errors");
    let img = scene(&d);
    let img = img.to_str().unwrap();
    // A missing file: the OS text once, not twice.
    let e = one_line_error(&m2ib(
        &[
            "embed",
            "--model",
            "tiny-shapes",
            "--image",
            "/nonexistent.png",
            "--text",
            "a",
        ],
        &d,
    ));
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
    assert!(e.contains("/nonexistent.png"), "{e}");
    // A negative number is a number: the method's own check answers, not the argument parser.
    let e = one_line_error(&m2ib(
        &[
            "attribute",
            "--model",
            "tiny-shapes",
            "--image",
            img,
            "--text",
            "a red circle",
            "--beta",
            "-1",
            "--out",
            "o",
        ],
        &d,
    ));
    assert!(
        e.contains("beta") && e.contains("-1") && !e.contains("unexpected argument"),
        "{e}"
    );
    // GPUs on the CPU build: one line saying how to get the CUDA build, before any loading.
    let e = one_line_error(&m2ib(
        &[
            "attribute",
            "--model",
            "tiny-shapes",
            "--image",
            img,
            "--text",
            "a",
            "--devices",
            "cuda:0,cuda:1",
            "--out",
            "o",
        ],
        &d,
    ));
    assert!(
        e.contains("CPU build") && e.contains("M2IB_TORCH=cuda"),
        "{e}"
    );
    let smoke = root().join("experiments/smoke.toml");
    let e = one_line_error(&m2ib(
        &[
            "run",
            smoke.to_str().unwrap(),
            "--devices",
            "cuda:0",
            "--out",
            "o",
        ],
        &d,
    ));
    assert!(e.contains("smoke.toml") && e.contains("CPU build"), "{e}");
    // `auto` says what it chose.
    let o = m2ib(
        &[
            "run",
            smoke.to_str().unwrap(),
            "--devices",
            "auto",
            "--dry-run",
            "--out",
            "o",
        ],
        &d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("CPU worker(s), because this is a CPU build of libtorch"),
        "{}",
        stderr(&o)
    );
    // Merge of nothing fails.
    let e = one_line_error(&m2ib(&["merge", "/nonexistent", "--out", "x.parquet"], &d));
    assert!(e.contains("/nonexistent: not a run directory"), "{e}");
    assert!(!d.join("x.parquet").exists());
    // The shipped model is kept from train-tiny unless --force.
    let e = one_line_error(&m2ib(&["train-tiny", "--steps", "1"], &root()));
    assert!(e.contains("--force"), "{e}");
    // A TSV in the old `image<TAB>caption` order is recognised as such.
    std::fs::write(d.join("pairs.tsv"), "scene.png\ta red circle\n").unwrap();
    let e = one_line_error(&m2ib(
        &[
            "attribute",
            "--model",
            "tiny-shapes",
            "--pairs",
            "pairs.tsv",
            "--out",
            "o",
        ],
        &d,
    ));
    assert!(
        e.contains("pairs.tsv:1") && e.contains("caption<TAB>image"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn the_bundled_model_by_name_with_no_flags_and_unknown_words_reported() {
    let d = tmp("bundled");
    let img = scene(&d);
    let o = m2ib(
        &[
            "attribute",
            "--model",
            "tiny-shapes",
            "--image",
            img.to_str().unwrap(),
            "--text",
            "a red zebra",
            "--out",
            "o",
        ],
        &d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("read as unknown: zebra"),
        "{}",
        stderr(&o)
    );
    assert!(d.join("o/0000-scene/maps.safetensors").exists());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("o/0000-scene/maps.json")).unwrap())
            .unwrap();
    assert!(
        meta["meta"]["settings_sources"]["image_layer"]
            .as_str()
            .unwrap()
            .ends_with("m2ib.toml"),
        "{meta}"
    );
    std::fs::remove_dir_all(&d).ok();
}

fn write_experiment(dir: &Path, model: &str) -> PathBuf {
    let p = dir.join("exp.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"first\"\nchunk_size = 1\n[model]\nname = \"b\"\npath = \"{model}\"\n[dataset]\nreader = \"shapes\"\nn = 4\n\
             [methods.saliency]\n[metrics]\nlocalization = [\"value\"]\ncalibration = []\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn toml_paths_beside_the_toml_and_a_partial_report_says_what_is_missing() {
    let d = tmp("partial");
    // The model folder next to the TOML, named relatively; run from elsewhere.
    let golden = root().join("crates/clip/tests/golden/ckpt_b");
    let exp_dir = d.join("exp");
    std::fs::create_dir_all(exp_dir.join("model")).unwrap();
    for e in std::fs::read_dir(&golden).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), exp_dir.join("model").join(e.file_name())).unwrap();
        }
    }
    let exp = write_experiment(&exp_dir, "model");
    let out = d.join("out");
    let o = m2ib(
        &[
            "run",
            exp.to_str().unwrap(),
            "--shard",
            "0/2",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        &std::env::temp_dir(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let missing = m2ib_runner::rundir::RunDir::new(&out)
        .missing_jobs()
        .unwrap();
    assert!(!missing.is_empty() && missing.len() < 4, "{missing:?}");
    // The report refuses, naming the missing jobs; --allow-partial marks the row.
    let e = one_line_error(&m2ib(&["report", out.to_str().unwrap()], &d));
    assert!(
        e.contains(&format!("{} of 4 jobs have no results yet", missing.len()))
            && e.contains("explain saliency repeat 0 chunk")
            && e.contains("--allow-partial"),
        "{e}"
    );
    let o = m2ib(&["report", out.to_str().unwrap(), "--allow-partial"], &d);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        md.contains("**Incomplete run**") && md.contains("saliency (incomplete)"),
        "{md}"
    );
    // The other shard completes the folder: a plain report again.
    let o = m2ib(
        &[
            "run",
            exp.to_str().unwrap(),
            "--shard",
            "1/2",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        &std::env::temp_dir(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = m2ib(&["report", out.to_str().unwrap()], &d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!std::fs::read_to_string(out.join("table.md"))
        .unwrap()
        .contains("incomplete"));
    // A model path that is nowhere: the error says where it looked.
    let bad = write_experiment(&d, "no-such-model");
    let e = one_line_error(&m2ib(&["run", bad.to_str().unwrap(), "--dry-run"], &root()));
    assert!(
        e.contains("exp.toml:5") && e.contains("beside the experiment"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
}
