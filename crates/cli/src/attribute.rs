//! `m2ib attribute`: explain image-caption pairs with one method (or all) and write, per pair,
//! the raw maps (safetensors + JSON sidecar naming the arrays), the image with the heat map
//! overlaid, and the caption with tokens coloured by score.
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use m2ib_attribution::normalize::for_display;
use m2ib_attribution::{Attribution, Attributor, Batch};
use m2ib_clip::rng::splitmix64;
use m2ib_clip::{decode_image, Checkpoint, Layer, Pair};
use m2ib_report::colormap::Colormap;
use m2ib_report::figures::{caption_png, grid_png, overlay_png, Overlay, Style, TokenRow};
use serde_json::json;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Args)]
#[command(after_help = "Examples:
  m2ib attribute --model data/tiny-shapes-clip --image scene.png --text \"a red circle\" --out out/
  m2ib attribute --model tiny-shapes --method all --image a.png --text \"a dog\" --out out/
  m2ib attribute --model DIR --pairs pairs.tsv --image-layer 8 --text-layer embeddings --beta 0.1 --out out/

Each pair gets a folder with maps.safetensors (raw and normalised maps), maps.json (tokens,
resolved settings and where each came from), overlay.png and caption.png (grid.png for `all`).")]
pub struct AttributeArgs {
    /// Checkpoint: a Hugging Face CLIP directory (config.json, model.safetensors,
    /// tokenizer.json) or `tiny-shapes`, the embedded default.
    #[arg(long)]
    pub model: PathBuf,
    /// Model options preset: `hf` or `cxr-repair-compat` (the official M2IB wrapper: no text
    /// causal mask, last-position pooling, text projection twice).
    #[arg(long, default_value = "hf")]
    pub preset: String,
    /// Image file; repeat together with --text for several pairs.
    #[arg(long)]
    pub image: Vec<PathBuf>,
    /// Caption; one per --image.
    #[arg(long)]
    pub text: Vec<String>,
    /// A TSV file of `caption<TAB>image` lines, the Conceptual Captions order (relative image
    /// paths resolve against the file's folder).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// m2ib, saliency, gradcam, chefer, rise, kernel_shap, or `all` (every method side by side).
    #[arg(long, default_value = "m2ib")]
    pub method: String,
    /// M2IB bottleneck for both modalities: a block index (negative counts from the end; not the
    /// last block) or `embeddings` [default: the model's m2ib.toml, else the depth rule].
    #[arg(long, allow_hyphen_values = true)]
    pub layer: Option<Layer>,
    /// M2IB bottleneck of the image tower only (overrides --layer) [default: as --layer].
    #[arg(long, allow_hyphen_values = true)]
    pub image_layer: Option<Layer>,
    /// M2IB bottleneck of the text tower only (overrides --layer) [default: as --layer].
    #[arg(long, allow_hyphen_values = true)]
    pub text_layer: Option<Layer>,
    /// M2IB weight of the information loss, both modalities [default: the model's m2ib.toml,
    /// else 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// M2IB prior noise standard deviation, both modalities [default: the model's m2ib.toml,
    /// else 1].
    #[arg(long, allow_negative_numbers = true, conflicts_with = "var")]
    pub sigma: Option<f64>,
    /// M2IB prior noise variance (sigma = sqrt(var)); the paper's grid is in variance.
    #[arg(long, allow_negative_numbers = true)]
    pub var: Option<f64>,
    /// M2IB optimisation steps [default: 10].
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// M2IB noisy copies per step [default: 10].
    #[arg(long, allow_negative_numbers = true)]
    pub copies: Option<i64>,
    /// Seed of the seeded methods (M2IB noise, RISE masks, Kernel SHAP coalitions); pair k uses
    /// a seed derived from it and k.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Report malformed lines of --pairs and go on, instead of refusing the file.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// `cpu`, `cuda`, `cuda:N`, `auto`, or a comma-separated list (pairs are split across them).
    #[arg(long, visible_alias = "device", default_value = "cpu")]
    pub devices: String,
    /// Output directory (one sub-directory per pair; index.html when there are several).
    #[arg(long)]
    pub out: PathBuf,
    /// Colour map of the figures: jet (the paper's), viridis or inferno (perceptually uniform).
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    /// Opacity of the map at the highest score (a pixel's is alpha x its score).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.7)]
    pub alpha: f32,
    /// A note drawn under the figures' caption (the report's gallery names absent objects).
    #[arg(skip)]
    pub notes: Vec<String>,
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
            devices: "cpu".into(),
            out,
            colormap: Colormap::Jet,
            alpha: 0.7,
            notes: vec![],
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
    model_dir: &Path,
    ck: &Checkpoint,
) -> anyhow::Result<Vec<(Box<dyn Attributor>, serde_json::Value)>> {
    m2ib_runner::resolve::names(&args.method)
        .iter()
        .map(|name| {
            let flags = if name == "m2ib" {
                flag_table(args)
            } else {
                toml::Table::new()
            };
            let r = m2ib_runner::resolve::method(model_dir, ck, name, &flags, "flag")
                .map_err(anyhow::Error::msg)?;
            Ok((r.method, r.sources))
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
            // A malformed line: reported and skipped with --skip-bad-rows, else refused.
            let bad = |why: String| -> anyhow::Result<()> {
                let msg = format!("{}:{}: {why}", f.display(), n + 1);
                if !args.skip_bad_rows {
                    bail!(msg);
                }
                eprintln!("error: {msg}");
                Ok(())
            };
            let Some((cap, img)) = line.split_once('\t') else {
                bad("expected `caption<TAB>image` (the Conceptual Captions order)".into())?;
                continue;
            };
            let (cap, img) = (cap.trim(), img.trim());
            if !base.join(img).exists() && base.join(cap).exists() {
                bad(format!(
                    "`{cap}` is an image and `{img}` is not: the order is `caption<TAB>image`"
                ))?;
                continue;
            }
            pairs.push((base.join(img), cap.to_string()));
        }
    }
    if pairs.is_empty() {
        bail!("nothing to explain: give --image/--text or --pairs");
    }
    Ok(pairs)
}

