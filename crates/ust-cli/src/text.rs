//! How the commands print numbers in their reports.

/// A figure with four decimals, or `–` when there is none (an image AUROC without defect-free
/// or without defective test images).
pub fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "–".into())
}
