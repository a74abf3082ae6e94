//! Building blocks shared by both towers, mirroring HF `modeling_clip.py` (`CLIPAttention`,
//! `CLIPMLP`, `CLIPEncoderLayer`): pre-LN blocks, eager attention with the scale applied to the
//! scores (transformers 5.x order).
use crate::config::{Activation, EncoderShape};

/// Optimizer group of parameters without weight decay (biases, norms, the class token; as
/// open_clip excludes every parameter with fewer than 2 dimensions).
pub const NO_DECAY: usize = 1;
/// Optimizer group of the learnt temperature (no decay, its own learning rate).
pub const LOGIT_SCALE_GROUP: usize = 2;
use std::ops::Range;
use tch::nn::{Init, Module, Path};
use tch::{Kind, Tensor};

/// One-tensor layers are `tch::nn::Module`s, so a forward chains (`x.apply(&fc1).apply(&act)`).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: &Path, inputs: i64, outputs: i64, bias: bool) -> Self {
        Linear {
            weight: p.var("weight", &[outputs, inputs], Init::Const(0.0)),
            bias: bias.then(|| {
                p.set_group(NO_DECAY)
                    .var("bias", &[outputs], Init::Const(0.0))
            }),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
    dim: i64,
}

impl LayerNorm {
    pub fn new(p: &Path, dim: i64, eps: f64) -> Self {
        let p = p.set_group(NO_DECAY);
        LayerNorm {
            weight: p.var("weight", &[dim], Init::Const(1.0)),
            bias: p.var("bias", &[dim], Init::Const(0.0)),
            eps,
            dim,
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            false,
        )
    }
}

pub(crate) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: i64,
    scale: f64,
}

impl Attention {
    pub fn new(p: &Path, dim: i64, heads: i64) -> Self {
        Attention {
            q_proj: Linear::new(&(p / "q_proj"), dim, dim, true),
            k_proj: Linear::new(&(p / "k_proj"), dim, dim, true),
            v_proj: Linear::new(&(p / "v_proj"), dim, dim, true),
            out_proj: Linear::new(&(p / "out_proj"), dim, dim, true),
            heads,
            scale: ((dim / heads) as f64).powf(-0.5),
        }
    }

    /// Attention of queries `q_in` [B, Q, D] over keys/values from `kv_in` [B, T, D]; `mask`
    /// additive, broadcastable to [B, heads, Q, T].
    pub fn forward_query(&self, q_in: &Tensor, kv_in: &Tensor, mask: Option<&Tensor>) -> Tensor {
        self.attend(q_in, kv_in, mask).0
    }

    /// Self-attention; `mask` is additive, broadcastable to [B, heads, T, T]. Returns the output
    /// and, when asked, the attention probabilities [B, heads, T, T] (part of the autograd graph).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        want_probs: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (out, probs) = self.attend(x, x, mask);
        (out, want_probs.then_some(probs))
    }

    /// The output [B, Q, D] and the probabilities [B, heads, Q, T].
    fn attend(&self, q_in: &Tensor, kv_in: &Tensor, mask: Option<&Tensor>) -> (Tensor, Tensor) {
        let (b, t, d) = kv_in.size3().expect("attention input must be [B, T, D]");
        let nq = q_in.size()[1];
        let hd = d / self.heads;
        let heads = |y: Tensor, n: i64| y.view([b, n, self.heads, hd]).transpose(1, 2);
        let q = heads(self.q_proj.forward(q_in), nq);
        let k = heads(self.k_proj.forward(kv_in), t);
        let v = heads(self.v_proj.forward(kv_in), t);
        let mut scores = q.matmul(&k.transpose(-1, -2)) * self.scale;
        if let Some(m) = mask {
            // Out of place (not `+=`): the scores are part of the autograd graph.
            #[allow(clippy::assign_op_pattern)]
            {
                scores = scores + m;
            }
        }
        let probs = scores.softmax(-1, Kind::Float);
        let out = probs.matmul(&v).transpose(1, 2).reshape([b, nq, d]);
        (self.out_proj.forward(&out), probs)
    }
}

#[derive(Debug)]
pub(crate) struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(p: &Path, dim: i64, hidden: i64, act: Activation) -> Self {
        Mlp {
            fc1: Linear::new(&(p / "fc1"), dim, hidden, true),
            fc2: Linear::new(&(p / "fc2"), hidden, dim, true),
            act,
        }
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).apply(&self.act).apply(&self.fc2)
    }
}

