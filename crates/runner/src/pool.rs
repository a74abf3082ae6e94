//! The worker pool: one worker (and one model copy) per device or CPU worker, one queue per job
//! phase with a barrier between phases (dependent jobs read the cache the previous phase wrote),
//! claims so that processes sharing the run directory never run a job twice, a heartbeat that
//! keeps this process's claims fresh, and the progress bars.
use crate::claims::Claims;
use crate::plan::Job;
use crate::rundir::RunDir;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use m2ib_clip::Checkpoint;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

/// What the pool did.
pub struct PoolReport {
    /// Jobs this process ran (the rest of `todo` another process sharing the folder finished).
    pub ran: usize,
    pub failed_samples: usize,
    /// One line per job (or worker) that failed as a whole.
    pub errors: Vec<String>,
}

/// The phases' jobs of `todo` on `devices`; `load` makes a worker's model, `work` runs one job
/// and returns its number of failed samples.
pub fn run_pool(
    todo: &[Job],
    devices: &[String],
    quiet: bool,
    dir: &RunDir,
    claims: &Claims,
    load: impl Fn(&str) -> anyhow::Result<Checkpoint> + Sync,
    work: impl Fn(&Checkpoint, &Job, &str) -> anyhow::Result<usize> + Sync,
) -> anyhow::Result<PoolReport> {
    let phases: Vec<Mutex<VecDeque<Job>>> = (0..3)
        .map(|p| {
            Mutex::new(
                todo.iter()
                    .filter(|j| j.kind.phase() == p)
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    let barrier = Barrier::new(devices.len());
    let mp = MultiProgress::new();
    if quiet {
        mp.set_draw_target(ProgressDrawTarget::hidden());
    }
    let overall = mp.add(ProgressBar::new(todo.len() as u64));
    overall.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} jobs  {per_sec}  eta {eta}  {msg}",
    )?);
    let failed = Mutex::new(0usize);
    let errors: Mutex<Vec<String>> = Mutex::new(vec![]);
    let finished = AtomicBool::new(false);
    let workers_left = AtomicUsize::new(devices.len());
    let ran = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Heartbeat of this process's claims (others take a claim over once it stops).
        let finished = &finished;
        s.spawn(move || {
            let tick = Duration::from_millis(50);
            let mut since = Duration::ZERO;
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                since += tick;
                if since >= claims.heartbeat_every() {
                    claims.heartbeat();
                    since = Duration::ZERO;
                }
            }
        });
        for (w, dev) in devices.iter().enumerate() {
            let (phases, barrier, overall, failed, errors, workers_left, ran, load, work) = (
                &phases,
                &barrier,
                &overall,
                &failed,
                &errors,
                &workers_left,
                &ran,
                &load,
                &work,
            );
            let line = mp.add(ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("  worker {prefix} {msg}").expect("template"),
            );
            line.set_prefix(format!("{w} ({dev})"));
            s.spawn(move || {
                // Stops the heartbeat once every worker is done, panicked ones included.
                struct Leaving<'a>(&'a AtomicUsize, &'a AtomicBool);
                impl Drop for Leaving<'_> {
                    fn drop(&mut self) {
                        if self.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                            self.1.store(true, Ordering::Relaxed);
                        }
                    }
                }
                let _leaving = Leaving(workers_left, finished);
                let ck = match load(dev) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("worker {w} ({dev}): {e:#}"));
                        None
                    }
                };
                for queue in phases {
                    while let Some(ck) = &ck {
                        let Some(job) = queue.lock().unwrap().pop_front() else {
                            break;
                        };
                        if dir.is_finished(&job) {
                            // Another process sharing the folder did it.
                            overall.inc(1);
                            continue;
                        }
                        let claim = match claims.try_claim(&job.id) {
                            Ok(Some(c)) => c,
                            Ok(None) => {
                                // A live process holds it: come back to it after the others.
                                queue.lock().unwrap().push_back(job);
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                            Err(e) => {
                                errors
                                    .lock()
                                    .unwrap()
                                    .push(format!("claiming job {}: {e}", job.id));
                                overall.inc(1);
                                continue;
                            }
                        };
                        if dir.is_finished(&job) {
                            overall.inc(1);
                            continue;
                        }
                        line.set_message(format!(
                            "{} {} repeat {} chunk {}",
                            job.kind.name(),
                            job.cell.name(),
                            job.repeat,
                            job.chunk
                        ));
                        ran.fetch_add(1, Ordering::SeqCst);
                        match work(ck, &job, dev) {
                            Ok(f) => {
                                *failed.lock().unwrap() += f;
                                claims.record(&job.id, job.kind.name());
                            }
                            Err(e) => errors.lock().unwrap().push(format!(
                                "job {} ({}): {e:#}",
                                job.id,
                                job.kind.name()
                            )),
                        }
                        drop(claim);
                        overall.inc(1);
                    }
                    barrier.wait();
                }
                line.finish_and_clear();
            });
        }
    });
    overall.finish_and_clear();
    Ok(PoolReport {
        ran: ran.into_inner(),
        failed_samples: failed.into_inner().unwrap(),
        errors: errors.into_inner().unwrap(),
    })
}
