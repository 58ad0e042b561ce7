//! An in-memory cache of decoded (and resized) images, shared between clones, filled in
//! parallel, so that an epoch over a category's training images decodes each file only once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rayon::prelude::*;

use crate::error::Result;
use crate::image_io::{LoadedImage, Size, load_rgb};

type Key = (PathBuf, Option<Size>);

/// Decoded images keyed by (path, requested size). Cloning shares the cache.
///
/// A disabled cache ([`ImageCache::disabled`]) decodes on every request. Memory: a 256×256
/// image takes 768 KiB (3 × 256 × 256 `f32`), so the 761 magnetic-tile training images
/// take 761 × 768 KiB ≈ 570 MiB; call [`ImageCache::clear`] when a category is done.
#[derive(Clone, Debug)]
pub struct ImageCache {
    entries: Arc<Mutex<HashMap<Key, Arc<LoadedImage>>>>,
    enabled: bool,
}

impl Default for ImageCache {
    fn default() -> Self {
        ImageCache::new()
    }
}

impl ImageCache {
    /// An empty, enabled cache.
    pub fn new() -> Self {
        ImageCache {
            entries: Arc::default(),
            enabled: true,
        }
    }

    /// A cache that keeps nothing.
    pub fn disabled() -> Self {
        ImageCache {
            entries: Arc::default(),
            enabled: false,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Number of cached images.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the cached pixels.
    pub fn memory_bytes(&self) -> usize {
        self.lock()
            .values()
            .map(|v| std::mem::size_of_val(v.image.data()))
            .sum()
    }

    /// Drops every cached image.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// `path` decoded to three channels (resized bilinearly to `size` when given).
    pub fn load(&self, path: &Path, size: Option<Size>) -> Result<Arc<LoadedImage>> {
        Ok(self.load_many(&[path.to_path_buf()], size)?.remove(0))
    }

    /// Several images, decoded in parallel (rayon) where not cached, in the order of `paths`.
    /// On failure the error of the first failing path (in `paths` order) is returned.
    pub fn load_many(
        &self,
        paths: &[PathBuf],
        size: Option<Size>,
    ) -> Result<Vec<Arc<LoadedImage>>> {
        let mut out: Vec<Option<Arc<LoadedImage>>> = {
            let entries = self.lock();
            paths
                .iter()
                .map(|p| entries.get(&(p.clone(), size)).cloned())
                .collect()
        };
        let missing: Vec<usize> = (0..paths.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let decoded: Vec<Result<LoadedImage>> = missing
                .par_iter()
                .map(|&i| load_rgb(&paths[i], size))
                .collect();
            let mut entries = self.lock();
            for (&i, result) in missing.iter().zip(decoded) {
                let image = Arc::new(result?);
                if self.enabled {
                    entries.insert((paths[i].clone(), size), Arc::clone(&image));
                }
                out[i] = Some(image);
            }
        }
        Ok(out.into_iter().map(|o| o.expect("filled above")).collect())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<LoadedImage>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts),
        // so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_decodes_once_and_shares_between_clones() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("{i}.png"));
                image::GrayImage::from_pixel(4, 3, image::Luma([i as u8 * 100]))
                    .save(&p)
                    .unwrap();
                p
            })
            .collect();
        let cache = ImageCache::new();
        let a = cache.load_many(&paths, Some(Size::square(2))).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(a[2].image.get(0, 0, 0), 200.0 / 255.0);
        assert_eq!(a[1].original_size, Size::new(4, 3));
        // Remove the files: a second request must be served from memory, by a clone too.
        for p in &paths {
            std::fs::remove_file(p).unwrap();
        }
        let b = cache
            .clone()
            .load_many(&paths, Some(Size::square(2)))
            .unwrap();
        assert!(Arc::ptr_eq(&a[0], &b[0]));
        // Another size is another entry, which now fails: the file is gone.
        let err = cache.load(&paths[1], None).unwrap_err();
        assert_eq!(err.path(), paths[1].as_path());
        assert_eq!(cache.memory_bytes(), 3 * 3 * 2 * 2 * 4);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        image::GrayImage::new(2, 2).save(&p).unwrap();
        let cache = ImageCache::disabled();
        cache.load(&p, None).unwrap();
        assert!(cache.is_empty());
    }
}