/// One pre-LN block: h + attn(ln1(h)), then h + mlp(ln2(h)).
pub(crate) struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    pub fn new(p: &Path, dim: i64, mlp: i64, heads: i64, act: Activation, eps: f64) -> Self {
        EncoderLayer {
            layer_norm1: LayerNorm::new(&(p / "layer_norm1"), dim, eps),
            self_attn: Attention::new(&(p / "self_attn"), dim, heads),
            layer_norm2: LayerNorm::new(&(p / "layer_norm2"), dim, eps),
            mlp: Mlp::new(&(p / "mlp"), dim, mlp, act),
        }
    }

    pub fn forward(
        &self,
        h: &Tensor,
        mask: Option<&Tensor>,
        want_probs: bool,
    ) -> (Tensor, Option<Tensor>) {
        self.forward_observed(h, mask, want_probs, &mut |_| {})
    }

    /// Like `forward`, handing `layer_norm1`'s output (the attention input, GradCAM's target) to
    /// `observe` before it is used.
    pub fn forward_observed(
        &self,
        h: &Tensor,
        mask: Option<&Tensor>,
        want_probs: bool,
        observe: &mut dyn FnMut(&Tensor),
    ) -> (Tensor, Option<Tensor>) {
        let normed = self.layer_norm1.forward(h);
        observe(&normed);
        let (a, probs) = self.self_attn.forward(&normed, mask, want_probs);
        let h = h + a;
        let out = &h + self.mlp.forward(&self.layer_norm2.forward(&h));
        (out, probs)
    }

    /// The block's output at one position per row (`index` [B]), computing queries, the output
    /// projection and the MLP for that position only: what the last block before pooling needs.
    /// Keys and values still come from every position. Returns [B, D].
    pub fn forward_pooled(&self, h: &Tensor, mask: Option<&Tensor>, index: &Tensor) -> Tensor {
        let (b, t, d) = h.size3().expect("[B, T, D]");
        let normed = self.layer_norm1.forward(h);
        let rows = index.view([b, 1, 1]).expand([b, 1, d], false);
        let q_in = normed.gather(1, &rows, false);
        let q_mask = mask.map(|m| {
            let m = m.expand([b, 1, t, t], false);
            m.gather(
                2,
                &index.view([b, 1, 1, 1]).expand([b, 1, 1, t], false),
                false,
            )
        });
        let h = h.gather(1, &rows, false)
            + self
                .self_attn
                .forward_query(&q_in, &normed, q_mask.as_ref());
        (&h + self.mlp.forward(&self.layer_norm2.forward(&h))).squeeze_dim(1)
    }
}

/// What a tower run can record besides its output.
#[derive(Default)]
pub struct Trace {
    /// HF `hidden_states`: index 0 = the encoder input, index i + 1 = after layer i.
    pub hidden_states: Vec<Tensor>,
    /// Per layer, [B, heads, T, T].
    pub attentions: Vec<Tensor>,
}

#[derive(Clone, Copy, Default)]
pub struct TraceRequest {
    pub hidden_states: bool,
    pub attentions: bool,
}

/// A tower's stack of blocks (`<tower>.encoder.layers.<i>`): forward over a range of blocks,
/// optionally traced, and the pooled last block.
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// `s.depth` blocks under the tower's `encoder` path `p`.
    pub fn new(p: &Path, s: &EncoderShape) -> Self {
        let layers = p / "layers";
        Encoder {
            layers: (0..s.depth)
                .map(|i| EncoderLayer::new(&(&layers / i), s.dim, s.mlp, s.heads, s.act, s.eps))
                .collect(),
        }
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Blocks `blocks` over `h`.
    pub fn forward(&self, h: Tensor, blocks: Range<usize>, mask: Option<&Tensor>) -> Tensor {
        self.forward_traced(h, blocks, mask, TraceRequest::default(), None)
    }

    /// Blocks `blocks` over `h`, recording what `req` asks for into `trace`.
    pub fn forward_traced(
        &self,
        mut h: Tensor,
        blocks: Range<usize>,
        mask: Option<&Tensor>,
        req: TraceRequest,
        mut trace: Option<&mut Trace>,
    ) -> Tensor {
        for layer in &self.layers[blocks] {
            let (out, probs) = layer.forward(&h, mask, req.attentions);
            h = out;
            if let Some(t) = trace.as_deref_mut() {
                if let Some(p) = probs {
                    t.attentions.push(p);
                }
                if req.hidden_states {
                    t.hidden_states.push(h.shallow_clone());
                }
            }
        }
        h
    }

    /// Blocks `from..` and the final hidden state at `index` [B] only ([B, D]); the last block
    /// is computed for that position alone.
    pub fn forward_pooled(
        &self,
        h: Tensor,
        from: usize,
        mask: Option<&Tensor>,
        index: &Tensor,
    ) -> Tensor {
        let depth = self.depth();
        if from >= depth {
            let (b, _, d) = h.size3().expect("[B, T, D]");
            return h
                .gather(1, &index.view([b, 1, 1]).expand([b, 1, d], false), false)
                .squeeze_dim(1);
        }
        let h = self.forward(h, from..depth - 1, mask);
        self.layers[depth - 1].forward_pooled(&h, mask, index)
    }

    /// Block `block` over `h`, returning its attention input (`layer_norm1`'s output, Grad-CAM's
    /// target) and its output.
    pub fn block_observed(
        &self,
        h: &Tensor,
        block: usize,
        mask: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let mut act = None;
        let (out, _) = self.layers[block]
            .forward_observed(h, mask, false, &mut |a| act = Some(a.shallow_clone()));
        (act.expect("observed activation"), out)
    }
}
