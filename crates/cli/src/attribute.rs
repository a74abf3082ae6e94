//! `m2ib attribute`: explain image-caption pairs with one method (or all) and write, per pair,
//! the raw maps (safetensors + JSON sidecar naming the arrays), the image with the heat map
//! overlaid, and the caption with tokens coloured by score.
use crate::embed::parse_device;
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use m2ib_attribution::registry::METHODS;
use m2ib_attribution::{normalize_image, normalize_text, Attribution, Attributor, Batch};
use m2ib_clip::rng::splitmix64;
use m2ib_clip::{decode_image, Checkpoint, Layer};
use m2ib_report::figures::{caption_png, grid_png, overlay_png, Overlay, TokenRow};
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Args)]
pub struct AttributeArgs {
    /// Hugging Face CLIP checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Model options preset: `hf` (default) or `cxr-repair-compat` (the official M2IB wrapper:
    /// no text causal mask, last-position pooling, text projection twice).
    #[arg(long, default_value = "hf")]
    pub preset: String,
    /// Image file; repeat together with --text for several pairs.
    #[arg(long)]
    pub image: Vec<PathBuf>,
    /// Caption; one per --image.
    #[arg(long)]
    pub text: Vec<String>,
    /// A TSV file of `image<TAB>caption` lines (relative paths resolve against the file).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// A method name, or `all` for a Figure 1-style grid of every method.
    #[arg(long, default_value = "m2ib")]
    pub method: String,
    /// M2IB: bottleneck layer for both modalities: a block (negative counts from the end; not the
    /// last block) or `embeddings`. Unset settings come from the model's m2ib.toml, else the
    /// depth rule (README).
    #[arg(long, allow_hyphen_values = true)]
    pub layer: Option<Layer>,
    #[arg(long, allow_hyphen_values = true)]
    pub image_layer: Option<Layer>,
    #[arg(long, allow_hyphen_values = true)]
    pub text_layer: Option<Layer>,
    #[arg(long)]
    pub beta: Option<f64>,
    /// Prior standard deviation.
    #[arg(long, conflicts_with = "var")]
    pub sigma: Option<f64>,
    /// Prior variance (alias: sigma = sqrt(var)).
    #[arg(long)]
    pub var: Option<f64>,
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub copies: Option<i64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Report malformed lines of --pairs and go on, instead of refusing the file.
    #[arg(long)]
    pub skip_bad_rows: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output directory (one sub-directory per pair).
    #[arg(long)]
    pub out: PathBuf,
}

impl AttributeArgs {
    /// Every method on the given pairs with the model's defaults (the report's gallery).
    pub fn for_gallery(
        model: PathBuf,
        image: Vec<PathBuf>,
        text: Vec<String>,
        out: PathBuf,
    ) -> Self {
        AttributeArgs {
            model,
            preset: "hf".into(),
            image,
            text,
            pairs: None,
            method: "all".into(),
            layer: None,
            image_layer: None,
            text_layer: None,
            beta: None,
            sigma: None,
            var: None,
            steps: None,
            copies: None,
            seed: 0,
            skip_bad_rows: false,
            device: "cpu".into(),
            out,
        }
    }
}

/// M2IB's flags as an experiment's flat keys (the highest-priority source).
fn flag_table(args: &AttributeArgs) -> toml::Table {
    let mut t = toml::Table::new();
    let mut put = |k: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            t.insert(k.to_string(), v);
        }
    };
    // Layer serialises as in TOML: an integer or "embeddings".
    let layer = |l: Option<Layer>| l.and_then(|l| toml::Value::try_from(l).ok());
    put("layer", layer(args.layer));
    put("image_layer", layer(args.image_layer));
    put("text_layer", layer(args.text_layer));
    put("beta", args.beta.map(toml::Value::Float));
    put("sigma", args.sigma.map(toml::Value::Float));
    put("var", args.var.map(toml::Value::Float));
    put("steps", args.steps.map(|v| toml::Value::Integer(v as i64)));
    put("copies", args.copies.map(toml::Value::Integer));
    t
}

