//! `ust bench dense`: seconds per image for dense extraction and for one student training step
//! (forward, loss, backward, Adam) at receptive field p on an S×S image, and the peak memory.
//! Weights and images are random (timing does not depend on them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::device::DeviceArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use ust_detector::StudentTrainingConfig;
use ust_engine::memory::peak_rss_mib;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Dense extraction (and with --train a student training step) on one image.
    Dense(DenseArgs),
}

#[derive(Args, Debug)]
pub struct DenseArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Receptive field: 17, 33 or 65.
    #[arg(long, default_value_t = 65)]
    pub p: usize,
    /// Image side S (an S×S RGB image).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Also time a student training step.
    #[arg(long)]
    pub train: bool,
    /// Worker threads (default: rayon's choice, one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed repetitions (the minimum and the mean are reported; one untimed warm-up first).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Also write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Timing {
    min_s: f64,
    mean_s: f64,
}

#[derive(Debug, Serialize)]
struct DenseBench {
    p: usize,
    size: usize,
    threads: usize,
    repeats: usize,
    inference: Timing,
    train_step: Option<Timing>,
    /// Peak resident memory of the process (VmHWM), MiB.
    peak_rss_mib: Option<f64>,
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Dense(args) => dense(args),
    }
}

fn time(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    f()?; // warm-up: allocations, thread pool, page faults
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(Timing {
        min_s: times.iter().cloned().fold(f64::INFINITY, f64::min),
        mean_s: times.iter().sum::<f64>() / times.len() as f64,
    })
}

fn dense(args: DenseArgs) -> Result<ExitCode> {
    use candle_core::{DType, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use ust_models::{DenseConfig, DenseExtractor, PatchNet, PatchNetConfig};

    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let device = args.device.open()?;
    let config = PatchNetConfig::new(args.p);
    config.check()?;
    let varmap = VarMap::new();
    let net = PatchNet::new(
        config,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
    )?;
    let s = args.size;
    let image = Tensor::rand(0f32, 1f32, (1, 3, s, s), &device)?;
    let frozen = DenseExtractor::new(net.detach(), DenseConfig::default());
    let inference = time(args.repeats, || {
        let y = frozen.extract(&image)?;
        y.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let train_step = if args.train {
        let student = DenseExtractor::new(net.clone(), DenseConfig::default());
        let target = Tensor::randn(0f32, 1f32, (1, net.descriptor_dim(), s, s), &device)?;
        let mut vars: Vec<_> = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned lock"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        // The students' optimiser as the paper configures it.
        let mut adam = ust_detector::Adam::new(vars, StudentTrainingConfig::paper().optimizer)?;
        Some(time(args.repeats, || {
            let y = student.extract(&image)?;
            let loss = ust_losses::student_regression_loss(&y, &target)?;
            let grads = loss.backward()?;
            adam.step(&grads)?
                .map_err(|b| anyhow::anyhow!("non-finite gradient in {}", b.parameter))?;
            Ok(())
        })?)
    } else {
        None
    };
    let report = DenseBench {
        p: args.p,
        size: s,
        threads: rayon::current_num_threads(),
        repeats: args.repeats,
        inference,
        train_step,
        peak_rss_mib: peak_rss_mib(),
    };
    println!(
        "dense p={} {}x{} threads={}: inference {:.3} s/image (mean {:.3})",
        report.p, s, s, report.threads, report.inference.min_s, report.inference.mean_s
    );
    if let Some(t) = &report.train_step {
        println!(
            "  student training step {:.3} s/image (mean {:.3})",
            t.min_s, t.mean_s
        );
    }
    if let Some(m) = report.peak_rss_mib {
        println!("  peak resident memory {m:.0} MiB");
    }
    if let Some(path) = &args.json {
        crate::text::write_json(path, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}
