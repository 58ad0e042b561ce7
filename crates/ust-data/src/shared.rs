//! Where the shared data (real images, pretrained weights) lives: the one lookup of the
//! workspace. Configured paths may start with `$UST_SHARED`.

use std::path::PathBuf;

/// The environment variable naming the shared folder.
pub const SHARED_ENV: &str = "UST_SHARED";

/// The placeholder for the shared folder at the start of a configured path.
pub const SHARED_PLACEHOLDER: &str = "$UST_SHARED";

/// The shared folder: `$UST_SHARED` (when set and not empty), else `../shared` relative to the
/// working directory (beside the checkout when run from its root).
pub fn shared_dir() -> PathBuf {
    std::env::var_os(SHARED_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"))
}

/// `path` with a leading `$UST_SHARED` replaced by [`shared_dir`], as text (experiment hashes
/// record it: `$UST_SHARED/data/x` becomes `<shared>/data/x`).
pub fn expand_shared(path: &str) -> String {
    match path.strip_prefix(SHARED_PLACEHOLDER) {
        Some(rest) => format!("{}{rest}", shared_dir().display()),
        None => path.to_string(),
    }
}

/// For tests and benches, which run in their crate's folder (`crates/<name>`): `$UST_SHARED`,
/// else the `shared/` folder beside the checkout of `manifest_dir` (pass
/// `env!("CARGO_MANIFEST_DIR")`); `None`, with a "skipping" note on stderr, when it does not
/// exist, so that such tests pass on a fresh clone without it.
pub fn shared_dir_for_tests(manifest_dir: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(SHARED_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(manifest_dir).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: shared data {} not found (set {SHARED_ENV})",
            dir.display()
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_leading_placeholder_is_expanded() {
        assert_eq!(expand_shared("/a/b"), "/a/b");
        assert_eq!(expand_shared("x/$UST_SHARED"), "x/$UST_SHARED");
        assert_eq!(
            expand_shared("$UST_SHARED/data/x"),
            format!("{}/data/x", shared_dir().display())
        );
    }
}
