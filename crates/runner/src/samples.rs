//! The experiment's samples: the dataset reader's rows, a subset per repeat, and each sample
//! prepared for the model (decoded, preprocessed, tokenized, boxes mapped) with per-sample errors.
use crate::experiment::DatasetSpec;
use crate::jobs::hash64;
use m2ib_clip::{decode_image, Checkpoint, ClipTokenizer, Encoded, Preprocessor, Rgb8};
use m2ib_data::readers::{cc, mscxr};
use m2ib_data::shapes::{generate, Split};
use m2ib_data::{ImageSource, Sample};
use tch::Tensor;

pub fn split_of(s: &str) -> Result<Split, String> {
    match s {
        "train" => Ok(Split::Train),
        "tune" => Ok(Split::Tune),
        "test" => Ok(Split::Test),
        _ => Err(format!(
            "`dataset.split` = {s:?}; allowed: train, tune, test"
        )),
    }
}

/// A sample or the reason it could not be read.
pub type Listed = Result<Sample, (String, String)>;

/// The `n` samples of a repeat: shapes are generated (a new stream per repeat); readers' rows
/// are shuffled by the repeat's subset seed and the first `n` taken.
pub fn list(d: &DatasetSpec, subset_seed: u64) -> Result<Vec<Listed>, String> {
    match d.reader.as_str() {
        "shapes" => {
            let split = split_of(&d.split)?;
            let stream = d.seed ^ subset_seed;
            Ok((0..d.n as u64)
                .map(|i| {
                    let s = generate(stream, split, i, d.absent);
                    let mut extra = std::collections::BTreeMap::new();
                    extra.insert("present_words".into(), s.present_words().join(" "));
                    Ok(Sample {
                        id: format!("shapes-{}-{stream:x}-{i}", d.split),
                        boxes: s.boxes(),
                        caption: s.caption,
                        image: ImageSource::Rgb {
                            width: m2ib_data::shapes::SIZE,
                            height: m2ib_data::shapes::SIZE,
                            data: s.rgb,
                        },
                        extra,
                    })
                })
                .collect())
        }
        reader => {
            let file = d
                .file
                .clone()
                .ok_or_else(|| format!("`dataset.file` is required for reader {reader}"))?;
            let root = d
                .image_root
                .clone()
                .unwrap_or_else(|| file.parent().map(|p| p.to_path_buf()).unwrap_or_default());
            let rows = if reader == "mscxr" {
                mscxr::read(&file, &root)
            } else {
                cc::CcReader {
                    tsv: file,
                    image_root: root,
                    mapping: None,
                }
                .read()
            };
            let mut rows: Vec<Listed> = rows
                .into_iter()
                .map(|r| {
                    r.map_err(|e| {
                        let id = e
                            .sample
                            .clone()
                            .unwrap_or_else(|| format!("{}:{}", e.file, e.line.unwrap_or(0)));
                        (
                            id,
                            format!(
                                "{}:{}: {}",
                                e.file,
                                e.line.map(|l| l.to_string()).unwrap_or_default(),
                                e.reason
                            ),
                        )
                    })
                })
                .collect();
            rows.sort_by_key(|r| {
                hash64(&[
                    &subset_seed.to_string(),
                    r.as_ref()
                        .map(|s| s.id.as_str())
                        .unwrap_or_else(|e| e.0.as_str()),
                ])
            });
            rows.truncate(d.n);
            Ok(rows)
        }
    }
}

pub fn sample_id(l: &Listed) -> &str {
    match l {
        Ok(s) => &s.id,
        Err((id, _)) => id,
    }
}

/// A sample ready for the model.
pub struct Prepared {
    pub id: String,
    pub crop: Rgb8,
    pub pixels: Tensor,
    pub encoded: Encoded,
    /// Boxes in model coordinates; `Some(vec![])` when every box was cropped away.
    pub boxes: Option<Vec<[f64; 4]>>,
    /// Per token: names a present object (shapes).
    pub present: Option<Vec<bool>>,
}

pub fn prepare(ck: &Checkpoint, s: &Sample) -> Result<Prepared, String> {
    prepare_cpu(&ck.preprocessor, &ck.tokenizer, s).map(|c| c.finish(&ck.preprocessor))
}

/// The CPU half of `prepare` (no tensors, so it runs on rayon threads).
pub struct PreparedCpu {
    id: String,
    crop: Rgb8,
    encoded: Encoded,
    boxes: Option<Vec<[f64; 4]>>,
    present: Option<Vec<bool>>,
}

impl PreparedCpu {
    pub fn finish(self, pre: &Preprocessor) -> Prepared {
        Prepared {
            pixels: pre.to_tensor(&self.crop),
            id: self.id,
            crop: self.crop,
            encoded: self.encoded,
            boxes: self.boxes,
            present: self.present,
        }
    }
}

pub fn prepare_cpu(
    pre: &Preprocessor,
    tok: &ClipTokenizer,
    s: &Sample,
) -> Result<PreparedCpu, String> {
    let img = match &s.image {
        ImageSource::Path(p) => decode_image(p).map_err(|e| e.to_string())?,
        ImageSource::Rgb {
            width,
            height,
            data,
        } => Rgb8::new(*width, *height, data.clone()),
    };
    let crop = pre.resize_crop(&img);
    let encoded = tok
        .encode(&s.caption)
        .map_err(|e| format!("caption: {e}"))?;
    let boxes = (!s.boxes.is_empty()).then(|| {
        s.boxes
            .iter()
            .filter_map(|b| pre.map_box(img.width, img.height, *b))
            .collect()
    });
    let present = s.extra.get("present_words").map(|w| {
        let words: Vec<&str> = w.split(' ').collect();
        encoded
            .tokens
            .iter()
            .map(|t| words.contains(&t.trim_end_matches("</w>").to_lowercase().as_str()))
            .collect()
    });
    Ok(PreparedCpu {
        id: s.id.clone(),
        crop,
        encoded,
        boxes,
        present,
    })
}
