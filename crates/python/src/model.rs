//! `m2ib._m2ib.Model`: one checkpoint on one device, and what can be asked of it: explanations
//! (as `m2ib attribute` computes them), embeddings (as `m2ib embed`), and the confidence metrics
//! on the caller's own maps (as the runner scores them).
use crate::convert::{json, settings as settings_of, Image};
use crate::errors::{about, compute, invalid, not_one_of};
use anyhow::Context;
use m2ib_attribution::normalize::for_display;
use m2ib_attribution::{normalize_image, normalize_text, Attribution, Batch};
use m2ib_clip::rng::splitmix64;
use m2ib_clip::{cosine, Checkpoint, ModelOptions, Pair};
use m2ib_metrics::confidence::{
    image_change, keep_top, text_change, Caption, Change, TextProtocol,
};
use m2ib_metrics::metric::ImageProtocol;
use numpy::{
    IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tch::Tensor;

/// Image embeddings [N, P], text embeddings [N, P], cosine per pair.
type Embeddings<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Vec<f64>,
);

#[pyclass(module = "m2ib._m2ib", name = "Model", frozen)]
pub struct Model {
    /// One call at a time: a method's autograd and the model's weights are not shared safely.
    ck: Mutex<Checkpoint>,
    dir: PathBuf,
    device: String,
    preset: String,
    /// Where the device came from when `auto` fell back (printed by `m2ib embed` too).
    note: Option<String>,
    /// Read without the lock (a call may hold it for minutes).
    image_size: usize,
    depths: (usize, usize),
}

/// One method's explanation of one pair.
struct Explained {
    method: String,
    /// [h, w] at the model's input size.
    image_raw: Vec<f32>,
    image_norm: Vec<f32>,
    size: [usize; 2],
    /// [oh, ow] on the image as given (NaN outside the crop), and the crop `[x0, y0, x1, y1)`.
    original: Vec<f32>,
    original_size: [usize; 2],
    crop: [usize; 4],
    text_raw: Vec<f32>,
    text_norm: Vec<f32>,
    params: Value,
    sources: Value,
    notes: Vec<String>,
}

struct PairOut {
    tokens: Vec<String>,
    ids: Vec<i64>,
    content: Vec<bool>,
    seed: u64,
    unknown: Vec<String>,
    truncated: usize,
    methods: Vec<Explained>,
}

/// The CLI's wording, `pair 1 (scene.png): ...` (numbered from 1); a FileNotFoundError when the
/// image's path does not exist.
fn pair_error(k: usize, image: &Image, e: anyhow::Error) -> anyhow::Error {
    let e = anyhow::anyhow!(
        "pair {} ({}): {}",
        k + 1,
        image.label(),
        m2ib_runner::one_line(&e)
    );
    match image.path() {
        Some(p) => about(p, e),
        None => e,
    }
}

/// Pair `k` of a call (numbered from 0) read and preprocessed; its errors name it.
fn prepare(ck: &Checkpoint, k: usize, image: &Image, caption: &str) -> anyhow::Result<Pair> {
    let pair = || -> anyhow::Result<Pair> {
        ck.pair(image.decode()?, caption)
            .with_context(|| format!("caption {caption:?}"))
    };
    pair().map_err(|e| pair_error(k, image, e))
}

/// One pair and its batch of one (the confidence metrics).
fn one_pair(ck: &Checkpoint, image: &Image, caption: &str) -> anyhow::Result<(Pair, Batch)> {
    let p = prepare(ck, 0, image, caption)?;
    let batch = Batch::new(
        ck,
        std::slice::from_ref(&p.pixels),
        std::slice::from_ref(&p.encoded),
        vec![0],
    );
    Ok((p, batch))
}

/// Normalised maps as `m2ib attribute` writes them (a constant map drawn as zeros and named).
fn explained(a: &Attribution, p: &Pair, name: &str, sources: &Value) -> anyhow::Result<Explained> {
    let shown = for_display(a, name)?;
    let size = [a.image.size()[0] as usize, a.image.size()[1] as usize];
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1));
    let image_norm = flat(&shown.image)?;
    let (original, crop) = p
        .geometry
        .to_original(&image_norm, p.original.width, p.original.height);
    Ok(Explained {
        method: name.to_string(),
        image_raw: flat(&a.image)?,
        image_norm,
        size,
        original,
        original_size: [p.original.height, p.original.width],
        crop,
        text_raw: a.text.clone(),
        text_norm: shown.text,
        params: a.params.clone(),
        sources: sources.clone(),
        notes: shown.notes,
    })
}

