//! A write killed mid-file leaves no part that `read_all` / `m2ib merge` would read: a child
//! process writes large parts in a loop and is SIGKILLed at several moments; every part that
//! is visible afterwards is complete, and temp files are ignored.
use m2ib_runner::rows::Row;
use m2ib_runner::store::{read_all, write_part};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ROWS: usize = 150_000;

fn rows(job: usize) -> Vec<Row> {
    (0..ROWS)
        .map(|i| Row {
            job_id: format!("job{job}"),
            sample_id: Some(format!("s{i}")),
            metric: "m".into(),
            value: Some(i as f64),
            ..Row::default()
        })
        .collect()
}

/// Run by the parent test in a child process (ignored on its own).
#[test]
#[ignore]
fn writer_child() {
    let Ok(dir) = std::env::var("M2IB_STORE_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    for job in 0.. {
        write_part(
            &m2ib_runner::rundir::RunDir::new(&dir),
            &format!("{job:04}"),
            &rows(job),
        )
        .unwrap();
    }
}

#[test]
fn killed_writes_leave_no_partial_part() {
    let base = std::env::temp_dir().join(format!("m2ib-store-kill-{}", std::process::id()));
    for (k, delay_ms) in [35u64, 120, 260].into_iter().enumerate() {
        let dir = base.join(k.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "writer_child", "--test-threads=1"])
            .env("M2IB_STORE_CHILD_DIR", &dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first finished part, then kill at some point of a later write.
        let t0 = Instant::now();
        while read_all(std::slice::from_ref(&dir))
            .map(|d| d.height())
            .unwrap_or(0)
            == 0
        {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "child wrote nothing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let results = dir.join("results");
        let names: Vec<String> = std::fs::read_dir(&results)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        let parts = names.iter().filter(|n| n.ends_with(".parquet")).count();
        let df = read_all(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(
            df.height(),
            parts * ROWS,
            "every visible part is whole: {names:?}"
        );
        // A temp file left by the kill (if the kill hit a write) is never read.
        std::fs::write(results.join(".9999.parquet.tmp-1"), b"PAR1 truncated").unwrap();
        assert_eq!(
            read_all(std::slice::from_ref(&dir)).unwrap().height(),
            parts * ROWS
        );
        let merged = dir.join("merged.parquet");
        assert_eq!(
            m2ib_runner::store::merge(std::slice::from_ref(&dir), &merged).unwrap(),
            parts * ROWS
        );
    }
    std::fs::remove_dir_all(&base).ok();
}
