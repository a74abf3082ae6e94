//! Experiment TOML (DESIGN.md "Runner and results"): one model, one dataset, methods whose
//! parameters may be lists (a grid), metrics, repeats, seeds, devices. Validated before any work;
//! errors give the file and line and the allowed values (named keys, or serde's `unknown variant
//! ..., expected ...` for the typed lists).
use m2ib_attribution::Modality;
use m2ib_metrics::calibration::Reference;
use m2ib_metrics::confidence::TextProtocol;
use m2ib_metrics::localization::Threshold;
use m2ib_metrics::metric::ImageProtocol;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default::repeats")]
    pub repeats: usize,
    #[serde(default = "default::chunk_size")]
    pub chunk_size: usize,
    /// "cpu", "auto", or a list like ["cuda:0", "cuda:1"].
    #[serde(default = "default::devices")]
    pub devices: toml::Value,
    /// CPU workers (each with its own model copy and one intra-op thread by default).
    #[serde(default = "default::workers")]
    pub workers: usize,
    #[serde(default = "default::threads_per_worker")]
    pub threads_per_worker: i32,
    pub model: ModelSpec,
    pub dataset: DatasetSpec,
    /// Method tables (an `include` may supply all of them).
    #[serde(default)]
    pub methods: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// A TOML of selected settings (`m2ib report <grid> --select <metric>` writes one under
    /// experiments/selected/): its `[methods.<name>]` tables replace the experiment's own.
    pub include: Option<PathBuf>,
}

/// The values a key takes when the TOML leaves it out (serde needs a function per key).
mod default {
    pub fn repeats() -> usize {
        1
    }
    pub fn chunk_size() -> usize {
        8
    }
    pub fn devices() -> toml::Value {
        toml::Value::String("cpu".into())
    }
    pub fn workers() -> usize {
        1
    }
    pub fn threads_per_worker() -> i32 {
        1
    }
    pub fn split() -> String {
        "test".into()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub path: PathBuf,
    /// `hf` (default) or `cxr-repair-compat` (the official wrapper: no causal mask, last-position
    /// pooling, text projection twice); the keys below override single options.
    pub preset: Option<String>,
    pub text_causal_mask: Option<bool>,
    /// eos | last | hf-argmax
    pub text_pool: Option<m2ib_clip::Pooling>,
    pub text_projection_twice: Option<bool>,
}

impl ModelSpec {
    pub fn options(&self) -> Result<m2ib_clip::ModelOptions, String> {
        let mut o = match &self.preset {
            Some(p) => m2ib_clip::ModelOptions::preset(p).map_err(|_| {
                format!(
                    "`model.preset` = {p:?}; allowed: {}",
                    m2ib_clip::options::PRESETS.join(", ")
                )
            })?,
            None => m2ib_clip::ModelOptions::default(),
        };
        if let Some(v) = self.text_causal_mask {
            o.text_causal_mask = v;
        }
        if let Some(v) = self.text_pool {
            o.text_pool = v;
        }
        if let Some(v) = self.text_projection_twice {
            o.text_projection_twice = v;
        }
        Ok(o)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub reader: Reader,
    #[serde(default = "default::split")]
    pub split: String,
    pub n: usize,
    #[serde(default)]
    pub seed: u64,
    /// shapes: captions also name an absent object (text ground truth).
    #[serde(default)]
    pub absent: bool,
    /// mscxr / cc: the CSV or TSV file.
    pub file: Option<PathBuf>,
    /// mscxr / cc: where the images are.
    pub image_root: Option<PathBuf>,
    /// The experiment file's folder: `file` and `image_root` resolve against it (see `resolve`).
    #[serde(skip)]
    pub base: PathBuf,
}

impl DatasetSpec {
    /// A path of this table as the readers open it: beside the experiment file (as Cargo resolves
    /// paths), else as written relative to the working directory (older experiments).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let beside = self.base.join(p);
        if beside.exists() || !p.exists() {
            beside
        } else {
            p.to_path_buf()
        }
    }
}

/// `dataset.reader`: which benchmark the samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reader {
    /// Generated scenes (m2ib-data's shapes; boxes and token ground truth).
    Shapes,
    /// MS-CXR's CSV of phrase-grounded boxes.
    Mscxr,
    /// Conceptual Captions' TSV (`caption<TAB>url`-style rows with local images).
    Cc,
}

