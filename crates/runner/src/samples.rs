//! The experiment's samples: the dataset reader's rows, a subset per repeat, and each sample
//! prepared for the model (decoded, preprocessed, tokenized, boxes mapped) with per-sample errors.
use crate::experiment::{split_of, DatasetSpec, Experiment, Reader};
use crate::plan::{Job, JobKind};
use crate::seeds::{hash64, sample_seed};
use m2ib_attribution::Batch;
use m2ib_clip::{decode_image, Checkpoint, ClipTokenizer, Encoded, Preprocessor, Rgb8};
use m2ib_data::readers::{cc, mscxr};
use m2ib_data::shapes::{generate, render_without};
use m2ib_data::{ImageSource, Sample};
use rayon::prelude::*;
use tch::Tensor;

/// `Sample::extra` key of a shapes scene's generator coordinates: `stream:split:index:absent`.
pub const SCENE_KEY: &str = "shapes_scene";

/// `Sample::extra` key of a shapes caption's true part: the caption without the phrase that names
/// an absent object (absent variant only), what image perturbations are scored against.
pub const PRESENT_CAPTION_KEY: &str = "present_caption";

/// A sample or the reason it could not be read.
pub type Listed = Result<Sample, (String, String)>;

/// The `n` samples of a repeat: shapes are generated (a new stream per repeat); readers' rows
/// are shuffled by the repeat's subset seed and the first `n` taken.
pub fn list(d: &DatasetSpec, subset_seed: u64) -> Result<Vec<Listed>, String> {
    match d.reader {
        Reader::Shapes => {
            let split = split_of(&d.split).map_err(|e| format!("`dataset.split`: {e}"))?;
            let stream = d.seed ^ subset_seed;
            Ok((0..d.n as u64)
                .map(|i| {
                    let s = generate(stream, split, i, d.absent);
                    let mut extra = std::collections::BTreeMap::new();
                    extra.insert("present_words".into(), s.present_words().join(" "));
                    let absent_phrase = s.phrases().iter().position(|(_, o)| o.is_none());
                    if let Some(c) = absent_phrase.and_then(|k| s.caption_without(k)) {
                        extra.insert(PRESENT_CAPTION_KEY.into(), c);
                    }
                    // Enough to re-render the scene without one object (intervention metric).
                    extra.insert(
                        SCENE_KEY.into(),
                        format!("{stream}:{}:{i}:{}", d.split, d.absent),
                    );
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
        reader @ (Reader::Mscxr | Reader::Cc) => {
            let written = d.file.clone().ok_or_else(|| {
                format!("`dataset.file` is required for reader {}", reader.name())
            })?;
            let file = d.resolve(&written);
            if !file.is_file() {
                return Err(format!(
                    "`dataset.file` = {:?}: no such file at {} (paths in an experiment resolve against its own folder)",
                    written.display(),
                    file.display()
                ));
            }
            let root = match &d.image_root {
                Some(r) => d.resolve(r),
                None => file.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
            };
            let rows = if reader == Reader::Mscxr {
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
    /// Shapes scenes, when the experiment scores interventions.
    pub interventions: Option<Interventions>,
    /// The ids of the caption without its absent-object phrase (`PRESENT_CAPTION_KEY`).
    pub present_caption: Option<Vec<i64>>,
}

/// A shapes scene's one-object interventions, ready for the model.
pub struct Interventions {
    /// [K, 3, H, W]: the image without object k, for every object of the scene.
    pub images: Tensor,
    /// Per object: its pixels in model coordinates (row-major over the crop).
    pub masks: Vec<Vec<bool>>,
    /// Per caption phrase (caption order): the caption's ids without that phrase. Empty when
    /// the caption names one phrase only.
    pub captions: Vec<Vec<i64>>,
    /// Per caption phrase: its content-token positions in the original caption ("a" excluded).
    pub phrase_tokens: Vec<Vec<usize>>,
}

struct InterventionsCpu {
    crops: Vec<Rgb8>,
    masks: Vec<Vec<bool>>,
    captions: Vec<Vec<i64>>,
    phrase_tokens: Vec<Vec<usize>>,
}

pub fn prepare(ck: &Checkpoint, s: &Sample) -> Result<Prepared, String> {
    prepare_cpu(&ck.preprocessor, &ck.tokenizer, s, false).map(|c| c.finish(&ck.preprocessor))
}

/// The scene's interventions: every object removed in turn, every phrase dropped in turn.
fn interventions_of(
    pre: &Preprocessor,
    tok: &ClipTokenizer,
    s: &Sample,
    encoded: &Encoded,
) -> Result<Option<InterventionsCpu>, String> {
    let Some(key) = s.extra.get(SCENE_KEY) else {
        return Ok(None);
    };
    let parts: Vec<&str> = key.split(':').collect();
    let bad = || format!("sample {}: malformed `{SCENE_KEY}` {key:?}", s.id);
    let [stream, split, index, absent] = parts[..] else {
        return Err(bad());
    };
    let stream: u64 = stream.parse().map_err(|_| bad())?;
    let index: u64 = index.parse().map_err(|_| bad())?;
    let absent = absent == "true";
    let split = split_of(split)?;
    let scene = generate(stream, split, index, absent);
    let size = m2ib_data::shapes::SIZE;
    let mut crops = vec![];
    let mut masks = vec![];
    for (k, m) in scene.masks.iter().enumerate() {
        let rgb = render_without(stream, split, index, absent, k);
        crops.push(pre.resize_crop(&Rgb8::new(size, size, rgb)));
        let mut white = vec![0u8; size * size * 3];
        for &px in m {
            white[px as usize * 3..px as usize * 3 + 3].copy_from_slice(&[255, 255, 255]);
        }
        let crop = pre.resize_crop(&Rgb8::new(size, size, white));
        masks.push(crop.data.chunks(3).map(|c| c[0] > 127).collect());
    }
    // Phrase j's tokens: the content tokens between the (j-1)-th and j-th "and".
    let n_phrases = scene.phrases().len();
    let mut phrase_tokens = vec![vec![]; n_phrases];
    let mut group = 0;
    for (p, t) in encoded.tokens.iter().enumerate() {
        let w = t.trim_end_matches("</w>").to_lowercase();
        let special = Some(encoded.ids[p]) == tok.start_id || encoded.ids[p] == tok.end_id;
        if special || w == "a" {
            continue;
        }
        if w == "and" {
            group += 1;
            continue;
        }
        if group < n_phrases {
            phrase_tokens[group].push(p);
        }
    }
    let captions = (0..n_phrases)
        .filter_map(|j| scene.caption_without(j))
        .map(|c| {
            tok.encode(&c)
                .map(|e| e.ids)
                .map_err(|e| format!("caption: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(InterventionsCpu {
        crops,
        masks,
        captions,
        phrase_tokens,
    }))
}

/// The CPU half of `prepare` (no tensors, so it runs on rayon threads).
pub struct PreparedCpu {
    id: String,
    crop: Rgb8,
    encoded: Encoded,
    boxes: Option<Vec<[f64; 4]>>,
    present: Option<Vec<bool>>,
    interventions: Option<InterventionsCpu>,
    present_caption: Option<Vec<i64>>,
}

impl PreparedCpu {
    pub fn finish(self, pre: &Preprocessor) -> Prepared {
        Prepared {
            pixels: pre.to_tensor(&self.crop),
            interventions: self.interventions.map(|i| Interventions {
                images: Tensor::stack(
                    &i.crops.iter().map(|c| pre.to_tensor(c)).collect::<Vec<_>>(),
                    0,
                ),
                masks: i.masks,
                captions: i.captions,
                phrase_tokens: i.phrase_tokens,
            }),
            id: self.id,
            crop: self.crop,
            encoded: self.encoded,
            boxes: self.boxes,
            present: self.present,
            present_caption: self.present_caption,
        }
    }
}

/// `interventions`: also render the scene's one-object interventions (shapes only).
pub fn prepare_cpu(
    pre: &Preprocessor,
    tok: &ClipTokenizer,
    s: &Sample,
    interventions: bool,
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
    let interventions = if interventions {
        interventions_of(pre, tok, s, &encoded)?
    } else {
        None
    };
    let present_caption = s
        .extra
        .get(PRESENT_CAPTION_KEY)
        .map(|c| tok.encode(c).map(|e| e.ids))
        .transpose()
        .map_err(|e| format!("{PRESENT_CAPTION_KEY}: {e}"))?;
    Ok(PreparedCpu {
        id: s.id.clone(),
        crop,
        encoded,
        boxes,
        present,
        interventions,
        present_caption,
    })
}

/// A chunk's samples that loaded (with their seeds) and those that did not (id, seed, reason).
pub struct Chunk {
    pub prepared: Vec<(Prepared, u64)>,
    pub failed: Vec<(String, u64, String)>,
}

/// Decodes, preprocesses and tokenizes the job's samples; CPU work in parallel.
pub fn prepare_chunk(exp: &Experiment, ck: &Checkpoint, job: &Job, listed: &[Listed]) -> Chunk {
    let (pre, tok) = (&ck.preprocessor, &ck.tokenizer);
    let interventions = exp.metrics.intervention && job.kind == JobKind::Explain;
    let results: Vec<(String, u64, Result<PreparedCpu, String>)> = job
        .samples
        .par_iter()
        .map(|&i| {
            let l = &listed[i];
            let id = sample_id(l).to_string();
            let seed = sample_seed(exp.seed, &id, job.repeat, &job.cell.method);
            let p = l
                .as_ref()
                .map_err(|e| e.1.clone())
                .and_then(|s| prepare_cpu(pre, tok, s, interventions));
            (id, seed, p)
        })
        .collect();
    let mut chunk = Chunk {
        prepared: vec![],
        failed: vec![],
    };
    for (id, seed, p) in results {
        match p {
            Ok(p) => chunk.prepared.push((p.finish(pre), seed)),
            Err(e) => chunk.failed.push((id, seed, e)),
        }
    }
    chunk
}

pub fn batch_of(ck: &Checkpoint, prepared: &[(Prepared, u64)]) -> Batch {
    let px: Vec<Tensor> = prepared
        .iter()
        .map(|(p, _)| p.pixels.shallow_clone())
        .collect();
    let enc: Vec<_> = prepared.iter().map(|(p, _)| p.encoded.clone()).collect();
    Batch::new(ck, &px, &enc, prepared.iter().map(|(_, s)| *s).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shapes caption naming an absent object carries its true part: the caption without that
    /// phrase, every present word kept; scenes without an absent phrase carry none.
    #[test]
    fn absent_captions_carry_their_present_part() {
        let spec = |absent: bool| DatasetSpec {
            reader: Reader::Shapes,
            split: "tune".into(),
            n: 16,
            seed: 3,
            absent,
            file: None,
            image_root: None,
            base: Default::default(),
        };
        for s in list(&spec(true), 0).unwrap() {
            let s = s.unwrap();
            let present = &s.extra[PRESENT_CAPTION_KEY];
            let phrases: Vec<&str> = s.caption.split(" and ").collect();
            let kept: Vec<&str> = present.split(" and ").collect();
            assert_eq!(kept.len() + 1, phrases.len(), "{} -> {present}", s.caption);
            assert!(kept.iter().all(|p| phrases.contains(p)));
            for w in s.extra["present_words"].split(' ') {
                assert!(present.split(' ').any(|x| x == w), "{w} in {present}");
            }
        }
        let listed = list(&spec(false), 0).unwrap();
        assert!(listed.iter().all(|s| !s
            .as_ref()
            .unwrap()
            .extra
            .contains_key(PRESENT_CAPTION_KEY)));
    }
}
