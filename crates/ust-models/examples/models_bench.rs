//! Timing and peak memory of the models of this crate (release build):
//!
//! - dense extraction of a 256×256 RGB image for p = 17, 33, 65, multi-pool vs. dilated, for
//!   inference (detached weights) and as a training forward (graph recorded through a VarMap);
//! - EfficientNet-Lite0 pooled features of 64 patches of 65×65, native and resized to 224.
//!
//! ```text
//! cargo run --release -p ust-models --example models_bench            # everything, 3 reps
//! cargo run --release -p ust-models --example models_bench -- all 5   # everything, 5 reps
//! cargo run --release -p ust-models --example models_bench -- dense 65 dilated 3 [tracked]
//! cargo run --release -p ust-models --example models_bench -- effnet 224 3
//! cargo run --release -p ust-models --example models_bench -- compare 65 5  # A/B, one process
//! ```
//!
//! Every measurement runs in its own child process so that its peak resident memory (VmHWM from
//! /proc/self/status) is its own; the time is the minimum over the repetitions (the machine is
//! shared, so the minimum is the least disturbed run). The convolution backend is ust-conv's
//! (set `UST_CONV=reference` for candle's).

use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ust_models::{
    Backbone, DenseConfig, DenseExtractor, DenseMethod, EfficientNetLite0, EfficientNetLite0Config,
    PatchNet, PatchNetConfig,
};

type BoxResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Peak resident set size of this process in MiB.
fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU time (user + system, all threads) of this process in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are fields 14, 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / ticks_per_s)
        })
        .unwrap_or(f64::NAN)
}

/// Minimum wall time and minimum CPU time (all threads) over `reps` runs of `f`.
fn min_time(reps: usize, mut f: impl FnMut() -> BoxResult<()>) -> BoxResult<(f64, f64)> {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_seconds());
        f()?;
        wall = wall.min(t.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_seconds() - c);
    }
    Ok((wall, cpu))
}

fn dense(p: usize, method: &str, reps: usize, tracked: bool) -> BoxResult<()> {
    let dev = Device::Cpu;
    let method = match method {
        "multipool" => DenseMethod::MultiPool,
        "dilated" => DenseMethod::Dilated,
        m => return Err(format!("unknown method {m}").into()),
    };
    let varmap = VarMap::new();
    let net = PatchNet::new(
        PatchNetConfig::new(p),
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    // Inference uses detached weights (no graph, intermediates freed layer by layer); a
    // training forward records the graph through the VarMap's variables.
    let net = if tracked { net } else { net.detach() };
    let dense = DenseExtractor::new(
        net,
        DenseConfig {
            method,
            ..Default::default()
        },
    );
    let image = Tensor::rand(0f32, 1f32, (1, 3, 256, 256), &dev)?;
    let base = vm_hwm_mib();
    let secs = min_time(reps, || {
        let out = dense.extract(&image)?;
        assert_eq!(out.dims(), &[1, 128, 256, 256]);
        Ok(())
    })?;
    println!(
        "dense p={p:<2} {:<9} {:<9} 256x256: {:>7.3} s wall, {:>6.2} s CPU (min of {reps}), peak RSS {:>6.0} MiB (before forward {:.0} MiB)",
        format!("{method:?}"),
        if tracked { "tracked" } else { "inference" },
        secs.0,
        secs.1,
        vm_hwm_mib(),
        base
    );
    Ok(())
}

/// Multi-pool and dilated inference alternated in one process, `rounds` times: under a
/// fluctuating machine load both see the same conditions; the minimum of each is reported.
fn compare(p: usize, rounds: usize) -> BoxResult<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let net = PatchNet::new(
        PatchNetConfig::new(p),
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?
    .detach();
    let image = Tensor::rand(0f32, 1f32, (1, 3, 256, 256), &dev)?;
    let methods = [DenseMethod::MultiPool, DenseMethod::Dilated];
    let mut best = [f64::INFINITY; 2];
    let mut best_cpu = [f64::INFINITY; 2];
    for _ in 0..rounds {
        for (k, &method) in methods.iter().enumerate() {
            let dense = DenseExtractor::new(
                net.clone(),
                DenseConfig {
                    method,
                    ..Default::default()
                },
            );
            let (t, c) = (Instant::now(), cpu_seconds());
            dense.extract(&image)?;
            best[k] = best[k].min(t.elapsed().as_secs_f64());
            best_cpu[k] = best_cpu[k].min(cpu_seconds() - c);
        }
    }
    println!(
        "dense p={p:<2} 256x256 alternated {rounds} rounds (min): MultiPool {:.3} s wall / {:.2} s CPU, Dilated {:.3} s wall / {:.2} s CPU",
        best[0], best_cpu[0], best[1], best_cpu[1]
    );
    Ok(())
}

fn effnet(size: usize, reps: usize) -> BoxResult<()> {
    let dev = Device::Cpu;
    let Some(shared) = ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR")) else {
        return Ok(());
    };
    let weights = shared.join("weights/efficientnet_lite0.safetensors");
    let resize_to = (size != 65).then_some(size);
    let net = EfficientNetLite0::load(&weights, EfficientNetLite0Config { resize_to }, &dev)?;
    let patches = Tensor::rand(0f32, 1f32, (64, 3, 65, 65), &dev)?;
    let base = vm_hwm_mib();
    let secs = min_time(reps, || {
        let f = net.pooled_features(&patches)?;
        assert_eq!(f.dims(), &[64, 1280]);
        Ok(())
    })?;
    println!(
        "efficientnet-lite0 64 patches 65x65 at {size}x{size}: {:>7.3} s wall, {:>6.2} s CPU (min of {reps}), peak RSS {:>6.0} MiB (before forward {base:.0} MiB)",
        secs.0,
        secs.1,
        vm_hwm_mib()
    );
    Ok(())
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    match args.first().map(String::as_str) {
        Some("dense") => dense(
            arg(1, "65").parse()?,
            &arg(2, "multipool"),
            arg(3, "3").parse()?,
            arg(4, "inference") == "tracked",
        ),
        Some("compare") => compare(arg(1, "65").parse()?, arg(2, "5").parse()?),
        Some("effnet") => effnet(arg(1, "65").parse()?, arg(2, "3").parse()?),
        Some("all") | None => {
            let reps = arg(1, "3");
            println!(
                "threads: {}, conv backend: {:?}",
                rayon::current_num_threads(),
                ust_conv::backend()
            );
            let exe = std::env::current_exe()?;
            let mut runs: Vec<Vec<String>> = Vec::new();
            for mode in ["inference", "tracked"] {
                for p in ["17", "33", "65"] {
                    for m in ["multipool", "dilated"] {
                        runs.push(vec![
                            "dense".into(),
                            p.into(),
                            m.into(),
                            reps.clone(),
                            mode.into(),
                        ]);
                    }
                }
            }
            runs.push(vec!["effnet".into(), "65".into(), reps.clone()]);
            runs.push(vec!["effnet".into(), "224".into(), reps.clone()]);
            for r in runs {
                let status = Command::new(&exe).args(&r).status()?;
                if !status.success() {
                    return Err(format!("{r:?} failed: {status}").into());
                }
            }
            Ok(())
        }
        Some(other) => Err(format!("unknown mode {other}").into()),
    }
}