impl Reader {
    /// The name written in TOML and in the rows' `dataset` column.
    pub fn name(self) -> &'static str {
        match self {
            Reader::Shapes => "shapes",
            Reader::Mscxr => "mscxr",
            Reader::Cc => "cc",
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSpec {
    /// Threshold modes: "value", "percentile".
    pub localization: Vec<Threshold>,
    pub text_localization: bool,
    /// Text protocols: "official", "padded". Any entry also scores the image variants below.
    pub confidence: Vec<TextProtocol>,
    /// Image confidence variants (with `confidence`): "whole-map" (the paper: pixels times the
    /// normalised map) and "keep-top25" (pixels outside the map's top 25 % set to the channel
    /// mean; on the shapes benchmark random maps beat the oracle under whole-map, README).
    pub image_confidence: Vec<ImageProtocol>,
    /// ROAR+ (dataset-level, dependent jobs over the map cache of the training pairs).
    pub roar: Option<RoarSpec>,
    /// Cascading randomisation per chunk, against the cached maps.
    pub sanity: bool,
    /// Intervention agreement (shapes only): per sample, the rank correlation between each
    /// object's importance for the model (cosine drop when it is removed from the scene; text:
    /// when its phrase is removed from the caption) and the map's mass on it.
    pub intervention: bool,
    /// Calibration rows scored beside the methods: "oracle" (the ground truth) and "random"
    /// (seeded uniform maps). Default: both on the shapes benchmark, none elsewhere (other
    /// readers have no token ground truth); `[]` turns them off.
    pub calibration: Option<Vec<Reference>>,
    /// The caption an image perturbation (confidence drop / increase, intervention) is scored
    /// against: "present" (default; the caption without a phrase naming an absent object, the
    /// shapes `absent` variant) or "caption" (the caption the map explains).
    pub image_target: ImageTarget,
}

/// What an image perturbation is scored against. A caption that names an absent object is partly
/// false, and removing image content moves its similarity in ways unrelated to what the map
/// found: on the tune split, random maps raised it in 36 % of scenes against 5 % for the caption's
/// true part, and the oracle's margin over random fell from +5.1 to +2.7 standard errors (README).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageTarget {
    #[default]
    Present,
    Caption,
}

impl MetricsSpec {
    /// Whether any asked-for metric perturbs the image and so reads `image_target`.
    pub fn perturbs_images(&self) -> bool {
        (!self.confidence.is_empty() && !self.image_confidence.is_empty()) || self.intervention
    }
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            localization: vec![],
            text_localization: false,
            confidence: vec![],
            image_confidence: vec![ImageProtocol::WholeMap],
            roar: None,
            sanity: false,
            intervention: false,
            calibration: None,
            image_target: ImageTarget::Present,
        }
    }
}

/// `[metrics.roar]`: which training pairs are explained, degraded and retrained on.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoarSpec {
    /// Scored separately: "image" (top pixels removed), "text" (top content tokens removed).
    pub modalities: Vec<Modality>,
    /// Pairs of `split` explained and used (80/20 train/validation per split seed).
    pub n: usize,
    pub split: String,
    /// ROAR+ runs on the first `repeats` of the experiment's repeats (default: all). Each repeat
    /// explains a new draw of training pairs; fewer repeats with more `splits` save map jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats: Option<usize>,
    pub fraction: f64,
    /// Fine-tunings per repeat, each a new split (the paper's R = 5 is repeats x `splits`).
    pub splits: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub val_fraction: f64,
    /// Pairs per validation batch (the contrastive loss is averaged over full batches of this
    /// size; `round(n * val_fraction)` must reach it).
    pub val_batch_size: usize,
    /// A fixed validation set of this many pairs (its own draw of `split`, the same for every
    /// repeat, split and seed, never explained): the `n` pairs are then all training pairs and
    /// `val_fraction` is unused. Without it each split seed holds out `val_fraction` of `n`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_n: Option<usize>,
}

