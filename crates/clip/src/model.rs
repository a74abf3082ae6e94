//! The dual encoder: composes the two towers and the projections (HF `CLIPModel`), loads a
//! checkpoint directory, and exposes the split forward `prefix`/`suffix` that every attribution
//! method uses instead of patching the model.
use crate::config::{ClipConfig, Layer};
use crate::error::{ClipError, Result};
use crate::layers::{Linear, Trace, TraceRequest};
use crate::text::{TextInput, TextTower};
use crate::vision::VisionTower;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::{Init, Module, VarStore};
use tch::{Device, Kind, Tensor};

pub struct ClipModel {
    pub config: ClipConfig,
    /// Owns every parameter under its HF name (`vision_model.encoder.layers.9.mlp.fc1.weight`).
    pub vs: VarStore,
    pub vision: VisionTower,
    pub text: TextTower,
    visual_projection: Linear,
    text_projection: Linear,
    pub logit_scale: Tensor,
    /// Applies `text_projection` a second time (the official OpenAI wrapper's bug, REFERENCE §1.10).
    pub text_projection_twice: bool,
}

impl ClipModel {
    /// A model with the config's shapes and unset (constant) weights; `load` fills them.
    pub fn new(config: ClipConfig, device: Device) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let vision = VisionTower::new(&(&root / "vision_model"), &config.vision_config);
        let text = TextTower::new(&(&root / "text_model"), &config.text_config);
        let visual_projection = Linear::new(
            &(&root / "visual_projection"),
            config.vision_config.hidden_size,
            config.projection_dim,
            false,
        );
        let text_projection = Linear::new(
            &(&root / "text_projection"),
            config.text_config.hidden_size,
            config.projection_dim,
            false,
        );
        let logit_scale = root.set_group(crate::layers::LOGIT_SCALE_GROUP).var(
            "logit_scale",
            &[],
            Init::Const(config.logit_scale_init_value),
        );
        ClipModel {
            config,
            vs,
            vision,
            text,
            visual_projection,
            text_projection,
            logit_scale,
            text_projection_twice: false,
        }
    }

    /// An independent copy on the same device, frozen (fine-tuning and randomisation change
    /// weights in place, so they work on a copy and leave the worker's model intact).
    pub fn try_clone(&self) -> Result<Self> {
        let mut m = ClipModel::new(self.config.clone(), self.device());
        m.vs.copy(&self.vs)?;
        m.vs.freeze();
        // The model options `new` does not know (presets such as cxr-repair-compat).
        m.text_projection_twice = self.text_projection_twice;
        m.text.causal = self.text.causal;
        Ok(m)
    }

    /// Loads `config.json` and `model.safetensors` from an HF checkpoint directory. Weights are
    /// frozen (no gradients); call `vs.unfreeze()` to train.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let config = ClipConfig::from_file(&dir.join("config.json"))?;
        let mut model = ClipModel::new(config, device);
        model.load_weights(&dir.join("model.safetensors"))?;
        model.vs.freeze();
        Ok(model)
    }

    /// Copies every parameter from a safetensors file, checking names, shapes and finiteness.
    /// Extra tensors in the file are ignored.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(ClipError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let file: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| ClipError::Weights {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .into_iter()
            .collect();
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, var) in vars {
            let expected = var.size();
            let Some(src) = file.get(&name) else {
                return Err(ClipError::MissingTensor {
                    path: path.to_path_buf(),
                    name,
                    expected,
                });
            };
            if src.size() != expected {
                return Err(ClipError::ShapeMismatch {
                    path: path.to_path_buf(),
                    name,
                    expected,
                    found: src.size(),
                });
            }
            let src = src.to_kind(Kind::Float);
            if !bool::try_from(src.isfinite().all())? {
                return Err(ClipError::NonFiniteTensor {
                    path: path.to_path_buf(),
                    name,
                });
            }
            let mut var = var;
            tch::no_grad(|| var.copy_(&src));
        }
        Ok(())
    }

    /// Writes every parameter under its HF name.
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let cpu: Vec<(String, Tensor)> = vars
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu)))
            .collect();
        Tensor::write_safetensors(&cpu, path).map_err(|e| ClipError::Weights {
            path: PathBuf::from(path),
            message: e.to_string(),
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn vision_depth(&self) -> usize {
        self.vision.depth()
    }

    pub fn text_depth(&self) -> usize {
        self.text.depth()
    }

    /// Hidden states at `layer` (a block's output, negative counts from the end, or the
    /// embeddings). [B, T, D].
    pub fn image_prefix(&self, pixels: &Tensor, layer: impl Into<Layer>) -> Result<Tensor> {
        let n = layer.into().blocks_before(self.vision.depth())?;
        Ok(self.vision.first_blocks(pixels, n))
    }

    /// Projected image embedding from the hidden states at `layer`. [B, P].
    pub fn image_suffix(&self, h: &Tensor, layer: impl Into<Layer>) -> Result<Tensor> {
        let n = layer.into().blocks_before(self.vision.depth())?;
        Ok(self.project_image(&self.vision.head(h, n)))
    }

    pub fn text_prefix(&self, input: &TextInput, layer: impl Into<Layer>) -> Result<Tensor> {
        let n = layer.into().blocks_before(self.text.depth())?;
        Ok(self
            .text
            .first_blocks(self.text.embed(&input.ids), input, n))
    }

    pub fn text_suffix(
        &self,
        h: &Tensor,
        layer: impl Into<Layer>,
        input: &TextInput,
    ) -> Result<Tensor> {
        let n = layer.into().blocks_before(self.text.depth())?;
        Ok(self.project_text(&self.text.head(h, n, input)))
    }

    pub fn project_image(&self, pooled: &Tensor) -> Tensor {
        self.visual_projection.forward(pooled)
    }

    pub fn project_text(&self, pooled: &Tensor) -> Tensor {
        let e = self.text_projection.forward(pooled);
        if self.text_projection_twice {
            self.text_projection.forward(&e)
        } else {
            e
        }
    }

    /// Projected, unnormalised image embeddings (HF `get_image_features`).
    pub fn image_features(&self, pixels: &Tensor) -> Tensor {
        self.project_image(&self.vision.forward(pixels))
    }

    /// Projected, unnormalised text embeddings (HF `get_text_features`).
    pub fn text_features(&self, input: &TextInput) -> Tensor {
        self.project_text(&self.text.forward(input))
    }

    pub fn image_trace(&self, pixels: &Tensor, req: TraceRequest) -> (Tensor, Trace) {
        let (pooled, trace) = self.vision.trace(pixels, req);
        (self.project_image(&pooled), trace)
    }

    pub fn text_trace(&self, input: &TextInput, req: TraceRequest) -> (Tensor, Trace) {
        let (pooled, trace) = self.text.trace(input, req);
        (self.project_text(&pooled), trace)
    }

    /// `text_trace` with the token embeddings requiring gradients, so that with frozen weights
    /// the recorded attention maps are still part of a differentiable graph.
    pub fn text_trace_differentiable(
        &self,
        input: &TextInput,
        req: TraceRequest,
    ) -> (Tensor, Trace) {
        let tok = self
            .text
            .token_embeds(&input.ids)
            .detach()
            .set_requires_grad(true);
        let (pooled, trace) = self.text.trace_from_token_embeds(&tok, input, req);
        (self.project_text(&pooled), trace)
    }

    /// `logits_per_image` [Bi, Bt] = exp(logit_scale) * normalised image @ normalised text^T.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Tensor {
        let i = l2_normalize(image_embeds);
        let t = l2_normalize(text_embeds);
        i.matmul(&t.transpose(0, 1)) * self.logit_scale.exp()
    }
}

pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [-1], true)
}

/// Cosine similarity along the last dimension: the ATen op behind torch's
/// `CosineSimilarity(dim=-1, eps)`, so it matches the reference bit for bit.
pub fn cosine(a: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    Tensor::cosine_similarity(a, b, -1, eps)
}
