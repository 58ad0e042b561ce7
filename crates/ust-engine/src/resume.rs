//! Resumable evaluations: every test image's maps (at the model's size) are kept in
//! `OUT/evaluate-partial/` until the report is written, so an evaluation interrupted on a large
//! test split (the magnetic tiles' 583 images take hours here) continues with the first image
//! it had not scored, losing at most the image in progress.
//!
//! The folder holds `key.json` (the scorer's [`TestScorer::resume_key`] — for the detector the
//! loaded scales, the score terms (those of further rows included), the image size, each
//! scale file's path, length and modification time — and the test images in order) and one
//! `NNNNN.f32` per scored image (the layout's maps one after the other, little-endian f32),
//! each written atomically. A folder whose key differs (another run, a retrained scale, other
//! test images) is cleared, never mixed in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ust_data::TestSample;

use crate::error::{Context, EngineError, Result};
use crate::scorer::TestScorer;

/// The folder of an evaluation's kept scores, under its report folder.
pub const PARTIAL_DIR: &str = "evaluate-partial";
const KEY_FILE: &str = "key.json";

/// `key.json`: the scorer's key with the test images after it (flattened, so that the file
/// is the one the detector's evaluation has always written).
#[derive(Debug, PartialEq, Serialize)]
struct StoredKey<K> {
    #[serde(flatten)]
    scorer: K,
    samples: Vec<String>,
}

impl<K: for<'de> Deserialize<'de>> StoredKey<K> {
    /// Reads a key file. Not serde's `flatten` on the way in: it buffers numbers in a form
    /// that cannot hold the scale files' u128 modification times, so the object is split here.
    fn parse(text: &str) -> Option<Self> {
        let mut object = match serde_json::from_str::<serde_json::Value>(text).ok()? {
            serde_json::Value::Object(o) => o,
            _ => return None,
        };
        let samples = serde_json::from_value(object.remove("samples")?).ok()?;
        let scorer = serde_json::from_value(serde_json::Value::Object(object)).ok()?;
        Some(Self { scorer, samples })
    }
}

/// The kept scores of one evaluation.
#[derive(Debug)]
pub struct PartialScores {
    dir: PathBuf,
    /// Maps per image.
    maps: usize,
    pixels: usize,
    /// Images whose scores came from the folder rather than the scorer.
    pub resumed: usize,
}

impl PartialScores {
    /// Opens `out/evaluate-partial/` for `scorer` and these test images: kept as it is when its
    /// key matches, otherwise cleared and started afresh.
    pub fn open<S: TestScorer>(
        out: &Path,
        scorer: &S,
        options: &S::Options,
        samples: &[TestSample],
    ) -> Result<Self> {
        let layout = scorer.layout(options);
        let key = StoredKey {
            scorer: scorer.resume_key(options)?,
            samples: samples
                .iter()
                .map(|s| s.path.display().to_string())
                .collect(),
        };
        Self::open_keyed(out, &key, layout.maps, layout.side * layout.side)
    }

    fn open_keyed<K: Serialize + for<'de> Deserialize<'de> + PartialEq>(
        out: &Path,
        key: &StoredKey<K>,
        maps: usize,
        pixels: usize,
    ) -> Result<Self> {
        let dir = out.join(PARTIAL_DIR);
        let key_path = dir.join(KEY_FILE);
        let matches = std::fs::read_to_string(&key_path)
            .ok()
            .and_then(|t| StoredKey::<K>::parse(&t))
            .is_some_and(|k| k == *key);
        if !matches {
            if dir.exists() {
                tracing::info!(dir = %dir.display(), "scores of another evaluation cleared");
                std::fs::remove_dir_all(&dir).map_err(EngineError::io("clearing", &dir))?;
            }
            std::fs::create_dir_all(&dir).map_err(EngineError::io("creating", &dir))?;
            ust_data::files::write_bytes_atomically(
                &key_path,
                serde_json::to_string(key)?.as_bytes(),
            )
            .context_with(|| format!("writing {}", key_path.display()))?;
        }
        Ok(Self {
            dir,
            maps,
            pixels,
            resumed: 0,
        })
    }

