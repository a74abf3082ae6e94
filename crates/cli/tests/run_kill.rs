//! SIGKILL in the middle of `m2ib run`, then a rerun: the results equal an uninterrupted run —
//! no row lost, none duplicated, no partial part read.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn experiment(dir: &Path) -> PathBuf {
    let ckpt = m2ib_testkit::clip_golden().join("ckpt_b");
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

/// An experiment with dependent jobs (ROAR+ maps and clean fine-tuning, sanity), small.
fn experiment_with_dependents(dir: &Path) -> PathBuf {
    let p = experiment(dir);
    let text = std::fs::read_to_string(&p).unwrap().replace("n = 12", "n = 6")
        + "sanity = true\n[metrics.roar]\nn = 16\nval_fraction = 0.5\nval_batch_size = 8\nsteps = 3\nbatch_size = 4\nsplits = 2\n";
    std::fs::write(&p, text).unwrap();
    p
}

fn ran_log(out: &Path) -> Vec<(String, String, u32)> {
    m2ib_runner::claims::read_log(out)
        .into_iter()
        .map(|(id, what, _, pid)| (id, what, pid))
        .collect()
}

/// Every listed job ran exactly once according to ran.log (ROAR+ maps computed on the spot count
/// as that job).
fn assert_exactly_once(out: &Path) -> std::collections::BTreeMap<u32, usize> {
    let jobs = m2ib_runner::rundir::RunDir::new(out)
        .read_jobs()
        .unwrap()
        .unwrap();
    let log = ran_log(out);
    let mut per_pid = std::collections::BTreeMap::new();
    for j in &jobs {
        let runs: Vec<&(String, String, u32)> =
            log.iter().filter(|(id, _, _)| id == &j.id).collect();
        assert_eq!(
            runs.len(),
            1,
            "job {} ({} {}) ran {:?}",
            j.id,
            j.kind,
            j.label,
            runs
        );
        *per_pid.entry(runs[0].2).or_insert(0) += 1;
    }
    assert_eq!(
        log.len(),
        jobs.len(),
        "ran.log has entries for unlisted jobs"
    );
    per_pid
}

#[test]
fn processes_sharing_a_folder_split_the_jobs_and_take_over_a_dead_ones_claim() {
    let d = std::env::temp_dir().join(format!("m2ib-share-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let exp = experiment_with_dependents(&d);
    let (alone, shared) = (d.join("alone"), d.join("shared"));
    let run = |out: &Path, extra: &[&str]| {
        let mut c = m2ib(&[
            "run",
            exp.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        c.args(extra);
        c
    };
    assert!(run(&alone, &[]).status().unwrap().success());
    // Two processes at once on one folder.
    let mut a = run(&shared, &[]).spawn().unwrap();
    let mut b = run(&shared, &[]).spawn().unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let per_pid = assert_exactly_once(&shared);
    eprintln!("jobs per process: {per_pid:?}");
    assert_eq!(parts(&shared).len(), parts(&alone).len());
    for (x, y) in parts(&alone).iter().zip(parts(&shared)) {
        let read = |p: &Path| {
            use polars::prelude::SerReader;
            let mut df = polars::prelude::ParquetReader::new(std::fs::File::open(p).unwrap())
                .finish()
                .unwrap();
            // Wall time and device differ between runs; the values must not.
            df = df.drop_many(["wall_ms"]);
            df
        };
        assert!(read(x).equals_missing(&read(&y)), "{}", x.display());
    }
    // A process killed while it holds a claim: its claim (dead pid on this host) and its temp
    // files are taken over / removed by the next run; nothing is done twice.
    let killed = d.join("killed");
    let mut c = run(&killed, &[]).spawn().unwrap();
    let t0 = Instant::now();
    let claims = killed.join("claims");
    let holds_claim = || {
        std::fs::read_dir(&claims)
            .map(|r| {
                r.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".claim"))
            })
            .unwrap_or(false)
    };
    while !holds_claim() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(holds_claim(), "the killed process left its claim behind");
    // What the killed process finished (it may have died between writing a job's output and
    // logging it: such a job must not run again, and may lack its log line).
    let finished_before: std::collections::HashSet<String> = ["results", "maps"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(killed.join(sub))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .split('.')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let host = m2ib_runner::rundir::hostname();
    let leftover = killed
        .join("results")
        .join(format!(".x.parquet.tmp-{host}-999999999-0"));
    std::fs::create_dir_all(killed.join("results")).unwrap();
    std::fs::write(&leftover, b"PAR1 half").unwrap();
    assert!(run(&killed, &["--claim-timeout", "1"])
        .status()
        .unwrap()
        .success());
    assert!(!leftover.exists(), "a dead writer's temp file is removed");
    assert!(!holds_claim(), "no claim left once every job is done");
    let log = ran_log(&killed);
    for j in m2ib_runner::rundir::RunDir::new(&killed)
        .read_jobs()
        .unwrap()
        .unwrap()
    {
        let runs = log.iter().filter(|(id, _, _)| id == &j.id).count();
        if finished_before.contains(&j.id) {
            assert!(runs <= 1, "job {} ran {runs} times", j.id);
        } else {
            assert_eq!(runs, 1, "job {} ({} {})", j.id, j.kind, j.label);
        }
    }
    assert_eq!(parts(&killed).len(), parts(&alone).len());
    std::fs::remove_dir_all(&d).ok();
}
