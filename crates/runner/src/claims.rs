//! Job claims, so that several `m2ib run` processes on one output folder (one machine, or nodes
//! sharing a filesystem) split the work with none done twice. A claim is a file
//! `<out>/claims/<job>.claim` created exclusively, naming host and pid; its holder touches it
//! every few seconds (heartbeat). A claim is stale when its process is gone (same host) or its
//! heartbeat is older than the timeout (any host); a stale claim is taken over by renaming it
//! away first (only one taker can), then claiming anew. `ran.log` records which process ran each
//! job, the evidence for "exactly once".
use crate::rundir::{hostname, RunDir};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Default for `--claim-timeout`: a heartbeat older than this means the holder is gone.
pub const DEFAULT_STALE: Duration = Duration::from_secs(120);

pub struct Claims {
    dir: PathBuf,
    host: String,
    pid: u32,
    stale: Duration,
    held: Mutex<HashSet<String>>,
}

/// Held while a job runs; removes the claim when dropped.
pub struct Claim<'a> {
    claims: &'a Claims,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.held.lock().unwrap().remove(&self.id);
        // Only our own: after a takeover (we were stopped past the timeout) the file is another's.
        let path = self.claims.path(&self.id);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == self.claims.owner_line()) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

impl Claims {
    pub fn new(out: &Path, stale: Duration) -> std::io::Result<Claims> {
        let dir = RunDir::new(out).claims_dir();
        std::fs::create_dir_all(&dir)?;
        Ok(Claims {
            dir,
            host: hostname(),
            pid: std::process::id(),
            stale,
            held: Mutex::new(HashSet::new()),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.claim"))
    }

    fn owner_line(&self) -> String {
        format!("{} {}\n", self.host, self.pid)
    }

    /// This process now holds the job (Some), or a live process does (None).
    pub fn try_claim(&self, id: &str) -> std::io::Result<Option<Claim<'_>>> {
        let path = self.path(id);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(self.owner_line().as_bytes())?;
                    self.held.lock().unwrap().insert(id.to_string());
                    return Ok(Some(Claim {
                        claims: self,
                        id: id.to_string(),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let Some(judged) = self.stale_state(id, &path) else {
                        return Ok(None);
                    };
                    // Only one taker's rename succeeds. A slower taker may rename away the claim
                    // the faster one has just made: it sees the moved file is not the one it
                    // judged stale and puts it back.
                    let away = self
                        .dir
                        .join(format!("{id}.stale-{}-{}", self.host, self.pid));
                    if std::fs::rename(&path, &away).is_ok() {
                        if state_of(&away).as_ref() != Some(&judged) {
                            let _ = std::fs::hard_link(&away, &path);
                            let _ = std::fs::remove_file(&away);
                            return Ok(None);
                        }
                        let _ = std::fs::remove_file(&away);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The claim's state when it is stale (to check, once taken, that it was that one).
    fn stale_state(&self, id: &str, path: &Path) -> Option<(String, SystemTime)> {
        let state = state_of(path)?;
        let mut words = state.0.split_whitespace();
        let (host, pid) = (
            words.next(),
            words.next().and_then(|p| p.parse::<u32>().ok()),
        );
        if let (Some(h), Some(p)) = (host, pid) {
            if h == self.host && p == self.pid {
                // Ours: live while this process holds it, else the leftover of a crashed run
                // that had our pid (containers restart with the same pid).
                return (!self.held.lock().unwrap().contains(id)).then_some(state);
            }
            if h == self.host && !alive(p) {
                return Some(state);
            }
        }
        let age = SystemTime::now().duration_since(state.1).ok()?;
        (age > self.stale).then_some(state)
    }

    /// Claims a job another job needs before computing it on the spot: None when `done()` turns
    /// true first (another process computed it), waiting while a live process holds it.
    pub fn claim_when_missing(
        &self,
        id: &str,
        done: impl Fn() -> bool,
    ) -> std::io::Result<Option<Claim<'_>>> {
        loop {
            if done() {
                return Ok(None);
            }
            if let Some(c) = self.try_claim(id)? {
                if done() {
                    return Ok(None);
                }
                return Ok(Some(c));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Touches every claim this process holds (call every few seconds).
    pub fn heartbeat(&self) {
        let held: Vec<String> = self.held.lock().unwrap().iter().cloned().collect();
        for id in held {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(self.path(&id)) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }

    /// How often `heartbeat` should run for this timeout.
    pub fn heartbeat_every(&self) -> Duration {
        (self.stale / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
    }

    /// Appends `job kind host pid` to `ran.log` (one short append per finished job). The log is
    /// evidence, not state: a failed append is reported and the job's result stands.
    pub fn record(&self, id: &str, what: &str) {
        let line = format!("{id}\t{what}\t{}\t{}\n", self.host, self.pid);
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("ran.log"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            eprintln!("{}: {e}", self.dir.join("ran.log").display());
        }
    }
}

impl Claims {
    /// Removes temp files a killed writer left in `dirs` (`.<name>.tmp-<host>-<pid>-<n>`, see
    /// `rundir::temp_beside`): at once when the writer was on this host and is gone; a writer on
    /// another host, once the file is older than the timeout. Returns how many.
    pub fn sweep_temps(&self, dirs: &[PathBuf]) -> usize {
        let mut removed = 0;
        for d in dirs {
            let Ok(entries) = std::fs::read_dir(d) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some((_, tail)) = name.split_once(".tmp-") else {
                    continue;
                };
                if !name.starts_with('.') {
                    continue;
                }
                let mut parts = tail.rsplitn(3, '-');
                let (_, pid, host) = (parts.next(), parts.next(), parts.next());
                let pid = pid.and_then(|p| p.parse::<u32>().ok());
                let here = host == Some(self.host.as_str());
                let dead_here = here && pid.is_some_and(|p| p != self.pid && !alive(p));
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|a| a > self.stale);
                // A live writer on this host is never swept, however slow.
                if (dead_here || (old && !here)) && std::fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// A claim file's text and modification time.
fn state_of(path: &Path) -> Option<(String, SystemTime)> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some((text, t))
}

/// `ran.log` as (job, what, host, pid) lines.
pub fn read_log(out: &Path) -> Vec<(String, String, String, u32)> {
    std::fs::read_to_string(RunDir::new(out).claims_dir().join("ran.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split('\t').collect();
            Some((
                w.first()?.to_string(),
                w.get(1)?.to_string(),
                w.get(2)?.to_string(),
                w.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_and_stale_claims_taken_over() {
        let d = std::env::temp_dir().join(format!("m2ib-claims-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let c = Claims::new(&d, Duration::from_millis(300)).unwrap();
        let a = c.try_claim("a").unwrap().expect("free");
        assert!(c.try_claim("a").unwrap().is_none(), "held by this process");
        drop(a);
        assert!(c.try_claim("a").unwrap().is_some(), "released");
        // Our own pid but not held by us: a crashed run's leftover.
        std::fs::write(c.path("own"), c.owner_line()).unwrap();
        assert!(c.try_claim("own").unwrap().is_some());
        // A dead process on this host: taken over at once.
        std::fs::write(c.path("b"), format!("{} 999999999\n", c.host)).unwrap();
        assert!(c.try_claim("b").unwrap().is_some());
        // Another host: live until its heartbeat is older than the timeout.
        std::fs::write(c.path("x"), "elsewhere 1\n").unwrap();
        assert!(c.try_claim("x").unwrap().is_none());
        std::thread::sleep(Duration::from_millis(400));
        assert!(c.try_claim("x").unwrap().is_some());
        std::fs::remove_dir_all(&d).ok();
    }
}
