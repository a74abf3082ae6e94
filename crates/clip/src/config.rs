//! `config.json` of a Hugging Face `CLIPModel` checkpoint (transformers `CLIPConfig`), with HF's
//! defaults for absent keys so that hand-written configs load too.
use crate::error::{ClipError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

impl tch::nn::Module for Activation {
    fn forward(&self, x: &tch::Tensor) -> tch::Tensor {
        match self {
            // x * sigmoid(1.702 x), OpenAI's approximation (HF `QuickGELUActivation`).
            Activation::QuickGelu => x * (x * 1.702).sigmoid(),
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
        }
    }
}

fn quick_gelu() -> Activation {
    Activation::QuickGelu
}
fn eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: i64,
    #[serde(default = "d_text_hidden")]
    pub hidden_size: i64,
    #[serde(default = "d_text_mlp")]
    pub intermediate_size: i64,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "d_text_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: i64,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub eos_token_id: Option<i64>,
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "d_vision_hidden")]
    pub hidden_size: i64,
    #[serde(default = "d_vision_mlp")]
    pub intermediate_size: i64,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "d_vision_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "d_channels")]
    pub num_channels: i64,
    #[serde(default = "d_image")]
    pub image_size: i64,
    #[serde(default = "d_patch")]
    pub patch_size: i64,
    #[serde(default = "quick_gelu")]
    pub hidden_act: Activation,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    #[serde(default = "d_projection")]
    pub projection_dim: i64,
    #[serde(default = "d_logit_scale")]
    pub logit_scale_init_value: f64,
}

fn d_vocab() -> i64 {
    49408
}
fn d_text_hidden() -> i64 {
    512
}
fn d_text_mlp() -> i64 {
    2048
}
fn d_layers() -> i64 {
    12
}
fn d_text_heads() -> i64 {
    8
}
fn d_positions() -> i64 {
    77
}
fn d_vision_hidden() -> i64 {
    768
}
fn d_vision_mlp() -> i64 {
    3072
}
fn d_vision_heads() -> i64 {
    12
}
fn d_channels() -> i64 {
    3
}
fn d_image() -> i64 {
    224
}
fn d_patch() -> i64 {
    32
}
fn d_projection() -> i64 {
    512
}
fn d_logit_scale() -> f64 {
    2.6592
}

