//! `m2ib embed`: the cosine similarity of one image-caption pair.
use anyhow::Context;
use clap::Args;
use m2ib_clip::{cosine, Checkpoint};
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Examples:
  m2ib embed --model tiny-shapes --image scene.png --text \"a red circle\"
  m2ib embed --model DIR --image dog.jpg --text \"a dog\" --json   # both embeddings too")]
pub struct EmbedArgs {
    /// Checkpoint: a Hugging Face CLIP directory (config.json, model.safetensors,
    /// tokenizer.json) or `tiny-shapes`, the embedded default.
    #[arg(long)]
    pub model: PathBuf,
    /// Model options preset: `hf` or `cxr-repair-compat` (the official M2IB wrapper: no text
    /// causal mask, last-position pooling, text projection twice).
    #[arg(long, default_value = "hf")]
    pub preset: String,
    /// Image file (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// Caption.
    #[arg(long)]
    pub text: String,
    /// Print JSON with both embeddings.
    #[arg(long)]
    pub json: bool,
    /// `cpu`, `cuda`, `cuda:N` or `auto` (one pair: one device).
    #[arg(long, visible_alias = "device", default_value = "cpu")]
    pub devices: String,
}

/// One device for a command that runs on one: `auto` is the first GPU if any, else the CPU.
pub fn one_device(spec: &str) -> anyhow::Result<tch::Device> {
    let (device, note) = m2ib_clip::devices::one(spec).map_err(anyhow::Error::msg)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    Ok(device)
}

/// `--model`: a folder, or the embedded default's name.
pub fn model_dir(given: &std::path::Path) -> anyhow::Result<PathBuf> {
    m2ib_runner::bundled::locate(given, std::path::Path::new("")).map_err(anyhow::Error::msg)
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let device = one_device(&args.devices)?;
    let model = model_dir(&args.model)?;
    let ck = Checkpoint::load_with(
        &model,
        device,
        &m2ib_clip::ModelOptions::preset(&args.preset)?,
    )
    .with_context(|| format!("loading {}", model.display()))?;
    let pixels = ck.image(&args.image)?;
    if let Ok(e) = ck.tokenizer.encode(&args.text) {
        if !e.unknown.is_empty() {
            eprintln!(
                "note: not in the model's vocabulary, read as unknown: {}",
                e.unknown.join(", ")
            );
        }
    }
    let text = ck
        .caption(&args.text)
        .with_context(|| format!("caption {:?}", args.text))?;
    let (ie, te) = tch::no_grad(|| {
        (
            ck.model.image_features(&pixels),
            ck.model.text_features(&text),
        )
    });
    let cos = f64::try_from(cosine(&ie, &te, 1e-8).get(0))?;
    if args.json {
        let v = |t: &tch::Tensor| {
            Vec::<f32>::try_from(t.get(0).to_device(tch::Device::Cpu)).unwrap_or_default()
        };
        let out = serde_json::json!({
            "model": args.model, "image": args.image, "text": args.text,
            "cosine": cos, "image_embedding": v(&ie), "text_embedding": v(&te),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{cos:.6}");
    }
    Ok(())
}
