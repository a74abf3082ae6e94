//! The embedded default (`m2ib train-tiny`): trains — a small CLIP with the ViT-B/32 geometry
//! (224 px, 32-px patches, 7 x 7 grid) on the shapes benchmark, with a word-level tokenizer whose
//! end token has the highest id — and measures its quality on the test split.
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use m2ib_clip::preprocess::{CLIP_MEAN, CLIP_STD};
use m2ib_clip::train::{train, TrainBatch, TrainConfig};
use m2ib_clip::{l2_normalize, ClipConfig, ClipModel, ClipTokenizer, Pooling, TextInput};
use m2ib_data::shapes::{generate, vocabulary, Rng, Scene, Split, SIZE};
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
}

/// The tiny model's shape; pinned here and in configs/models/tiny-shapes.toml.
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
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2) as u64;
    let chunk = (range.end - range.start).div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = range.start + t * chunk;
                let hi = (lo + chunk).min(range.end);
                s.spawn(move || {
                    (lo..hi)
                        .map(|i| generate(seed, split, i, absent))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("generator thread"))
            .collect()
    })
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
    }
    // Absent object: the true caption vs one named object replaced by an absent one.
    let mut r = Rng::new(seed ^ 0xABCD);
    let negs: Vec<String> = scenes
        .iter()
        .map(|s| s.with_absent_object(&mut r))
        .collect();
    let neg = embed_texts(&negs)?;
    let pos_sim = (&img * &txt).sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let absent = f64::try_from(
        pos_sim
            .gt_tensor(&(&img * &neg).sum_dim_intlist(&[1i64][..], false, Kind::Float))
            .to_kind(Kind::Float)
            .mean(Kind::Float),
    )?;
    // Binding: colours swapped between the two named objects.
    let pairs: Vec<(usize, String)> = scenes
        .iter()
        .enumerate()
        .filter_map(|(k, s)| s.with_colours_swapped().map(|c| (k, c)))
        .collect();
    let idx =
        Tensor::from_slice(&pairs.iter().map(|p| p.0 as i64).collect::<Vec<_>>()).to_device(device);
    let sw = embed_texts(&pairs.iter().map(|p| p.1.clone()).collect::<Vec<_>>())?;
    let img_b = img.index_select(0, &idx);
    let binding = f64::try_from(
        (&img_b * txt.index_select(0, &idx))
            .sum_dim_intlist(&[1i64][..], false, Kind::Float)
            .gt_tensor(&(&img_b * &sw).sum_dim_intlist(&[1i64][..], false, Kind::Float))
            .to_kind(Kind::Float)
            .mean(Kind::Float),
    )?;
    Ok(json!({
        "test_scenes": n, "retrieval_candidates": 64, "retrieval_groups": groups / 64,
        "image_to_caption_top1": i2t as f64 / groups as f64, "caption_to_image_top1": t2i as f64 / groups as f64,
        "absent_object_accuracy": absent, "colour_swap_binding": binding, "binding_pairs": pairs.len(),
    }))
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
    // HF-style initialisation from the top-down randomiser (every tensor covered).
    let steps = m2ib_clip::randomize::randomization_steps(&model);
    for i in 0..steps.len() {
        m2ib_clip::randomize::randomize_step(&model, &steps, i, args.seed);
    }
    for (name, v) in model.vs.variables() {
        if name.contains("layer_norm") || name.contains("layrnorm") || name.contains("layernorm") {
            let mut v = v;
            tch::no_grad(|| {
                let _ = if name.ends_with("weight") {
                    v.fill_(1.0)
                } else {
                    v.fill_(0.0)
                };
            });
        }
    }
    let t0 = Instant::now();
    eprintln!("train-tiny: generating {} training scenes...", args.pool);
    let scenes = generate_many(args.seed, Split::Train, 0..args.pool as u64, false);
    let pool_u8 = scenes_to_u8(&scenes);
    let mut r = Rng::new(args.seed ^ 0x5EED);
    let captions: Vec<String> = scenes.iter().map(|s| s.caption.clone()).collect();
    // Hard negatives: one named object replaced by an absent one, and (with two named objects)
    // their colours swapped; otherwise a second absent-object caption.
    let mut negatives: Vec<String> = scenes
        .iter()
        .map(|s| s.with_absent_object(&mut r))
        .collect();
    let swapped: Vec<String> = scenes
        .iter()
        .map(|s| {
            s.with_colours_swapped()
                .unwrap_or_else(|| s.with_absent_object(&mut r))
        })
        .collect();
    negatives.extend(swapped);
    let text_all = encode_all(&tok, &captions)?;
    let neg_all = encode_all(&tok, &negatives)?;
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
    let mut pick = Rng::new(args.seed ^ 0xBA7C);
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
            let idx = Tensor::from_slice(&idx);
            TrainBatch {
                pixels: normalise(&pool_u8.index_select(0, &idx), device),
                text: take(&text_all, &idx),
                negatives: Some(take(
                    &neg_all,
                    &Tensor::cat(&[&idx, &(&idx + args.pool as i64)], 0),
                )),
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
        "logit_scale_lr_mult": args.logit_scale_lr_mult, "weight_decay": 0.1, "hard_negatives": "absent object, colour swap",
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
