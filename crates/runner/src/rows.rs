//! Result rows (DESIGN.md "Runner and results" columns) and the one way they are built: the
//! fields a job's rows share, then per row a value or the reason it has none.
use crate::experiment::Experiment;
use crate::plan::{Job, JobKind};
use m2ib_attribution::registry::{row_fields, RowFields};
use serde_json::Value;

/// One result row (DESIGN.md "Runner and results" columns).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub experiment: String,
    pub job_id: String,
    pub model: String,
    pub dataset: String,
    pub split: String,
    pub sample_id: Option<String>,
    pub method: String,
    /// The method table's name (`m2ib-tuned`); the method itself for an unlabelled table.
    pub label: String,
    pub params: String,
    /// The block as written (`"9"`, `"-2"`) or `"embeddings"` (a string so that one column
    /// holds both; null for methods without a layer).
    pub layer: Option<String>,
    pub beta: Option<f64>,
    pub sigma: Option<f64>,
    pub var: Option<f64>,
    pub modality: String,
    pub metric: String,
    pub metric_variant: String,
    pub step: Option<i64>,
    pub repeat: i64,
    pub seed: u64,
    pub split_seed: u64,
    pub value: Option<f64>,
    pub error: Option<String>,
    pub wall_ms: f64,
    pub device: String,
    pub threads: i64,
    pub git_revision: String,
}

/// The fields every row of one job shares (`params`: the method's resolved parameters).
pub fn job_row(
    exp: &Experiment,
    job: &Job,
    params: String,
    device: &str,
    threads: i32,
    git: &str,
) -> Row {
    let roar_split = exp.metrics.roar.as_ref().map(|r| r.split.clone());
    Row {
        experiment: exp.name.clone(),
        job_id: job.id.clone(),
        model: exp.model.name.clone(),
        dataset: exp.dataset.reader.name().to_string(),
        split: match job.kind {
            JobKind::Roar | JobKind::RoarMaps | JobKind::RoarClean => {
                roar_split.unwrap_or_default()
            }
            _ => exp.dataset.split.clone(),
        },
        method: job.cell.method.clone(),
        label: job.cell.name().to_string(),
        params,
        repeat: job.repeat as i64,
        split_seed: crate::seeds::split_seed(exp.dataset.seed, job.repeat),
        device: device.to_string(),
        threads: threads as i64,
        git_revision: git.to_string(),
        ..Row::default()
    }
}

/// A metric value or the reason it has none; non-finite values become errors (never averaged).
pub fn value_row(base: &Row, params: &Value, modality: &str, v: Result<f64, String>) -> Row {
    let RowFields { layer, beta, sigma } = row_fields(params, modality);
    let (value, error) = match v {
        Ok(v) if v.is_finite() => (Some(v), None),
        Ok(v) => (None, Some(format!("non-finite value {v}"))),
        Err(e) => (None, Some(e)),
    };
    Row {
        modality: modality.to_string(),
        layer,
        beta,
        sigma,
        var: sigma.map(|s| s * s),
        value,
        error,
        ..base.clone()
    }
}
