//! Helpers of this crate's tests: where the shared data lives.

use std::path::PathBuf;

/// `shared/rel` ([`crate::shared::shared_dir_for_tests`]) when it exists; otherwise a
/// "skipping" note on stderr and `None`.
pub fn shared_path(rel: &str) -> Option<PathBuf> {
    let path = crate::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR"))?.join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found (set UST_SHARED)", path.display());
        None
    }
}