impl Default for RoarSpec {
    /// The fine-tuning defaults are RoarConfig's (one place for them).
    fn default() -> Self {
        let c = m2ib_metrics::roar::RoarConfig::default();
        RoarSpec {
            modalities: vec![Modality::Image, Modality::Text],
            n: 64,
            split: "train".into(),
            repeats: None,
            fraction: c.fraction,
            splits: c.splits,
            steps: c.steps,
            batch_size: c.batch_size,
            lr: c.lr,
            val_fraction: c.val_fraction,
            val_batch_size: c.val_batch_size,
            val_n: None,
        }
    }
}

impl RoarSpec {
    /// The training pairs as a dataset of their own (same reader, seed and files). Always true
    /// captions: a shapes caption naming an absent object is a wrong pair to train on (with
    /// such captions the clean validation loss was 4.9, above chance for its batch of 16).
    pub fn dataset(&self, d: &DatasetSpec) -> DatasetSpec {
        DatasetSpec {
            split: self.split.clone(),
            n: self.n,
            absent: false,
            ..d.clone()
        }
    }

    /// The fixed validation pairs (`val_n`): the training pairs' reader and split, true captions.
    pub fn val_dataset(&self, d: &DatasetSpec) -> DatasetSpec {
        DatasetSpec {
            n: self.val_n.unwrap_or(0),
            ..self.dataset(d)
        }
    }

    /// Whether ROAR+ runs on this repeat of an experiment with `experiment_repeats` (`repeats`).
    pub fn runs_on(&self, repeat: usize, experiment_repeats: usize) -> bool {
        repeat < self.repeats.unwrap_or(experiment_repeats)
    }

    pub fn config(&self, seed: u64) -> m2ib_metrics::roar::RoarConfig {
        m2ib_metrics::roar::RoarConfig {
            fraction: self.fraction,
            splits: self.splits,
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            val_fraction: self.val_fraction,
            val_batch_size: self.val_batch_size,
            seed,
        }
    }
}

/// One method configuration of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub method: String,
    /// The flat parameters as written (one value per key), canonical (sorted keys).
    pub params: Value,
    /// The method table's name when it differs from the method (`[methods.m2ib-tuned]` with
    /// `method = "m2ib"`): the same method with two settings in one table.
    pub label: Option<String>,
}

impl Cell {
    pub fn new(method: &str, params: Value) -> Cell {
        Cell {
            method: method.to_string(),
            params,
            label: None,
        }
    }

    /// What tables and results call it: the label, else the method.
    pub fn name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.method)
    }

    /// The method part of job ids: unchanged for unlabelled cells.
    pub fn id_key(&self) -> String {
        match &self.label {
            Some(l) => format!("{}@{l}", self.method),
            None => self.method.clone(),
        }
    }
}

/// The method a `[methods.<name>]` table runs: its `method` key, else its name.
pub fn method_of(name: &str, table: &toml::Table) -> Result<String, String> {
    match table.get(METHOD_KEY) {
        None => Ok(name.to_string()),
        Some(toml::Value::String(m)) => Ok(m.clone()),
        Some(other) => Err(format!(
            "`methods.{name}.{METHOD_KEY}` must be a method name (string), got {other}"
        )),
    }
}

/// Names the method of a labelled table.
pub const METHOD_KEY: &str = "method";
/// `grid = "per-modality"`: M2IB's image and text settings are expanded separately and paired.
pub const GRID_KEY: &str = "grid";
pub const PER_MODALITY: &str = "per-modality";

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ExperimentError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// The 1-based line where `key = ` first appears after `[section]` (0 when not found).
pub fn line_of(source: &str, section: &str, key: &str) -> usize {
    let mut in_section = section.is_empty();
    for (i, l) in source.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_section = t.trim_matches(|c| c == '[' || c == ']').trim() == section;
            continue;
        }
        if in_section && t.split('=').next().map(str::trim) == Some(key) {
            return i + 1;
        }
    }
    0
}

