//! The results store: long-format Parquet parts, one per finished job, written atomically (temp
//! file + rename, so a killed write leaves no part a merge would read); a rerun skips jobs whose
//! part exists.
use crate::rows::Row;
use crate::rundir::{temp_beside, RunDir};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// A writer whose Parquet older readers open. polars describes strings as Arrow's string_view in
/// the file's `ARROW:schema` key, which pyarrow before 15 rejects (`Unrecognized type: 24`); the
/// column data is plain UTF-8 byte arrays either way, so the key is replaced by the same schema at
/// the oldest compatibility level (large UTF-8), which every reader knows.
fn compatible_writer<W: std::io::Write>(w: W, df: &DataFrame) -> ParquetWriter<W> {
    let arrow = df.schema().to_arrow(CompatLevel::oldest());
    let key = polars_parquet::write::schema_to_metadata_key(&arrow);
    ParquetWriter::new(w).with_key_value_metadata(Some(KeyValueMetadata::Static(vec![key])))
}

pub fn to_frame(rows: &[Row]) -> PolarsResult<DataFrame> {
    macro_rules! col {
        ($name:expr, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    DataFrame::new(
        rows.len(),
        vec![
            col!("experiment", |r: &Row| r.experiment.clone()),
            col!("job_id", |r: &Row| r.job_id.clone()),
            col!("model", |r: &Row| r.model.clone()),
            col!("dataset", |r: &Row| r.dataset.clone()),
            col!("split", |r: &Row| r.split.clone()),
            col!("sample_id", |r: &Row| r.sample_id.clone()),
            col!("method", |r: &Row| r.method.clone()),
            col!("label", |r: &Row| r.label.clone()),
            col!("params", |r: &Row| r.params.clone()),
            col!("layer", |r: &Row| r.layer.clone()),
            col!("beta", |r: &Row| r.beta),
            col!("sigma", |r: &Row| r.sigma),
            col!("var", |r: &Row| r.var),
            col!("modality", |r: &Row| r.modality.clone()),
            col!("metric", |r: &Row| r.metric.clone()),
            col!("metric_variant", |r: &Row| r.metric_variant.clone()),
            col!("step", |r: &Row| r.step),
            col!("repeat", |r: &Row| r.repeat),
            col!("seed", |r: &Row| r.seed),
            col!("split_seed", |r: &Row| r.split_seed),
            col!("value", |r: &Row| r.value),
            col!("error", |r: &Row| r.error.clone()),
            col!("wall_ms", |r: &Row| r.wall_ms),
            col!("device", |r: &Row| r.device.clone()),
            col!("threads", |r: &Row| r.threads),
            col!("git_revision", |r: &Row| r.git_revision.clone()),
        ],
    )
}

/// Writes one job's rows as `results/<job_id>.parquet`, atomically.
pub fn write_part(dir: &RunDir, job_id: &str, rows: &[Row]) -> PolarsResult<()> {
    std::fs::create_dir_all(dir.results())?;
    let mut df = to_frame(rows)?;
    let tmp = temp_beside(&dir.part(job_id));
    {
        let mut f = std::fs::File::create(&tmp)?;
        compatible_writer(&mut f, &df).finish(&mut df)?;
        // On disk before the rename makes it visible (a crash leaves no empty part).
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.part(job_id))?;
    Ok(())
}

/// Every finished part under `dirs` (temp files ignored), concatenated and sorted by
/// (job_id, sample_id, metric, metric_variant, modality).
pub fn read_all(dirs: &[PathBuf]) -> PolarsResult<DataFrame> {
    let mut frames = vec![];
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(RunDir::new(d).results()) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        paths.sort();
        for p in paths {
            frames.push(conform(
                ParquetReader::new(std::fs::File::open(&p)?).finish()?,
            )?);
        }
    }
    let Some(first) = frames.first().cloned() else {
        return to_frame(&[]);
    };
    let mut df = first;
    for f in frames.iter().skip(1) {
        df.vstack_mut(f)?;
    }
    df = df.sort(
        [
            "job_id",
            "sample_id",
            "modality",
            "metric",
            "metric_variant",
            "step",
        ],
        SortMultipleOptions::default().with_nulls_last(true),
    )?;
    Ok(df)
}

/// A part written before the `label` column and the string `layer` column, in today's schema
/// (label = method; layer as text), so that old and new parts of one folder read together.
fn conform(mut df: DataFrame) -> PolarsResult<DataFrame> {
    if df.column("label").is_err() {
        let label = df.column("method")?.clone().with_name("label".into());
        let at = df.get_column_index("method").map_or(df.width(), |i| i + 1);
        df.insert_column(at, label)?;
    }
    if df.column("layer")?.dtype() != &DataType::String {
        let layer = df.column("layer")?.cast(&DataType::String)?;
        df.with_column(layer)?;
    }
    Ok(df)
}

/// The parts of the experiment's current jobs only: after the TOML changed, parts of jobs that
/// no longer exist stay on disk (a rerun may need them back) but are not reported. Returns the
/// frame and the number of rows left out.
pub fn read_current(out: &Path) -> PolarsResult<(DataFrame, usize)> {
    let df = read_all(&[out.to_path_buf()])?;
    let Some(jobs) = RunDir::new(out)
        .read_jobs()
        .map_err(|e| polars_err!(ComputeError: "{e}"))?
    else {
        return Ok((df, 0));
    };
    let ids: std::collections::HashSet<String> = jobs.into_iter().map(|j| j.id).collect();
    let mask: BooleanChunked = df
        .column("job_id")?
        .str()?
        .iter()
        .map(|j| Some(j.is_some_and(|j| ids.contains(j))))
        .collect();
    let kept = df.filter(&mask)?;
    let left_out = df.height() - kept.height();
    Ok((kept, left_out))
}

/// `m2ib merge`: all parts of the given run directories into one Parquet file.
/// Fails, writing nothing, when the folders hold no rows.
pub fn merge(dirs: &[PathBuf], out_file: &Path) -> PolarsResult<usize> {
    let mut df = read_all(dirs)?;
    if df.height() == 0 {
        return Err(PolarsError::NoData(
            format!("no result rows in {dirs:?}: nothing merged").into(),
        ));
    }
    let tmp = temp_beside(out_file);
    compatible_writer(std::fs::File::create(&tmp)?, &df).finish(&mut df)?;
    std::fs::rename(&tmp, out_file)?;
    Ok(df.height())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_the_old_schema_read_beside_new_ones() {
        let new = to_frame(&[Row {
            method: "m2ib".into(),
            label: "m2ib-tuned".into(),
            layer: Some("embeddings".into()),
            ..Row::default()
        }])
        .unwrap();
        // Before labels: no `label` column and an integer `layer`.
        let mut old = to_frame(&[Row {
            method: "gradcam".into(),
            ..Row::default()
        }])
        .unwrap()
        .drop("label")
        .unwrap();
        old.with_column(Column::new("layer".into(), [Some(-1i64)]))
            .unwrap();
        let mut df = conform(old).unwrap();
        df.vstack_mut(&conform(new).unwrap()).unwrap();
        let labels: Vec<Option<&str>> = df.column("label").unwrap().str().unwrap().iter().collect();
        assert_eq!(labels, [Some("gradcam"), Some("m2ib-tuned")]);
        let layers: Vec<Option<&str>> = df.column("layer").unwrap().str().unwrap().iter().collect();
        assert_eq!(layers, [Some("-1"), Some("embeddings")]);
    }
}