/// The methods to run, with the flags above the model's defaults (`<model>/m2ib.toml`, or the
/// depth rule) above each method's built-in defaults; also where each setting came from.
fn methods(
    args: &AttributeArgs,
    ck: &Checkpoint,
) -> anyhow::Result<Vec<(Box<dyn Attributor>, serde_json::Value)>> {
    let names: Vec<&str> = if args.method == "all" {
        METHODS.to_vec()
    } else {
        vec![args.method.as_str()]
    };
    let defaults =
        m2ib_runner::defaults::load(&args.model, &ck.model.config).map_err(anyhow::Error::msg)?;
    names
        .into_iter()
        .map(|name| {
            let flags = if name == "m2ib" {
                flag_table(args)
            } else {
                toml::Table::new()
            };
            let mut from: serde_json::Map<String, serde_json::Value> =
                flags.keys().map(|k| (k.clone(), json!("flag"))).collect();
            let table = match defaults.methods.get(name) {
                Some(lower) => {
                    let (merged, taken) = m2ib_runner::defaults::merge_beneath(&flags, lower);
                    for k in taken {
                        from.insert(k, json!(format!("model: {}", defaults.origin)));
                    }
                    merged
                }
                None => flags,
            };
            let cell = m2ib_runner::experiment::Cell::new(name, serde_json::to_value(&table)?);
            let m = m2ib_runner::experiment::method_from_cell(&cell).map_err(anyhow::Error::msg)?;
            if name == "m2ib" {
                let p = m.params();
                for (tower, depth) in [
                    ("image", ck.model.vision_depth()),
                    ("text", ck.model.text_depth()),
                ] {
                    let layer: Layer = serde_json::from_value(p[tower]["layer"].clone())?;
                    m2ib_attribution::m2ib::bottleneck_block(layer, depth, tower)?;
                }
            }
            Ok((m, serde_json::Value::Object(from)))
        })
        .collect()
}

fn read_pairs(args: &AttributeArgs) -> anyhow::Result<Vec<(PathBuf, String)>> {
    if args.image.len() != args.text.len() {
        bail!(
            "{} --image but {} --text: give one caption per image",
            args.image.len(),
            args.text.len()
        );
    }
    let mut pairs: Vec<(PathBuf, String)> = args
        .image
        .iter()
        .cloned()
        .zip(args.text.iter().cloned())
        .collect();
    if let Some(f) = &args.pairs {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let base = f.parent().unwrap_or(Path::new("."));
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let Some((img, cap)) = line.split_once('\t') else {
                let msg = format!("{}:{}: expected `image<TAB>caption`", f.display(), n + 1);
                if args.skip_bad_rows {
                    eprintln!("error: {msg}");
                    continue;
                }
                bail!(msg);
            };
            pairs.push((base.join(img), cap.to_string()));
        }
    }
    if pairs.is_empty() {
        bail!("nothing to explain: give --image/--text or --pairs");
    }
    Ok(pairs)
}

struct Prepared {
    rgb: m2ib_clip::Rgb8,
    pixels: Tensor,
    encoded: m2ib_clip::Encoded,
}

fn prepare(ck: &Checkpoint, image: &Path, caption: &str) -> anyhow::Result<Prepared> {
    let decoded = decode_image(image)?;
    let rgb = ck.preprocessor.resize_crop(&decoded);
    let pixels = ck.preprocessor.to_tensor(&rgb);
    let encoded = ck
        .tokenizer
        .encode(caption)
        .with_context(|| format!("caption {caption:?}"))?;
    if encoded.truncated > 0 {
        eprintln!(
            "note: caption {caption:?} truncated by {} tokens to the context length",
            encoded.truncated
        );
    }
    Ok(Prepared {
        rgb,
        pixels,
        encoded,
    })
}

