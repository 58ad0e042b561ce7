//! Helpers of this crate's tests: where the shared data lives.

use std::path::PathBuf;

/// `$UST_SHARED`, or the `shared/` folder beside the checkout.
pub fn shared_root() -> PathBuf {
    std::env::var_os("UST_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")))
}

/// `shared_root()/rel` when it exists; otherwise a "skipping" note on stderr and `None`.
pub fn shared_path(rel: &str) -> Option<PathBuf> {
    let path = shared_root().join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found (set UST_SHARED)", path.display());
        None
    }
}
