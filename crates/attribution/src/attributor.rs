//! The common call: a batch of image-caption pairs in, per sample a raw image map at the model's
//! input size and raw scores for every token position out, plus a content mask and the method's
//! resolved parameters.
use m2ib_clip::tokenizer::text_input;
use m2ib_clip::{Checkpoint, ClipError, ClipModel, Encoded, Pooling, TextInput};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Image = 0,
    Text = 1,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Text => "text",
        }
    }
}

/// Image-caption pairs ready for a model: pixels and padded ids on the model's device.
pub struct Batch {
    /// [S, 3, H, W].
    pub pixels: Tensor,
    /// [S, L] padded.
    pub text: TextInput,
    /// Real token count of each caption.
    pub lengths: Vec<usize>,
    /// Per sample and real position: false for start, end and padding tokens.
    pub content: Vec<Vec<bool>>,
    /// Per sample: the seed every random draw of a method derives from (runner: DESIGN.md "Seeds").
    pub seeds: Vec<u64>,
    /// The id that replaces a removed token (default: the tokenizer's pad token).
    pub text_mask_id: i64,
}

impl Batch {
    /// `pixels` are [3, H, W] each (CPU or device); captions as tokenized by `ck.tokenizer`.
    pub fn new(ck: &Checkpoint, pixels: &[Tensor], captions: &[Encoded], seeds: Vec<u64>) -> Batch {
        let rows: Vec<Vec<i64>> = captions.iter().map(|e| e.ids.clone()).collect();
        let t = &ck.tokenizer;
        Batch::from_ids(
            ck.model.device(),
            pixels,
            &rows,
            [t.start_id, Some(t.end_id)],
            t.pad_id,
            ck.pooling,
            seeds,
        )
    }

    /// From raw id rows; `special` ids are excluded from the content mask, pooling at the end id.
    pub fn from_ids(
        device: Device,
        pixels: &[Tensor],
        rows: &[Vec<i64>],
        special: [Option<i64>; 2],
        pad_id: i64,
        pooling: Pooling,
        seeds: Vec<u64>,
    ) -> Batch {
        assert_eq!(pixels.len(), rows.len());
        assert_eq!(pixels.len(), seeds.len());
        let end_id = special[1].expect("an end id");
        let text = text_input(rows, pad_id, end_id, pooling).to_device(device);
        let content = rows
            .iter()
            .map(|r| crate::perturb::content_of(r, special[0], end_id))
            .collect();
        Batch {
            pixels: Tensor::stack(pixels, 0).to_device(device),
            text,
            lengths: rows.iter().map(Vec::len).collect(),
            content,
            seeds,
            text_mask_id: pad_id,
        }
    }

    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// Sample `i` alone (text trimmed to its own length).
    pub fn select(&self, i: usize) -> Batch {
        let l = self.lengths[i] as i64;
        let row = |t: &Tensor| t.narrow(0, i as i64, 1).narrow(1, 0, l);
        Batch {
            pixels: self.pixels.narrow(0, i as i64, 1),
            text: TextInput {
                ids: row(&self.text.ids),
                attention_mask: row(&self.text.attention_mask),
                pool_index: self.text.pool_index.narrow(0, i as i64, 1),
            },
            lengths: vec![self.lengths[i]],
            content: vec![self.content[i].clone()],
            seeds: vec![self.seeds[i]],
            text_mask_id: self.text_mask_id,
        }
    }

    /// The same pairs with other seeds (a method's noise floor).
    pub fn with_seeds(&self, seeds: Vec<u64>) -> Batch {
        assert_eq!(seeds.len(), self.len());
        Batch {
            pixels: self.pixels.shallow_clone(),
            text: TextInput {
                ids: self.text.ids.shallow_clone(),
                attention_mask: self.text.attention_mask.shallow_clone(),
                pool_index: self.text.pool_index.shallow_clone(),
            },
            lengths: self.lengths.clone(),
            content: self.content.clone(),
            seeds,
            text_mask_id: self.text_mask_id,
        }
    }

    /// Splits batched results into one `Attribution` per sample: `maps` [S, H, W], `text` [S, L]
    /// (padded; each sample keeps its real length).
    pub fn split(
        &self,
        maps: &Tensor,
        text: &Tensor,
        params: &Value,
    ) -> Result<Vec<Attribution>, AttributionError> {
        let maps = maps.detach().to_device(Device::Cpu);
        let text = text.detach().to_device(Device::Cpu);
        (0..self.len())
            .map(|i| {
                Ok(Attribution {
                    image: maps.get(i as i64),
                    text: Vec::<f32>::try_from(text.get(i as i64).narrow(
                        0,
                        0,
                        self.lengths[i] as i64,
                    ))?,
                    content: self.content[i].clone(),
                    params: params.clone(),
                })
            })
            .collect()
    }

    /// [S, L] float mask of real (non-padding) positions.
    pub fn valid_mask(&self) -> Tensor {
        self.text.attention_mask.to_kind(Kind::Float)
    }

    pub fn device(&self) -> Device {
        self.pixels.device()
    }
}

/// One sample's explanation.
#[derive(Debug)]
pub struct Attribution {
    /// Raw image map [H, W] at the model's input size, on the CPU. Unnormalised, possibly signed.
    pub image: Tensor,
    /// Raw score per real token position (start and end included).
    pub text: Vec<f32>,
    /// false for start, end and padding tokens.
    pub content: Vec<bool>,
    /// The method's resolved parameters, for the results.
    pub params: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error("degenerate_map: {modality} map {reason}")]
    DegenerateMap {
        modality: &'static str,
        reason: String,
    },
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter { name: String, message: String },
    #[error(transparent)]
    Model(#[from] ClipError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// Every method answers the same call with the same shapes; knobs live in the implementor.
pub trait Attributor: Send + Sync {
    /// Registry name (`m2ib`, `saliency`, ...).
    fn name(&self) -> &'static str;
    /// Resolved parameters, recorded with every result.
    fn params(&self) -> Value;
    /// One `Attribution` per sample of the batch, in order.
    fn attribute(
        &self,
        model: &ClipModel,
        batch: &Batch,
    ) -> Result<Vec<Attribution>, AttributionError>;
    /// Refuses settings a model of these tower depths cannot run (before any work).
    fn check_depths(&self, vision_depth: usize, text_depth: usize) -> Result<(), AttributionError> {
        let _ = (vision_depth, text_depth);
        Ok(())
    }
}
