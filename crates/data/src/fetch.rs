//! `m2ib data fetch-cc`: downloads the images a Conceptual Captions TSV points at into the layout
//! the reader resolves (`<root>/<sha1(url)>.<ext>`), with bounded concurrency, retries and
//! timeouts. Files appear atomically (temp file + rename); existing ones are skipped, so a rerun
//! resumes.
use crate::readers::cc::{is_url, url_extension, url_stem};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub concurrency: usize,
    pub retries: usize,
    pub timeout: Duration,
    /// Refuse bodies larger than this.
    pub max_bytes: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 16,
            retries: 2,
            timeout: Duration::from_secs(20),
            max_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Default)]
pub struct FetchReport {
    pub downloaded: usize,
    pub skipped: usize,
    /// (url, reason) of each failure after all retries.
    pub failed: Vec<(String, String)>,
}

/// Where a URL's image goes under `root`.
pub fn target_path(root: &Path, url: &str) -> PathBuf {
    root.join(format!("{}.{}", url_stem(url), url_extension(url)))
}

fn fetch_one(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 * (1 << attempt.min(5))));
        }
        let result = agent
            .get(url)
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut r| {
                r.body_mut()
                    .with_config()
                    .limit(opts.max_bytes)
                    .read_to_vec()
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(bytes) if bytes.is_empty() => last = "empty body".into(),
            Ok(bytes) => {
                let tmp = dest.with_extension("part");
                std::fs::write(&tmp, &bytes)
                    .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, dest)
                    .map_err(|e| format!("renaming to {}: {e}", dest.display()))?;
                return Ok(());
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Downloads every URL of `urls` not already present under `root`. `on_done` is called after each.
pub fn fetch_urls(
    urls: &[String],
    root: &Path,
    opts: &FetchOptions,
    on_done: &(dyn Fn() + Sync),
) -> FetchReport {
    std::fs::create_dir_all(root).ok();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(opts.timeout))
        .build()
        .into();
    let next = AtomicUsize::new(0);
    let report = Mutex::new(FetchReport::default());
    std::thread::scope(|s| {
        for _ in 0..opts.concurrency.max(1).min(urls.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(url) = urls.get(i) else { break };
                let dest = target_path(root, url);
                let outcome = if dest.exists() {
                    None
                } else {
                    Some(fetch_one(&agent, url, &dest, opts))
                };
                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    None => r.skipped += 1,
                    Some(Ok(())) => r.downloaded += 1,
                    Some(Err(e)) => r.failed.push((url.clone(), e)),
                }
                drop(r);
                on_done();
            });
        }
    });
    report.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// URLs of a CC TSV (second field), skipping rows whose target is a local path.
pub fn urls_of_tsv(tsv: &Path) -> std::io::Result<Vec<String>> {
    let data = std::fs::read(tsv)?;
    Ok(data
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter_map(|l| l.trim_end_matches('\r').split('\t').nth(1).map(str::trim))
        .filter(|u| is_url(u))
        .map(str::to_string)
        .collect())
}
