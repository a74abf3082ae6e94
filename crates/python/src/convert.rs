//! Python values in and out: images (a path or an HxWx3 uint8 array), settings (a dict of an
//! experiment's flat keys), JSON values and arrays back to Python.
use crate::errors::invalid;
use m2ib_clip::{decode_image, Rgb8};
use numpy::{PyArrayMethods, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use std::path::PathBuf;

/// An image as given: decoded later, without the GIL, by the same decoder as the CLI.
pub enum Image {
    Path(PathBuf),
    Pixels(Rgb8),
}

impl Image {
    pub fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Image> {
        if let Ok(a) = obj.downcast::<numpy::PyArray3<u8>>() {
            let a: PyReadonlyArray3<u8> = a.readonly();
            let s = a.shape();
            if s[2] != 3 {
                return Err(invalid(format!(
                    "image array of shape {s:?}: expected height x width x 3 (RGB, uint8)"
                )));
            }
            let data: Vec<u8> = a.as_array().iter().copied().collect();
            return Ok(Image::Pixels(Rgb8::new(s[1], s[0], data)));
        }
        if let Ok(a) = obj.downcast::<numpy::PyUntypedArray>() {
            return Err(invalid(format!(
                "image array of shape {:?} and dtype {}: expected height x width x 3 uint8",
                a.shape(),
                a.dtype()
            )));
        }
        obj.extract::<PathBuf>().map(Image::Path).map_err(|_| {
            invalid(format!(
                "image {}: expected a path, a PIL image or an HxWx3 uint8 array",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })
    }

    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            Image::Path(p) => Some(p),
            Image::Pixels(_) => None,
        }
    }

    /// How the CLI names the pair's image in messages.
    pub fn label(&self) -> String {
        match self {
            Image::Path(p) => p.display().to_string(),
            Image::Pixels(r) => format!("{}x{} array", r.height, r.width),
        }
    }

    pub fn decode(&self) -> anyhow::Result<Rgb8> {
        Ok(match self {
            Image::Path(p) => decode_image(p)?,
            Image::Pixels(r) => r.clone(),
        })
    }
}

/// A dict of flat keys (`layer=8`, `beta=0.1`, `text_layer="embeddings"`) as the TOML table an
/// experiment's `[methods.<name>]` would hold.
pub fn settings(params: Option<&Bound<'_, PyDict>>) -> PyResult<toml::Table> {
    let mut t = toml::Table::new();
    let Some(params) = params else {
        return Ok(t);
    };
    for (k, v) in params.iter() {
        let key: String = k.extract()?;
        let value = if v.is_instance_of::<PyBool>() {
            toml::Value::Boolean(v.extract()?)
        } else if v.is_instance_of::<PyInt>() {
            toml::Value::Integer(v.extract()?)
        } else if v.is_instance_of::<PyFloat>() {
            toml::Value::Float(v.extract()?)
        } else if v.is_instance_of::<PyString>() {
            toml::Value::String(v.extract()?)
        } else if v.hasattr("dtype")?
            && v.getattr("dtype")?.getattr("kind")?.extract::<String>()? == "b"
        {
            // numpy.bool_
            toml::Value::Boolean(v.call_method0("__bool__")?.extract()?)
        } else if let Ok(i) = v.call_method0("__index__").and_then(|i| i.extract::<i64>()) {
            // numpy integers (a `for layer in np.arange(...)` loop).
            toml::Value::Integer(i)
        } else if let Ok(f) = v.extract::<f64>() {
            // numpy floats and the like.
            toml::Value::Float(f)
        } else {
            return Err(invalid(format!(
                "setting `{key}`: a {} is not a number, a string or a bool",
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            )));
        };
        t.insert(key, value);
    }
    Ok(t)
}

/// A JSON value as the Python object `json.loads` would give.
pub fn json<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}
