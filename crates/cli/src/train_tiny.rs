//! `m2ib train-tiny`: arguments for `m2ib_runner::tiny::train_tiny`.
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainTinyArgs {
    #[arg(long, default_value = "data/tiny-shapes-clip")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 5000)]
    pub steps: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// 1e-3 never left chance on colour binding in 600-step proxies; 3e-4 did.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Scenes generated up front and sampled from (keeps generation off the critical path).
    #[arg(long, default_value_t = 30000)]
    pub pool: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// Test scenes for the quality report.
    #[arg(long, default_value_t = 1024)]
    pub eval: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Learning rate of the logit scale relative to --lr.
    #[arg(long, default_value_t = 10.0)]
    pub logit_scale_lr_mult: f64,
    /// Hard-negative captions per image: absent (an absent object), swap (colours swapped
    /// between the two named objects), mixed (a named object's colour with another object's
    /// shape), swap-image (for the caption -> image side, the caption's scene with those colours
    /// swapped; 40 % slower per step and no gain measured at 600 steps). Comma-separated; empty
    /// for none.
    #[arg(long, value_delimiter = ',', default_value = "absent,swap,mixed")]
    pub hard_negatives: Vec<m2ib_runner::tiny::HardNegative>,
}

pub fn run(a: TrainTinyArgs) -> anyhow::Result<()> {
    let args = m2ib_runner::tiny::TrainTinyArgs {
        out: a.out,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        pool: a.pool,
        seed: a.seed,
        threads: a.threads,
        eval: a.eval,
        device: crate::embed::parse_device(&a.device)?,
        logit_scale_lr_mult: a.logit_scale_lr_mult,
        hard_negatives: a.hard_negatives,
    };
    let report = m2ib_runner::tiny::train_tiny(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
