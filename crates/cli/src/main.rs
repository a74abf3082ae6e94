//! The `m2ib` binary: parses arguments and calls the library crates; nothing else lives here.
mod attribute;
mod bench;
mod data_cmd;
mod embed;
mod guard_cmd;
mod report_cmd;
mod run_cmd;
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
    /// Run an experiment grid (experiments/*.toml) into Parquet results.
    Run(run_cmd::RunArgs),
    /// Merge the Parquet parts of run directories into one file.
    Merge(run_cmd::MergeArgs),
    /// Write an sbatch array script running an experiment in shards.
    Slurm(run_cmd::SlurmArgs),
    /// Tables, figures and the HTML index of a run directory.
    Report(report_cmd::ReportArgs),
    /// Run experiments/<name>.toml, then its report and gallery.
    Reproduce(report_cmd::ReproduceArgs),
    /// Run an experiment under several seeds; write reports/baselines/<name>.csv (scores, tolerances).
    Baseline(guard_cmd::BaselineArgs),
    /// Run an experiment and compare its scores with its baseline (fails on drift).
    Guard(guard_cmd::GuardArgs),
}

fn main() -> std::process::ExitCode {
    quiet_broken_pipe();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

pub use m2ib_runner::one_line;

/// `m2ib run X --dry-run | head`: the reader going away ends the program quietly, as for any
/// Unix filter, instead of a panic in println!.
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Embed(args) => embed::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Attribute(args) => attribute::run(args),
        Command::TrainTiny(args) => train_tiny::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Run(a) => run_cmd::run_cmd(a),
        Command::Merge(a) => run_cmd::merge_cmd(a),
        Command::Slurm(a) => run_cmd::slurm_cmd(a),
        Command::Report(a) => report_cmd::report_cmd(a),
        Command::Reproduce(a) => report_cmd::reproduce_cmd(a),
        Command::Baseline(a) => guard_cmd::baseline_cmd(a),
        Command::Guard(a) => guard_cmd::guard_cmd(a),
    }
}
