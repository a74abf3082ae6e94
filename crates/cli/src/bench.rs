//! `m2ib bench m2ib`: seconds per image-caption pair (image map + text map) on the exact
//! openai ViT-B/32 architecture with random weights (cost equals the real model), against the
//! PyTorch reference scripts run in the same invocation with the same thread count.
use anyhow::Context;
use clap::Args;
use m2ib_attribution::{Attributor, Batch, M2ib};
use m2ib_clip::randomize::{randomization_steps, randomize_step};
use m2ib_clip::{ClipConfig, ClipModel, Pooling};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Args)]
#[command(after_help = "Example:
  m2ib bench m2ib --python \"$(scripts/python/setup_venv.sh)\"   # Rust vs the PyTorch reference, one run")]
pub struct BenchArgs {
    /// What to benchmark (only `m2ib` so far).
    pub target: String,
    /// Intra-op threads, for both Rust and the Python reference.
    #[arg(allow_negative_numbers = true, long, default_value_t = 2)]
    pub threads: i32,
    /// Timed runs after one warm-up (the median is reported).
    #[arg(allow_negative_numbers = true, long, default_value_t = 3)]
    pub runs: usize,
    /// Pairs per batch for the batched timing.
    #[arg(allow_negative_numbers = true, long, default_value_t = 8)]
    pub batch: usize,
    /// Python with torch + transformers (scripts/python/setup_venv.sh); omit to skip the reference.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where the JSON and Markdown results go.
    #[arg(long, default_value = "reports/bench")]
    pub out: PathBuf,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, visible_alias = "devices", default_value = "cpu")]
    pub device: String,
}

