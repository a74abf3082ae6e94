//! MS-CXR local-alignment CSV (REFERENCE.md §5.1): one row per box with columns `dicom_id,
//! category_name, label_text, path, x, y, w, h, image_width, image_height[, split]`; rows sharing
//! (image, phrase) form one sample with several boxes, in order of first appearance.
use super::row_error;
use crate::sample::{BoxXyxy, ImageSource, Sample, SampleError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const REQUIRED: [&str; 8] = [
    "dicom_id",
    "label_text",
    "path",
    "x",
    "y",
    "w",
    "h",
    "image_width",
];

/// A parsed row: dicom id, phrase, image path, box, image width, optional split.
type ParsedRow = (String, String, String, BoxXyxy, f64, Option<String>);

/// Reads the CSV; `image_root` is the MIMIC-CXR-JPG root, with or without its `files/` level.
pub fn read(csv_path: &Path, image_root: &Path) -> Vec<Result<Sample, SampleError>> {
    let mut rdr = match csv::Reader::from_path(csv_path) {
        Ok(r) => r,
        Err(e) => {
            return vec![Err(row_error(
                csv_path,
                None,
                None,
                format!("cannot read: {e}"),
            ))]
        }
    };
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => return vec![Err(row_error(csv_path, Some(1), None, e.to_string()))],
    };
    let col: HashMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim(), i))
        .collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !col.contains_key(c))
        .collect();
    if !missing.is_empty() {
        return vec![Err(row_error(
            csv_path,
            Some(1),
            None,
            format!("missing column(s): {}", missing.join(", ")),
        ))];
    }
    let mut out: Vec<Result<Sample, SampleError>> = vec![];
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (i, rec) in rdr.byte_records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                out.push(Err(row_error(csv_path, Some(line), None, e.to_string())));
                continue;
            }
        };
        let field = |name: &str| -> Result<String, String> {
            let raw = rec
                .get(col[name])
                .ok_or_else(|| format!("field `{name}` missing"))?;
            String::from_utf8(raw.to_vec()).map_err(|_| format!("field `{name}` is not UTF-8"))
        };
        let num = |name: &str| -> Result<f64, String> {
            let v = field(name)?;
            let x: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("field `{name}` is not a number: {v:?}"))?;
            if x.is_finite() {
                Ok(x)
            } else {
                Err(format!("field `{name}` is not finite: {v:?}"))
            }
        };
        let parsed = (|| -> Result<ParsedRow, String> {
            let dicom = field("dicom_id")?;
            let text = field("label_text")?;
            if text.trim().is_empty() {
                return Err("field `label_text` is empty".into());
            }
            let (x, y, w, h) = (num("x")?, num("y")?, num("w")?, num("h")?);
            if w <= 0.0 || h <= 0.0 {
                return Err(format!("box has non-positive size (w {w}, h {h})"));
            }
            let split = col
                .get("split")
                .and_then(|&c| rec.get(c))
                .map(|s| String::from_utf8_lossy(s).to_string());
            Ok((
                dicom,
                text,
                field("path")?,
                [x, y, x + w, y + h],
                num("image_width")?,
                split,
            ))
        })();
        let (dicom, text, path, bbox, _width, split) = match parsed {
            Ok(p) => p,
            Err(reason) => {
                out.push(Err(row_error(csv_path, Some(line), None, reason)));
                continue;
            }
        };
        let key = (dicom.clone(), text.clone());
        if let Some(&k) = index.get(&key) {
            if let Ok(s) = &mut out[k] {
                s.boxes.push(bbox);
            }
            continue;
        }
        // The release's paths start with `files/`; roots are given with or without that level.
        let candidates = [
            Some(image_root.join(&path)),
            path.strip_prefix("files/").map(|s| image_root.join(s)),
            Some(image_root.join("files").join(&path)),
        ];
        let p = candidates
            .iter()
            .flatten()
            .find(|p| p.exists())
            .cloned()
            .unwrap_or_else(|| image_root.join(&path));
        let id = format!("{dicom}:{}", index.len());
        let sample = if p.exists() {
            let mut extra = BTreeMap::new();
            if let Some(c) = col.get("category_name").and_then(|&c| rec.get(c)) {
                extra.insert(
                    "category_name".into(),
                    String::from_utf8_lossy(c).to_string(),
                );
            }
            if let Some(s) = split {
                extra.insert("split".into(), s);
            }
            Ok(Sample {
                id: id.clone(),
                image: ImageSource::Path(PathBuf::from(&p)),
                caption: text,
                boxes: vec![bbox],
                extra,
            })
        } else {
            Err(row_error(
                csv_path,
                Some(line),
                Some(&id),
                format!("image {} does not exist", p.display()),
            ))
        };
        index.insert(key, out.len());
        out.push(sample);
    }
    out
}
