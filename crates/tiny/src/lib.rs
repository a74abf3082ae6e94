//! m2ib-tiny, the embedded default (`m2ib train-tiny`): trains — a small CLIP with the ViT-B/32 geometry
//! (224 px, 32-px patches, 7 x 7 grid) on the shapes benchmark, with a word-level tokenizer whose
//! end token has the highest id — and measures its quality on the test split.
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use m2ib_clip::preprocess::{CLIP_MEAN, CLIP_STD};
use m2ib_clip::train::{train, TrainBatch, TrainConfig};
use m2ib_clip::{l2_normalize, ClipConfig, ClipModel, ClipTokenizer, Pooling, TextInput};
use m2ib_data::shapes::{
    generate, generate_colours_swapped, vocabulary, Rng, Scene, Split, SHAPES, SIZE,
};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug)]
pub struct TrainTinyArgs {
    pub out: PathBuf,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Scenes generated up front and sampled from (keeps generation off the critical path).
    pub pool: usize,
    pub seed: u64,
    pub threads: i32,
    /// Test scenes for the quality report.
    pub eval: usize,
    pub device: Device,
    pub logit_scale_lr_mult: f64,
    /// Hard-negative captions per image (image -> text side of the loss).
    pub hard_negatives: Vec<HardNegative>,
}

/// A hard negative made from the image's own scene (a caption, or for `SwapImage` an image).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HardNegative {
    /// One named object replaced by an absent one (presence).
    Absent,
    /// Colours swapped between the two named objects (binding, two objects at once).
    Swap,
    /// One named object's colour paired with another object's shape (binding, one object).
    Mixed,
    /// For the caption -> image side: the caption's own scene re-rendered with the colours of its
    /// two named objects exchanged (binding, forces the image tower to tell them apart).
    SwapImage,
}

impl std::str::FromStr for HardNegative {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "absent" => Ok(HardNegative::Absent),
            "swap" => Ok(HardNegative::Swap),
            "mixed" => Ok(HardNegative::Mixed),
            "swap-image" => Ok(HardNegative::SwapImage),
            other => Err(format!(
                "unknown hard negative {other:?} (absent, swap, mixed or swap-image)"
            )),
        }
    }
}

/// The tiny model's shape (its method defaults: data/tiny-shapes-clip/m2ib.toml).
pub fn tiny_config(vocab: i64, end_id: i64, start_id: i64, pad_id: i64) -> serde_json::Value {
    json!({
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 64, "logit_scale_init_value": 2.6592,
        "text_config": {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3,
                         "num_attention_heads": 4, "max_position_embeddings": 16, "hidden_act": "quick_gelu",
                         "layer_norm_eps": 1e-5, "eos_token_id": end_id, "bos_token_id": start_id, "pad_token_id": pad_id,
                         "model_type": "clip_text_model"},
        "vision_config": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
                           "image_size": 224, "patch_size": 32, "num_channels": 3, "hidden_act": "quick_gelu",
                           "layer_norm_eps": 1e-5, "model_type": "clip_vision_model"},
    })
}

