//! Finding image files in folders: one folder, or a whole tree (an "image folder" such as
//! `natural-images/` or an ImageNet `train/` tree with one subfolder per class).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// Whether the path's extension is one of [`IMAGE_EXTENSIONS`] and its name is not hidden
/// (names starting with `.`, such as macOS `._x.png` resource forks, are skipped).
pub fn is_image_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let ext_ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
    !hidden && ext_ok
}

/// The image files directly in `dir` (not in its subfolders), sorted by path.
/// Errors: `dir` unreadable. An empty result is not an error here.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    for entry in read_dir(dir)? {
        let (path, is_dir) = entry;
        if !is_dir && is_image_file(&path) {
            images.push(path);
        }
    }
    images.sort();
    Ok(images)
}

/// The subfolders of `dir`, sorted, hidden ones skipped.
pub fn list_subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .filter(|(p, is_dir)| {
            *is_dir
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.'))
        })
        .map(|(p, _)| p)
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// All image files under `root`, searched recursively (symbolic links followed), sorted by
/// path. Errors: a folder that cannot be read; [`DataError::EmptyFolder`] when none is found.
pub fn find_images_recursive(root: &Path) -> Result<Vec<PathBuf>> {
    let mut images = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for (path, is_dir) in read_dir(&dir)? {
            if is_dir {
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_none_or(|n| n.starts_with('.'));
                if !hidden {
                    stack.push(path);
                }
            } else if is_image_file(&path) {
                images.push(path);
            }
        }
    }
    if images.is_empty() {
        return Err(DataError::EmptyFolder {
            path: root.to_path_buf(),
        });
    }
    images.sort();
    Ok(images)
}

/// Entries of `dir` as (path, is a directory), following symbolic links.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        // `metadata` follows links, so a linked folder of images is searched too.
        let is_dir = std::fs::metadata(&path)
            .map_err(|e| DataError::io(&path, e))?
            .is_dir();
        out.push((path, is_dir));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_search_finds_images_in_subfolders_only_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        for f in [
            "x.PNG",
            "a/y.jpg",
            "a/b/z.jpeg",
            "a/b/w.bmp",
            "a/notes.txt",
            ".hidden/h.png",
            "a/._y.jpg",
        ] {
            std::fs::write(root.join(f), b"").unwrap();
        }
        let found = find_images_recursive(root).unwrap();
        let rel: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(rel, vec!["a/b/w.bmp", "a/b/z.jpeg", "a/y.jpg", "x.PNG"]);
        assert_eq!(list_images(root).unwrap().len(), 1);
        assert_eq!(list_subdirs(root).unwrap(), vec![root.join("a")]);
    }

    #[test]
    fn empty_tree_and_missing_root_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = find_images_recursive(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::EmptyFolder { .. }), "{err}");
        let missing = dir.path().join("nope");
        let err = find_images_recursive(&missing).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert_eq!(err.path(), missing.as_path());
    }
}
