//! Errors of the model crate. Each names the file and the item a user has to fix.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
    },
    #[error("{path}: tensor `{name}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{path}: tensor `{name}` contains NaN or infinite values")]
    NonFiniteTensor { path: PathBuf, name: String },
    #[error("{path}: not a readable safetensors file: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("{path}: not a tokenizer.json the `tokenizers` crate can load: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    #[error("layer {layer} is out of range for a tower of depth {depth} (allowed {min}..={max})")]
    LayerOutOfRange {
        layer: i64,
        depth: usize,
        min: i64,
        max: i64,
    },
    #[error("caption is empty")]
    EmptyCaption,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, ClipError>;
