//! Vision tower, mirroring HF `CLIPVisionTransformer`: conv patch embedding (no bias) + class
//! token + positions, `pre_layrnorm` (sic), encoder, `post_layernorm` on the class token.
use crate::config::VisionConfig;
use crate::layers::{Encoder, LayerNorm, Trace, TraceRequest};
use tch::nn::{Init, Module, Path};
use tch::Tensor;

pub struct VisionTower {
    pub config: VisionConfig,
    class_embedding: Tensor,
    patch_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    pub encoder: Encoder,
    post_layernorm: LayerNorm,
}

impl VisionTower {
    pub fn new(p: &Path, c: &VisionConfig) -> Self {
        let d = c.hidden_size;
        let e = p / "embeddings";
        let positions = c.grid() * c.grid() + 1;
        VisionTower {
            class_embedding: e.set_group(crate::layers::NO_DECAY).var(
                "class_embedding",
                &[d],
                Init::Const(0.0),
            ),
            patch_embedding: (&e / "patch_embedding").var(
                "weight",
                &[d, c.num_channels, c.patch_size, c.patch_size],
                Init::Const(0.0),
            ),
            position_embedding: (&e / "position_embedding").var(
                "weight",
                &[positions, d],
                Init::Const(0.0),
            ),
            pre_layrnorm: LayerNorm::new(&(p / "pre_layrnorm"), d, c.layer_norm_eps),
            encoder: Encoder::new(&(p / "encoder"), &c.encoder_shape()),
            post_layernorm: LayerNorm::new(&(p / "post_layernorm"), d, c.layer_norm_eps),
            config: c.clone(),
        }
    }

    pub fn depth(&self) -> usize {
        self.encoder.depth()
    }

    /// Encoder input (HF `hidden_states[0]`): [B, 1 + grid^2, D].
    pub fn embed(&self, pixels: &Tensor) -> Tensor {
        let p = self.config.patch_size;
        let patches = pixels
            .conv2d(
                &self.patch_embedding,
                None::<Tensor>,
                [p, p],
                [0, 0],
                [1, 1],
                1,
            )
            .flatten(2, -1)
            .transpose(1, 2);
        let b = patches.size()[0];
        let d = self.config.hidden_size;
        let cls = self
            .class_embedding
            .view([1, 1, d])
            .expand([b, 1, d], false);
        let h = Tensor::cat(&[cls, patches], 1) + &self.position_embedding;
        self.pre_layrnorm.forward(&h)
    }

    /// Hidden states after block `layer` (0-based, already resolved).
    pub fn prefix(&self, pixels: &Tensor, layer: usize) -> Tensor {
        self.first_blocks(pixels, layer + 1)
    }

    /// Hidden states after the first `n` blocks (0: the encoder input).
    pub fn first_blocks(&self, pixels: &Tensor, n: usize) -> Tensor {
        let h = self.embed(pixels);
        self.encoder.forward(h, 0..n, None)
    }

    /// Pooled output (post-LN class token, before projection) from the hidden states after `layer`.
    pub fn suffix(&self, h: &Tensor, layer: usize) -> Tensor {
        self.head(h, layer + 1)
    }

    /// Pooled output of the full forward.
    pub fn forward(&self, pixels: &Tensor) -> Tensor {
        self.head(&self.embed(pixels), 0)
    }

    /// Blocks `from..` then `post_layernorm` of the class token; the last block is computed for
    /// the class token only.
    pub fn head(&self, h: &Tensor, from: usize) -> Tensor {
        let cls = Tensor::zeros([h.size()[0]], (tch::Kind::Int64, h.device()));
        self.post_layernorm.forward(&self.encoder.forward_pooled(
            h.shallow_clone(),
            from,
            None,
            &cls,
        ))
    }

    pub fn pool(&self, h: &Tensor) -> Tensor {
        self.post_layernorm.forward(&h.select(1, 0))
    }

    /// Full forward recording hidden states and/or attention probabilities.
    pub fn trace(&self, pixels: &Tensor, req: TraceRequest) -> (Tensor, Trace) {
        let mut trace = Trace::default();
        let h = self.embed(pixels);
        if req.hidden_states {
            trace.hidden_states.push(h.shallow_clone());
        }
        let h = self
            .encoder
            .forward_traced(h, 0..self.depth(), None, req, Some(&mut trace));
        (self.pool(&h), trace)
    }
}
