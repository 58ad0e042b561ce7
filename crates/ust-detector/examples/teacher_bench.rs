//! Cost of the parts of a teacher pretraining step (release build), to size the `cpu` preset:
//!
//! - `step-kc`: teacher + decoder forward, λk·Lk + λc·Lc, backward, Adam, on a batch of
//!   patches with given distillation targets (what a step costs when the targets are cached);
//! - `step-m`: the same for the triplet loss alone (3 × batch patches through the teacher);
//! - `backbone`: EfficientNet-Lite0 pooled features of a batch, at the patch size and resized to
//!   224 (what computing the targets for every batch adds).
//!
//! ```text
//! cargo run --release -p ust-detector --example teacher_bench -- [REPS] [BATCH] [P...]
//! cargo run --release -p ust-detector --example teacher_bench -- 3 64 17 33 65
//! ```
//!
//! Each figure is the minimum wall time over REPS repetitions (the machine is shared: the
//! minimum is the least disturbed run) and, beside it, the process CPU time of that repetition
//! (user + system over all threads, from /proc/self/stat), which load inflates less. The
//! EfficientNet weights come from `$UST_SHARED/weights/` (default `../shared`).

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ust_data::shared::shared_dir;
use ust_detector::{Adam, TeacherTrainingConfig};
use ust_losses::{
    CompactnessKind, DistillationDecoder, DistillationDecoderConfig, TeacherBatch,
    TeacherLossWeights, teacher_loss,
};
use ust_models::{Backbone, EfficientNetLite0, EfficientNetLite0Config, PatchNet, PatchNetConfig};

type BoxResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Process CPU seconds (user + system, all threads).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After ')' the state is field 3, so field k is at index k − 3.
    (ticks(14 - 3) + ticks(15 - 3)) / 100.0
}

/// (min wall seconds, CPU seconds of that repetition).
fn measure(reps: usize, mut f: impl FnMut() -> BoxResult<()>) -> BoxResult<(f64, f64)> {
    f()?; // warm-up (allocations, thread pools)
    let mut best = (f64::INFINITY, 0.0);
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_seconds());
        f()?;
        let wall = t.elapsed().as_secs_f64();
        if wall < best.0 {
            best = (wall, cpu_seconds() - c);
        }
    }
    Ok(best)
}

fn weights(k: f64, m: f64, c: f64) -> TeacherLossWeights {
    TeacherLossWeights {
        lambda_k: k,
        lambda_m: m,
        lambda_c: c,
        margin: 1.0,
        compactness: CompactnessKind::Squared,
    }
}

fn bench_p(
    p: usize,
    batch: usize,
    reps: usize,
    backbone: Option<&EfficientNetLite0>,
) -> BoxResult<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let teacher = PatchNet::new(PatchNetConfig::new(p), vb.clone())?;
    let decoder = DistillationDecoder::new(
        DistillationDecoderConfig {
            descriptor_dim: 128,
            target_dim: 1280,
        },
        vb.pp("decoder"),
    )?;
    let params = varmap
        .data()
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut adam = Adam::new(params, TeacherTrainingConfig::paper(p).optimizer)?;
    let patches = Tensor::rand(0f32, 1f32, (batch, 3, p, p), &dev)?;
    let targets = Tensor::rand(0f32, 1f32, (batch, 1280), &dev)?;

    let kc = weights(1.0, 0.0, 1.0).check()?;
    let (wall, cpu) = measure(reps, || {
        let d = teacher.descriptors(&patches)?;
        let decoded = decoder.forward(&d)?;
        let loss = teacher_loss(
            &kc,
            &TeacherBatch {
                anchor: &d,
                positive: None,
                negative: None,
                decoded: Some(&decoded),
                distillation_target: Some(&targets),
            },
        )?;
        adam.step(&loss.total.backward()?)?
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    })?;
    println!(
        "p={p:2} batch={batch} step-kc   {wall:7.3} s wall  {cpu:7.3} s cpu  {:7.1} patches/s",
        batch as f64 / wall
    );

    let m = weights(0.0, 1.0, 0.0).check()?;
    let triplets = Tensor::rand(0f32, 1f32, (3 * batch, 3, p, p), &dev)?;
    let (wall, cpu) = measure(reps, || {
        let all = teacher.descriptors(&triplets)?;
        let (a, pos, neg) = (
            all.narrow(0, 0, batch)?,
            all.narrow(0, batch, batch)?,
            all.narrow(0, 2 * batch, batch)?,
        );
        let loss = teacher_loss(
            &m,
            &TeacherBatch {
                anchor: &a,
                positive: Some(&pos),
                negative: Some(&neg),
                decoded: None,
                distillation_target: None,
            },
        )?;
        adam.step(&loss.total.backward()?)?
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    })?;
    println!(
        "p={p:2} batch={batch} step-m    {wall:7.3} s wall  {cpu:7.3} s cpu  {:7.1} triplets/s",
        batch as f64 / wall
    );

    if let Some(net) = backbone {
        let (wall, cpu) = measure(reps, || {
            net.pooled_features(&patches)?;
            Ok(())
        })?;
        println!(
            "p={p:2} batch={batch} backbone@{p:<3} {wall:7.3} s wall  {cpu:7.3} s cpu  {:7.1} patches/s",
            batch as f64 / wall
        );
    }
    Ok(())
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let batch: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let ps: Vec<usize> = if args.len() > 2 {
        args[2..]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![17, 33, 65]
    };
    let path = shared_dir().join("weights/efficientnet_lite0.safetensors");
    let dev = Device::Cpu;
    let native = if path.is_file() {
        Some(EfficientNetLite0::load(
            &path,
            EfficientNetLite0Config::default(),
            &dev,
        )?)
    } else {
        eprintln!("{} not found: backbone timings skipped", path.display());
        None
    };
    for p in ps {
        bench_p(p, batch, reps, native.as_ref())?;
    }
    if path.is_file() {
        let resized = EfficientNetLite0::load(
            &path,
            EfficientNetLite0Config {
                resize_to: Some(224),
            },
            &dev,
        )?;
        let patches = Tensor::rand(0f32, 1f32, (batch, 3, 33, 33), &dev)?;
        let (wall, cpu) = measure(reps.min(2), || {
            resized.pooled_features(&patches)?;
            Ok(())
        })?;
        println!(
            "batch={batch} backbone@224 {wall:7.3} s wall  {cpu:7.3} s cpu  {:7.1} patches/s",
            batch as f64 / wall
        );
    }
    Ok(())
}
