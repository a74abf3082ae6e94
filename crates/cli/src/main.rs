//! The `m2ib` binary: parses arguments and calls the library crates; nothing else lives here.
mod attribute;
mod bench;
mod data_cmd;
mod embed;
mod train_tiny;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "m2ib",
    version,
    about = "Multi-modal information bottleneck attribution for CLIP-style models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cosine similarity of an image and a caption under a checkpoint.
    Embed(embed::EmbedArgs),
    /// Explain image-caption pairs: raw maps, overlay and token pictures.
    Attribute(attribute::AttributeArgs),
    /// Benchmarks written to reports/bench (`m2ib bench m2ib`).
    Bench(bench::BenchArgs),
    /// Datasets: write the shapes benchmark, fetch Conceptual Captions images.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Train the embedded default (tiny CLIP on the shapes benchmark) and report its quality.
    TrainTiny(train_tiny::TrainTinyArgs),
    /// Reproduce a paper table from experiments/<name>.toml.
    Reproduce {
        /// Experiment name (table1, table2_grid, sanity, smoke).
        experiment: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Embed(args) => embed::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Attribute(args) => attribute::run(args),
        Command::TrainTiny(args) => train_tiny::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Reproduce { experiment } => {
            anyhow::bail!("`m2ib reproduce {experiment}`: not implemented yet (the runner and report issues land it)")
        }
    }
}