impl Experiment {
    pub fn load(path: &Path) -> Result<(Experiment, String), ExperimentError> {
        let source = std::fs::read_to_string(path).map_err(|e| ExperimentError {
            file: path.display().to_string(),
            line: 0,
            message: e.to_string(),
        })?;
        let mut exp = Experiment::parse(&source, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        exp.model.path =
            crate::bundled::locate(&exp.model.path, &base).map_err(|message| ExperimentError {
                file: path.display().to_string(),
                line: line_of(&source, "model", "path"),
                message: format!("`model.path`: {message}"),
            })?;
        exp.dataset.base = base;
        Ok((exp, source))
    }

    pub fn parse(source: &str, file: &str) -> Result<Experiment, ExperimentError> {
        let err = |line: usize, message: String| ExperimentError {
            file: file.to_string(),
            line,
            message,
        };
        let mut exp: Experiment = toml::from_str(source).map_err(|e| {
            let line = e
                .span()
                .map(|s| source[..s.start].matches('\n').count() + 1)
                .unwrap_or(0);
            err(line, e.message().to_string())
        })?;
        if let Some(inc) = &exp.include {
            let at = line_of(source, "", "include");
            // Beside the experiment file first (as Cargo resolves paths), then the working
            // directory (the form older experiments use: `experiments/selected/...`).
            let beside = Path::new(file).parent().map(|d| d.join(inc));
            let text = beside
                .iter()
                .chain(std::iter::once(inc))
                .find_map(|p| std::fs::read_to_string(p).ok())
                .ok_or_else(|| {
                    err(
                        at,
                        format!(
                            "`include` = {:?}: no such file beside the experiment ({}) or in the working directory",
                            inc.display(),
                            beside
                                .as_ref()
                                .map_or("-".into(), |b| b.display().to_string())
                        ),
                    )
                })?;
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Selected {
                methods: BTreeMap<String, toml::Table>,
            }
            let sel: Selected = toml::from_str(&text).map_err(|e| {
                err(
                    at,
                    format!("`include` = {:?}: {}", inc.display(), e.message()),
                )
            })?;
            // Selected settings replace the experiment's own per modality (a selected
            // `image_layer` leaves the experiment's text layer alone), keys they do not give stay.
            for (name, selected) in sel.methods {
                let own = exp.methods.remove(&name).unwrap_or_default();
                let (merged, _) = crate::defaults::merge_beneath(&selected, &own);
                exp.methods.insert(name, merged);
            }
        }
        if let Err(e) = exp.model.options() {
            return Err(err(line_of(source, "model", "preset"), e));
        }
        if let Some(r) = &exp.metrics.roar {
            let at = |k: &str| line_of(source, "metrics.roar", k);
            if !(r.fraction > 0.0 && r.fraction < 1.0) {
                return Err(err(
                    at("fraction"),
                    format!(
                        "`metrics.roar.fraction` = {}; allowed: 0 < fraction < 1",
                        r.fraction
                    ),
                ));
            }
            if !(r.val_fraction > 0.0 && r.val_fraction < 1.0) {
                return Err(err(
                    at("val_fraction"),
                    format!(
                        "`metrics.roar.val_fraction` = {}; allowed: 0 < val_fraction < 1",
                        r.val_fraction
                    ),
                ));
            }
            if let Some(v) = r.val_n {
                if r.val_batch_size < m2ib_metrics::roar::MIN_VAL_BATCH || v < r.val_batch_size {
                    return Err(err(
                        at("val_n"),
                        format!(
                            "`metrics.roar.val_n` = {v} is fewer than one validation batch (val_batch_size = {}, at least {}): the contrastive loss of a tiny batch is near 0 and ROAR+ divides by it",
                            r.val_batch_size,
                            m2ib_metrics::roar::MIN_VAL_BATCH
                        ),
                    ));
                }
            }
            let n_val = ((r.n as f64) * r.val_fraction).round() as usize;
            if r.val_n.is_none()
                && (r.val_batch_size < m2ib_metrics::roar::MIN_VAL_BATCH
                    || n_val < r.val_batch_size)
            {
                return Err(err(
                    at("n"),
                    format!(
                        "`metrics.roar`: n = {} x val_fraction = {} gives {n_val} validation pairs, fewer than one validation batch (val_batch_size = {}, at least {}): the contrastive loss of a tiny batch is near 0 and ROAR+ divides by it; raise n",
                        r.n,
                        r.val_fraction,
                        r.val_batch_size,
                        m2ib_metrics::roar::MIN_VAL_BATCH
                    ),
                ));
            }
            if r.repeats.is_some_and(|k| k == 0 || k > exp.repeats) {
                return Err(err(
                    at("repeats"),
                    format!(
                        "`metrics.roar.repeats` must be between 1 and the experiment's `repeats` ({})",
                        exp.repeats
                    ),
                ));
            }
            if r.n < 5 || r.splits == 0 || r.steps == 0 || r.batch_size < 2 {
                return Err(err(
                    at("n"),
                    "`metrics.roar`: need n >= 5, splits >= 1, steps >= 1, batch_size >= 2".into(),
                ));
            }
            if exp.dataset.reader == Reader::Shapes {
                split_of(&r.split)
                    .map_err(|e| err(at("split"), format!("`metrics.roar.split`: {e}")))?;
            }
        }
        if exp.methods.is_empty() {
            return Err(err(0, "no `[methods.<name>]` table".into()));
        }
        for (name, table) in &exp.methods {
            let section = format!("methods.{name}");
            let method = method_of(name, table)
                .map_err(|e| err(line_of(source, &section, METHOD_KEY), e))?;
            if !m2ib_attribution::registry::METHODS.contains(&method.as_str()) {
                let line = match table.contains_key(METHOD_KEY) {
                    true => line_of(source, &section, METHOD_KEY),
                    false => source
                        .lines()
                        .position(|l| l.trim() == format!("[{section}]"))
                        .map(|p| p + 1)
                        .unwrap_or(0),
                };
                return Err(err(
                    line,
                    format!(
                        "unknown method `{method}`; allowed: {} (a table of another name says which with `method = \"...\"`)",
                        m2ib_attribution::registry::METHODS.join(", ")
                    ),
                ));
            }
            match table.get(GRID_KEY) {
                None => {}
                Some(toml::Value::String(g)) if g == PER_MODALITY && method == "m2ib" => {}
                Some(other) => {
                    return Err(err(
                        line_of(source, &section, GRID_KEY),
                        format!(
                        "`{section}.{GRID_KEY}` = {other}; allowed: \"{PER_MODALITY}\" (M2IB only)"
                    ),
                    ))
                }
            }
            for (k, v) in table {
                if let toml::Value::Array(a) = v {
                    if a.is_empty() {
                        return Err(err(
                            line_of(source, &section, k),
                            format!("`{section}.{k}` is an empty list"),
                        ));
                    }
                }
            }
            // Every grid cell must build (unknown keys, wrong types, negative beta, ...).
            for cell in expand(name, table) {
                if let Err(e) = method_from_cell(&cell) {
                    // The key at fault: the first whose value alone is refused.
                    let obj = cell.params.as_object().cloned().unwrap_or_default();
                    let key = obj
                        .iter()
                        .find(|(k, v)| {
                            let mut one = serde_json::Map::new();
                            one.insert((*k).clone(), (*v).clone());
                            method_from_cell(&Cell::new(&cell.method, Value::Object(one))).is_err()
                        })
                        .map(|(k, _)| k.clone())
                        .unwrap_or_default();
                    return Err(err(
                        line_of(source, &section, &key),
                        format!("`{section}.{key}`: {e}"),
                    ));
                }
            }
        }
        if exp.repeats == 0 || exp.chunk_size == 0 || exp.workers == 0 {
            return Err(err(
                0,
                "`repeats`, `chunk_size` and `workers` must be at least 1".into(),
            ));
        }
        Ok(exp)
    }

    /// All method cells of the grid, in a stable order, then the calibration references.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells: Vec<Cell> = self
            .methods
            .iter()
            .flat_map(|(name, table)| expand(name, table))
            .collect();
        cells.extend(
            self.calibration()
                .into_iter()
                .map(|r| Cell::new(r.name(), Value::Object(Map::new()))),
        );
        cells
    }

