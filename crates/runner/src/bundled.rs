//! Finding a model folder: relative to the experiment that names it (as Cargo resolves paths),
//! then to the working directory, and the embedded default also by its name, `tiny-shapes`.
use std::path::{Path, PathBuf};

/// The embedded default's name.
pub const NAME: &str = "tiny-shapes";
/// Its folder in the repository.
pub const DIR: &str = "data/tiny-shapes-clip";

/// The embedded default's folder: under the working directory, else in the source tree this
/// binary was built from.
pub fn bundled_dir() -> Option<PathBuf> {
    let source_tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DIR);
    [PathBuf::from(DIR), source_tree]
        .into_iter()
        .find(|p| p.join("config.json").is_file())
}

/// A model folder as written (`--model`, `[model] path`): beside `base` first, then the working
/// directory, then the bundled model's name. The error says every place it looked.
pub fn locate(given: &Path, base: &Path) -> Result<PathBuf, String> {
    let beside = base.join(given);
    if beside.is_dir() {
        return Ok(beside);
    }
    if given.is_dir() {
        return Ok(given.to_path_buf());
    }
    if given == Path::new(NAME) {
        return bundled_dir().ok_or_else(|| {
            format!("the bundled model `{NAME}` ({DIR}) is not in the working directory nor in the source tree m2ib was built from")
        });
    }
    let looked = if base.as_os_str().is_empty() || base == Path::new(".") {
        format!("{}", given.display())
    } else {
        format!(
            "{} (beside the experiment) nor {} (working directory)",
            beside.display(),
            given.display()
        )
    };
    Err(format!(
        "no model folder at {looked}; give a Hugging Face CLIP directory or `{NAME}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_folder_beside_the_file_or_by_name() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let experiments = root.join("experiments");
        let a = locate(Path::new("../data/tiny-shapes-clip"), &experiments).unwrap();
        assert!(a.join("config.json").is_file());
        let b = locate(Path::new(NAME), Path::new("/nonexistent")).unwrap();
        assert!(b.join("config.json").is_file());
        let e = locate(Path::new("no-such-model"), &experiments).unwrap_err();
        assert!(
            e.contains("beside the experiment") && e.contains("no-such-model"),
            "{e}"
        );
    }
}
