//! Conceptual Captions TSV (REFERENCE.md §5.2): no header, `caption TAB url-or-path`. Local
//! paths resolve against the image root; a URL resolves to `<image_root>/<sha1(url)>.<ext>` (the
//! layout `m2ib data fetch-cc` writes) or through an optional mapping CSV `url,path`.
use super::{byte_lines, read_file, row_error};
use crate::sample::{ImageSource, Sample, SampleError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// File name stem for a URL's download: hex sha1 of the URL.
pub fn url_stem(url: &str) -> String {
    sha1_smol::Sha1::from(url).digest().to_string()
}

/// Extension to save a URL's image under: from the URL path when it is an image one, else jpg.
pub fn url_extension(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    IMAGE_EXTENSIONS
        .iter()
        .copied()
        .find(|e| path.ends_with(&format!(".{e}")))
        .unwrap_or("jpg")
}

/// Reads an optional `url,path` mapping CSV (header `url,path`).
pub fn read_mapping(path: &Path) -> Result<HashMap<String, PathBuf>, SampleError> {
    let mut rdr =
        csv::Reader::from_path(path).map_err(|e| row_error(path, None, None, e.to_string()))?;
    let mut map = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| row_error(path, Some(i + 2), None, e.to_string()))?;
        if let (Some(u), Some(p)) = (row.get(0), row.get(1)) {
            map.insert(u.to_string(), PathBuf::from(p));
        }
    }
    Ok(map)
}

pub struct CcReader {
    pub tsv: PathBuf,
    pub image_root: PathBuf,
    pub mapping: Option<HashMap<String, PathBuf>>,
}

impl CcReader {
    fn resolve(&self, target: &str) -> Result<PathBuf, String> {
        if is_url(target) {
            if let Some(p) = self.mapping.as_ref().and_then(|m| m.get(target)) {
                let p = self.image_root.join(p);
                return if p.exists() {
                    Ok(p)
                } else {
                    Err(format!("mapped image {} does not exist", p.display()))
                };
            }
            let stem = url_stem(target);
            for ext in IMAGE_EXTENSIONS {
                let p = self.image_root.join(format!("{stem}.{ext}"));
                if p.exists() {
                    return Ok(p);
                }
            }
            Err(format!("image for {target} not downloaded (expected {}/{stem}.<ext>; run `m2ib data fetch-cc`)", self.image_root.display()))
        } else {
            let p = self.image_root.join(target);
            if p.exists() {
                Ok(p)
            } else {
                Err(format!("image {} does not exist", p.display()))
            }
        }
    }

    /// Every row as a sample or an error; sample ids are `cc-<line>`.
    pub fn read(&self) -> Vec<Result<Sample, SampleError>> {
        let data = match read_file(&self.tsv) {
            Ok(d) => d,
            Err(e) => return vec![Err(e)],
        };
        byte_lines(&data)
            .map(|(n, line)| {
                let id = format!("cc-{n}");
                let err = |reason: String| row_error(&self.tsv, Some(n), Some(&id), reason);
                let line =
                    std::str::from_utf8(line).map_err(|e| err(format!("not UTF-8 ({e})")))?;
                let mut fields = line.split('\t');
                let (Some(caption), Some(target), None) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(err(format!(
                        "expected 2 tab-separated fields (caption, url or path), got {}",
                        line.split('\t').count()
                    )));
                };
                let caption = caption.trim();
                if caption.is_empty() {
                    return Err(err("field `caption` is empty".into()));
                }
                let path = self.resolve(target.trim()).map_err(err)?;
                let mut extra = BTreeMap::new();
                extra.insert("source".into(), target.trim().to_string());
                Ok(Sample {
                    id,
                    image: ImageSource::Path(path),
                    caption: caption.to_string(),
                    boxes: vec![],
                    extra,
                })
            })
            .collect()
    }
}
