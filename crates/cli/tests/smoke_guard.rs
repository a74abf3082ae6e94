//! The CI regression guard of metric scores: experiments/smoke.toml (every method and metric on
//! the embedded default) against reports/baselines/smoke.csv, and proof that the guard can fail:
//! one method's cached maps replaced by 1 - map must trip it, and so must the maps ROAR+ reads
//! (its own map cache), by at least twice the ROAR+ tolerance.
use m2ib_report::guard::{check, read_baseline};
use m2ib_report::table::table;
use m2ib_runner::plan::plan;
use m2ib_runner::plan::JobKind;
use m2ib_runner::run::{run, RunOptions};
use std::path::Path;
use tch::Tensor;

use m2ib_testkit::repo_root as root;

fn run_smoke(out: &Path) -> m2ib_report::table::Table {
    // The experiment names the model relative to the repository root.
    std::env::set_current_dir(root()).unwrap();
    run(
        Path::new("experiments/smoke.toml"),
        &RunOptions {
            out: Some(out.to_path_buf()),
            quiet: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    table(&m2ib_runner::store::read_all(&[out.to_path_buf()]).unwrap()).unwrap()
}

/// 1 - normalised map for every sample of `method`'s explain jobs; their parts are removed so a
/// rerun recomputes the metrics from the (altered) cache.
fn invert_cached_maps(out: &Path, method: &str) -> usize {
    let df = m2ib_runner::store::read_all(&[out.to_path_buf()]).unwrap();
    let (jobs, methods, metrics) = (
        df.column("job_id").unwrap().str().unwrap(),
        df.column("method").unwrap().str().unwrap(),
        df.column("metric").unwrap().str().unwrap(),
    );
    let mut ids: Vec<String> = (0..df.height())
        .filter(|&i| methods.get(i) == Some(method) && metrics.get(i) == Some("drop"))
        .filter_map(|i| jobs.get(i).map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    invert_map_files(out, &ids);
    for id in &ids {
        std::fs::remove_file(out.join("results").join(format!("{id}.parquet"))).unwrap();
    }
    ids.len()
}

/// 1 - normalised map in every map file of `ids`.
fn invert_map_files(out: &Path, ids: &[String]) {
    for id in ids {
        let p = out.join("maps").join(format!("{id}.safetensors"));
        let inverted: Vec<(String, Tensor)> = Tensor::read_safetensors(&p)
            .unwrap()
            .into_iter()
            .map(|(name, t)| {
                let n = (&t - t.min()) / (t.max() - t.min());
                (name, 1.0 - n)
            })
            .collect();
        Tensor::write_safetensors(&inverted, &p).unwrap();
    }
}

/// The maps ROAR+ degrades its training pairs by (the RoarMaps jobs' cache) inverted for
/// `method`; its ROAR+ parts removed so a rerun fine-tunes again on the altered maps.
fn invert_roar_maps(out: &Path, method: &str) -> usize {
    let p = plan(&root().join("experiments/smoke.toml"), None).unwrap();
    let of = |kind: JobKind| -> Vec<String> {
        p.jobs
            .iter()
            .filter(|j| j.kind == kind && j.cell.name() == method)
            .map(|j| j.id.clone())
            .collect()
    };
    let maps = of(JobKind::RoarMaps);
    invert_map_files(out, &maps);
    for id in of(JobKind::Roar) {
        std::fs::remove_file(out.join("results").join(format!("{id}.parquet"))).unwrap();
    }
    maps.len()
}

#[test]
fn smoke_scores_match_the_baseline_and_the_guard_can_fail() {
    let base = read_baseline(&root().join("reports/baselines/smoke.csv")).unwrap();
    let out = std::env::temp_dir().join(format!("m2ib-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let t = run_smoke(&out);
    match check(&t, &base) {
        Ok(md) => println!("{md}"),
        Err(md) => panic!(
            "metric scores drifted from reports/baselines/smoke.csv (rewrite it with `just baseline` \
             only when the change is intended; README: \"Score guard\"):\n{md}"
        ),
    }
    assert!(
        base.len() > 40,
        "the baseline covers every method and metric"
    );
    // Saliency's maps turned upside down: the guard must notice.
    assert!(invert_cached_maps(&out, "saliency") > 0);
    let t = run_smoke(&out);
    let e = check(&t, &base).unwrap_err();
    println!("{e}");
    assert!(
        e.contains("| saliency | image | localization_iou") || e.contains("| saliency |"),
        "{e}"
    );
    for line in e.lines().filter(|l| l.contains("DRIFT")) {
        assert!(
            line.starts_with("| saliency |"),
            "only saliency drifts: {line}"
        );
    }
    // Kernel SHAP's ROAR+ maps turned upside down (its least important half of each training
    // image removed instead of the most important): its image ROAR+ score must move by at least
    // twice its tolerance (Kernel SHAP: the tightest image ROAR+ tolerance in the baseline).
    const ROAR_METHOD: &str = "kernel_shap";
    assert!(invert_roar_maps(&out, ROAR_METHOD) > 0);
    let t = run_smoke(&out);
    let cell = base
        .iter()
        .find(|c| c.method == ROAR_METHOD && c.modality == "image" && c.metric == "roar")
        .expect("the baseline has Kernel SHAP's image ROAR+");
    let now = t[&(cell.method.clone(), cell.params.clone())][&(
        cell.modality.clone(),
        cell.metric.clone(),
        cell.variant.clone(),
    )]
        .mean;
    let moved = (now - cell.score).abs();
    println!(
        "{ROAR_METHOD} image ROAR+: baseline {:.2} (tolerance {:.2}), inverted maps {now:.2}: moved {:.1} tolerances",
        cell.score,
        cell.tolerance,
        moved / cell.tolerance
    );
    assert!(
        moved >= 2.0 * cell.tolerance,
        "a ROAR+ drift of {moved:.2} is within twice the tolerance {:.2}",
        cell.tolerance
    );
    let e = check(&t, &base).unwrap_err();
    assert!(
        e.lines()
            .any(|l| l.contains("DRIFT")
                && l.starts_with(&format!("| {ROAR_METHOD} | image | roar |"))),
        "{e}"
    );
    std::fs::remove_dir_all(&out).ok();
}
