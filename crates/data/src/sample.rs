//! One image-caption pair with its ground truth, as every reader yields it.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A box `[x0, y0, x1, y1]` in original image pixels (x1, y1 exclusive).
pub type BoxXyxy = [f64; 4];

#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    Path(PathBuf),
    /// Decoded in memory (the shapes benchmark): RGB, row-major.
    Rgb {
        width: usize,
        height: usize,
        data: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub id: String,
    pub image: ImageSource,
    pub caption: String,
    pub boxes: Vec<BoxXyxy>,
    /// Reader-specific fields (MS-CXR label, split, ...), and for shapes the present-object words.
    pub extra: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleError {
    pub file: String,
    pub line: Option<usize>,
    pub sample: Option<String>,
    pub reason: String,
}
