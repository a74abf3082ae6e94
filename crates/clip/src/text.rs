//! Text tower, mirroring HF `CLIPTextTransformer`: token + position embeddings, causal mask
//! (plus key padding), encoder, `final_layer_norm` on all positions, then pooling at an explicit
//! per-row `pool_index` (DESIGN.md "Model": perturbations never move it implicitly).
use crate::config::TextConfig;
use crate::layers::{Encoder, LayerNorm, Trace, TraceRequest};
use tch::nn::{Init, Module, Path};
use tch::{Kind, Tensor};

/// A padded batch of token ids with what the tower needs besides them.
pub struct TextInput {
    /// [B, L] int64.
    pub ids: Tensor,
    /// [B, L] int64, 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// [B] int64, the position whose final state is projected.
    pub pool_index: Tensor,
}

impl TextInput {
    pub fn to_device(&self, device: tch::Device) -> TextInput {
        TextInput {
            ids: self.ids.to_device(device),
            attention_mask: self.attention_mask.to_device(device),
            pool_index: self.pool_index.to_device(device),
        }
    }

    /// The same rows repeated `n` times each (row-major: row 0 n times, then row 1 ...).
    pub fn repeat_rows(&self, n: i64) -> TextInput {
        TextInput {
            ids: self.ids.repeat_interleave_self_int(n, 0, None),
            attention_mask: self.attention_mask.repeat_interleave_self_int(n, 0, None),
            pool_index: self.pool_index.repeat_interleave_self_int(n, 0, None),
        }
    }

    /// Additive mask [B, 1, L, L]: 0 where query i may attend key j (j <= i, j not padding),
    /// the dtype minimum elsewhere (as HF).
    pub fn additive_mask(&self, causal: bool) -> Tensor {
        let l = self.ids.size()[1];
        let dev = self.ids.device();
        let keys = self.attention_mask.ne(0).view([-1, 1, 1, l]);
        let allowed = if causal {
            let tri = Tensor::ones([l, l], (Kind::Bool, dev))
                .tril(0)
                .view([1, 1, l, l]);
            keys.logical_and(&tri)
        } else {
            keys
        };
        Tensor::zeros(allowed.size(), (Kind::Float, dev))
            .masked_fill(&allowed.logical_not(), f32::MIN as f64)
    }
}

pub struct TextTower {
    pub config: TextConfig,
    pub token_embedding: Tensor,
    position_embedding: Tensor,
    pub encoder: Encoder,
    final_layer_norm: LayerNorm,
    /// HF CLIP always masks causally; the OpenAI-wrapper compatibility mode turns it off.
    pub causal: bool,
}

impl TextTower {
    pub fn new(p: &Path, c: &TextConfig) -> Self {
        let d = c.hidden_size;
        let e = p / "embeddings";
        TextTower {
            token_embedding: (&e / "token_embedding").var(
                "weight",
                &[c.vocab_size, d],
                Init::Const(0.0),
            ),
            position_embedding: (&e / "position_embedding").var(
                "weight",
                &[c.max_position_embeddings, d],
                Init::Const(0.0),
            ),
            encoder: Encoder::new(&(p / "encoder"), &c.encoder_shape()),
            final_layer_norm: LayerNorm::new(&(p / "final_layer_norm"), d, c.layer_norm_eps),
            config: c.clone(),
            causal: true,
        }
    }

    pub fn depth(&self) -> usize {
        self.encoder.depth()
    }

    /// Token embeddings [B, L, D] (what saliency differentiates against).
    pub fn token_embeds(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.token_embedding, ids, -1, false, false)
    }

    /// Encoder input from token embeddings: adds positions (HF `hidden_states[0]`).
    pub fn embed_from_tokens(&self, token_embeds: &Tensor) -> Tensor {
        let l = token_embeds.size()[1];
        token_embeds + self.position_embedding.narrow(0, 0, l)
    }

    pub fn embed(&self, ids: &Tensor) -> Tensor {
        self.embed_from_tokens(&self.token_embeds(ids))
    }

    pub fn prefix(&self, input: &TextInput, layer: usize) -> Tensor {
        self.prefix_from_embeddings(self.embed(&input.ids), input, layer)
    }

    pub fn prefix_from_embeddings(&self, h: Tensor, input: &TextInput, layer: usize) -> Tensor {
        self.first_blocks(h, input, layer + 1)
    }

    /// Hidden states after the first `n` blocks over the encoder input `h` (0: `h` itself).
    pub fn first_blocks(&self, h: Tensor, input: &TextInput, n: usize) -> Tensor {
        let mask = input.additive_mask(self.causal);
        self.encoder.forward(h, 0..n, Some(&mask))
    }

    /// Pooled output (before projection) from the hidden states after `layer`.
    pub fn suffix(&self, h: &Tensor, layer: usize, input: &TextInput) -> Tensor {
        self.head(h, layer + 1, input)
    }

    /// Pooled output from token embeddings [B, L, D] (differentiable inputs for saliency).
    pub fn forward_from_token_embeds(&self, token_embeds: &Tensor, input: &TextInput) -> Tensor {
        self.head(&self.embed_from_tokens(token_embeds), 0, input)
    }

    /// Pooled output of the full forward.
    pub fn forward(&self, input: &TextInput) -> Tensor {
        self.head(&self.embed(&input.ids), 0, input)
    }

    /// Blocks `from..` then `final_layer_norm` at the pooled position; the last block is computed
    /// at that position only (LayerNorm is per position, so this equals `pool`).
    pub fn head(&self, h: &Tensor, from: usize, input: &TextInput) -> Tensor {
        let mask = input.additive_mask(self.causal);
        let pooled =
            self.encoder
                .forward_pooled(h.shallow_clone(), from, Some(&mask), &input.pool_index);
        self.final_layer_norm.forward(&pooled)
    }

    /// `final_layer_norm`, then the state at each row's `pool_index`.
    pub fn pool(&self, h: &Tensor, pool_index: &Tensor) -> Tensor {
        let h = self.final_layer_norm.forward(h);
        let (b, _, d) = h.size3().expect("[B, L, D]");
        let idx = pool_index.view([b, 1, 1]).expand([b, 1, d], false);
        h.gather(1, &idx, false).squeeze_dim(1)
    }

    pub fn trace(&self, input: &TextInput, req: TraceRequest) -> (Tensor, Trace) {
        self.trace_from_token_embeds(&self.token_embeds(&input.ids), input, req)
    }

    /// `trace` from token embeddings (so that gradients can reach the attention maps).
    pub fn trace_from_token_embeds(
        &self,
        token_embeds: &Tensor,
        input: &TextInput,
        req: TraceRequest,
    ) -> (Tensor, Trace) {
        let mut trace = Trace::default();
        let h = self.embed_from_tokens(token_embeds);
        if req.hidden_states {
            trace.hidden_states.push(h.shallow_clone());
        }
        let mask = input.additive_mask(self.causal);
        let h = self
            .encoder
            .forward_traced(h, 0..self.depth(), Some(&mask), req, Some(&mut trace));
        (self.pool(&h, &input.pool_index), trace)
    }
}