    /// Puts the model's recommended settings beneath each listed method's table (per modality;
    /// methods the experiment does not list are not added). Returns, per method and key, where
    /// the value came from: the experiment file, its `include`, or the model's defaults; keys
    /// none of them gives take the method's built-in default (recorded as such in run.json).
    pub fn apply_model_defaults(
        &mut self,
        d: &crate::defaults::ModelDefaults,
        source: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
        let mut sources = BTreeMap::new();
        for (name, table) in self.methods.iter_mut() {
            let section = format!("methods.{name}");
            let mut from: BTreeMap<String, String> = table
                .keys()
                .map(|k| {
                    let origin = if line_of(source, &section, k) > 0 {
                        "experiment".to_string()
                    } else {
                        match &self.include {
                            Some(p) => format!("include: {}", p.display()),
                            None => "experiment".to_string(),
                        }
                    };
                    (k.clone(), origin)
                })
                .collect();
            let method = method_of(name, table)?;
            if let Some(lower) = d.methods.get(&method) {
                let (merged, taken) = crate::defaults::merge_beneath(table, lower);
                for k in taken {
                    from.insert(k, format!("model: {}", d.origin));
                }
                *table = merged;
            }
            for cell in expand(name, table) {
                method_from_cell(&cell).map_err(|e| {
                    format!("{}: `{section}` with the model's defaults: {e}", d.origin)
                })?;
            }
            sources.insert(name.clone(), from);
        }
        Ok(sources)
    }