fn prepare(ck: &Checkpoint, image: &Path, caption: &str) -> anyhow::Result<Pair> {
    let p = ck
        .pair(decode_image(image)?, caption)
        .with_context(|| format!("caption {caption:?}"))?;
    if !p.encoded.unknown.is_empty() {
        eprintln!(
            "note: caption {caption:?}: not in the model's vocabulary, read as unknown: {}",
            p.encoded.unknown.join(", ")
        );
    }
    if p.encoded.truncated > 0 {
        eprintln!(
            "note: caption {caption:?} truncated by {} tokens to the context length",
            p.encoded.truncated
        );
    }
    Ok(p)
}

fn a_name(meta: &serde_json::Value) -> String {
    meta["method"].as_str().unwrap_or("?").to_string()
}

fn write_maps(
    dir: &Path,
    a: &Attribution,
    p: &Pair,
    meta: serde_json::Value,
) -> anyhow::Result<(Tensor, Vec<f32>)> {
    let shown = for_display(a, &a_name(&meta))?;
    for n in &shown.notes {
        eprintln!("note: {n}");
    }
    let (image_norm, text_norm) = (shown.image, shown.text);
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
    let model = crate::embed::model_dir(&args.model)?;
    let names = m2ib_clip::devices::split_list(&args.devices);
    let (devices, why) = m2ib_clip::devices::resolve(&names, 1).map_err(anyhow::Error::msg)?;
    if let Some(why) = why {
        eprintln!("{why}");
    }
    let pairs = read_pairs(&args)?;
    let options = m2ib_clip::ModelOptions::preset(&args.preset)?;
    // Methods are resolved (and refused) once, on the first device, before any pair runs.
    let first = load(&model, &devices[0], &options)?;
    let names: Vec<String> = methods(&args, &model, &first)?
        .iter()
        .map(|(m, _)| m.name().to_string())
        .collect();
    let n_methods = names.len();
    let bar = ProgressBar::new((pairs.len() * n_methods) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} pairs x methods  {elapsed} (eta {eta})  {msg}",
    )?);
    if pairs.len() * n_methods == 1 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let numbered: Vec<(usize, &(PathBuf, String))> = pairs.iter().enumerate().collect();
    let failures = if devices.len() == 1 {
        explain_pairs(&args, &model, &first, &numbered, &bar)?
    } else {
        // Pairs dealt round-robin, one worker and one model copy per device.
        drop(first);
        let results: Vec<anyhow::Result<Vec<usize>>> = std::thread::scope(|s| {
            let handles: Vec<_> = devices
                .iter()
                .enumerate()
                .map(|(w, dev)| {
                    let mine: Vec<(usize, &(PathBuf, String))> = numbered
                        .iter()
                        .filter(|(k, _)| k % devices.len() == w)
                        .cloned()
                        .collect();
                    let (args, model, options, bar) = (&args, &model, &options, &bar);
                    s.spawn(move || {
                        let ck = load(model, dev, options)?;
                        explain_pairs(args, model, &ck, &mine, bar)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))
                })
                .collect()
        });
        let mut failures = vec![];
        for r in results {
            failures.extend(r?);
        }
        failures
    };
    bar.finish_and_clear();
    if pairs.len() > 1 {
        let entries: Vec<m2ib_report::html::PairEntry> = pairs
            .iter()
            .enumerate()
            .map(|(k, (image, caption))| {
                let dir = pair_dir(k, image);
                m2ib_report::html::PairEntry {
                    caption: caption.clone(),
                    image: image.display().to_string(),
                    figures: names
                        .iter()
                        .map(|n| {
                            let rel = if names.len() > 1 {
                                format!("{dir}/{n}/overlay.png")
                            } else {
                                format!("{dir}/overlay.png")
                            };
                            (n.clone(), (!failures.contains(&k)).then_some(rel))
                        })
                        .collect(),
                }
            })
            .collect();
        m2ib_report::html::write_pairs_index(&args.out, &model.display().to_string(), &entries)?;
    }
    println!(
        "wrote {} of {} pairs to {}",
        pairs.len() - failures.len(),
        pairs.len(),
        args.out.display()
    );
    if !failures.is_empty() {
        bail!("{} pair(s) failed", failures.len());
    }
    Ok(())
}

