//! `m2ib train-tiny`: arguments for `m2ib_tiny::train_tiny`.
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(after_help = "Example (about 40 min on 2 CPU cores):
  m2ib train-tiny --out my-tiny-clip
  m2ib train-tiny --out data/tiny-shapes-clip --force   # replace the shipped model")]
pub struct TrainTinyArgs {
    /// Where the checkpoint is written; the shipped model's folder only with --force.
    #[arg(long, default_value = "data/tiny-shapes-clip")]
    pub out: PathBuf,
    /// Allow overwriting the shipped model (data/tiny-shapes-clip).
    #[arg(long)]
    pub force: bool,
    /// Optimisation steps.
    #[arg(allow_negative_numbers = true, long, default_value_t = 5000)]
    pub steps: usize,
    /// Pairs per step.
    #[arg(allow_negative_numbers = true, long, default_value_t = 128)]
    pub batch: usize,
    /// 1e-3 never left chance on colour binding in 600-step proxies; 3e-4 did.
    #[arg(allow_negative_numbers = true, long, default_value_t = 3e-4)]
    pub lr: f64,
    /// Scenes generated up front and sampled from (keeps generation off the critical path).
    #[arg(allow_negative_numbers = true, long, default_value_t = 30000)]
    pub pool: usize,
    /// Seed of the initialisation, the scene pool and the batch order.
    #[arg(allow_negative_numbers = true, long, default_value_t = 0)]
    pub seed: u64,
    /// Intra-op threads.
    #[arg(allow_negative_numbers = true, long, default_value_t = 2)]
    pub threads: i32,
    /// Test scenes for the quality report.
    #[arg(allow_negative_numbers = true, long, default_value_t = 1024)]
    pub eval: usize,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, visible_alias = "devices", default_value = "cpu")]
    pub device: String,
    /// Learning rate of the logit scale relative to --lr.
    #[arg(allow_negative_numbers = true, long, default_value_t = 10.0)]
    pub logit_scale_lr_mult: f64,
    /// Hard-negative captions per image: absent (an absent object), swap (colours swapped
    /// between the two named objects), mixed (a named object's colour with another object's
    /// shape), swap-image (for the caption -> image side, the caption's scene with those colours
    /// swapped; 40 % slower per step and no gain measured at 600 steps). Comma-separated; empty
    /// for none.
    #[arg(long, value_delimiter = ',', default_value = "absent,swap,mixed")]
    pub hard_negatives: Vec<m2ib_tiny::HardNegative>,
}

pub fn run(a: TrainTinyArgs) -> anyhow::Result<()> {
    let shipped = m2ib_runner::bundled::bundled_dir().and_then(|d| d.canonicalize().ok());
    if !a.force && shipped.is_some() && a.out.canonicalize().ok() == shipped {
        anyhow::bail!(
            "--out {} is the shipped model (its tests and baselines depend on it): choose another \
             folder, or pass --force to replace it",
            a.out.display()
        );
    }
    let args = m2ib_tiny::TrainTinyArgs {
        out: a.out,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        pool: a.pool,
        seed: a.seed,
        threads: a.threads,
        eval: a.eval,
        device: crate::embed::one_device(&a.device)?,
        logit_scale_lr_mult: a.logit_scale_lr_mult,
        hard_negatives: a.hard_negatives,
    };
    let report = m2ib_tiny::train_tiny(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