fn write_maps(
    dir: &Path,
    a: &Attribution,
    p: &Prepared,
    meta: serde_json::Value,
) -> anyhow::Result<(Tensor, Vec<f32>)> {
    let image_norm = normalize_image(&a.image)?;
    let text_norm = normalize_text(&a.text, &a.content)?;
    let text_raw = Tensor::from_slice(&a.text);
    let arrays = [
        ("image_raw", a.image.shallow_clone()),
        ("image_normalized", image_norm.shallow_clone()),
        ("text_raw", text_raw),
        ("text_normalized", Tensor::from_slice(&text_norm)),
    ];
    Tensor::write_safetensors(&arrays, dir.join("maps.safetensors"))?;
    let sidecar = json!({
        "arrays": {
            "image_raw": "raw image map [H, W] at the model's input size (unnormalised)",
            "image_normalized": "min-max normalised image map [H, W]",
            "text_raw": "raw score per token position [L], start and end included",
            "text_normalized": "min-max over content tokens; 0 at start/end",
        },
        "tokens": p.encoded.tokens, "ids": p.encoded.ids, "content": a.content,
        "truncated_tokens": p.encoded.truncated, "params": a.params, "meta": meta,
    });
    std::fs::write(
        dir.join("maps.json"),
        serde_json::to_string_pretty(&sidecar)? + "\n",
    )?;
    Ok((image_norm, text_norm))
}

pub fn run(args: AttributeArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let ck = Checkpoint::load_with(
        &args.model,
        device,
        &m2ib_clip::ModelOptions::preset(&args.preset)?,
    )
    .with_context(|| format!("loading {}", args.model.display()))?;
    let methods = methods(&args, &ck)?;
    let pairs = read_pairs(&args)?;
    let bar = ProgressBar::new((pairs.len() * methods.len()) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} pairs x methods  {elapsed} (eta {eta})  {msg}",
    )?);
    if pairs.len() * methods.len() == 1 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failures = 0;
    for (k, (image, caption)) in pairs.iter().enumerate() {
        let stem = image
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let dir = args.out.join(format!("{k:04}-{stem}"));
        let result = (|| -> anyhow::Result<()> {
            let p = prepare(&ck, image, caption)?;
            std::fs::create_dir_all(&dir)?;
            let seed = splitmix64(args.seed ^ k as u64);
            let batch = Batch::new(
                &ck,
                std::slice::from_ref(&p.pixels),
                std::slice::from_ref(&p.encoded),
                vec![seed],
            );
            let mut columns = vec![];
            for (m, sources) in &methods {
                bar.set_message(format!("{} on {}", m.name(), image.display()));
                let a = m.attribute(&ck.model, &batch)?.remove(0);
                let sub = if methods.len() > 1 {
                    dir.join(m.name())
                } else {
                    dir.clone()
                };
                std::fs::create_dir_all(&sub)?;
                let meta = json!({"method": m.name(), "image": image, "caption": caption, "model": args.model, "seed": seed,
                    "settings_sources": sources, "settings_default": "keys not listed take the method's built-in default"});
                let (image_norm, text_norm) = write_maps(&sub, &a, &p, meta)?;
                let map = Vec::<f32>::try_from(image_norm.flatten(0, -1))?;
                let overlay = Overlay {
                    width: p.rgb.width,
                    height: p.rgb.height,
                    rgb: &p.rgb.data,
                    map: &map,
                    title: m.name(),
                };
                let row = TokenRow {
                    tokens: &p.encoded.tokens,
                    scores: &text_norm,
                    content: &a.content,
                    title: caption,
                };
                overlay_png(&sub.join("overlay.png"), &overlay)?;
                caption_png(&sub.join("caption.png"), &row)?;
                columns.push((map, text_norm, a.content.clone(), m.name()));
                bar.inc(1);
            }
            if columns.len() > 1 {
                let cols: Vec<(Overlay, TokenRow)> = columns
                    .iter()
                    .map(|(map, scores, content, name)| {
                        (
                            Overlay {
                                width: p.rgb.width,
                                height: p.rgb.height,
                                rgb: &p.rgb.data,
                                map,
                                title: name,
                            },
                            TokenRow {
                                tokens: &p.encoded.tokens,
                                scores,
                                content,
                                title: "",
                            },
                        )
                    })
                    .collect();
                grid_png(&dir.join("grid.png"), &cols)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // One bad pair does not stop the others.
            failures += 1;
            bar.suspend(|| eprintln!("error: pair {k} ({}): {e:#}", image.display()));
        }
    }
    bar.finish_and_clear();
    println!(
        "wrote {} of {} pairs to {}",
        pairs.len() - failures,
        pairs.len(),
        args.out.display()
    );
    if failures > 0 {
        bail!("{failures} pair(s) failed");
    }
    Ok(())
}