impl ClipConfig {
    /// The geometry of `openai/clip-vit-base-patch32` (HF's defaults).
    pub fn vit_b32() -> Self {
        serde_json::from_str(r#"{"text_config": {}, "vision_config": {}}"#).expect("defaults")
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ClipError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: ClipConfig = serde_json::from_str(&text).map_err(|e| ClipError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| ClipError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        for (name, value) in [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.vocab_size", t.vocab_size),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("projection_dim", self.projection_dim),
        ] {
            if value <= 0 {
                return Err(format!("`{name}` must be positive, got {value}"));
            }
        }
        if t.hidden_size % t.num_attention_heads != 0 {
            return Err(format!(
                "`text_config.hidden_size` {} is not divisible by `num_attention_heads` {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if v.hidden_size % v.num_attention_heads != 0 {
            return Err(format!(
                "`vision_config.hidden_size` {} is not divisible by `num_attention_heads` {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if v.image_size % v.patch_size != 0 {
            return Err(format!(
                "`vision_config.image_size` {} is not a multiple of `patch_size` {}",
                v.image_size, v.patch_size
            ));
        }
        Ok(())
    }
}

/// What a tower's encoder blocks are made of (the two towers' configs name it alike).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderShape {
    pub depth: i64,
    pub dim: i64,
    pub mlp: i64,
    pub heads: i64,
    pub act: Activation,
    pub eps: f64,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    pub fn encoder_shape(&self) -> EncoderShape {
        EncoderShape {
            depth: self.num_hidden_layers,
            dim: self.hidden_size,
            mlp: self.intermediate_size,
            heads: self.num_attention_heads,
            act: self.hidden_act,
            eps: self.layer_norm_eps,
        }
    }
}

impl TextConfig {
    pub fn encoder_shape(&self) -> EncoderShape {
        EncoderShape {
            depth: self.num_hidden_layers,
            dim: self.hidden_size,
            mlp: self.intermediate_size,
            heads: self.num_attention_heads,
            act: self.hidden_act,
            eps: self.layer_norm_eps,
        }
    }
}

/// Maps a possibly negative layer index (-1 = last) to 0-based, checking the range.
pub fn resolve_layer(layer: i64, depth: usize) -> Result<usize> {
    let d = depth as i64;
    let r = if layer < 0 { d + layer } else { layer };
    if r < 0 || r >= d {
        return Err(ClipError::LayerOutOfRange {
            layer,
            depth,
            min: -d,
            max: d - 1,
        });
    }
    Ok(r as usize)
}

/// Where a tower's hidden state is read: its encoder input (`embeddings`: token + position
/// embeddings for text, the input of the first block after `pre_layrnorm` for images; HF
/// `hidden_states[0]`) or the output of a block (0-based, negative counts from the end; HF
/// `hidden_states[i + 1]`). Written `"embeddings"` or an integer in TOML, JSON and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Embeddings,
    Block(i64),
}

pub const EMBEDDINGS: &str = "embeddings";

impl Layer {
    /// How many blocks run before this point (embeddings 0, block i: i + 1), checked against depth.
    pub fn blocks_before(self, depth: usize) -> Result<usize> {
        match self {
            Layer::Embeddings => Ok(0),
            Layer::Block(l) => Ok(resolve_layer(l, depth)? + 1),
        }
    }

    pub fn block(self) -> Option<i64> {
        match self {
            Layer::Embeddings => None,
            Layer::Block(l) => Some(l),
        }
    }
}

impl From<i64> for Layer {
    fn from(l: i64) -> Self {
        Layer::Block(l)
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Embeddings => f.write_str(EMBEDDINGS),
            Layer::Block(l) => write!(f, "{l}"),
        }
    }
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == EMBEDDINGS {
            return Ok(Layer::Embeddings);
        }
        s.parse::<i64>().map(Layer::Block).map_err(|_| {
            format!("`{s}` is not a layer: write a block index (0-based, negative from the end) or `{EMBEDDINGS}`")
        })
    }
}

impl Serialize for Layer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Layer::Embeddings => s.serialize_str(EMBEDDINGS),
            Layer::Block(l) => s.serialize_i64(*l),
        }
    }
}

impl<'de> Deserialize<'de> for Layer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Layer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(
                    f,
                    "a block index (integer, negative from the end) or \"{EMBEDDINGS}\""
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Layer, E> {
                Ok(Layer::Block(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Layer, E> {
                i64::try_from(v)
                    .map(Layer::Block)
                    .map_err(|_| E::custom(format!("layer {v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Layer, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_layers_count_from_the_end() {
        assert_eq!(resolve_layer(-1, 12).unwrap(), 11);
        assert_eq!(resolve_layer(-12, 12).unwrap(), 0);
        assert_eq!(resolve_layer(9, 12).unwrap(), 9);
        assert!(resolve_layer(12, 12).is_err());
        assert!(resolve_layer(-13, 12).is_err());
    }

    #[test]
    fn layers_read_and_write_as_an_integer_or_embeddings() {
        let l: Vec<Layer> = serde_json::from_str(r#"[3, -1, "embeddings"]"#).unwrap();
        assert_eq!(l, [Layer::Block(3), Layer::Block(-1), Layer::Embeddings]);
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"[3,-1,"embeddings"]"#);
        assert!(serde_json::from_str::<Layer>(r#""embedding""#).is_err());
        assert_eq!("-2".parse::<Layer>().unwrap(), Layer::Block(-2));
        assert_eq!(Layer::Embeddings.blocks_before(4).unwrap(), 0);
        assert_eq!(Layer::Block(0).blocks_before(4).unwrap(), 1);
        assert_eq!(Layer::Block(-1).blocks_before(4).unwrap(), 4);
        assert!(Layer::Block(4).blocks_before(4).is_err());
    }

    #[test]
    fn empty_config_takes_hf_defaults() {
        let cfg: ClipConfig =
            serde_json::from_str(r#"{"text_config": {}, "vision_config": {}}"#).unwrap();
        assert_eq!(cfg.vision_config.grid(), 7);
        assert_eq!(cfg.text_config.hidden_act, Activation::QuickGelu);
        assert_eq!(cfg.projection_dim, 512);
    }
}