    /// The calibration references this experiment scores (see `MetricsSpec::calibration`).
    pub fn calibration(&self) -> Vec<Reference> {
        match &self.metrics.calibration {
            Some(c) => c.clone(),
            None if self.dataset.reader == Reader::Shapes => Reference::ALL.to_vec(),
            None => vec![],
        }
    }

    /// `devices` as written: names, `cpu` or `auto` (a string may list several, comma-separated).
    pub fn device_names(&self) -> Result<Vec<String>, String> {
        Ok(match &self.devices {
            toml::Value::String(s) => m2ib_clip::devices::split_list(s),
            toml::Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "`devices` entries must be strings".to_string())
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(format!(
                    "`devices` = {other}; allowed: \"cpu\", \"auto\", [\"cuda:0\", ...]"
                ))
            }
        })
    }

    /// Device names to run on (one per worker) and, for `auto`, what it chose and why.
    pub fn device_list(&self) -> Result<(Vec<String>, Option<String>), String> {
        m2ib_clip::devices::resolve(&self.device_names()?, self.workers)
    }
}

fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Cartesian product over list-valued keys; with `grid = "per-modality"` (M2IB), the image
/// settings (`image_*` and unprefixed keys) and the text settings (`text_*` and unprefixed keys)
/// are expanded separately and paired in order, the shorter list starting over, so that every
/// setting of either modality is computed once (plus the shorter list's repeats) instead of once
/// per setting of the other.
pub fn expand(name: &str, table: &toml::Table) -> Vec<Cell> {
    let method = method_of(name, table).unwrap_or_else(|_| name.to_string());
    let label = (method != name).then(|| name.to_string());
    let mut table = table.clone();
    table.remove(METHOD_KEY);
    let per_modality = table.remove(GRID_KEY).is_some();
    let params: Vec<Map<String, Value>> = if per_modality {
        let side = |m: &str, other: &str| -> toml::Table {
            table
                .iter()
                .filter(|(k, _)| !k.starts_with(&format!("{other}_")))
                .map(|(k, v)| match k.starts_with(&format!("{m}_")) {
                    true => (k.clone(), v.clone()),
                    false => (format!("{m}_{k}"), v.clone()),
                })
                .collect()
        };
        let image = product(&side("image", "text"));
        let text = product(&side("text", "image"));
        (0..image.len().max(text.len()))
            .map(|i| {
                let mut c = image[i % image.len()].clone();
                c.extend(text[i % text.len()].clone());
                c
            })
            .collect()
    } else {
        product(&table)
    };
    params
        .into_iter()
        .map(|m| Cell {
            method: method.clone(),
            params: Value::Object(m),
            label: label.clone(),
        })
        .collect()
}

fn product(table: &toml::Table) -> Vec<Map<String, Value>> {
    let mut cells: Vec<Map<String, Value>> = vec![Map::new()];
    for (k, v) in table {
        let values: Vec<Value> = match v {
            toml::Value::Array(a) => a.iter().map(to_json).collect(),
            other => vec![to_json(other)],
        };
        cells = cells
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |x| {
                    let mut c = c.clone();
                    c.insert(k.clone(), x.clone());
                    c
                })
            })
            .collect();
    }
    cells
}

