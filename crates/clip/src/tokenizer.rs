//! Tokenization with the `tokenizers` crate from the checkpoint's `tokenizer.json` (CLIP BPE for
//! real checkpoints, word-level for the tiny one), truncation to the context length keeping the
//! end token, and the pooling position of each caption.
use crate::config::TextConfig;
use crate::error::{ClipError, Result};
use crate::text::TextInput;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Which position's final state becomes the text embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// First position of the real end token (default; DESIGN.md "Model").
    #[default]
    Eos,
    /// Argmax of the ids: HF's legacy rule for configs with `eos_token_id == 2`.
    HfArgmax,
    /// The last non-padding position (the OpenAI wrapper of the official MS-CXR demo).
    Last,
}

impl Pooling {
    /// Position to pool for one unpadded id sequence.
    pub fn index(self, ids: &[i64], end_id: i64) -> usize {
        match self {
            Pooling::Eos => ids
                .iter()
                .position(|&t| t == end_id)
                .unwrap_or(ids.len().saturating_sub(1)),
            Pooling::HfArgmax => {
                // torch.argmax returns the first maximum.
                let mut best = 0;
                for (i, &t) in ids.iter().enumerate() {
                    if t > ids[best] {
                        best = i;
                    }
                }
                best
            }
            Pooling::Last => ids.len().saturating_sub(1),
        }
    }
}

/// One tokenized caption.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    /// Token strings, for plots.
    pub tokens: Vec<String>,
    /// Tokens dropped to fit the context length.
    pub truncated: usize,
    /// Words of the caption the vocabulary does not have (encoded as its unknown token).
    pub unknown: Vec<String>,
}

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    pub path: PathBuf,
    pub start_id: Option<i64>,
    pub end_id: i64,
    pub pad_id: i64,
    pub context_length: usize,
}

const END_TOKENS: [&str; 5] = ["<|endoftext|>", "</s>", "[SEP]", "[EOS]", "<eos>"];
const START_TOKENS: [&str; 4] = ["<|startoftext|>", "<s>", "[CLS]", "[BOS]"];
const PAD_TOKENS: [&str; 2] = ["<pad>", "[PAD]"];
const UNKNOWN_TOKENS: [&str; 3] = ["[UNK]", "<unk>", "<|unk|>"];

impl ClipTokenizer {
    /// Special ids come from tokenizer.json first, the config second (the openai configs carry
    /// wrong ones: eos 2, pad 1).
    pub fn from_file(path: &Path, config: &TextConfig) -> Result<Self> {
        if !path.exists() {
            return Err(ClipError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ClipError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let find = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| inner.token_to_id(n))
                .map(|i| i as i64)
        };
        let end_id =
            find(&END_TOKENS)
                .or(config.eos_token_id)
                .ok_or_else(|| {
                    ClipError::Tokenizer {
                path: path.to_path_buf(),
                message:
                    "no end token (<|endoftext|>, </s>, [SEP]) and no eos_token_id in the config"
                        .into(),
            }
                })?;
        let start_id = find(&START_TOKENS).or(config.bos_token_id);
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id as i64)
            .or_else(|| find(&PAD_TOKENS))
            .unwrap_or(end_id);
        Ok(ClipTokenizer {
            inner,
            path: path.to_path_buf(),
            start_id,
            end_id,
            pad_id,
            context_length: config.max_position_embeddings as usize,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn id_to_token(&self, id: i64) -> Option<String> {
        self.inner.id_to_token(id as u32)
    }

    /// Ids with start and end tokens, truncated to the context length keeping the end token.
    pub fn encode(&self, caption: &str) -> Result<Encoded> {
        if caption.trim().is_empty() {
            return Err(ClipError::EmptyCaption);
        }
        let enc = self
            .inner
            .encode(caption, true)
            .map_err(|e| ClipError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        let mut tokens: Vec<String> = enc.get_tokens().to_vec();
        let mut unknown: Vec<String> = vec![];
        for (t, &(a, b)) in tokens.iter().zip(enc.get_offsets()) {
            let word = caption.get(a..b).unwrap_or_default();
            if UNKNOWN_TOKENS.contains(&t.as_str())
                && !word.is_empty()
                && !unknown.iter().any(|u| u == word)
            {
                unknown.push(word.to_string());
            }
        }
        let mut truncated = 0;
        if ids.len() > self.context_length {
            truncated = ids.len() - self.context_length;
            let ends_with_end = ids.last() == Some(&self.end_id);
            ids.truncate(self.context_length);
            tokens.truncate(self.context_length);
            if ends_with_end {
                ids[self.context_length - 1] = self.end_id;
                tokens[self.context_length - 1] = self.id_to_token(self.end_id).unwrap_or_default();
            }
        }
        Ok(Encoded {
            ids,
            tokens,
            truncated,
            unknown,
        })
    }

    /// A padded batch with each row's pooling position under `pooling`.
    pub fn batch(&self, encoded: &[Encoded], pooling: Pooling) -> TextInput {
        let rows: Vec<Vec<i64>> = encoded.iter().map(|e| e.ids.clone()).collect();
        text_input(&rows, self.pad_id, self.end_id, pooling)
    }
}

/// Pads rows of ids to one length and computes masks and pooling positions.
pub fn text_input(rows: &[Vec<i64>], pad_id: i64, end_id: i64, pooling: Pooling) -> TextInput {
    let l = rows.iter().map(Vec::len).max().unwrap_or(0);
    let b = rows.len();
    let mut ids = vec![pad_id; b * l];
    let mut mask = vec![0i64; b * l];
    let mut pool = Vec::with_capacity(b);
    for (r, row) in rows.iter().enumerate() {
        ids[r * l..r * l + row.len()].copy_from_slice(row);
        mask[r * l..r * l + row.len()]
            .iter_mut()
            .for_each(|m| *m = 1);
        pool.push(pooling.index(row, end_id) as i64);
    }
    TextInput {
        ids: Tensor::from_slice(&ids).view([b as i64, l as i64]),
        attention_mask: Tensor::from_slice(&mask).view([b as i64, l as i64]),
        pool_index: Tensor::from_slice(&pool),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_rules() {
        let ids = [49406, 320, 1125, 49407];
        assert_eq!(Pooling::Eos.index(&ids, 49407), 3);
        assert_eq!(Pooling::HfArgmax.index(&ids, 49407), 3);
        // Stripped ids (the official text metric): the rules disagree.
        let stripped = [320, 1125, 5];
        assert_eq!(Pooling::HfArgmax.index(&stripped, 49407), 1);
        assert_eq!(Pooling::Last.index(&stripped, 49407), 2);
        assert_eq!(Pooling::Eos.index(&stripped, 49407), 2);
    }

    #[test]
    fn padding_and_masks() {
        let t = text_input(&[vec![1, 5, 9], vec![1, 9]], 0, 9, Pooling::Eos);
        assert_eq!(
            Vec::<i64>::try_from(t.ids.flatten(0, -1)).unwrap(),
            vec![1, 5, 9, 1, 9, 0]
        );
        assert_eq!(
            Vec::<i64>::try_from(t.attention_mask.flatten(0, -1)).unwrap(),
            vec![1, 1, 1, 1, 1, 0]
        );
        assert_eq!(Vec::<i64>::try_from(t.pool_index).unwrap(), vec![2, 1]);
    }
}
