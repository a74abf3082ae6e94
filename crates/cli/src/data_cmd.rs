//! `m2ib data`: write the shapes benchmark to disk, download Conceptual Captions images.
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use m2ib_data::fetch::{fetch_urls, urls_of_tsv, FetchOptions};
use m2ib_data::shapes::{generate, Split, SIZE};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write shapes scenes as PNGs plus a CSV in the MS-CXR box format (so the real readers run).
    Shapes(ShapesArgs),
    /// Download the images of a Conceptual Captions TSV into <root>/<sha1(url)>.<ext>.
    FetchCc(FetchArgs),
}

#[derive(Args)]
#[command(after_help = "Example:
  m2ib data shapes --out scenes --n 4 --absent   # scenes/shapes-test-000000.png ... and boxes.csv")]
pub struct ShapesArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of scenes.
    #[arg(allow_negative_numbers = true, long, default_value_t = 100)]
    pub n: u64,
    /// Scene seed (scene i of a split and seed is always the same picture).
    #[arg(allow_negative_numbers = true, long, default_value_t = 0)]
    pub seed: u64,
    /// Which split's scenes (each split is its own stream of scenes).
    #[arg(long, default_value = "test", value_parser = m2ib_runner::experiment::split_of)]
    pub split: Split,
    /// Captions also name one absent object (text ground truth).
    #[arg(long)]
    pub absent: bool,
}

#[derive(Args)]
#[command(after_help = "Example:
  m2ib data fetch-cc --tsv Validation_GCC-1.1.0-Validation.tsv --root cc-images")]
pub struct FetchArgs {
    /// A Conceptual Captions TSV (`caption<TAB>url` lines).
    #[arg(long)]
    pub tsv: PathBuf,
    /// Where the images go (<root>/<sha1(url)>.<ext>; present files are skipped).
    #[arg(long)]
    pub root: PathBuf,
    /// Downloads at once.
    #[arg(allow_negative_numbers = true, long, default_value_t = 16)]
    pub concurrency: usize,
    /// Retries per URL.
    #[arg(allow_negative_numbers = true, long, default_value_t = 2)]
    pub retries: usize,
    /// Timeout per request, in seconds.
    #[arg(allow_negative_numbers = true, long, default_value_t = 20)]
    pub timeout_s: u64,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Shapes(a) => {
            let split = a.split;
            std::fs::create_dir_all(&a.out)?;
            let mut csv = String::from("dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split,present_words\n");
            let bar = ProgressBar::new(a.n);
            for i in 0..a.n {
                let s = generate(a.seed, split, i, a.absent);
                let name = format!("shapes-{}-{i:06}.png", split.name());
                image::save_buffer(
                    a.out.join(&name),
                    &s.rgb,
                    SIZE as u32,
                    SIZE as u32,
                    image::ExtendedColorType::Rgb8,
                )
                .with_context(|| format!("writing {name}"))?;
                for b in s.boxes() {
                    csv += &format!(
                        "shapes-{}-{i:06},shapes,{},{name},{},{},{},{},{SIZE},{SIZE},{},{}\n",
                        split.name(),
                        s.caption,
                        b[0],
                        b[1],
                        b[2] - b[0],
                        b[3] - b[1],
                        split.name(),
                        s.present_words().join(" ")
                    );
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            std::fs::write(a.out.join("shapes.csv"), csv)?;
            println!("wrote {} scenes and shapes.csv to {}", a.n, a.out.display());
        }
        DataCommand::FetchCc(a) => {
            let urls =
                urls_of_tsv(&a.tsv).with_context(|| format!("reading {}", a.tsv.display()))?;
            let bar = ProgressBar::new(urls.len() as u64);
            let opts = FetchOptions {
                concurrency: a.concurrency,
                retries: a.retries,
                timeout: std::time::Duration::from_secs(a.timeout_s),
                ..FetchOptions::default()
            };
            let report = fetch_urls(&urls, &a.root, &opts, &|| bar.inc(1));
            bar.finish_and_clear();
            println!(
                "downloaded {}, already present {}, failed {}",
                report.downloaded,
                report.skipped,
                report.failed.len()
            );
            for (u, e) in report.failed.iter().take(20) {
                eprintln!("failed: {u}: {e}");
            }
        }
    }
    Ok(())
}
