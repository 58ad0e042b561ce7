//! Atomic file writing, the workspace's one way to write a result: a reader (or a run that
//! resumes after a kill) sees the old file or the new one, never half of one.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Writes `path` through `write` (which gets a temporary path in the same folder, created if
/// needed), syncs the data, then renames the temporary file over `path`. On error the temporary
/// file is removed and `path` is untouched. `io_error` turns a failure of this function's own
/// file operations into the caller's error type.
pub fn write_atomically<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
    io_error: impl Fn(&Path, std::io::Error) -> E,
) -> std::result::Result<(), E> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write(&tmp).and_then(|()| {
        // The data must be on disk before the rename makes it visible under the real name.
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself (best effort: not every platform can sync a folder).
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically ([`write_atomically`]).
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(
        path,
        |tmp| std::fs::write(tmp, bytes).map_err(|e| DataError::io(tmp, e)),
        |p, e| DataError::io(p, e),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_whole_file_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.txt");
        write_bytes_atomically(&path, b"first").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        // A writer that fails half-way leaves the old file and no temporary behind.
        let err = write_atomically(
            &path,
            |tmp| {
                std::fs::write(tmp, "half").unwrap();
                Err("disk full".to_string())
            },
            |p, e| format!("{}: {e}", p.display()),
        )
        .unwrap_err();
        assert_eq!(err, "disk full");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.txt"]);
        write_bytes_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        // A folder in the way is an error naming the path.
        let err = write_bytes_atomically(dir.path(), b"x").unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
