//! Helpers shared by the unit tests: central finite differences and a tolerance check.

/// ∂f/∂x_i by central differences with step h = 1e-6 (f64 throughout).
pub(crate) fn numeric_gradient(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let mut plus = x.to_vec();
            let mut minus = x.to_vec();
            plus[i] += h;
            minus[i] -= h;
            (f(&plus) - f(&minus)) / (2.0 * h)
        })
        .collect()
}

/// Asserts |a_i − b_i| ≤ tol · max(1, |b_i|) for every i, and that `b` is not all zeros (a
/// gradient check against zeros would pass for a broken backward pass that returns zeros).
pub(crate) fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    assert!(
        b.iter().any(|v| v.abs() > 1e-3),
        "reference is all ~0: {b:?}"
    );
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "component {i}: {x} vs {y}\n  analytic {a:?}\n  numeric  {b:?}"
        );
    }
}
