//! `m2ib embed`: the cosine similarity of one image-caption pair.
use anyhow::Context;
use clap::Args;
use m2ib_clip::{cosine, Checkpoint};
use std::path::PathBuf;

#[derive(Args)]
pub struct EmbedArgs {
    /// Hugging Face CLIP checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Model options preset: `hf` (default) or `cxr-repair-compat` (the official M2IB wrapper:
    /// no text causal mask, last-position pooling, text projection twice).
    #[arg(long, default_value = "hf")]
    pub preset: String,
    #[arg(long)]
    pub image: PathBuf,
    #[arg(long)]
    pub text: String,
    /// Print JSON with both embeddings.
    #[arg(long)]
    pub json: bool,
    /// `cpu`, `cuda`, `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub use m2ib_runner::run::parse_device;

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let ck = Checkpoint::load_with(
        &args.model,
        device,
        &m2ib_clip::ModelOptions::preset(&args.preset)?,
    )
    .with_context(|| format!("loading {}", args.model.display()))?;
    let pixels = ck.image(&args.image)?;
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