    /// The folder of the kept scores.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:05}.f32"))
    }

    /// The kept maps of test image `index`, if it was scored before.
    pub fn get(&mut self, index: usize) -> Result<Option<Vec<Vec<f32>>>> {
        let path = self.file(index);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EngineError::io("reading", path)(e)),
        };
        if bytes.len() != self.maps * self.pixels * 4 {
            return Err(EngineError::StoredScores {
                path,
                got: bytes.len(),
                expected: self.maps * self.pixels * 4,
                maps: self.maps,
                pixels: self.pixels,
                folder: self.dir.clone(),
            });
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        self.resumed += 1;
        Ok(Some(
            values.chunks(self.pixels).map(<[f32]>::to_vec).collect(),
        ))
    }

    /// Keeps the maps of test image `index` (atomically).
    pub fn put(&self, index: usize, maps: &[Vec<f32>]) -> Result<()> {
        let mut bytes = Vec::with_capacity(self.maps * self.pixels * 4);
        for v in maps.iter().flatten() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let path = self.file(index);
        ust_data::files::write_bytes_atomically(&path, &bytes)
            .context_with(|| format!("writing {}", path.display()))
    }

    /// Removes the folder once the report is written.
    pub fn finish(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(EngineError::io("removing", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Key {
        scales: Vec<usize>,
        #[serde(default)]
        terms: String,
        modified_ns: u128,
    }

    fn key(scales: Vec<usize>) -> StoredKey<Key> {
        StoredKey {
            scorer: Key {
                scales,
                terms: "e+v".into(),
                modified_ns: 1_765_000_000_123_456_789,
            },
            samples: vec!["a.png".into(), "b.png".into()],
        }
    }

    /// The key file is one flat object with the test images last (the file the students'
    /// evaluation wrote before the engine existed, so interrupted evaluations still resume).
    #[test]
    fn the_key_file_is_flat_and_reads_back_equal() {
        let text = serde_json::to_string(&key(vec![17, 33])).unwrap();
        assert_eq!(
            text,
            r#"{"scales":[17,33],"terms":"e+v","modified_ns":1765000000123456789,"samples":["a.png","b.png"]}"#
        );
        assert_eq!(StoredKey::<Key>::parse(&text), Some(key(vec![17, 33])));
        assert_eq!(StoredKey::<Key>::parse("{}"), None);
    }

    #[test]
    fn kept_scores_survive_a_reopen_under_the_same_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = PartialScores::open_keyed(dir.path(), &key(vec![33]), 2, 3).unwrap();
        assert_eq!(store.get(0).unwrap(), None);
        store
            .put(1, &[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]])
            .unwrap();
        let mut again = PartialScores::open_keyed(dir.path(), &key(vec![33]), 2, 3).unwrap();
        assert_eq!(
            again.get(1).unwrap(),
            Some(vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]])
        );
        assert_eq!(again.resumed, 1);
        // Another key clears the folder.
        let mut other = PartialScores::open_keyed(dir.path(), &key(vec![17]), 2, 3).unwrap();
        assert_eq!(other.get(1).unwrap(), None);
        // A damaged file is an error naming it.
        std::fs::write(other.file(0), [0u8; 10]).unwrap();
        let err = other.get(0).unwrap_err().to_string();
        assert!(
            err.contains("00000.f32") && err.contains("10 bytes"),
            "{err}"
        );
        other.finish().unwrap();
        assert!(!dir.path().join(PARTIAL_DIR).exists());
    }

    /// A key file the students' evaluation wrote before the engine existed reads back equal to
    /// the key computed now (else an interrupted evaluation would start over after an upgrade).
    #[test]
    fn an_earlier_students_key_file_still_matches() {
        use crate::students::{ScaleStamp, StudentKey};
        let earlier = r#"{"scales":[17,33],"score_terms":"e+v","other_terms":["e"],"image_size":40,"models":[{"path":"/r/p17.safetensors","bytes":10,"modified_ns":1765000000123456789},{"path":"/r/p33.safetensors","bytes":12,"modified_ns":1765000000987654321}],"samples":["a.png"]}"#;
        let stamp = |path: &str, bytes, modified_ns| ScaleStamp {
            path: path.into(),
            bytes,
            modified_ns,
        };
        let now = StoredKey {
            scorer: StudentKey {
                scales: vec![17, 33],
                score_terms: ust_detector::ScoreTerms::Both,
                other_terms: vec![ust_detector::ScoreTerms::Error],
                image_size: 40,
                models: vec![
                    stamp("/r/p17.safetensors", 10, 1_765_000_000_123_456_789),
                    stamp("/r/p33.safetensors", 12, 1_765_000_000_987_654_321),
                ],
            },
            samples: vec!["a.png".into()],
        };
        assert_eq!(serde_json::to_string(&now).unwrap(), earlier);
        assert_eq!(StoredKey::parse(earlier), Some(now));
    }
}
