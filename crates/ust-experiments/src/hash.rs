//! Stable identities: FNV-1a (64 bit) over the canonical JSON of a job's configuration (object
//! keys sorted at every level), and fingerprints of the files a job reads.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ExperimentError, Result};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit, of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// `value` with the keys of every object in sorted order (arrays keep their order).
pub fn canonicalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), canonicalize(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonicalize).collect()),
        other => other.clone(),
    }
}

/// The canonical JSON text of `value`: compact, keys sorted.
pub fn canonical_json(value: &Value) -> String {
    // Serialising a Value cannot fail (its keys are strings).
    serde_json::to_string(&canonicalize(value)).unwrap_or_default()
}

/// The 16 hex digits of the FNV-1a hash of `value`'s canonical JSON.
pub fn config_hash(value: &Value) -> String {
    format!("{:016x}", fnv1a64(canonical_json(value).as_bytes()))
}

/// What identifies a file a job reads (a teacher): its path, its length and the hash of its
/// whole content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub path: String,
    pub bytes: u64,
    pub fnv1a64: String,
}

impl FileFingerprint {
    /// Reads `path` once.
    pub fn of(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| ExperimentError::io(path, e))?;
        let mut h = FNV_OFFSET;
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| ExperimentError::io(path, e))?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                h ^= u64::from(b);
                h = h.wrapping_mul(FNV_PRIME);
            }
            bytes += n as u64;
        }
        Ok(Self {
            path: path.display().to_string(),
            bytes,
            fnv1a64: format!("{h:016x}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_ignores_key_order_and_sees_every_field() {
        let a = json!({"kind": "students", "seed": 0, "scales": [17, 33], "x": {"b": 1, "a": 2}});
        let b = json!({"x": {"a": 2, "b": 1}, "scales": [17, 33], "seed": 0, "kind": "students"});
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"kind":"students","scales":[17,33],"seed":0,"x":{"a":2,"b":1}}"#
        );
        assert_eq!(config_hash(&a).len(), 16);
        for changed in [
            json!({"kind": "students", "seed": 1, "scales": [17, 33], "x": {"b": 1, "a": 2}}),
            json!({"kind": "students", "seed": 0, "scales": [33, 17], "x": {"b": 1, "a": 2}}),
            json!({"kind": "students", "seed": 0, "scales": [17, 33], "x": {"b": 1, "a": 3}}),
            json!({"kind": "student", "seed": 0, "scales": [17, 33], "x": {"b": 1, "a": 2}}),
            json!({"kind": "students", "seed": 0, "scales": [17, 33], "x": {"b": 1, "a": 2}, "y": null}),
        ] {
            assert_ne!(config_hash(&a), config_hash(&changed), "{changed}");
        }
    }

    #[test]
    fn file_fingerprint_reads_length_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"foobar").unwrap();
        let f = FileFingerprint::of(&p).unwrap();
        assert_eq!(f.bytes, 6);
        assert_eq!(f.fnv1a64, "85944171f73967e8");
        std::fs::write(&p, b"foobaz").unwrap();
        assert_ne!(FileFingerprint::of(&p).unwrap().fnv1a64, f.fnv1a64);
        let err = FileFingerprint::of(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
