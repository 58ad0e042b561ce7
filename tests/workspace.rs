//! Checks of the workspace as a new user meets it (no binary run).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The minimum Rust version the README states is the workspace's `rust-version`, and it is
/// new enough for the let-chains the code uses (stable since 1.88).
#[test]
fn the_stated_minimum_rust_version_builds_the_code() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version in the workspace manifest");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("stable, {version} or newer")),
        "the README states another minimum than rust-version = {version}"
    );
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let let_chain = files.iter().find(|f| {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .any(|l| l.trim_start().starts_with("&& let "))
    });
    if let Some(file) = let_chain {
        assert!(
            minor >= 88,
            "{} uses let-chains (Rust 1.88) but rust-version is {version}",
            file.display()
        );
    }
}