/// The registry's parameters for a cell (its flat keys translated by the method).
pub fn method_params(cell: &Cell) -> Value {
    m2ib_attribution::registry::params_from_flat(&cell.method, &cell.params)
}

pub fn method_from_cell(cell: &Cell) -> Result<Box<dyn m2ib_attribution::Attributor>, String> {
    m2ib_attribution::registry::method(&cell.method, &method_params(cell))
        .map_err(|e| e.to_string())
}

/// A shapes split by name (`dataset.split`, `metrics.roar.split`, `m2ib data shapes --split`).
pub fn split_of(s: &str) -> Result<m2ib_data::shapes::Split, String> {
    m2ib_data::shapes::Split::from_name(s)
        .ok_or_else(|| format!("unknown split {s:?}; allowed: train, tune, test"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
[model]
name = "m"
path = "x"
[dataset]
reader = "shapes"
n = 4
"#;

    /// The struct-level defaults are the documented ones (an absent table, an empty table).
    #[test]
    fn metrics_and_roar_defaults() {
        let m: MetricsSpec = toml::from_str("roar = {}").unwrap();
        assert_eq!(m.image_confidence, [ImageProtocol::WholeMap]);
        assert!(m.localization.is_empty() && !m.sanity && m.calibration.is_none());
        let r = m.roar.unwrap();
        assert_eq!(
            (r.n, r.split.as_str(), r.splits, r.steps),
            (64, "train", 1, 50)
        );
        assert_eq!(
            (r.fraction, r.batch_size, r.lr, r.val_fraction),
            (0.5, 32, 1e-4, 0.2)
        );
        assert_eq!(r.modalities, [Modality::Image, Modality::Text]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&RoarSpec::default()).unwrap()
        );
    }

    #[test]
    fn the_paper_grid_has_27_cells() {
        let src = format!("{BASE}[methods.m2ib]\nlayer = [7, 8, 9]\nbeta = [1, 0.1, 0.01]\nsigma = [1, 0.1, 0.01]\n[methods.saliency]\n");
        let e = Experiment::parse(&src, "t.toml").unwrap();
        let cells = e.cells();
        assert_eq!(cells.iter().filter(|c| c.method == "m2ib").count(), 27);
        // + saliency, + the shapes benchmark's calibration rows (oracle, random) at the end.
        assert_eq!(cells.len(), 30);
        assert_eq!(cells[28].method, "oracle");
        assert_eq!(cells[29].method, "random");
        let p = method_params(&cells[0]);
        assert_eq!(p["image"]["layer"], 7);
        assert_eq!(p["text"]["beta"], 1);
    }

    #[test]
    fn a_labelled_table_runs_its_method_beside_the_plain_one() {
        let src = format!(
            "{BASE}[methods.m2ib]\nbeta = 0.1\n[methods.m2ib-tuned]\nmethod = \"m2ib\"\nimage_layer = \"embeddings\"\n"
        );
        let e = Experiment::parse(&src, "t.toml").unwrap();
        let cells = e.cells();
        assert_eq!(
            (cells[0].name(), cells[0].id_key()),
            ("m2ib", "m2ib".into())
        );
        assert_eq!(cells[1].method, "m2ib");
        assert_eq!(cells[1].name(), "m2ib-tuned");
        assert_eq!(cells[1].id_key(), "m2ib@m2ib-tuned");
        assert!(cells[1].params.get(METHOD_KEY).is_none());
        assert_eq!(method_params(&cells[1])["image"]["layer"], "embeddings");
    }

    #[test]
    fn a_per_modality_grid_pairs_image_and_text_settings() {
        let src = format!(
            "{BASE}[methods.m2ib]\ngrid = \"per-modality\"\nimage_layer = [\"embeddings\", 0, 1]\ntext_layer = [\"embeddings\", 0]\nbeta = [1.0, 0.1]\nsteps = 3\n"
        );
        let e = Experiment::parse(&src, "t.toml").unwrap();
        let cells: Vec<Cell> = e
            .cells()
            .into_iter()
            .filter(|c| c.method == "m2ib")
            .collect();
        // 3 x 2 image settings, 2 x 2 text settings: 6 cells, not 6 x 4.
        assert_eq!(cells.len(), 6);
        let side = |m: &str| -> Vec<String> {
            cells
                .iter()
                .map(|c| {
                    let p = &method_params(c)[m];
                    assert_eq!(p["steps"], 3);
                    format!("{}/{}", p["layer"], p["beta"])
                })
                .collect()
        };
        let image = side("image");
        let mut unique = image.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 6, "every image setting once: {image:?}");
        let text = side("text");
        let first: std::collections::BTreeSet<_> = text[..4].iter().collect();
        assert_eq!(first.len(), 4, "every text setting once: {text:?}");
        assert_eq!(text[4..], text[..2], "the shorter list starts over");
    }

    #[test]
    fn every_shipped_experiment_parses() {
        let dir = PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../experiments");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let src = std::fs::read_to_string(&p).unwrap();
                let exp = Experiment::parse(&src, &p.display().to_string()).unwrap();
                assert!(!exp.cells().is_empty(), "{}", p.display());
                n += 1;
            }
        }
        assert!(n >= 6, "{n} experiment files");
    }

    #[test]
    fn invalid_experiments_name_key_line_and_allowed_values() {
        let cases = [
            (format!("{BASE}[methods.m2ib]\nbeta = -1.0\n"), "beta", 10),
            (
                format!("{BASE}[methods.m2ib]\nbeta = []\n"),
                "empty list",
                10,
            ),
            (
                format!("{BASE}[methods.nope]\n"),
                "unknown method `nope`; allowed: m2ib, saliency",
                9,
            ),
            (
                format!("{BASE}[methods.best]\nmethod = \"m2iv\"\n"),
                "unknown method `m2iv`",
                10,
            ),
            (
                format!("{BASE}[methods.saliency]\ngrid = \"per-modality\"\n"),
                "(M2IB only)",
                10,
            ),
            (
                format!("{BASE}[methods.m2ib]\nlayr = 3\n"),
                "unknown field `layr`",
                10,
            ),
            (
                format!("{BASE}[methods.m2ib]\nbeta = \"high\"\n"),
                "invalid type",
                10,
            ),
            (
                BASE.replace("path = \"x\"", "path = \"x\"\npreset = \"openai\"")
                    + "[methods.saliency]\n",
                "`model.preset` = \"openai\"; allowed: hf, cxr-repair-compat",
                6,
            ),
            (
                BASE.replace("path = \"x\"", "path = \"x\"\ntext_pool = \"first\"")
                    + "[methods.saliency]\n",
                "unknown variant `first`, expected one of `eos`, `hf-argmax`, `last`",
                6,
            ),
            (
                BASE.replace("reader = \"shapes\"", "reader = \"coco\"") + "[methods.saliency]\n",
                "unknown variant `coco`, expected one of `shapes`, `mscxr`, `cc`",
                7,
            ),
            (
                format!("{BASE}[methods.saliency]\n[metrics]\nlocalization = [\"median\"]\n"),
                "unknown variant `median`, expected `value` or `percentile`",
                11,
            ),
            (
                format!("{BASE}[methods.saliency]\n[metrics.roar]\nmodalities = [\"audio\"]\n"),
                "unknown variant `audio`, expected `image` or `text`",
                11,
            ),
            (
                format!("{BASE}colour = 3\n[methods.saliency]\n"),
                "unknown field `colour`",
                9,
            ),
            (
                format!("{BASE}[methods.saliency]\n[metrics]\nconfidence = [\"strict\"]\n"),
                "unknown variant `strict`, expected `official` or `padded`",
                11,
            ),
            (
                BASE.replace("name = \"t\"", "name = \"t\"\nrepeats = 2")
                    + "[methods.saliency]\n[metrics.roar]\nval_n = 16\nrepeats = 3\n",
                "between 1 and the experiment's `repeats` (2)",
                13,
            ),
        ];
        for (src, needle, line) in cases {
            let e = Experiment::parse(&src, "t.toml").unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
            assert_eq!(e.line, line, "{e}");
            assert!(e.to_string().starts_with("t.toml:"), "{e}");
        }
    }
}
