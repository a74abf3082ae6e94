//! Devices by name (`cpu`, `cuda`, `cuda:N`, `auto`, comma-separated lists), checked against the
//! libtorch this binary runs on before anything is loaded: asked for a GPU it cannot use, libtorch
//! would otherwise panic deep inside the first tensor op with ~10 KB of backtrace.
use tch::Device;

/// Which libtorch the binary runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    Cpu,
    Cuda,
}

/// CUDA builds link `libtorch_cuda` (tch links it eagerly); the CPU build has no such library.
/// `tch::utils::has_cuda` cannot tell the two apart: it is false on a CUDA build without a GPU.
pub fn build() -> Build {
    // Read once: every device name is checked against it.
    static BUILD: std::sync::OnceLock<Build> = std::sync::OnceLock::new();
    *BUILD.get_or_init(|| match std::fs::read_to_string("/proc/self/maps") {
        Ok(maps) if maps.contains("libtorch_cuda") => Build::Cuda,
        Ok(_) => Build::Cpu,
        Err(_) if tch::utils::has_cuda() => Build::Cuda,
        Err(_) => Build::Cpu,
    })
}

/// What a user who asked for a GPU on the CPU build should do.
pub const CPU_BUILD: &str = "this m2ib is a CPU build (libtorch without CUDA); build the GPU one \
     with `M2IB_TORCH=cuda ./just build` (README \"GPUs\"), or use --devices cpu";

fn gpu_count() -> usize {
    tch::Cuda::device_count().max(0) as usize
}

/// One device name, refused when this build or this machine cannot run it.
pub fn parse_device(name: &str) -> Result<Device, String> {
    let device = match name.trim() {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        s => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => {
                return Err(format!(
                    "unknown device `{s}` (cpu, cuda, cuda:N, or auto where a list is taken)"
                ))
            }
        },
    };
    if let Device::Cuda(n) = device {
        if build() == Build::Cpu {
            return Err(format!("device `{name}`: {CPU_BUILD}"));
        }
        let count = gpu_count();
        if count == 0 {
            return Err(format!(
                "device `{name}`: this CUDA build of m2ib sees no GPU (check nvidia-smi and \
                 CUDA_VISIBLE_DEVICES), or use --devices cpu"
            ));
        }
        if n >= count {
            return Err(format!(
                "device `{name}`: only {count} GPU(s) visible (cuda:0 to cuda:{})",
                count - 1
            ));
        }
    }
    Ok(device)
}

/// `cuda:0,cuda:1` or `auto` as a list of names.
pub fn split_list(spec: &str) -> Vec<String> {
    spec.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The workers' devices for a list of names. `cpu` alone stands for `cpu_workers` CPU workers;
/// `auto` is one worker per visible GPU on a CUDA build, else `cpu` — and says which and why.
/// Every name is checked here, before any model is loaded.
pub fn resolve(
    names: &[String],
    cpu_workers: usize,
) -> Result<(Vec<String>, Option<String>), String> {
    let cpu = || vec!["cpu".to_string(); cpu_workers.max(1)];
    match names {
        [] => Err("no devices given (cpu, cuda:N, a list, or auto)".into()),
        [one] if one == "cpu" => Ok((cpu(), None)),
        [one] if one == "auto" => {
            let why = match (build(), gpu_count()) {
                (Build::Cpu, _) => "this is a CPU build of libtorch".to_string(),
                (Build::Cuda, 0) => "this CUDA build sees no GPU".to_string(),
                (Build::Cuda, n) => {
                    let names: Vec<String> = (0..n).map(|i| format!("cuda:{i}")).collect();
                    let note = format!(
                        "devices = auto: {n} GPU(s) visible, one worker and one model on each ({})",
                        names.join(", ")
                    );
                    return Ok((names, Some(note)));
                }
            };
            Ok((
                cpu(),
                Some(format!(
                    "devices = auto: {} CPU worker(s), because {why}",
                    cpu_workers.max(1)
                )),
            ))
        }
        many => {
            for n in many {
                if n == "auto" {
                    return Err("`auto` cannot be mixed with named devices".into());
                }
                parse_device(n)?;
            }
            Ok((many.to_vec(), None))
        }
    }
}

/// One device for a command that runs on one: `auto` is the first GPU if any, else the CPU. The
/// note says when `auto` (or a missing GPU) fell back.
pub fn one(spec: &str) -> Result<(Device, Option<String>), String> {
    let names = split_list(spec);
    let (names, why) = resolve(&names, 1)?;
    if names.len() != 1 && spec != "auto" {
        return Err(format!("--devices {spec}: this command runs on one device"));
    }
    let note = why.map(|w| format!("{w}; using {}", names[0]));
    Ok((parse_device(&names[0])?, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_a_cpu_build_and_refuses_gpus_in_one_line() {
        // The test suite links the CPU libtorch (scripts/with-libtorch.sh without M2IB_TORCH).
        if build() == Build::Cuda {
            return;
        }
        let e = parse_device("cuda:0").unwrap_err();
        assert!(
            e.contains("CPU build") && e.contains("M2IB_TORCH=cuda"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(resolve(&split_list("cpu,cuda:1"), 2).is_err());
        let (devs, note) = resolve(&split_list("auto"), 3).unwrap();
        assert_eq!(devs, vec!["cpu"; 3]);
        assert!(note.unwrap().contains("CPU build"));
    }

    #[test]
    fn names_and_lists() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu0")
            .unwrap_err()
            .contains("unknown device `gpu0`"));
        assert_eq!(split_list(" cpu, cpu ,"), vec!["cpu", "cpu"]);
        assert_eq!(
            resolve(&split_list("cpu"), 2).unwrap().0,
            vec!["cpu", "cpu"]
        );
        assert_eq!(resolve(&split_list("cpu,cpu,cpu"), 1).unwrap().0.len(), 3);
        assert!(resolve(&split_list("auto,cpu"), 1).is_err());
        assert!(resolve(&[], 1).is_err());
    }
}
