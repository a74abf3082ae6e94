//! Building blocks shared by both towers, mirroring HF `modeling_clip.py` (`CLIPAttention`,
//! `CLIPMLP`, `CLIPEncoderLayer`): pre-LN blocks, eager attention with the scale applied to the
//! scores (transformers 5.x order).
use crate::config::Activation;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: &Path, inputs: i64, outputs: i64, bias: bool) -> Self {
        Linear {
            weight: p.var("weight", &[outputs, inputs], Init::Const(0.0)),
            bias: bias.then(|| p.var("bias", &[outputs], Init::Const(0.0))),
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
    dim: i64,
}

impl LayerNorm {
    pub fn new(p: &Path, dim: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.var("weight", &[dim], Init::Const(1.0)),
            bias: p.var("bias", &[dim], Init::Const(0.0)),
            eps,
            dim,
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), Some(&self.bias), self.eps, false)
    }
}

pub struct Attention {
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

    /// `mask` is additive, broadcastable to [B, heads, T, T]. Returns the output and, when asked,
    /// the attention probabilities [B, heads, T, T] (part of the autograd graph).
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, want_probs: bool) -> (Tensor, Option<Tensor>) {
        let (b, t, d) = x.size3().expect("attention input must be [B, T, D]");
        let hd = d / self.heads;
        let split = |y: Tensor| y.view([b, t, self.heads, hd]).transpose(1, 2);
        let q = split(self.q_proj.forward(x));
        let k = split(self.k_proj.forward(x));
        let v = split(self.v_proj.forward(x));
        let mut scores = q.matmul(&k.transpose(-1, -2)) * self.scale;
        if let Some(m) = mask {
            scores = scores + m;
        }
        let probs = scores.softmax(-1, Kind::Float);
        let out = probs.matmul(&v).transpose(1, 2).reshape([b, t, d]);
        (self.out_proj.forward(&out), want_probs.then_some(probs))
    }
}

pub struct Mlp {
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
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.act.forward(&self.fc1.forward(x)))
    }
}

/// One pre-LN block: h + attn(ln1(h)), then h + mlp(ln2(h)).
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
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

    pub fn forward(&self, h: &Tensor, mask: Option<&Tensor>, want_probs: bool) -> (Tensor, Option<Tensor>) {
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

/// Runs layers `from..to` over `h`, recording into `trace` when asked.
pub fn run_layers(
    layers: &[EncoderLayer],
    mut h: Tensor,
    from: usize,
    to: usize,
    mask: Option<&Tensor>,
    req: TraceRequest,
    trace: &mut Trace,
) -> Tensor {
    for layer in &layers[from..to] {
        let (out, probs) = layer.forward(&h, mask, req.attentions);
        h = out;
        if let Some(p) = probs {
            trace.attentions.push(p);
        }
        if req.hidden_states {
            trace.hidden_states.push(h.shallow_clone());
        }
    }
    h
}
