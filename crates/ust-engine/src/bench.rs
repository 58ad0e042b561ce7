//! `ust bench dense`: seconds per image for dense extraction and for one student training step
//! (forward, loss, backward, Adam) at receptive field p on an S×S image, and the peak memory.
//! Weights and images are random (timing does not depend on them).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;
use ust_detector::StudentTrainingConfig;
use ust_models::{DenseConfig, DenseExtractor, PatchNet, PatchNetConfig};

use crate::error::{EngineError, Result};
use crate::memory::peak_rss_mib;

/// The fastest and the mean of the timed repetitions, seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    pub min_s: f64,
    pub mean_s: f64,
}

/// The figures of one benchmark (`--json`).
#[derive(Debug, Serialize)]
pub struct DenseBench {
    pub p: usize,
    pub size: usize,
    pub threads: usize,
    pub repeats: usize,
    pub inference: Timing,
    pub train_step: Option<Timing>,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// One untimed warm-up run of `f` (allocations, thread pool, page faults), then `repeats`
/// (at least one) timed ones.
fn time(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    f()?;
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

/// Times dense extraction of a random `size`×`size` image by a randomly initialised patch
/// network of receptive field `p` and, with `train`, one student training step with the
/// paper's optimiser, on `device` in the current rayon pool.
pub fn bench_dense(
    p: usize,
    size: usize,
    train: bool,
    repeats: usize,
    device: &Device,
) -> Result<DenseBench> {
    let config = PatchNetConfig::new(p);
    config.check()?;
    let varmap = VarMap::new();
    let net = PatchNet::new(config, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let image = Tensor::rand(0f32, 1f32, (1, 3, size, size), device)?;
    let frozen = DenseExtractor::new(net.detach(), DenseConfig::default());
    let inference = time(repeats, || {
        let y = frozen
            .extract(&image)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        y.sum_all().and_then(|s| s.to_scalar::<f32>())?;
        Ok(())
    })?;
    let train_step = if train {
        let student = DenseExtractor::new(net.clone(), DenseConfig::default());
        let target = Tensor::randn(0f32, 1f32, (1, net.descriptor_dim(), size, size), device)?;
        let mut vars: Vec<_> = varmap
            .data()
            .lock()
            .map_err(|_| EngineError::Invalid("poisoned lock".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        // The students' optimiser as the paper configures it.
        let mut adam = ust_detector::Adam::new(vars, StudentTrainingConfig::paper().optimizer)?;
        Some(time(repeats, || {
            let y = student.extract(&image)?;
            let loss = ust_losses::student_regression_loss(&y, &target)?;
            let grads = loss.backward()?;
            adam.step(&grads)?.map_err(|b| {
                EngineError::Invalid(format!("non-finite gradient in {}", b.parameter))
            })?;
            Ok(())
        })?)
    } else {
        None
    };
    Ok(DenseBench {
        p,
        size,
        threads: rayon::current_num_threads(),
        repeats,
        inference,
        train_step,
        peak_rss_mib: peak_rss_mib(),
    })
}

#[cfg(test)]
mod tests {
    /// A small benchmark runs both parts; a receptive field without a network is refused.
    #[test]
    fn a_small_benchmark_times_both_parts() {
        let dev = candle_core::Device::Cpu;
        let b = super::bench_dense(17, 24, true, 1, &dev).unwrap();
        assert!(b.inference.min_s <= b.inference.mean_s);
        assert!(b.train_step.is_some());
        assert!(super::bench_dense(18, 24, false, 1, &dev).is_err());
    }
}