const CAPTION_LEN: usize = 12;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    f()?; // warm-up
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = crate::embed::one_device(&args.device)?;
    tch::set_num_threads(args.threads);
    let model = ClipModel::new(ClipConfig::vit_b32(), device);
    let steps = randomization_steps(&model);
    for i in 0..steps.len() {
        randomize_step(&model, &steps, i, 0);
    }
    model.vs.variables().values_mut().for_each(|v| {
        let _ = v.set_requires_grad(false);
    });
    let pixels: Vec<Tensor> = (0..args.batch)
        .map(|_| Tensor::randn([3, 224, 224], (Kind::Float, Device::Cpu)))
        .collect();
    let rows: Vec<Vec<i64>> = (0..args.batch as i64)
        .map(|b| {
            let mut r = vec![49406];
            r.extend((0..CAPTION_LEN as i64 - 2).map(|k| 1000 + (b * 997 + k * 131) % 39000));
            r.push(49407);
            r
        })
        .collect();
    let make = |n: usize| {
        Batch::from_ids(
            device,
            &pixels[..n],
            &rows[..n],
            [Some(49406), Some(49407)],
            49407,
            Pooling::Eos,
            (0..n as u64).collect(),
        )
    };
    if args.target != "m2ib" {
        return bench_method(&args, &model, &make(1));
    }
    let method = M2ib::default();
    let mut result = serde_json::Map::new();
    for (key, n) in [("rust_1", 1usize), ("rust_batch", args.batch)] {
        let batch = make(n);
        eprintln!(
            "bench: Rust M2IB, {n} pair(s), {} runs + warm-up",
            args.runs
        );
        let runs = time_runs(args.runs, || {
            method.attribute(&model, &batch)?;
            Ok(())
        })?;
        let per_pair = median(&runs) / n as f64;
        result.insert(key.into(), json!({"pairs": n, "runs_s": runs, "median_s_per_pair": per_pair, "pairs_per_s": 1.0 / per_pair}));
    }
    if let Some(py) = &args.python {
        eprintln!("bench: PyTorch reference (official loop takes about a minute per pair)...");
        let script = PathBuf::from("scripts/python/bench_m2ib.py");
        let out = std::process::Command::new(py)
            .arg(&script)
            .args([
                "--threads",
                &args.threads.to_string(),
                "--runs",
                &args.runs.to_string(),
            ])
            .args([
                "--batch",
                &args.batch.to_string(),
                "--caption-len",
                &CAPTION_LEN.to_string(),
            ])
            .output()
            .with_context(|| format!("running {} {}", py.display(), script.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "reference failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference: Value = serde_json::from_slice(
            out.stdout
                .split(|&c| c == b'\n')
                .rfind(|l| !l.is_empty())
                .unwrap_or(b"{}"),
        )?;
        let get = |k: &str| {
            reference[k]["median_s_per_pair"]
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        let (r1, rb) = (
            result["rust_1"]["median_s_per_pair"].as_f64().unwrap(),
            result["rust_batch"]["median_s_per_pair"].as_f64().unwrap(),
        );
        for k in ["official", "pytorch_optimized_1", "pytorch_optimized_batch"] {
            let mut v = reference[k].clone();
            v["pairs_per_s"] = json!(1.0 / get(k));
            result.insert(k.into(), v);
        }
        result.insert("ratio_vs_official".into(), json!(get("official") / rb));
        result.insert(
            "ratio_vs_pytorch_optimized".into(),
            json!(get("pytorch_optimized_batch") / rb),
        );
        result.insert("ratio_vs_official_1".into(), json!(get("official") / r1));
        result.insert(
            "ratio_vs_pytorch_optimized_1".into(),
            json!(get("pytorch_optimized_1") / r1),
        );
        result.insert("torch".into(), reference["torch"].clone());
    }
    result.insert(
        "setup".into(),
        json!({"model": "openai ViT-B/32 architecture, random weights", "threads": args.threads, "device": args.device,
               "caption_tokens": CAPTION_LEN, "method": method.params(), "cpu": cpu_name()}),
    );
    std::fs::create_dir_all(&args.out)?;
    let v = Value::Object(result);
    std::fs::write(
        args.out.join("m2ib.json"),
        serde_json::to_string_pretty(&v)? + "\n",
    )?;
    std::fs::write(args.out.join("m2ib.md"), markdown(&v))?;
    println!("{}", markdown(&v));
    Ok(())
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

fn markdown(v: &Value) -> String {
    let mut s =
        String::from("# M2IB benchmark: seconds per image-caption pair (image map + text map)\n\n");
    s += &format!("Setup: {}\n\n| implementation | pairs per call | median s / pair | pairs / s |\n|---|---|---|---|\n", v["setup"]);
    for (k, name) in [
        ("official", "official loop (PyTorch)"),
        ("pytorch_optimized_1", "best PyTorch formulation"),
        ("pytorch_optimized_batch", "best PyTorch formulation"),
        ("rust_1", "m2ib (Rust)"),
        ("rust_batch", "m2ib (Rust)"),
    ] {
        if let Some(r) = v.get(k) {
            s += &format!(
                "| {name} | {} | {:.3} | {:.3} |\n",
                r["pairs"],
                r["median_s_per_pair"].as_f64().unwrap_or(f64::NAN),
                r["pairs_per_s"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    for k in [
        "ratio_vs_official",
        "ratio_vs_pytorch_optimized",
        "ratio_vs_official_1",
        "ratio_vs_pytorch_optimized_1",
    ] {
        if let Some(r) = v.get(k).and_then(Value::as_f64) {
            s += &format!("\n- `{k}`: {r:.2}x");
        }
    }
    s + "\n"
}

/// Seconds per pair of any registered method with its defaults (one pair, after a warm-up), and
/// the process's peak resident memory, appended to reports/bench/methods.jsonl.
fn bench_method(args: &BenchArgs, model: &ClipModel, batch: &Batch) -> anyhow::Result<()> {
    let m = m2ib_attribution::registry::method(&args.target, &Value::Null)?;
    let runs = time_runs(args.runs, || {
        m.attribute(model, batch)?;
        Ok(())
    })?;
    let peak_kb: u64 = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let row = json!({"method": args.target, "params": m.params(), "median_s_per_pair": median(&runs), "runs_s": runs,
                     "peak_rss_mb": peak_kb as f64 / 1024.0, "threads": args.threads, "model": "openai ViT-B/32 architecture, random weights"});
    std::fs::create_dir_all(&args.out)?;
    use std::io::Write;
    writeln!(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(args.out.join("methods.jsonl"))?,
        "{row}"
    )?;
    println!("{row}");
    Ok(())
}
