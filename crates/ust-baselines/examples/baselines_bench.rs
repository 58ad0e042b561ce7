//! Fit and score times of every baseline with its `paper` configuration on random descriptors.
//!
//! ```text
//! cargo run --release -p ust-baselines --example baselines_bench -- [n_train] [n_test] [dim]
//! ```
//!
//! Defaults: 20 000 training and 200 000 test vectors of dimension 128, Gaussian with standard
//! deviation exp(−j / 40) along dimension j (a decaying spectrum, so that PCA at 95 % keeps a
//! fraction of the dimensions as it does on real descriptors).

use std::time::Instant;

use candle_core::Device;
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use ust_baselines::ndarray::Array2;
use ust_baselines::{BaselineConfig, BaselineKind, FittedBaseline};

fn random_descriptors(n: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, d), |(_, j)| {
        let g: f32 = StandardNormal.sample(&mut rng);
        g * (-(j as f32) / 40.0).exp()
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n_train = args.first().copied().unwrap_or(20_000);
    let n_test = args.get(1).copied().unwrap_or(200_000);
    let dim = args.get(2).copied().unwrap_or(128);
    println!(
        "n_train {n_train}, n_test {n_test}, d {dim}, rayon threads {}",
        rayon::current_num_threads()
    );
    let train = random_descriptors(n_train, dim, 1);
    let test = random_descriptors(n_test, dim, 2);
    println!(
        "{:<8} {:>8} {:>6} {:>9} {:>9} {:>10}",
        "method", "n_used", "pca_k", "fit_s", "score_s", "vectors/s"
    );
    for kind in BaselineKind::ALL {
        let config = BaselineConfig::paper(kind);
        // A CPU benchmark (see the module documentation): the networks train on the host.
        let fitted = FittedBaseline::fit(&config, train.view(), &Device::Cpu)?;
        let start = Instant::now();
        let scores = fitted.score(test.view())?;
        let score_s = start.elapsed().as_secs_f64();
        assert_eq!(scores.len(), n_test);
        let s = fitted.summary();
        println!(
            "{:<8} {:>8} {:>6} {:>9.2} {:>9.2} {:>10.0}",
            kind.paper_name(),
            s.n_train_used,
            s.pca_components
                .map_or_else(|| "-".to_string(), |k| k.to_string()),
            s.fit_seconds,
            score_s,
            n_test as f64 / score_s
        );
    }
    Ok(())
}
