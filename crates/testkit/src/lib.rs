//! m2ib-testkit: the paths every test needs, in one place (dev-dependency only; no tch, so it
//! costs nothing to build). Paths start from the running test's crate folder (cargo sets
//! `CARGO_MANIFEST_DIR` at run time), falling back to where this crate was compiled, so a test
//! binary still finds the repository when run by hand.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The folder of the crate whose test is running (`crates/<name>`).
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The repository root (every crate sits at `crates/<name>`).
pub fn repo_root() -> PathBuf {
    crate_dir().join("../..")
}

/// A crate's committed golden files (`crates/<name>/tests/golden`).
pub fn golden(crate_name: &str) -> PathBuf {
    repo_root()
        .join("crates")
        .join(crate_name)
        .join("tests/golden")
}

/// The Python-made CLIP goldens: small random checkpoints (`ckpt_a`, `ckpt_b`, ...) and the
/// test images, shared by every crate's tests.
pub fn clip_golden() -> PathBuf {
    golden("clip")
}

/// The embedded default, `data/tiny-shapes-clip`.
pub fn tiny_model() -> PathBuf {
    repo_root().join("data/tiny-shapes-clip")
}

/// A fresh, empty folder under the system temp dir, unique to this process and call.
pub fn tmp(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "m2ib-test-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_point_into_this_repository() {
        assert!(super::repo_root().join("Cargo.toml").exists());
        assert!(super::clip_golden().is_dir());
        assert!(super::tiny_model().join("config.json").exists());
        let (a, b) = (super::tmp("x"), super::tmp("x"));
        assert!(a != b && a.is_dir() && b.is_dir());
    }
}
