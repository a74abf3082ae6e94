//! The runner on the golden checkpoint ckpt_b (64 px, shapes vocabulary): a rerun skips finished
//! jobs, two shards merged equal one run, two CPU workers equal one bit for bit, and the same
//! experiment twice gives identical values.
use m2ib_runner::run::{run, RunOptions};
use m2ib_runner::store::read_all;
use polars::prelude::*;
use std::path::{Path, PathBuf};

fn experiment(dir: &Path, workers: usize) -> PathBuf {
    let ckpt = m2ib_testkit::clip_golden().join("ckpt_b");
    let toml = format!(
        r#"
name = "t"
seed = 3
chunk_size = 2
workers = {workers}
[model]
name = "ckpt_b"
path = "{}"
[dataset]
reader = "shapes"
n = 5
absent = true
[methods.m2ib]
image_layer = [1, 3]
text_layer = 0
steps = 3
copies = 2
[methods.saliency]
[methods.gradcam]
[metrics]
localization = ["value", "percentile"]
text_localization = true
confidence = ["official", "padded"]
"#,
        ckpt.display()
    );
    let p = dir.join("exp.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&p, toml).unwrap();
    p
}

use m2ib_testkit::tmp;

/// The columns that must not depend on how the run was split up.
fn values(dirs: &[PathBuf]) -> DataFrame {
    read_all(dirs)
        .unwrap()
        .select([
            "job_id",
            "sample_id",
            "modality",
            "metric",
            "metric_variant",
            "seed",
            "value",
            "error",
        ])
        .unwrap()
}

fn opts(out: &Path) -> RunOptions {
    RunOptions {
        out: Some(out.to_path_buf()),
        quiet: true,
        ..RunOptions::default()
    }
}

#[test]
fn rerun_shards_and_workers() {
    let d = tmp("a");
    let exp = experiment(&d, 1);
    let a = d.join("one");
    let s = run(&exp, &opts(&a)).unwrap();
    // 6 cells (m2ib x2, saliency, gradcam; the oracle and random calibration rows) x 1 repeat
    // x 3 chunks.
    assert_eq!((s.total, s.ran, s.skipped), (18, 18, 0));
    let df = values(std::slice::from_ref(&a));
    // 5 samples x 6 cells x (2 iou + 1 auroc + 2 image conf + 4 text conf) rows.
    assert_eq!(df.height(), 5 * 6 * 9);
    let errors = df.column("error").unwrap().null_count();
    assert!(
        errors > 0 && errors < df.height(),
        "some metrics are undefined (no errors would be suspicious), most are not"
    );
    // A rerun skips everything.
    let again = run(&exp, &opts(&a)).unwrap();
    assert_eq!((again.ran, again.skipped), (0, 18));
    // Two shards, merged, equal one run.
    let b = d.join("shard0");
    let c = d.join("shard1");
    let s0 = run(
        &exp,
        &RunOptions {
            shard: Some((0, 2)),
            ..opts(&b)
        },
    )
    .unwrap();
    let s1 = run(
        &exp,
        &RunOptions {
            shard: Some((1, 2)),
            ..opts(&c)
        },
    )
    .unwrap();
    assert_eq!(s0.total + s1.total, 18);
    assert!(values(&[b, c]).equals_missing(&df));
    // Determinism: the same experiment again, into a fresh directory, gives identical values,
    // and every row records its seed.
    let fresh = d.join("again");
    run(&exp, &opts(&fresh)).unwrap();
    assert!(values(&[fresh]).equals_missing(&df));
    assert!(df
        .column("seed")
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .all(|s| s.is_some_and(|s| s != 0)));
    // Two CPU workers (one thread each) equal one worker, bit for bit.
    let exp2 = experiment(&d.join("two"), 2);
    let e = d.join("two/out");
    run(&exp2, &opts(&e)).unwrap();
    assert!(values(&[e]).equals_missing(&df));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn dry_run_counts_and_layer_range_is_checked_against_the_model() {
    let d = tmp("b");
    let exp = experiment(&d, 1);
    let s = run(
        &exp,
        &RunOptions {
            dry_run: true,
            ..opts(&d.join("x"))
        },
    )
    .unwrap();
    assert_eq!((s.total, s.ran), (18, 0));
    assert!(!d.join("x").exists(), "a dry run writes nothing");
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("image_layer = [1, 3]", "image_layer = [1, 7]");
    std::fs::write(&exp, text).unwrap();
    let e = run(&exp, &opts(&d.join("y"))).err().unwrap().to_string();
    assert!(
        e.contains("exp.toml:14") && e.contains("image_layer") && e.contains("allowed -5..=4"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// ROAR+ and sanity run as dependent jobs over the map cache; in a shard whose dependencies
/// live in the other shard they are computed on the spot, with the same values.
#[test]
fn roar_and_sanity_are_dependent_jobs() {
    let d = tmp("c");
    let exp = experiment(&d, 2);
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("image_layer = [1, 3]", "image_layer = 3")
        .replace("[methods.gradcam]\n", "")
        .replace(
            "padded\"]\n",
            "padded\"]\nimage_confidence = [\"whole-map\", \"keep-top25\"]\nintervention = true\n",
        )
        + "sanity = true\n[metrics.roar]\nn = 16\nval_fraction = 0.5\nval_batch_size = 8\nsteps = 3\nbatch_size = 4\nsplits = 2\n";
    std::fs::write(&exp, text).unwrap();
    let a = d.join("one");
    let s = run(&exp, &opts(&a)).unwrap();
    // 4 cells (2 methods, 2 calibration references) x 3 chunks explain; sanity for the 2
    // methods only; 1 clean; 4 cells x (8 map chunks + 1 roar).
    assert_eq!(s.total, 12 + 6 + 1 + 4 * 9);
    let df = read_all(std::slice::from_ref(&a)).unwrap();
    let filter = |metric: &str| {
        let mask: BooleanChunked = df
            .column("metric")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|m| Some(m == Some(metric)))
            .collect();
        df.filter(&mask).unwrap()
    };
    // Intervention agreement: one row per sample, modality and cell; a value where the scene
    // has two or more objects (text: the caption two or more phrases), else the reason.
    let iv = filter("intervention");
    assert_eq!(iv.height(), 4 * 5 * 2);
    let finite = iv
        .column("value")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .count();
    assert!(finite > 0, "some samples have several objects");
    // The keep-top25 image protocol sits beside the whole map.
    let variants: Vec<Option<String>> = filter("drop")
        .column("metric_variant")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect();
    assert!(variants.iter().any(|v| v.as_deref() == Some("keep-top25")));
    let roar = filter("roar");
    // 4 cells x 2 modalities x 2 splits, dataset-level (no sample id), all finite.
    assert_eq!(roar.height(), 16);
    assert_eq!(roar.column("sample_id").unwrap().null_count(), 16);
    assert_eq!(roar.column("value").unwrap().null_count(), 0);
    assert!(roar
        .column("split")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .all(|s| s == Some("train")));
    // Sanity: 5 samples x 3 similarities x (steps) per method, plus the noise floor.
    let steps: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(a.join("maps/sanity-steps.json")).unwrap())
            .unwrap();
    assert!(steps.len() > 5, "{steps:?}");
    assert_eq!(filter("sanity").height(), 2 * 5 * 3 * steps.len());
    assert_eq!(filter("sanity_noise_floor").height(), 2 * 5 * 3);
    // The maps of the training pairs and the clean losses are cached.
    let cached = std::fs::read_dir(a.join("maps")).unwrap().count();
    assert!(cached > 6 + 10, "{cached} cache files");
    // Shards: dependencies computed where they are missing give the same values.
    let (b, c) = (d.join("s0"), d.join("s1"));
    for (k, o) in [(0, &b), (1, &c)] {
        run(
            &exp,
            &RunOptions {
                shard: Some((k, 2)),
                ..opts(o)
            },
        )
        .unwrap();
    }
    let sorted = |df: DataFrame| {
        df.sort(
            [
                "job_id",
                "sample_id",
                "modality",
                "metric",
                "metric_variant",
                "step",
                "value",
            ],
            Default::default(),
        )
        .unwrap()
    };
    let cols = [
        "job_id",
        "sample_id",
        "modality",
        "metric",
        "metric_variant",
        "step",
        "value",
    ];
    let one = sorted(read_all(&[a]).unwrap().select(cols).unwrap());
    let two = sorted(read_all(&[b, c]).unwrap().select(cols).unwrap());
    assert!(one.equals_missing(&two));
    std::fs::remove_dir_all(&d).ok();
}

/// After the TOML changes, parts of jobs it no longer has stay on disk but are not reported.
#[test]
fn reports_read_only_the_current_jobs() {
    let d = tmp("d");
    let exp = experiment(&d, 1);
    let out = d.join("out");
    run(&exp, &opts(&out)).unwrap();
    let text = std::fs::read_to_string(&exp)
        .unwrap()
        .replace("[methods.gradcam]\n", "");
    std::fs::write(&exp, text).unwrap();
    let s = run(&exp, &opts(&out)).unwrap();
    assert_eq!((s.total, s.ran), (15, 0), "the other jobs are done already");
    let all = read_all(std::slice::from_ref(&out)).unwrap();
    let (current, left_out) = m2ib_runner::store::read_current(&out).unwrap();
    assert_eq!(left_out, 5 * 9, "gradcam's rows");
    assert_eq!(current.height() + left_out, all.height());
    assert!(current
        .column("method")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .all(|m| m != Some("gradcam")));
    std::fs::remove_dir_all(&d).ok();
}
