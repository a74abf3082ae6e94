//! ROCO (REFERENCE.md §5.3): `captions.txt` lines `ROCO_xxxxx<TAB> caption`; images found through
//! `dlinks.txt` (third field = image file name, saved as `<images>/<PMCID>_<name>` by the
//! dataset's fetch script) or, without it, as `<images>/<ROCO id>.jpg`.
use super::{byte_lines, read_file, row_error};
use crate::sample::{ImageSource, Sample, SampleError};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// ROCO id -> image file name, from `dlinks.txt` (`id<TAB>wget ... <url> ...<TAB>name`).
fn image_names(dlinks: &Path) -> HashMap<String, String> {
    let Ok(data) = std::fs::read(dlinks) else {
        return HashMap::new();
    };
    let mut m = HashMap::new();
    for (_, line) in byte_lines(&data) {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 3 {
            let url = f[1].split_whitespace().nth(2).unwrap_or("");
            let pmc = url
                .rsplit('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".tar.gz");
            m.insert(f[0].trim().to_string(), format!("{pmc}_{}", f[2].trim()));
        }
    }
    m
}

/// `dir` holds captions.txt (and optionally dlinks.txt); images live in `dir/images`.
pub fn read(dir: &Path) -> Vec<Result<Sample, SampleError>> {
    let captions = dir.join("captions.txt");
    let data = match read_file(&captions) {
        Ok(d) => d,
        Err(e) => return vec![Err(e)],
    };
    let names = image_names(&dir.join("dlinks.txt"));
    byte_lines(&data)
        .map(|(n, line)| {
            let err = |id: Option<&str>, reason: String| row_error(&captions, Some(n), id, reason);
            let line =
                std::str::from_utf8(line).map_err(|e| err(None, format!("not UTF-8 ({e})")))?;
            let Some((id, caption)) = line.split_once('\t') else {
                return Err(err(None, "expected `ROCO_id<TAB>caption`".into()));
            };
            let (id, caption) = (id.trim(), caption.trim());
            if caption.is_empty() {
                return Err(err(Some(id), "field `caption` is empty".into()));
            }
            let name = names
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("{id}.jpg"));
            let path = dir.join("images").join(&name);
            if !path.exists() {
                return Err(err(
                    Some(id),
                    format!("image {} does not exist", path.display()),
                ));
            }
            Ok(Sample {
                id: id.to_string(),
                image: ImageSource::Path(path),
                caption: caption.to_string(),
                boxes: vec![],
                extra: BTreeMap::new(),
            })
        })
        .collect()
}
