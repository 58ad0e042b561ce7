//! Helpers shared by the tests of this crate.

use std::path::PathBuf;

/// The shared data folder ([`ust_data::shared::shared_dir_for_tests`]); `None` when absent.
pub(crate) fn shared_dir() -> Option<PathBuf> {
    ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR"))
}

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::patch_net::{PatchNet, PatchNetConfig};

/// A tensor of uniform values in [-scale, scale) from a seeded generator (candle's CPU device
/// cannot be seeded).
pub(crate) fn seeded_uniform(shape: &[usize], scale: f64, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-scale..scale) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A trainable patch network with reproducible weights: uniform weights with the variance of
/// Kaiming initialisation, biases in ±0.3 (larger than the default, so that border regions with
/// constant input are not trivially zero).
pub(crate) fn seeded_patch_net(cfg: PatchNetConfig, seed: u64) -> (PatchNet, VarMap) {
    let varmap = VarMap::new();
    let net = PatchNet::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut vars: Vec<_> = varmap.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, (name, var)) in vars.iter().enumerate() {
        let dims = var.dims().to_vec();
        let value = if name.ends_with("bias") {
            seeded_uniform(&dims, 0.3, seed * 1000 + k as u64)
        } else {
            let fan_in: usize = dims[1..].iter().product();
            // Uniform on [-a, a] has variance a²/3; Kaiming normal has 2/fan_in.
            let a = (6.0 / fan_in as f64).sqrt();
            seeded_uniform(&dims, a, seed * 1000 + k as u64)
        };
        var.set(&value).unwrap();
    }
    (net, varmap)
}

/// The largest |a − b| (b broadcast to a's shape).
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.broadcast_sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
