//! SIGKILL in the middle of `m2ib run`, then a rerun: the results equal an uninterrupted run —
//! no row lost, none duplicated, no partial part read.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn experiment(dir: &Path) -> PathBuf {
    let ckpt = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../clip/tests/golden/ckpt_b");
    let p = dir.join("exp.toml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &p,
        format!(
            "name = \"kill\"\nchunk_size = 1\n[model]\nname = \"b\"\npath = \"{}\"\n[dataset]\nreader = \"shapes\"\nn = 12\nabsent = true\n\
             [methods.m2ib]\nimage_layer = 2\ntext_layer = 0\nsteps = 4\n[methods.saliency]\n[metrics]\nlocalization = [\"value\"]\n\
             text_localization = true\nconfidence = [\"padded\"]\n",
            ckpt.display()
        ),
    )
    .unwrap();
    p
}

fn parts(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("results"))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn m2ib(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_m2ib"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

#[test]
fn killed_run_resumes_to_the_same_results() {
    let d = std::env::temp_dir().join(format!("m2ib-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let exp = experiment(&d);
    let (full, killed) = (d.join("full"), d.join("killed"));
    assert!(m2ib(&[
        "run",
        exp.to_str().unwrap(),
        "--quiet",
        "--out",
        full.to_str().unwrap()
    ])
    .status()
    .unwrap()
    .success());
    let total = parts(&full).len();
    // (m2ib, saliency, and the oracle and random calibration rows) x 12 chunks.
    assert_eq!(total, 48);
    // Start again elsewhere and kill it once some, but not all, parts exist.
    let mut child = m2ib(&[
        "run",
        exp.to_str().unwrap(),
        "--quiet",
        "--out",
        killed.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let t0 = Instant::now();
    while parts(&killed)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count()
        < 3
        && t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = parts(&killed)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert!(
        done > 0 && done < total,
        "killed after {done} of {total} parts"
    );
    assert!(m2ib(&[
        "run",
        exp.to_str().unwrap(),
        "--quiet",
        "--out",
        killed.to_str().unwrap()
    ])
    .status()
    .unwrap()
    .success());
    // Merged results are identical in every column that does not record time or place.
    let (a, b) = (d.join("a.parquet"), d.join("b.parquet"));
    assert!(m2ib(&[
        "merge",
        full.to_str().unwrap(),
        "--out",
        a.to_str().unwrap()
    ])
    .status()
    .unwrap()
    .success());
    assert!(m2ib(&[
        "merge",
        killed.to_str().unwrap(),
        "--out",
        b.to_str().unwrap()
    ])
    .status()
    .unwrap()
    .success());
    let cols = [
        "job_id",
        "sample_id",
        "modality",
        "metric",
        "metric_variant",
        "seed",
        "value",
        "error",
    ];
    let read = |p: &Path| {
        use polars::prelude::SerReader;
        polars::prelude::ParquetReader::new(std::fs::File::open(p).unwrap())
            .finish()
            .unwrap()
            .select(cols)
            .unwrap()
    };
    let (fa, fb) = (read(&a), read(&b));
    // 12 samples x 4 cells (2 methods, 2 calibration rows) x 6 metric rows.
    assert_eq!(fa.height(), 12 * 4 * 6);
    assert!(fa.equals_missing(&fb), "resumed results differ");
    std::fs::remove_dir_all(&d).ok();
}