/// A pair's folder under --out: `0000-<image stem>` (numbered from 0, as the folders always were).
fn pair_dir(k: usize, image: &Path) -> String {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("{k:04}-{stem}")
}

fn load(
    model: &Path,
    device: &str,
    options: &m2ib_clip::ModelOptions,
) -> anyhow::Result<Checkpoint> {
    let device = m2ib_clip::devices::parse_device(device).map_err(anyhow::Error::msg)?;
    Checkpoint::load_with(model, device, options)
        .with_context(|| format!("loading {}", model.display()))
}

/// Explains the numbered pairs on one checkpoint; returns how many failed (each reported, the
/// others go on).
fn explain_pairs(
    args: &AttributeArgs,
    model: &Path,
    ck: &Checkpoint,
    pairs: &[(usize, &(PathBuf, String))],
    bar: &ProgressBar,
) -> anyhow::Result<Vec<usize>> {
    let methods = methods(args, model, ck)?;
    let mut failures = vec![];
    for &(k, (image, caption)) in pairs {
        let dir = args.out.join(pair_dir(k, image));
        let result = (|| -> anyhow::Result<()> {
            let p = prepare(ck, image, caption)?;
            std::fs::create_dir_all(&dir)?;
            let seed = splitmix64(args.seed ^ k as u64);
            let batch = Batch::new(
                ck,
                std::slice::from_ref(&p.pixels),
                std::slice::from_ref(&p.encoded),
                vec![seed],
            );
            let mut columns = vec![];
            let style = Style {
                colormap: args.colormap,
                alpha: args.alpha.clamp(0.0, 1.0),
            };
            let title = match args.notes.get(k) {
                Some(n) if !n.is_empty() => format!("{caption}   ({n})"),
                _ => caption.clone(),
            };
            for (m, sources) in &methods {
                bar.set_message(format!("{} on {}", m.name(), image.display()));
                let a = m.attribute(&ck.model, &batch)?.remove(0);
                let sub = if methods.len() > 1 {
                    dir.join(m.name())
                } else {
                    dir.clone()
                };
                std::fs::create_dir_all(&sub)?;
                let meta = json!({"method": m.name(), "image": image, "caption": caption, "model": model, "seed": seed,
                    "settings_sources": sources, "settings_default": "keys not listed take the method's built-in default"});
                let (image_norm, text_norm) = write_maps(&sub, &a, &p, meta)?;
                let crop_map = Vec::<f32>::try_from(image_norm.flatten(0, -1))?;
                let (map, crop) =
                    p.geometry
                        .to_original(&crop_map, p.original.width, p.original.height);
                let whole = crop == [0, 0, p.original.width, p.original.height];
                let overlay = Overlay {
                    width: p.original.width,
                    height: p.original.height,
                    rgb: &p.original.data,
                    map: &map,
                    title: m.name(),
                    crop: (!whole).then_some(crop),
                    style,
                };
                let row = TokenRow {
                    tokens: &p.encoded.tokens,
                    scores: &text_norm,
                    content: &a.content,
                    title: &title,
                };
                overlay_png(&sub.join("overlay.png"), &overlay, &row)?;
                caption_png(&sub.join("caption.png"), &row, style)?;
                columns.push((map, text_norm, a.content.clone(), m.name(), crop, whole));
                bar.inc(1);
            }
            if columns.len() > 1 {
                let cols: Vec<(Overlay, TokenRow)> = columns
                    .iter()
                    .map(|(map, scores, content, name, crop, whole)| {
                        (
                            Overlay {
                                width: p.original.width,
                                height: p.original.height,
                                rgb: &p.original.data,
                                map,
                                title: name,
                                crop: (!whole).then_some(*crop),
                                style,
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
                grid_png(&dir.join("grid.png"), &title, &cols)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // One bad pair does not stop the others.
            failures.push(k);
            let e = crate::one_line(&e);
            bar.suspend(|| eprintln!("error: pair {} ({}): {e}", k + 1, image.display()));
        }
    }
    Ok(failures)
}
