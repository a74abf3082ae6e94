//! The run directory's layout, in one place (README "Layout"):
//!
//! ```text
//! <out>/run.json                        what ran: experiment text, revision, devices, settings
//! <out>/jobs.json                       every job of the experiment (all shards)
//! <out>/results/<job>.parquet           one part per finished job that writes rows
//! <out>/maps/<job>.safetensors          the map cache (explain and ROAR+ map jobs)
//! <out>/maps/<job>.clean.json           ROAR+ clean fine-tunings of a repeat
//! <out>/maps/sanity-steps.json          the randomisation steps' names
//! <out>/claims/<job>.claim, ran.log     who runs which job (claims.rs)
//! ```
//!
//! Every file a rerun or a reader takes as a job's output (parts, maps, clean losses, jobs.json,
//! run.json) is written atomically (a temp file beside it, then a rename), so a killed run leaves
//! nothing half-written that counts as finished; `claims/ran.log` is appended to.
use crate::plan::{Job, JobKind};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    pub fn run_info(&self) -> PathBuf {
        self.root.join("run.json")
    }

    pub fn jobs_file(&self) -> PathBuf {
        self.root.join("jobs.json")
    }

    pub fn results(&self) -> PathBuf {
        self.root.join("results")
    }

    pub fn part(&self, job_id: &str) -> PathBuf {
        self.results().join(format!("{job_id}.parquet"))
    }

    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn maps(&self, job_id: &str) -> PathBuf {
        self.maps_dir().join(format!("{job_id}.safetensors"))
    }

    pub fn clean_losses(&self, job_id: &str) -> PathBuf {
        self.maps_dir().join(format!("{job_id}.clean.json"))
    }

    /// The randomisation steps' names, for the report's x axis.
    pub fn sanity_steps(&self) -> PathBuf {
        self.maps_dir().join("sanity-steps.json")
    }

    pub fn claims_dir(&self) -> PathBuf {
        self.root.join("claims")
    }

    pub fn is_done(&self, job_id: &str) -> bool {
        self.part(job_id).exists()
    }

    /// Whether a job's output exists (a rerun skips it).
    pub fn is_finished(&self, job: &Job) -> bool {
        match job.kind {
            JobKind::RoarMaps => self.maps(&job.id).exists(),
            JobKind::RoarClean => self.clean_losses(&job.id).exists(),
            _ => self.is_done(&job.id),
        }
    }

    /// Writes `jobs.json` (atomically: another process on this folder may write it too).
    pub fn write_jobs(&self, jobs: &[Job]) -> std::io::Result<()> {
        let entries: Vec<JobEntry> = jobs.iter().map(JobEntry::of).collect();
        write_atomic(
            &self.jobs_file(),
            serde_json::to_string(&entries)?.as_bytes(),
        )
    }

    /// The jobs listed in `jobs.json`, or None when the folder has none.
    pub fn read_jobs(&self) -> Result<Option<Vec<JobEntry>>, String> {
        let Ok(text) = std::fs::read_to_string(self.jobs_file()) else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Listed {
            Entries(Vec<JobEntry>),
            Ids(Vec<String>),
        }
        let listed: Listed = serde_json::from_str(&text)
            .map_err(|e| format!("{}: {e}", self.jobs_file().display()))?;
        Ok(Some(match listed {
            Listed::Entries(e) => e,
            Listed::Ids(ids) => ids
                .into_iter()
                .map(|id| JobEntry {
                    id,
                    kind: "?".into(),
                    label: "?".into(),
                    repeat: 0,
                    chunk: 0,
                })
                .collect(),
        }))
    }

    /// The listed jobs that should have written a result part and have not (another shard's, or
    /// killed, or failed as a whole).
    pub fn missing_jobs(&self) -> Result<Vec<JobEntry>, String> {
        Ok(self
            .read_jobs()?
            .unwrap_or_default()
            .into_iter()
            .filter(|j| self.is_missing(j))
            .collect())
    }

    /// Whether a listed job should have written a result part and has not.
    pub fn is_missing(&self, j: &JobEntry) -> bool {
        if j.kind == "?" {
            // Old jobs.json (bare ids): any output of the job counts.
            return !self.is_done(&j.id)
                && !self.maps(&j.id).exists()
                && !self.clean_losses(&j.id).exists();
        }
        j.writes_results() && !self.is_done(&j.id)
    }
}

/// One entry of `jobs.json` (runs before this format wrote bare ids; those read with kind "?").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobEntry {
    pub id: String,
    pub kind: String,
    pub label: String,
    pub repeat: usize,
    pub chunk: usize,
}

impl JobEntry {
    pub fn of(j: &Job) -> JobEntry {
        JobEntry {
            id: j.id.clone(),
            kind: j.kind.name().to_string(),
            label: j.cell.name().to_string(),
            repeat: j.repeat,
            chunk: j.chunk,
        }
    }

    /// Jobs that write a result part (the others cache maps or clean losses for them).
    pub fn writes_results(&self) -> bool {
        !matches!(self.kind.as_str(), "roar-maps" | "roar-clean")
    }
}

/// This machine's name (claims and temp file names carry it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A temp-file name beside `path`, unique per process and call: workers of one run may write the
/// same cache file at once (a dependency computed on the spot, the sanity step names), and each
/// must rename its own complete file.
pub fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Host and pid in the name: a later run can tell a dead writer's leftovers (claims::sweep_temps).
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}-{n}",
        hostname(),
        std::process::id()
    ))
}

/// Writes `bytes` to `path` through a temp file beside it and a rename (readers never see half).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_beside(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