fn array2<'py>(py: Python<'py>, v: Vec<f32>, [h, w]: [usize; 2]) -> PyResult<Bound<'py, PyAny>> {
    Ok(v.into_pyarray(py).reshape([h, w])?.into_any())
}

impl Model {
    fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        // A panic inside a call poisons nothing we rely on: the checkpoint is read-only.
        self.ck.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (model, device = "cpu", preset = "hf"))]
    fn new(py: Python<'_>, model: PathBuf, device: &str, preset: &str) -> PyResult<Self> {
        let (device, preset) = (device.to_string(), preset.to_string());
        compute(py, move || {
            // The embedded default's name is not a path: a missing copy is not FileNotFoundError.
            let dir = m2ib_runner::bundled::locate(&model, Path::new("")).map_err(|e| {
                let e = anyhow::Error::msg(e);
                if model == Path::new(m2ib_runner::bundled::NAME) {
                    e
                } else {
                    about(&model, e)
                }
            })?;
            let (dev, note) = m2ib_clip::devices::one(&device).map_err(anyhow::Error::msg)?;
            let options = ModelOptions::preset(&preset)?;
            let ck = Checkpoint::load_with(&dir, dev, &options)
                .with_context(|| format!("loading {}", dir.display()))?;
            let image_size = ck.model.config.vision_config.image_size as usize;
            let depths = (ck.model.vision_depth(), ck.model.text_depth());
            Ok(Model {
                image_size,
                depths,
                ck: Mutex::new(ck),
                dir,
                device: match dev {
                    tch::Device::Cuda(i) => format!("cuda:{i}"),
                    _ => "cpu".into(),
                },
                preset,
                note,
            })
        })
    }

    /// The model's folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }

    #[getter]
    fn preset(&self) -> String {
        self.preset.clone()
    }

    /// Why `auto` chose the device it did (None when it was named).
    #[getter]
    fn device_note(&self) -> Option<String> {
        self.note.clone()
    }

    /// Side of the square image the model reads.
    #[getter]
    fn image_size(&self) -> usize {
        self.image_size
    }

    /// Blocks of the image and the text tower.
    #[getter]
    fn depths(&self) -> (usize, usize) {
        self.depths
    }

    /// The tokens a caption becomes (start and end included), as the maps index them.
    fn tokens(&self, py: Python<'_>, text: String) -> PyResult<Vec<String>> {
        compute(py, || {
            let e = self
                .lock()
                .tokenizer
                .encode(&text)
                .with_context(|| format!("caption {text:?}"))?;
            Ok(e.tokens)
        })
    }

    /// Explains pairs with one method or `all`; `settings` are the flat keys of an experiment's
    /// `[methods.<name>]` table (for `all`, M2IB's only, as the CLI's flags). Pair k (counted
    /// from `first_index`) is seeded with splitmix64(seed ^ k), as `m2ib attribute` seeds it.
    /// Returns, per pair, a dict with the tokens and, under "methods", one dict per method.
    #[pyo3(signature = (images, texts, method = "m2ib", settings = None, seed = 0, first_index = 0))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one per knob.
    fn attribute<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Bound<'py, PyAny>>,
        texts: Vec<String>,
        method: &str,
        settings: Option<Bound<'py, PyDict>>,
        seed: u64,
        first_index: usize,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        if images.len() != texts.len() {
            return Err(invalid(format!(
                "{} images but {} captions: give one caption per image",
                images.len(),
                texts.len()
            )));
        }
        let images: Vec<Image> = images.iter().map(Image::extract).collect::<PyResult<_>>()?;
        let given = settings_of(settings.as_ref())?;
        let method = method.to_string();
        let out = compute(py, || {
            let ck = self.lock();
            let mut methods = vec![];
            for name in m2ib_runner::resolve::names(&method) {
                let mine = if name == "m2ib" || method != "all" {
                    given.clone()
                } else {
                    toml::Table::new()
                };
                let r = m2ib_runner::resolve::method(&self.dir, &ck, &name, &mine, "argument")
                    .map_err(anyhow::Error::msg)?;
                methods.push(r);
            }
            let pairs: Vec<Pair> = images
                .iter()
                .zip(&texts)
                .enumerate()
                .map(|(i, (image, caption))| prepare(&ck, first_index + i, image, caption))
                .collect::<anyhow::Result<_>>()?;
            let seeds: Vec<u64> = (0..pairs.len())
                .map(|i| splitmix64(seed ^ (first_index + i) as u64))
                .collect();
            let pixels: Vec<Tensor> = pairs.iter().map(|p| p.pixels.shallow_clone()).collect();
            let encoded: Vec<_> = pairs.iter().map(|p| p.encoded.clone()).collect();
            let batch = Batch::new(&ck, &pixels, &encoded, seeds.clone());
            let mut outs: Vec<PairOut> = pairs
                .iter()
                .zip(&seeds)
                .map(|(p, &seed)| PairOut {
                    tokens: p.encoded.tokens.clone(),
                    ids: p.encoded.ids.clone(),
                    content: vec![],
                    seed,
                    unknown: p.encoded.unknown.clone(),
                    truncated: p.encoded.truncated,
                    methods: vec![],
                })
                .collect();
            for r in &methods {
                let all = r.method.attribute(&ck.model, &batch)?;
                for (i, a) in all.iter().enumerate() {
                    let e = explained(a, &pairs[i], r.method.name(), &r.sources)
                        .map_err(|e| pair_error(first_index + i, &images[i], e))?;
                    outs[i].content = a.content.clone();
                    outs[i].methods.push(e);
                }
            }
            Ok(outs)
        })?;
        out.into_iter()
            .map(|p| {
                let d = PyDict::new(py);
                d.set_item("tokens", p.tokens)?;
                d.set_item("ids", p.ids)?;
                d.set_item("content", p.content.into_pyarray(py))?;
                d.set_item("seed", p.seed)?;
                d.set_item("unknown_words", p.unknown)?;
                d.set_item("truncated_tokens", p.truncated)?;
                let methods = PyList::empty(py);
                for e in p.methods {
                    let m = PyDict::new(py);
                    m.set_item("method", e.method)?;
                    m.set_item("image_map", array2(py, e.image_norm, e.size)?)?;
                    m.set_item("image_map_raw", array2(py, e.image_raw, e.size)?)?;
                    m.set_item(
                        "image_map_original",
                        array2(py, e.original, e.original_size)?,
                    )?;
                    m.set_item("crop", e.crop.to_vec())?;
                    m.set_item("token_scores", e.text_norm.into_pyarray(py))?;
                    m.set_item("token_scores_raw", e.text_raw.into_pyarray(py))?;
                    m.set_item("params", json(py, &e.params)?)?;
                    m.set_item("settings_sources", json(py, &e.sources)?)?;
                    m.set_item("notes", e.notes)?;
                    methods.append(m)?;
                }
                d.set_item("methods", methods)?;
                Ok(d)
            })
            .collect()
    }

    /// Image and text embeddings (projected, unnormalised) of each pair, and their cosine, as
    /// `m2ib embed` computes them.
    fn embed<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Bound<'py, PyAny>>,
        texts: Vec<String>,
    ) -> PyResult<Embeddings<'py>> {
        if images.len() != texts.len() {
            return Err(invalid(format!(
                "{} images but {} captions: give one caption per image",
                images.len(),
                texts.len()
            )));
        }
        let images: Vec<Image> = images.iter().map(Image::extract).collect::<PyResult<_>>()?;
        if images.is_empty() {
            return Err(invalid("no pairs to embed"));
        }
        let (ie, te, cos) = compute(py, || {
            let ck = self.lock();
            let mut pixels = vec![];
            let mut inputs = vec![];
            for (i, (image, text)) in images.iter().zip(&texts).enumerate() {
                let p = prepare(&ck, i, image, text)?;
                pixels.push(p.pixels);
                inputs.push(p.encoded);
            }
            let dev = ck.model.device();
            let px = Tensor::stack(&pixels, 0).to_device(dev);
            let text = ck.tokenizer.batch(&inputs, ck.pooling).to_device(dev);
            let (ie, te) =
                tch::no_grad(|| (ck.model.image_features(&px), ck.model.text_features(&text)));
            let cos = Vec::<f64>::try_from(cosine(&ie, &te, 1e-8).to_kind(tch::Kind::Double))?;
            let rows = |t: &Tensor| -> anyhow::Result<Vec<Vec<f32>>> {
                Ok(Vec::<Vec<f32>>::try_from(t.to_device(tch::Device::Cpu))?)
            };
            Ok((rows(&ie)?, rows(&te)?, cos))
        })?;
        let arr =
            |v: Vec<Vec<f32>>| PyArray2::from_vec2(py, &v).map_err(|e| invalid(e.to_string()));
        Ok((arr(ie)?, arr(te)?, cos))
    }

    /// Confidence of the pair before and after the image is perturbed by `image_map` (the
    /// model's input size; min-max normalised first, as the runner does): protocol `whole-map`
    /// (pixels x map, the paper's) or `keep-top25` (only the map's top 25 % of pixels kept).
    #[pyo3(signature = (image, text, image_map, protocol = "whole-map"))]
    fn confidence_image(
        &self,
        py: Python<'_>,
        image: Bound<'_, PyAny>,
        text: String,
        image_map: PyReadonlyArray2<'_, f32>,
        protocol: &str,
    ) -> PyResult<(f64, f64, f64, f64)> {
        let image = Image::extract(&image)?;
        let protocol = ImageProtocol::from_name(protocol).ok_or_else(|| {
            not_one_of(
                "image protocol",
                protocol,
                ImageProtocol::ALL.map(ImageProtocol::name),
            )
        })?;
        let shape = [image_map.shape()[0] as i64, image_map.shape()[1] as i64];
        let map: Vec<f32> = image_map.as_array().iter().copied().collect();
        let c = compute(py, || {
            let ck = self.lock();
            let (p, batch) = one_pair(&ck, &image, &text)?;
            let (h, w) = (p.pixels.size()[1], p.pixels.size()[2]);
            anyhow::ensure!(
                shape == [h, w],
                "image map of shape {shape:?}: the model reads {h}x{w} (the map of `attribute`'s `image_map`)"
            );
            let map = normalize_image(&Tensor::from_slice(&map).view(shape))?;
            let map = match protocol {
                ImageProtocol::KeepTop25 => keep_top(&map, 0.25)?,
                ImageProtocol::WholeMap => map,
            };
            let text_emb =
                tch::no_grad(|| ck.model.text_features(&batch.text)).to_device(tch::Device::Cpu);
            Ok(image_change(&ck.model, &p.pixels, &map, &text_emb.get(0))?)
        })?;
        Ok(tuple(c))
    }

    /// Confidence of the pair before and after the caption's lower-scored half of content
    /// tokens is removed (`token_scores`: one per token, start and end included): protocol
    /// `padded` (removed tokens become padding, pooled where the caption ends) or `official`.
    #[pyo3(signature = (image, text, token_scores, protocol = "padded"))]
    fn confidence_text(
        &self,
        py: Python<'_>,
        image: Bound<'_, PyAny>,
        text: String,
        token_scores: PyReadonlyArray1<'_, f32>,
        protocol: &str,
    ) -> PyResult<(f64, f64, f64, f64)> {
        let image = Image::extract(&image)?;
        let protocol = TextProtocol::from_name(protocol).ok_or_else(|| {
            not_one_of(
                "text protocol",
                protocol,
                TextProtocol::ALL.map(TextProtocol::name),
            )
        })?;
        let scores: Vec<f32> = token_scores.as_array().iter().copied().collect();
        let c = compute(py, || {
            let ck = self.lock();
            let (p, batch) = one_pair(&ck, &image, &text)?;
            let n = p.encoded.ids.len();
            anyhow::ensure!(
                scores.len() == n,
                "{} token scores for a caption of {n} tokens (start and end included)",
                scores.len()
            );
            // A constant scoring is the runner's `degenerate_map` row: refused alike.
            normalize_text(&scores, &batch.content[0])?;
            let image_emb = tch::no_grad(|| {
                ck.model
                    .image_features(&batch.pixels)
                    .to_device(tch::Device::Cpu)
            });
            let pool = i64::try_from(batch.text.pool_index.get(0))? as usize;
            let caption = Caption {
                ids: &p.encoded.ids,
                pool,
                text_mask_id: batch.text_mask_id,
                end_id: ck.tokenizer.end_id,
            };
            Ok(text_change(
                &ck.model,
                &caption,
                &scores,
                &image_emb.get(0),
                protocol,
            )?)
        })?;
        Ok(tuple(c))
    }

    fn __repr__(&self) -> String {
        format!(
            "m2ib.Model({:?}, device={:?}, preset={:?})",
            self.dir.display().to_string(),
            self.device,
            self.preset
        )
    }
}

/// (before, after, drop, increase) as the runner's rows have them.
fn tuple(c: Change) -> (f64, f64, f64, f64) {
    (c.before, c.after, c.drop(), c.increase())
}
