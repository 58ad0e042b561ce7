//! End-to-end checks of every baseline on synthetic data with a known answer, and of the
//! pipeline (subsampling, PCA, errors, determinism, configuration files).

use candle_core::Device;
use ndarray::{Array1, Array2, ArrayView2, Axis, concatenate};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use ust_baselines::{
    Autoencoder, AutoencoderConfig, BaselineConfig, BaselineError, BaselineKind, DecoderVariance,
    FitDetails, FittedBaseline, MethodConfig, NearestNeighborConfig, OneClassSvm,
    OneClassSvmConfig, PcaConfig, TrainingConfig, Vae, VaeConfig,
};

fn gaussian(rows: usize, cols: usize, rng: &mut StdRng) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| StandardNormal.sample(&mut *rng))
}

/// AUROC of outlier scores against inlier scores by its definition: the probability that a
/// random outlier scores higher than a random inlier, ties counting one half (all pairs).
fn separation(inlier_scores: &[f32], outlier_scores: &[f32]) -> f64 {
    let mut wins = 0.0f64;
    for &o in outlier_scores {
        for &i in inlier_scores {
            assert!(o.is_finite() && i.is_finite());
            wins += if o > i {
                1.0
            } else if o == i {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (inlier_scores.len() * outlier_scores.len()) as f64
}

#[test]
fn separation_helper_matches_hand_counts() {
    // Pairs (o, i): (3,1) win, (3,2) win, (2,1) win, (2,2) tie → 3.5 / 4.
    assert_eq!(separation(&[1.0, 2.0], &[3.0, 2.0]), 0.875);
    assert_eq!(separation(&[5.0], &[1.0, 2.0]), 0.0);
}

#[test]
fn one_class_svm_separates_a_gaussian_from_a_ring_of_radius_five() {
    let mut rng = StdRng::seed_from_u64(1);
    let train = gaussian(500, 2, &mut rng);
    let model = OneClassSvm::fit(&OneClassSvmConfig::default(), train.view()).unwrap();
    let inliers = gaussian(400, 2, &mut rng);
    let ring = Array2::from_shape_fn((100, 2), |(i, j)| {
        let angle = i as f32 * std::f32::consts::TAU / 100.0;
        5.0 * if j == 0 { angle.cos() } else { angle.sin() }
    });
    let origin = Array2::<f32>::zeros((1, 2));
    let origin_score = model.score(origin.view()).unwrap()[0];
    let ring_scores = model.score(ring.view()).unwrap();
    assert!(
        ring_scores.iter().all(|&s| s > origin_score),
        "origin {origin_score}, ring min {}",
        ring_scores.iter().fold(f32::INFINITY, |a, &b| a.min(b))
    );
    let inlier_scores = model.score(inliers.view()).unwrap();
    let auc = separation(&inlier_scores, &ring_scores);
    eprintln!("OC-SVM ring AUROC {auc:.4}");
    assert!(auc > 0.95, "AUROC {auc}");
    // ν bounds the fraction of training vectors outside the region (f < 0) from above.
    let outside = model
        .decision_function(train.view())
        .unwrap()
        .iter()
        .filter(|&&f| f < -1e-6)
        .count();
    assert!(
        outside as f64 <= 0.5 * 500.0 + 5.0,
        "{outside} training vectors outside"
    );
}

/// Vectors x = A u + noise on the 2-D subspace spanned by the orthonormal columns of A (16 × 2),
/// and test vectors pushed off the subspace by `offset` along a direction orthogonal to it.
struct Subspace {
    basis: Array2<f32>,
    normal: Array1<f32>,
}

impl Subspace {
    fn new(rng: &mut StdRng) -> Self {
        // Gram–Schmidt on three random vectors: two span the subspace, the third is normal.
        let raw = gaussian(3, 16, rng);
        let mut q: Vec<Array1<f32>> = Vec::new();
        for r in raw.rows() {
            let mut v = r.to_owned();
            for u in &q {
                let p = v.dot(u);
                v.scaled_add(-p, u);
            }
            let n = v.dot(&v).sqrt();
            q.push(v / n);
        }
        let basis = ndarray::stack(Axis(1), &[q[0].view(), q[1].view()]).unwrap();
        Self {
            basis,
            normal: q[2].clone(),
        }
    }

    fn sample(&self, n: usize, offset: f32, rng: &mut StdRng) -> Array2<f32> {
        let u = gaussian(n, 2, rng) * 2.0;
        let noise = gaussian(n, 16, rng) * 0.02;
        let off = Array2::from_shape_fn((n, 16), |(_, j)| offset * self.normal[j]);
        u.dot(&self.basis.t()) + noise + off
    }
}

fn small_training(epochs: usize) -> TrainingConfig {
    TrainingConfig {
        epochs,
        batch_size: 64,
        learning_rate: 3e-3,
        standardize: true,
    }
}

#[test]
fn autoencoder_loss_decreases_and_off_subspace_vectors_score_higher() {
    let mut rng = StdRng::seed_from_u64(2);
    let space = Subspace::new(&mut rng);
    let train = space.sample(2000, 0.0, &mut rng);
    let config = AutoencoderConfig {
        hidden_widths: vec![32, 2],
        training: small_training(25),
        ..Default::default()
    };
    let model = Autoencoder::fit(&config, train.view(), 7, &Device::Cpu).unwrap();
    let history = model.loss_history();
    assert_eq!(history.len(), 25);
    assert!(
        history[24] < 0.2 * history[0],
        "loss {} → {}",
        history[0],
        history[24]
    );
    let inliers = space.sample(300, 0.0, &mut rng);
    let outliers = space.sample(300, 1.5, &mut rng);
    let auc = separation(
        &model.score(inliers.view()).unwrap(),
        &model.score(outliers.view()).unwrap(),
    );
    eprintln!(
        "autoencoder subspace AUROC {auc:.4}, loss {:.4} → {:.4}",
        history[0], history[24]
    );
    assert!(auc > 0.9, "AUROC {auc}");
    // The reconstruction of an inlier is close to it in input units.
    let rec = model
        .reconstruct(inliers.slice(ndarray::s![..5, ..]))
        .unwrap();
    let err: f32 = rec
        .iter()
        .zip(inliers.slice(ndarray::s![..5, ..]).iter())
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        / 5.0;
    assert!(err < 0.5, "mean squared reconstruction error {err}");
    // Deterministic given the seed.
    let again = Autoencoder::fit(&config, train.view(), 7, &Device::Cpu).unwrap();
    assert_eq!(again.loss_history(), history);
    assert_eq!(
        again.score(inliers.view()).unwrap(),
        model.score(inliers.view()).unwrap()
    );
}

#[test]
fn vae_loss_decreases_and_off_subspace_vectors_score_higher() {
    let mut rng = StdRng::seed_from_u64(3);
    let space = Subspace::new(&mut rng);
    let train = space.sample(2000, 0.0, &mut rng);
    let inliers = space.sample(300, 0.0, &mut rng);
    let outliers = space.sample(300, 1.5, &mut rng);
    for variance in [DecoderVariance::Learned, DecoderVariance::Fixed(0.1)] {
        let config = VaeConfig {
            hidden_widths: vec![32],
            latent_dim: 2,
            decoder_variance: variance,
            training: small_training(25),
            ..Default::default()
        };
        let model = Vae::fit(&config, train.view(), 11, &Device::Cpu).unwrap();
        let history = model.loss_history();
        assert!(
            history[24] < history[0] - 5.0,
            "{variance:?}: −ELBO {} → {}",
            history[0],
            history[24]
        );
        let inlier_scores = model.score(inliers.view()).unwrap();
        let auc = separation(&inlier_scores, &model.score(outliers.view()).unwrap());
        eprintln!(
            "VAE {variance:?} subspace AUROC {auc:.4}, -ELBO {:.3} → {:.3}",
            history[0], history[24]
        );
        assert!(auc > 0.9, "{variance:?}: AUROC {auc}");
        // Scores do not depend on what else is scored (shared latent noise), up to the
        // rounding of matrix products of another shape.
        let first_alone = model.score(inliers.slice(ndarray::s![..1, ..])).unwrap();
        assert!(
            (first_alone[0] - inlier_scores[0]).abs() <= 1e-5 * inlier_scores[0].abs().max(1.0),
            "{} vs {}",
            first_alone[0],
            inlier_scores[0]
        );
    }
}

#[test]
fn pipeline_subsamples_projects_and_reports() {
    let mut rng = StdRng::seed_from_u64(5);
    // 8-d data with variance in 3 directions only (plus tiny noise): PCA at 0.95 keeps ≤ 3.
    let low = gaussian(3000, 3, &mut rng);
    let mix = gaussian(3, 8, &mut rng);
    let train = low.dot(&mix) + gaussian(3000, 8, &mut rng) * 0.01;
    let config = BaselineConfig {
        max_train_vectors: Some(1000),
        ..BaselineConfig::paper(BaselineKind::NearestNeighbor)
    };
    let fitted = FittedBaseline::fit(&config, train.view(), &Device::Cpu).unwrap();
    let summary = fitted.summary();
    assert_eq!(summary.n_train_given, 3000);
    assert_eq!(summary.n_train_used, 1000);
    assert_eq!(summary.input_dim, 8);
    let k = summary.pca_components.unwrap();
    assert!((1..=3).contains(&k), "{k} components");
    assert_eq!(summary.feature_dim, k);
    assert!(summary.pca_explained_variance.unwrap() >= 0.95);
    assert!(summary.fit_seconds >= summary.pca_seconds);
    assert_eq!(
        summary.details,
        FitDetails::NearestNeighbor {
            n_reference_vectors: 1000
        }
    );
    // The score equals 1-NN distance in PCA space to the chosen subset: brute force check.
    let pca = fitted.pca().unwrap();
    let test = gaussian(20, 3, &mut rng).dot(&mix);
    let scores = fitted.score(test.view()).unwrap();
    let subset =
        ust_baselines::subsample_indices(3000, Some(1000), ust_baselines::derive_seed(0, 1))
            .unwrap();
    let reference = pca
        .transform(train.select(Axis(0), &subset).view())
        .unwrap();
    let projected = pca.transform(test.view()).unwrap();
    for (q, s) in projected.rows().into_iter().zip(&scores) {
        let best = reference
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .zip(q.iter())
                    .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                    .sum::<f64>()
            })
            .fold(f64::INFINITY, f64::min)
            .sqrt();
        assert!(
            (f64::from(*s) - best).abs() <= 1e-4 * best.max(1e-3),
            "{s} vs {best}"
        );
    }
    // Deterministic given the seed; another seed draws another subset.
    let again = FittedBaseline::fit(&config, train.view(), &Device::Cpu).unwrap();
    assert_eq!(again.score(test.view()).unwrap(), scores);
    let other = FittedBaseline::fit(
        &BaselineConfig {
            seed: 1,
            ..config.clone()
        },
        train.view(),
        &Device::Cpu,
    )
    .unwrap();
    assert_ne!(other.score(test.view()).unwrap(), scores);
}

#[test]
fn every_baseline_fits_and_scores_through_the_pipeline() {
    let mut rng = StdRng::seed_from_u64(6);
    let train = gaussian(600, 6, &mut rng);
    let inliers = gaussian(100, 6, &mut rng);
    let outliers = gaussian(100, 6, &mut rng) * 4.0;
    let test = concatenate(Axis(0), &[inliers.view(), outliers.view()]).unwrap();
    for kind in BaselineKind::ALL {
        let mut config = BaselineConfig::paper(kind);
        match &mut config.method {
            MethodConfig::Autoencoder(c) => {
                c.hidden_widths = vec![16, 3];
                c.training = small_training(10);
            }
            MethodConfig::Vae(c) => {
                c.hidden_widths = vec![16];
                c.latent_dim = 3;
                c.training = small_training(10);
            }
            MethodConfig::KMeans(c) => c.n_runs = 3,
            _ => {}
        }
        let fitted = FittedBaseline::fit(&config, train.view(), &Device::Cpu).unwrap();
        assert_eq!(fitted.kind(), kind);
        let scores = fitted.score(test.view()).unwrap();
        assert_eq!(scores.len(), 200);
        let auc = separation(&scores[..100], &scores[100..]);
        eprintln!("{kind}: AUROC {auc:.4}");
        assert!(auc > 0.85, "{kind}: AUROC {auc}");
        let json = serde_json::to_string(fitted.summary()).unwrap();
        assert!(json.contains("fit_seconds"));
    }
}

#[test]
fn pipeline_errors_are_typed_and_name_the_problem() {
    let mut rng = StdRng::seed_from_u64(7);
    let train = gaussian(50, 4, &mut rng);
    let config = BaselineConfig::paper(BaselineKind::NearestNeighbor);
    assert!(matches!(
        FittedBaseline::fit(&config, Array2::<f32>::zeros((0, 4)).view(), &Device::Cpu),
        Err(BaselineError::EmptyTrainingSet { .. })
    ));
    let mut bad = train.clone();
    bad[(17, 2)] = f32::NAN;
    match FittedBaseline::fit(&config, bad.view(), &Device::Cpu) {
        Err(
            e @ BaselineError::NonFinite {
                row: 17, column: 2, ..
            },
        ) => {
            assert!(e.to_string().contains("row 17"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let fitted = FittedBaseline::fit(&config, train.view(), &Device::Cpu).unwrap();
    assert!(matches!(
        fitted.score(gaussian(3, 5, &mut rng).view()),
        Err(BaselineError::DimensionMismatch {
            expected: 4,
            got: 5,
            ..
        })
    ));
    let mut test = gaussian(3, 4, &mut rng);
    test[(2, 0)] = f32::INFINITY;
    assert!(matches!(
        fitted.score(test.view()),
        Err(BaselineError::NonFinite {
            row: 2,
            column: 0,
            ..
        })
    ));
    let zero_subset = BaselineConfig {
        max_train_vectors: Some(0),
        ..config.clone()
    };
    assert!(matches!(
        zero_subset.check(),
        Err(BaselineError::InvalidParameter {
            name: "max_train_vectors",
            ..
        })
    ));
    let bad_pca = BaselineConfig {
        pca: Some(PcaConfig {
            variance_fraction: 2.0,
        }),
        ..config.clone()
    };
    assert!(matches!(
        FittedBaseline::fit(&bad_pca, train.view(), &Device::Cpu),
        Err(BaselineError::InvalidParameter {
            name: "variance_fraction",
            ..
        })
    ));
    let kmeans = BaselineConfig {
        max_train_vectors: Some(5),
        ..BaselineConfig::paper(BaselineKind::KMeans)
    };
    assert!(matches!(
        FittedBaseline::fit(&kmeans, train.view(), &Device::Cpu),
        Err(BaselineError::TooFewTrainingVectors {
            needed: 10,
            got: 5,
            ..
        })
    ));
}

#[test]
fn configurations_round_trip_through_json_and_fill_defaults() {
    for kind in BaselineKind::ALL {
        let config = BaselineConfig::paper(kind);
        let text = serde_json::to_string(&config).unwrap();
        let back: BaselineConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config);
    }
    let partial: BaselineConfig = serde_json::from_str(
        r#"{"method": {"method": "one-class-svm", "nu": 0.1, "gamma": {"value": 0.5}},
            "pca": {"variance_fraction": 0.9}, "max_train_vectors": null, "seed": 3}"#,
    )
    .unwrap();
    match partial.method {
        MethodConfig::OneClassSvm(c) => {
            assert_eq!(c.nu, 0.1);
            assert_eq!(c.gamma, ust_baselines::SvmGamma::Value(0.5));
            assert_eq!(c.tolerance, 1e-3);
        }
        other => panic!("unexpected {other:?}"),
    }
    let knn: BaselineConfig = serde_json::from_str(
        r#"{"method": {"method": "nearest-neighbor"}, "pca": null, "max_train_vectors": 10, "seed": 0}"#,
    )
    .unwrap();
    assert_eq!(
        knn.method,
        MethodConfig::NearestNeighbor(NearestNeighborConfig::default())
    );
}

/// Scoring in blocks gives the same result as scoring rows one at a time.
#[test]
fn scores_do_not_depend_on_how_rows_are_grouped() {
    let mut rng = StdRng::seed_from_u64(8);
    let train = gaussian(300, 5, &mut rng);
    let test = gaussian(40, 5, &mut rng);
    for kind in [
        BaselineKind::NearestNeighbor,
        BaselineKind::KMeans,
        BaselineKind::OneClassSvm,
    ] {
        let fitted =
            FittedBaseline::fit(&BaselineConfig::paper(kind), train.view(), &Device::Cpu).unwrap();
        let all = fitted.score(test.view()).unwrap();
        for i in [0, 17, 39] {
            let one: ArrayView2<f32> = test.slice(ndarray::s![i..i + 1, ..]);
            let s = fitted.score(one).unwrap()[0];
            assert!(
                (s - all[i]).abs() <= 1e-6 * all[i].abs().max(1.0),
                "{kind} row {i}"
            );
        }
    }
}
