//! Model options beyond the HF config (issue: the official wrapper's behaviour): whether the
//! text tower masks causally, where it pools, and whether the text projection is applied twice.
//! The `cxr-repair-compat` preset is the official M2IB code's `ClipWrapper` for CXR-RePaiR
//! (REFERENCE.md 1.10-4): causal mask removed, pooled at the last position, projection twice.
use crate::checkpoint::Checkpoint;
use crate::error::{ClipError, Result};
use crate::tokenizer::Pooling;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    pub text_causal_mask: bool,
    pub text_pool: Pooling,
    pub text_projection_twice: bool,
}

impl Default for ModelOptions {
    /// HF CLIP's behaviour.
    fn default() -> Self {
        ModelOptions {
            text_causal_mask: true,
            text_pool: Pooling::Eos,
            text_projection_twice: false,
        }
    }
}

pub const PRESETS: [&str; 2] = ["hf", "cxr-repair-compat"];

impl ModelOptions {
    pub fn preset(name: &str) -> Result<ModelOptions> {
        match name {
            "hf" => Ok(ModelOptions::default()),
            "cxr-repair-compat" => Ok(ModelOptions {
                text_causal_mask: false,
                text_pool: Pooling::Last,
                text_projection_twice: true,
            }),
            _ => Err(ClipError::Config {
                path: "model preset".into(),
                message: format!(
                    "unknown model preset `{name}`; allowed: {}",
                    PRESETS.join(", ")
                ),
            }),
        }
    }

    /// Sets the options on a loaded checkpoint; a second projection needs a square projection.
    pub fn apply(&self, ck: &mut Checkpoint) -> Result<()> {
        let c = &ck.model.config;
        if self.text_projection_twice && c.text_config.hidden_size != c.projection_dim {
            return Err(ClipError::Config {
                path: ck.dir.join("config.json"),
                message: format!(
                    "`text_projection_twice` needs projection_dim ({}) = text hidden_size ({})",
                    c.projection_dim, c.text_config.hidden_size
                ),
            });
        }
        ck.model.text.causal = self.text_causal_mask;
        ck.model.text_projection_twice = self.text_projection_twice;
        ck.pooling = self.text_pool;
        Ok(())
    }
}
