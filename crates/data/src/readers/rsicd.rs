//! RSICD `dataset_rsicd.json` (REFERENCE.md §5.4, Karpathy style): one sample per (image,
//! sentence); ids `<filename>#<k>`; images in `image_dir`. Duplicate sentences of an image are
//! kept once.
use super::row_error;
use crate::sample::{ImageSource, Sample, SampleError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub fn read(
    json_path: &Path,
    image_dir: &Path,
    split: Option<&str>,
) -> Vec<Result<Sample, SampleError>> {
    let text = match std::fs::read_to_string(json_path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Err(row_error(
                json_path,
                None,
                None,
                format!("cannot read: {e}"),
            ))]
        }
    };
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return vec![Err(row_error(
                json_path,
                Some(e.line()),
                None,
                format!("invalid JSON: {e}"),
            ))]
        }
    };
    let Some(images) = v["images"].as_array() else {
        return vec![Err(row_error(
            json_path,
            None,
            None,
            "missing `images` array",
        ))];
    };
    let mut out = vec![];
    for (i, img) in images.iter().enumerate() {
        let Some(file) = img["filename"].as_str() else {
            out.push(Err(row_error(
                json_path,
                None,
                Some(&format!("images[{i}]")),
                "missing field `filename`",
            )));
            continue;
        };
        let s = img["split"].as_str().unwrap_or("");
        if split.is_some_and(|want| want != s) {
            continue;
        }
        let path = image_dir.join(file);
        let mut seen = std::collections::HashSet::new();
        for (k, sent) in img["sentences"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let id = format!("{file}#{k}");
            let Some(raw) = sent["raw"]
                .as_str()
                .map(str::trim)
                .filter(|r| !r.is_empty())
            else {
                out.push(Err(row_error(
                    json_path,
                    None,
                    Some(&id),
                    "field `raw` is missing or empty",
                )));
                continue;
            };
            if !seen.insert(raw.to_string()) {
                continue;
            }
            if !path.exists() {
                out.push(Err(row_error(
                    json_path,
                    None,
                    Some(&id),
                    format!("image {} does not exist", path.display()),
                )));
                continue;
            }
            let mut extra = BTreeMap::new();
            extra.insert("split".into(), s.to_string());
            out.push(Ok(Sample {
                id,
                image: ImageSource::Path(path.clone()),
                caption: raw.to_string(),
                boxes: vec![],
                extra,
            }));
        }
    }
    out
}