/// Word-level tokenizer over the shapes vocabulary, built with the `tokenizers` crate; the end
/// token gets the highest id.
pub fn write_tokenizer(path: &Path) -> anyhow::Result<HashMap<String, u32>> {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::normalizers::Lowercase;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::processors::template::TemplateProcessing;
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for w in ["[UNK]", "<pad>"]
        .iter()
        .chain(vocabulary().iter())
        .chain(["<|startoftext|>", "<|endoftext|>"].iter())
    {
        let n = vocab.len() as u32;
        vocab.insert(w.to_string(), n);
    }
    let model = WordLevel::builder()
        .vocab(vocab.clone().into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_normalizer(Some(Lowercase));
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let (s, e) = (vocab["<|startoftext|>"], vocab["<|endoftext|>"]);
    let post = TemplateProcessing::builder()
        .try_single("<|startoftext|> $A <|endoftext|>")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .special_tokens(vec![("<|startoftext|>", s), ("<|endoftext|>", e)])
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tok.with_post_processor(Some(post));
    tok.save(path, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(vocab)
}

/// Scenes as a u8 tensor [N, 3, 224, 224] (generated on all cores).
pub fn scenes_to_u8(scenes: &[Scene]) -> Tensor {
    let mut data = Vec::with_capacity(scenes.len() * SIZE * SIZE * 3);
    for s in scenes {
        data.extend_from_slice(&s.rgb);
    }
    Tensor::from_slice(&data)
        .view([scenes.len() as i64, SIZE as i64, SIZE as i64, 3])
        .permute([0, 3, 1, 2])
        .contiguous()
}

/// u8 [N, 3, H, W] -> normalised float pixels (CLIP mean/std), as the preprocessor would.
pub fn normalise(u8s: &Tensor, device: Device) -> Tensor {
    let mean = Tensor::from_slice(&CLIP_MEAN)
        .view([1, 3, 1, 1])
        .to_device(device);
    let std = Tensor::from_slice(&CLIP_STD)
        .view([1, 3, 1, 1])
        .to_device(device);
    ((u8s.to_device(device).to_kind(Kind::Float) / 255.0) - mean) / std
}

pub fn generate_many(
    seed: u64,
    split: Split,
    range: std::ops::Range<u64>,
    absent: bool,
) -> Vec<Scene> {
    in_parallel(range, |i| generate(seed, split, i, absent))
}

/// `f(i)` for every i of `range`, in order, on rayon's threads.
pub fn in_parallel<T: Send>(range: std::ops::Range<u64>, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    use rayon::prelude::*;
    range.into_par_iter().map(&f).collect()
}

/// (objects, named objects) of a scene as bit sets over the 7 x 6 colour-shape pairs.
pub fn content_bits(scene: &Scene) -> (u64, u64) {
    let bit = |o: &m2ib_data::shapes::Object| {
        let shape = SHAPES.iter().position(|&s| s == o.shape).expect("shape");
        1u64 << (o.colour * SHAPES.len() + shape)
    };
    let all = scene.objects.iter().fold(0, |b, o| b | bit(o));
    let named = scene
        .named
        .iter()
        .fold(0, |b, &k| b | bit(&scene.objects[k]));
    (all, named)
}

/// A colour-shape bit set widened to every pair of its colours and its shapes (what a model that
/// does not bind colour to shape can tell apart).
fn bag(bits: u64) -> u64 {
    let k = SHAPES.len();
    let (mut colours, mut shapes) = (0u64, 0u64);
    for b in 0..64 {
        if bits >> b & 1 == 1 {
            colours |= 1 << (b / k);
            shapes |= 1 << (b % k);
        }
    }
    let mut out = 0;
    for c in 0..m2ib_data::shapes::COLOURS.len() {
        for s in 0..k {
            if colours >> c & 1 == 1 && shapes >> s & 1 == 1 {
                out |= 1u64 << (c * k + s);
            }
        }
    }
    out
}

/// [B, B] bool: caption j (named objects `bits[j].1`) is true of image i (objects `bits[i].0`),
/// off the diagonal.
pub fn also_true(bits: &[(u64, u64)]) -> Tensor {
    let n = bits.len();
    let mut m = vec![false; n * n];
    for (i, (objects, _)) in bits.iter().enumerate() {
        for (j, (_, named)) in bits.iter().enumerate() {
            m[i * n + j] = i != j && named & !objects == 0;
        }
    }
    Tensor::from_slice(&m).view([n as i64, n as i64])
}

pub fn encode_all(tok: &ClipTokenizer, captions: &[String]) -> anyhow::Result<TextInput> {
    let enc = captions
        .iter()
        .map(|c| tok.encode(c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tok.batch(&enc, Pooling::Eos))
}

/// Quality on the test split (issue: the embedded default's gates).
pub fn evaluate(
    model: &ClipModel,
    tok: &ClipTokenizer,
    seed: u64,
    n: usize,
) -> anyhow::Result<serde_json::Value> {
    let device = model.device();
    let scenes = generate_many(seed, Split::Test, 0..n as u64, false);
    let embed_images = |s: &[Scene]| -> Tensor {
        let chunks: Vec<Tensor> = s
            .chunks(128)
            .map(|c| {
                tch::no_grad(|| {
                    l2_normalize(&model.image_features(&normalise(&scenes_to_u8(c), device)))
                })
            })
            .collect();
        Tensor::cat(&chunks, 0)
    };
    let embed_texts = |caps: &[String]| -> anyhow::Result<Tensor> {
        let t = encode_all(tok, caps)?.to_device(device);
        Ok(tch::no_grad(|| l2_normalize(&model.text_features(&t))))
    };
    let img = embed_images(&scenes);
    let captions: Vec<String> = scenes.iter().map(|s| s.caption.clone()).collect();
    let txt = embed_texts(&captions)?;
    // Retrieval among 64 candidates whose captions are all different (deduplicated by content).
    let (mut i2t, mut t2i, mut groups) = (0usize, 0usize, 0usize);
    // Reference points: expected top-1 of a model that picks uniformly among the candidates
    // that fit, knowing exactly which objects are in an image (but not which the caption names),
    // or only which colours and which shapes are present (no binding). A model can beat the
    // first by learning which objects the generator tends to name.
    let bits: Vec<(u64, u64)> = scenes.iter().map(content_bits).collect();
    let bags: Vec<(u64, u64)> = bits.iter().map(|&(a, n)| (bag(a), bag(n))).collect();
    let mut uniform = [[0.0f64; 2]; 2];
    let mut pool: Vec<usize> = (0..n).collect();
    while pool.len() >= 64 {
        let mut seen = std::collections::HashSet::new();
        let mut group = vec![];
        pool.retain(|&k| {
            if group.len() < 64 && seen.insert(captions[k].clone()) {
                group.push(k);
                false
            } else {
                true
            }
        });
        if group.len() < 64 {
            break;
        }
        let idx = Tensor::from_slice(&group.iter().map(|&k| k as i64).collect::<Vec<_>>())
            .to_device(device);
        let sim = img
            .index_select(0, &idx)
            .matmul(&txt.index_select(0, &idx).tr());
        let diag = Tensor::arange(64, (Kind::Int64, device));
        i2t += i64::try_from(sim.argmax(1, false).eq_tensor(&diag).sum(Kind::Int64))? as usize;
        t2i += i64::try_from(sim.argmax(0, false).eq_tensor(&diag).sum(Kind::Int64))? as usize;
        groups += 64;
        for (c, sets) in [&bits, &bags].into_iter().enumerate() {
            let fits = |i: usize, j: usize| sets[j].1 & !sets[i].0 == 0;
            for &k in &group {
                // Captions that fit image k; images that caption k fits (each counts itself).
                let captions_fitting = group.iter().filter(|&&j| fits(k, j)).count();
                let images_fitted = group.iter().filter(|&&i| fits(i, k)).count();
                uniform[c][0] += 1.0 / captions_fitting as f64;
                uniform[c][1] += 1.0 / images_fitted as f64;
            }
        }
    }
    // Absent object: the true caption vs one named object replaced by an absent one.
    let mut r = Rng::new(seed ^ m2ib_clip::rng::stream::TINY_ABSENT);
    // Fraction of (scene, negative caption) pairs whose image prefers its true caption.
    let prefers_true = |pairs: Vec<(usize, String)>| -> anyhow::Result<f64> {
        let idx = Tensor::from_slice(&pairs.iter().map(|p| p.0 as i64).collect::<Vec<_>>())
            .to_device(device);
        let neg = embed_texts(&pairs.into_iter().map(|p| p.1).collect::<Vec<_>>())?;
        let im = img.index_select(0, &idx);
        let sim = |t: &Tensor| (&im * t).sum_dim_intlist(&[1i64][..], false, Kind::Float);
        Ok(f64::try_from(
            sim(&txt.index_select(0, &idx))
                .gt_tensor(&sim(&neg))
                .to_kind(Kind::Float)
                .mean(Kind::Float),
        )?)
    };
    let absent = prefers_true(
        scenes
            .iter()
            .enumerate()
            .map(|(k, s)| (k, s.with_absent_object(&mut r)))
            .collect(),
    )?;
    // Binding: colours swapped between the two named objects.
    let pairs: Vec<(usize, String)> = scenes
        .iter()
        .enumerate()
        .filter_map(|(k, s)| s.with_colours_swapped().map(|c| (k, c)))
        .collect();
    let binding_pairs = pairs.len();
    let binding = prefers_true(pairs)?;
    // Re-binding (diagnostic): one named object's colour paired with another object's shape.
    let mut r = Rng::new(seed ^ m2ib_clip::rng::stream::TINY_REBIND);
    let mixed_binding = prefers_true(
        scenes
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.with_mixed_binding(&mut r).map(|c| (k, c)))
            .collect(),
    )?;
    Ok(json!({
        "mixed_binding": mixed_binding,
        "uniform_given_objects": {"image_to_caption_top1": uniform[0][0] / groups as f64, "caption_to_image_top1": uniform[0][1] / groups as f64},
        "uniform_given_colours_and_shapes": {"image_to_caption_top1": uniform[1][0] / groups as f64, "caption_to_image_top1": uniform[1][1] / groups as f64},
        "test_scenes": n, "retrieval_candidates": 64, "retrieval_groups": groups / 64,
        "image_to_caption_top1": i2t as f64 / groups as f64, "caption_to_image_top1": t2i as f64 / groups as f64,
        "absent_object_accuracy": absent, "colour_swap_binding": binding, "binding_pairs": binding_pairs,
    }))
}

/// `CLIPModel._init_weights` (factor 1): standard deviations scale with the width and depth
/// (N(0, 0.02) everywhere is far too small for a 64-wide tower), LayerNorms 1 / 0, biases 0.
pub fn hf_init(model: &ClipModel, seed: u64) {
    let c = &model.config;
    let std_of = |name: &str| -> Option<f64> {
        let (d, layers) = if name.starts_with("text_model.") || name == "text_projection.weight" {
            (c.text_config.hidden_size, c.text_config.num_hidden_layers)
        } else {
            (
                c.vision_config.hidden_size,
                c.vision_config.num_hidden_layers,
            )
        };
        let (d, layers) = (d as f64, layers as f64);
        let in_proj = d.powf(-0.5) * (2.0 * layers).powf(-0.5);
        Some(if name.ends_with("class_embedding") {
            d.powf(-0.5)
        } else if name.ends_with("_embedding.weight") {
            0.02
        } else if name.contains("self_attn.out_proj.weight") {
            d.powf(-0.5)
        } else if name.contains("self_attn.") && name.ends_with(".weight") {
            in_proj
        } else if name.ends_with("mlp.fc1.weight") {
            (2.0 * d).powf(-0.5)
        } else if name.ends_with("mlp.fc2.weight") {
            in_proj
        } else if name.ends_with("projection.weight") {
            d.powf(-0.5)
        } else {
            return None;
        })
    };
    m2ib_clip::rng::with_seed(
        m2ib_clip::rng::torch_seed(seed ^ m2ib_clip::rng::stream::TINY_INIT),
        || {
            let mut names: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, mut v) in names {
                let shape = v.size();
                let value = if name == "logit_scale" {
                    Tensor::full(
                        shape.as_slice(),
                        c.logit_scale_init_value,
                        (Kind::Float, Device::Cpu),
                    )
                } else if let Some(std) = std_of(&name) {
                    Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * std
                } else if name.ends_with("norm.weight")
                    || name.ends_with("norm1.weight")
                    || name.ends_with("norm2.weight")
                {
                    Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu))
                } else {
                    Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu))
                };
                tch::no_grad(|| v.copy_(&value));
            }
        },
    );
}

