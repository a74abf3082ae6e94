//! m2ib-clip: a CLIP dual encoder in tch that loads Hugging Face checkpoint directories and
//! matches `transformers.CLIPModel` (proven by golden files under `tests/golden`). Mirrors
//! `src/transformers/models/clip/modeling_clip.py` (transformers 5.x, eager attention).

mod checkpoint;
pub mod config;
pub mod devices;
pub mod error;
pub mod layers;
pub mod model;
pub mod options;
pub mod preprocess;
pub mod randomize;
pub mod rng;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod vision;

pub use checkpoint::{Checkpoint, Pair};
pub use config::{resolve_layer, Activation, ClipConfig, Layer};
pub use error::{ClipError, Result};
pub use layers::{Trace, TraceRequest};
pub use model::{cosine, l2_normalize, ClipModel};
pub use options::ModelOptions;
pub use preprocess::{decode_image, Preprocessor, Rgb8};
pub use text::TextInput;
pub use tokenizer::{ClipTokenizer, Encoded, Pooling};
