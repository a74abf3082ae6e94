//! `m2ib slurm --submit` against a fake `sbatch` / `srun` on PATH: the fake checks the
//! directives and runs the array tasks and then the dependent report job locally, so the scripts
//! are proven to run as submitted (absolute paths, from another folder) on the small golden
//! checkpoint in seconds.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use m2ib_testkit::repo_root as root;

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const FAKE_SBATCH: &str = r#"#!/bin/bash
# Fake sbatch: logs its call, checks the directives, runs the script here (array tasks in turn).
set -euo pipefail
dep=""
while [[ "$1" == --* ]]; do
  case "$1" in --dependency=*) dep=${1#--dependency=} ;; esac
  shift
done
s=$1
for d in --job-name= --time= --mem= --cpus-per-task= --output=; do
  grep -q "^#SBATCH $d" "$s" || { echo "fake sbatch: $s lacks #SBATCH $d" >&2; exit 3; }
done
out=$(sed -n 's/^#SBATCH --output=//p' "$s"); [ -d "$(dirname "$out")" ] || { echo "no log folder" >&2; exit 3; }
last=$(sed -n 's/^#SBATCH --array=0-//p' "$s")
echo "$(basename "$s") dep=$dep $(grep '^#SBATCH' "$s" | tr '\n' ' ')" >> "$FAKE_LOG"
cd /
if [ -n "$last" ]; then
  for i in $(seq 0 "$last"); do SLURM_ARRAY_TASK_ID=$i bash "$s" >> "$FAKE_LOG" 2>&1; done
  echo "4242;cluster"
else
  [ "$dep" = "afterok:4242" ] || { echo "fake sbatch: report job without afterok on the array" >&2; exit 3; }
  bash "$s" >> "$FAKE_LOG" 2>&1
  echo 4243
fi
"#;

#[test]
fn generated_scripts_run_as_submitted() {
    let d = std::env::temp_dir().join(format!("m2ib-slurm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    script(&bin.join("sbatch"), FAKE_SBATCH);
    script(&bin.join("srun"), "#!/bin/bash\nexec \"$@\"\n");
    let ckpt = root().join("crates/clip/tests/golden/ckpt_b");
    let exp = d.join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            "name = \"slurmtest\"\nchunk_size = 1\nworkers = 2\n[model]\nname = \"b\"\npath = \"{}\"\n[dataset]\nreader = \"shapes\"\nn = 4\n\
             [methods.saliency]\n[metrics]\nlocalization = [\"value\"]\n",
            ckpt.display()
        ),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let log = d.join("fake.log");
    let run_dir = d.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_m2ib"))
        .args([
            "slurm",
            exp.to_str().unwrap(),
            "--shards",
            "3",
            "--time",
            "00:10:00",
            "--partition",
            "debug",
            "--submit",
            "--run-dir",
        ])
        .arg(&run_dir)
        .arg("--out")
        .arg(d.join("job.sbatch"))
        .current_dir(&d)
        .env("PATH", &path)
        .env("FAKE_LOG", &log)
        .output()
        .unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}\n{log_text}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("submitted array job 4242 (3 tasks) and report job 4243"),
        "{stdout}"
    );
    let array = std::fs::read_to_string(d.join("job.sbatch")).unwrap();
    for want in [
        "--array=0-2",
        "--time=00:10:00",
        "--partition=debug",
        "--cpus-per-task=2",
        "--mem=16G",
    ] {
        assert!(
            array.contains(&format!("#SBATCH {want}")),
            "{want}\n{array}"
        );
    }
    assert!(
        !array.contains("--gres"),
        "a CPU experiment asks for no GPU\n{array}"
    );
    assert!(std::fs::read_to_string(d.join("job-report.sbatch"))
        .unwrap()
        .contains("merge"));
    // Every shard ran, the report and the merge after them.
    assert!(
        m2ib_runner::rundir::RunDir::new(&run_dir)
            .missing_jobs()
            .unwrap()
            .is_empty(),
        "{log_text}"
    );
    assert!(
        run_dir.join("table.md").exists() && run_dir.join("merged.parquet").exists(),
        "{log_text}"
    );
    // A TOML that does not exist is refused before anything is written.
    let o = Command::new(env!("CARGO_BIN_EXE_m2ib"))
        .args(["slurm", "/nonexistent.toml", "--shards", "2", "--out"])
        .arg(d.join("never.sbatch"))
        .output()
        .unwrap();
    assert!(!o.status.success() && !d.join("never.sbatch").exists());
    std::fs::remove_dir_all(&d).ok();
}