pub fn train_tiny(args: &TrainTinyArgs) -> anyhow::Result<serde_json::Value> {
    let device = args.device;
    tch::set_num_threads(args.threads);
    std::fs::create_dir_all(&args.out)?;
    let vocab = write_tokenizer(&args.out.join("tokenizer.json"))?;
    let cfg_json = tiny_config(
        vocab.len() as i64,
        vocab["<|endoftext|>"] as i64,
        vocab["<|startoftext|>"] as i64,
        vocab["<pad>"] as i64,
    );
    std::fs::write(
        args.out.join("config.json"),
        serde_json::to_string_pretty(&cfg_json)? + "\n",
    )?;
    let config = ClipConfig::from_file(&args.out.join("config.json"))?;
    let tok = ClipTokenizer::from_file(&args.out.join("tokenizer.json"), &config.text_config)?;
    let mut model = ClipModel::new(config, device);
    hf_init(&model, args.seed);
    let t0 = Instant::now();
    eprintln!("train-tiny: generating {} training scenes...", args.pool);
    let scenes = generate_many(args.seed, Split::Train, 0..args.pool as u64, false);
    let pool_u8 = scenes_to_u8(&scenes);
    let mut r = Rng::new(args.seed ^ m2ib_clip::rng::stream::TINY_ORDER);
    let captions: Vec<String> = scenes.iter().map(|s| s.caption.clone()).collect();
    let bits: Vec<(u64, u64)> = scenes.iter().map(content_bits).collect();
    let caption_kinds: Vec<HardNegative> = args
        .hard_negatives
        .iter()
        .copied()
        .filter(|k| *k != HardNegative::SwapImage)
        .collect();
    // Hard negatives, one block of `pool` captions per kind; a kind that does not apply to a scene
    // (a swap needs two named objects, a re-binding two objects) falls back to an absent object.
    let mut negatives: Vec<String> = vec![];
    for kind in &caption_kinds {
        negatives.extend(scenes.iter().map(|s| {
            let made = match kind {
                HardNegative::Absent | HardNegative::SwapImage => None,
                HardNegative::Swap => s.with_colours_swapped(),
                HardNegative::Mixed => s.with_mixed_binding(&mut r),
            };
            made.unwrap_or_else(|| s.with_absent_object(&mut r))
        }));
    }
    // Hard-negative images: scene i with its two named colours exchanged (row swap_row[i]).
    let (swap_u8, swap_row) = if args.hard_negatives.contains(&HardNegative::SwapImage) {
        let swapped = in_parallel(0..args.pool as u64, |i| {
            generate_colours_swapped(args.seed, Split::Train, i)
        });
        let mut rows = vec![-1i64; args.pool];
        let mut kept = vec![];
        for (i, s) in swapped.into_iter().enumerate() {
            if let Some(s) = s {
                rows[i] = kept.len() as i64;
                kept.push(s);
            }
        }
        (Some(scenes_to_u8(&kept)), rows)
    } else {
        (None, vec![-1; args.pool])
    };
    let text_all = encode_all(&tok, &captions)?;
    let neg_all = (!negatives.is_empty())
        .then(|| encode_all(&tok, &negatives))
        .transpose()?;
    eprintln!(
        "train-tiny: pool ready in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let tc = TrainConfig {
        steps: args.steps,
        lr: args.lr,
        weight_decay: 0.1,
        warmup_steps: (args.steps / 20).max(1),
        logit_scale_lr_mult: args.logit_scale_lr_mult,
    };
    let bar = ProgressBar::new(args.steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps  {elapsed} (eta {eta})  loss {msg}",
    )?);
    // Without a terminal the bar is hidden: log a line every 100 steps instead.
    let log_lines = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut pick = Rng::new(args.seed ^ m2ib_clip::rng::stream::TINY_BATCH);
    let take = |t: &TextInput, idx: &Tensor| TextInput {
        ids: t.ids.index_select(0, idx).to_device(device),
        attention_mask: t.attention_mask.index_select(0, idx).to_device(device),
        pool_index: t.pool_index.index_select(0, idx).to_device(device),
    };
    let t_train = Instant::now();
    let losses = train(
        &mut model,
        &tc,
        |_| {
            let idx: Vec<i64> = (0..args.batch)
                .map(|_| pick.range(0, args.pool) as i64)
                .collect();
            let mask = also_true(&idx.iter().map(|&k| bits[k as usize]).collect::<Vec<_>>());
            let (rows, sw): (Vec<i64>, Vec<i64>) = idx
                .iter()
                .enumerate()
                .filter(|(_, &k)| swap_row[k as usize] >= 0)
                .map(|(b, &k)| (b as i64, swap_row[k as usize]))
                .unzip();
            let negative_images = swap_u8.as_ref().filter(|_| !rows.is_empty()).map(|u8s| {
                (
                    normalise(&u8s.index_select(0, &Tensor::from_slice(&sw)), device),
                    Tensor::from_slice(&rows).to_device(device),
                )
            });
            let idx = Tensor::from_slice(&idx);
            TrainBatch {
                pixels: normalise(&pool_u8.index_select(0, &idx), device),
                text: take(&text_all, &idx),
                negatives: neg_all.as_ref().map(|n| {
                    let blocks: Vec<Tensor> = (0..caption_kinds.len())
                        .map(|k| &idx + (k * args.pool) as i64)
                        .collect();
                    take(n, &Tensor::cat(&blocks, 0))
                }),
                also_true: Some(mask),
                negative_images,
            }
        },
        |step, loss| {
            bar.inc(1);
            bar.set_message(format!("{loss:.3}"));
            if log_lines && step % 100 == 0 {
                eprintln!(
                    "train-tiny: step {step}/{} loss {loss:.4} ({:.0}s)",
                    args.steps,
                    t_train.elapsed().as_secs_f64()
                );
            }
        },
    )?;
    bar.finish();
    let train_s = t_train.elapsed().as_secs_f64();
    model.save_weights(&args.out.join("model.safetensors"))?;
    let quality = evaluate(&model, &tok, args.seed, args.eval)?;
    let report = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "lr": args.lr, "pool": args.pool,
        "logit_scale_lr_mult": args.logit_scale_lr_mult, "weight_decay": 0.1, "hard_negatives": args.hard_negatives,
        "init": "transformers CLIPModel._init_weights", "loss": "captions true of another image of the batch left out of both softmaxes",
        "threads": args.threads, "train_seconds": train_s, "final_loss": losses.last(),
        "loss_first_100_mean": losses.iter().take(100).sum::<f64>() / losses.len().min(100) as f64,
        "loss_last_100_mean": losses.iter().rev().take(100).sum::<f64>() / losses.len().min(100) as f64,
        "logit_scale": f64::try_from(&model.logit_scale)?, "quality": quality,
    });
    std::fs::write(
        args.out.join("training.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bag_widens_to_every_colour_shape_pair() {
        let k = SHAPES.len();
        // red (0) circle (0) + blue (2) square (1).
        let bits = 1u64 << 0 | 1u64 << (2 * k + 1);
        let want = 1u64 << 0 | 1u64 << 1 | 1u64 << (2 * k) | 1u64 << (2 * k + 1);
        assert_eq!(bag(bits), want);
        // One object: nothing to widen.
        assert_eq!(bag(1u64 << (3 * k + 4)), 1u64 << (3 * k + 4));
    }
}
