//! Where `ust` finds the teachers the project ships when no `--teacher` is given.

use std::path::{Path, PathBuf};

use crate::error::{DetectorError, Result};

/// Environment variable naming a folder of teacher files (searched first).
pub const MODELS_ENV: &str = "UST_MODELS";

/// The file name of the shipped teacher for receptive field `patch_size`.
pub fn teacher_file_name(patch_size: usize) -> String {
    format!("teacher-p{patch_size}.safetensors")
}

/// The folders searched: only `$UST_MODELS` when it is set; otherwise `./models`, then
/// `models/` in every ancestor of the running executable's folder (so `target/release/ust`
/// finds the checkout's `models/` from any working directory).
pub fn model_dirs() -> Vec<PathBuf> {
    if let Some(d) = std::env::var_os(MODELS_ENV).filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(d)];
    }
    let mut dirs = vec![PathBuf::from("models")];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let candidate = dir.join("models");
            if !dirs.contains(&candidate) {
                dirs.push(candidate);
            }
        }
    }
    dirs
}

/// The first `teacher-p<P>.safetensors` in `dirs`.
pub fn find_teacher_in(dirs: &[PathBuf], patch_size: usize) -> Result<PathBuf> {
    let name = teacher_file_name(patch_size);
    dirs.iter()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            DetectorError::InvalidConfig(format!(
                "no teacher for p={patch_size}: {name} is in none of [{}]; pass --teacher PATH \
                 or set {MODELS_ENV}",
                searched.join(", ")
            ))
        })
}

/// The shipped teacher for `patch_size`, searched in [`model_dirs`].
pub fn find_default_teacher(patch_size: usize) -> Result<PathBuf> {
    find_teacher_in(&model_dirs(), patch_size)
}

/// `rel` under the working directory, or under the first ancestor of the running
/// executable's folder that has it (the checkout, for `target/release/ust`).
pub fn find_in_project(rel: &Path) -> Option<PathBuf> {
    if rel.exists() {
        return Some(rel.to_path_buf());
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|d| d.join(rel))
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_folder_holding_the_file_and_names_all_when_missing() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("teacher-p33.safetensors"), b"x").unwrap();
        std::fs::write(a.path().join("teacher-p17.safetensors"), b"x").unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(
            find_teacher_in(&dirs, 33).unwrap(),
            b.path().join("teacher-p33.safetensors")
        );
        assert_eq!(
            find_teacher_in(&dirs, 17).unwrap(),
            a.path().join("teacher-p17.safetensors")
        );
        let err = find_teacher_in(&dirs, 65).unwrap_err().to_string();
        assert!(err.contains("teacher-p65.safetensors"), "{err}");
        assert!(err.contains(&a.path().display().to_string()), "{err}");
        assert!(err.contains("--teacher"), "{err}");
    }
}
