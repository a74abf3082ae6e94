//! A checkpoint directory as a whole: model, tokenizer and image preprocessor, the unit that
//! every command loads.
use crate::error::Result;
use crate::model::ClipModel;
use crate::preprocess::{decode_image, Geometry, Preprocessor, Rgb8};
use crate::tokenizer::Encoded;
use crate::tokenizer::{ClipTokenizer, Pooling};
use crate::TextInput;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// One image-caption pair ready to explain, keeping the image as given and where the model's
/// crop sits in it (figures and maps at the original size need both).
pub struct Pair {
    pub original: Rgb8,
    pub geometry: Geometry,
    /// [3, H, W] on the CPU.
    pub pixels: Tensor,
    pub encoded: Encoded,
}

pub struct Checkpoint {
    pub dir: PathBuf,
    pub model: ClipModel,
    pub tokenizer: ClipTokenizer,
    pub preprocessor: Preprocessor,
    pub pooling: Pooling,
}

impl Checkpoint {
    /// Loads and applies model options (e.g. the `cxr-repair-compat` preset).
    pub fn load_with(dir: &Path, device: Device, options: &crate::ModelOptions) -> Result<Self> {
        let mut ck = Checkpoint::load(dir, device)?;
        options.apply(&mut ck)?;
        Ok(ck)
    }

    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let model = ClipModel::load(dir, device)?;
        let tokenizer =
            ClipTokenizer::from_file(&dir.join("tokenizer.json"), &model.config.text_config)?;
        let default = Preprocessor::for_size(model.config.vision_config.image_size as usize);
        let pp = dir.join("preprocessor_config.json");
        let preprocessor = if pp.exists() {
            Preprocessor::from_file(&pp, &default)?
        } else {
            default
        };
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            preprocessor,
            pooling: Pooling::Eos,
        })
    }

    /// Decoded, preprocessed pixels [1, 3, H, W] on the model's device.
    pub fn image(&self, path: &Path) -> Result<Tensor> {
        let img = decode_image(path)?;
        Ok(self
            .preprocessor
            .preprocess(&img)
            .unsqueeze(0)
            .to_device(self.model.device()))
    }

    /// One caption as a batch of one on the model's device.
    pub fn caption(&self, caption: &str) -> Result<TextInput> {
        let enc = self.tokenizer.encode(caption)?;
        Ok(self
            .tokenizer
            .batch(&[enc], self.pooling)
            .to_device(self.model.device()))
    }

    /// A decoded image and its caption, preprocessed as every command does.
    pub fn pair(&self, original: Rgb8, caption: &str) -> Result<Pair> {
        let pixels = self
            .preprocessor
            .to_tensor(&self.preprocessor.resize_crop(&original));
        let geometry = self.preprocessor.geometry(original.width, original.height);
        let encoded = self.tokenizer.encode(caption)?;
        Ok(Pair {
            original,
            geometry,
            pixels,
            encoded,
        })
    }
}
