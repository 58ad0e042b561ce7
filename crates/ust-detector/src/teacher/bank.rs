//! The distillation bank: a ring of patches (or triplets) with their backbone features, so that
//! the expensive backbone runs on a few new patches per step instead of a whole batch (see
//! [`super::config::DistillationCacheConfig`]).

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;

use crate::error::{DetectorError, Result};

/// Patches with their features; the oldest entries are replaced first.
#[derive(Debug, Clone, PartialEq)]
pub struct DistillationBank {
    capacity: usize,
    /// Values of one patch (3·p·p) and of one feature vector.
    patch_len: usize,
    feature_len: usize,
    anchors: Vec<f32>,
    /// Positives and negatives, kept only when the triplet loss is on.
    triplets: Option<(Vec<f32>, Vec<f32>)>,
    features: Vec<f32>,
    /// Filled entries (≤ capacity) and the next slot to write.
    len: usize,
    next: usize,
}

/// A training batch drawn from the bank, as (N, 3, p, p) and (N, K) tensors.
#[derive(Debug, Clone)]
pub struct BankBatch {
    pub anchor: Tensor,
    pub positive: Option<Tensor>,
    pub negative: Option<Tensor>,
    pub features: Tensor,
}

/// The contents of a bank as named tensors (`bank.anchors`, `bank.features`, and
/// `bank.positives`, `bank.negatives` when kept), with its cursor.
#[derive(Debug, Clone)]
pub struct BankSnapshot {
    pub tensors: Vec<(String, Tensor)>,
    /// Filled entries and the next slot to write.
    pub len: usize,
    pub next: usize,
}

impl DistillationBank {
    /// An empty bank of `capacity` entries of `patch_size`² RGB patches with `feature_len`
    /// features, keeping positives and negatives when `with_triplets`.
    pub fn new(
        capacity: usize,
        patch_size: usize,
        feature_len: usize,
        with_triplets: bool,
    ) -> Self {
        let patch_len = 3 * patch_size * patch_size;
        Self {
            capacity,
            patch_len,
            feature_len,
            anchors: vec![0.0; capacity * patch_len],
            triplets: with_triplets.then(|| {
                (
                    vec![0.0; capacity * patch_len],
                    vec![0.0; capacity * patch_len],
                )
            }),
            features: vec![0.0; capacity * feature_len],
            len: 0,
            next: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Whether positives and negatives are kept.
    pub fn has_triplets(&self) -> bool {
        self.triplets.is_some()
    }

    /// Writes `count` entries over the oldest ones. `anchors` (and `positives`, `negatives`
    /// when the bank keeps triplets) hold `count` patches, `features` `count` vectors.
    pub fn insert(
        &mut self,
        anchors: &[f32],
        positives: &[f32],
        negatives: &[f32],
        features: &[f32],
    ) -> Result<()> {
        let (pl, fl) = (self.patch_len, self.feature_len);
        let count = anchors.len() / pl;
        let bad = anchors.len() != count * pl
            || features.len() != count * fl
            || (self.triplets.is_some()
                && (positives.len() != anchors.len() || negatives.len() != anchors.len()));
        if bad {
            return Err(DetectorError::InvalidConfig(format!(
                "distillation bank: inconsistent insert of {} anchor values, {} features",
                anchors.len(),
                features.len()
            )));
        }
        for k in 0..count {
            let slot = self.next;
            self.anchors[slot * pl..][..pl].copy_from_slice(&anchors[k * pl..][..pl]);
            if let Some((pos, neg)) = &mut self.triplets {
                pos[slot * pl..][..pl].copy_from_slice(&positives[k * pl..][..pl]);
                neg[slot * pl..][..pl].copy_from_slice(&negatives[k * pl..][..pl]);
            }
            self.features[slot * fl..][..fl].copy_from_slice(&features[k * fl..][..fl]);
            self.next = (self.next + 1) % self.capacity;
            self.len = (self.len + 1).min(self.capacity);
        }
        Ok(())
    }

    /// `n` distinct filled entries drawn with a generator seeded by `seed`, in draw order.
    pub fn draw_indices(&self, n: usize, seed: u64) -> Result<Vec<usize>> {
        if n > self.len {
            return Err(DetectorError::InvalidConfig(format!(
                "distillation bank: cannot draw {n} distinct entries from {}",
                self.len
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(sample(&mut rng, self.len, n).into_vec())
    }

    /// The entries `indices` as tensors on `device`.
    pub fn gather(
        &self,
        indices: &[usize],
        patch_size: usize,
        device: &Device,
    ) -> Result<BankBatch> {
        let (pl, fl) = (self.patch_len, self.feature_len);
        let pick = |src: &[f32], len: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(indices.len() * len);
            for &i in indices {
                out.extend_from_slice(&src[i * len..][..len]);
            }
            out
        };
        let n = indices.len();
        let shape = (n, 3, patch_size, patch_size);
        let patches = |src: &[f32]| Tensor::from_vec(pick(src, pl), shape, device);
        Ok(BankBatch {
            anchor: patches(&self.anchors)?,
            positive: self.triplets.as_ref().map(|t| patches(&t.0)).transpose()?,
            negative: self.triplets.as_ref().map(|t| patches(&t.1)).transpose()?,
            features: Tensor::from_vec(pick(&self.features, fl), (n, fl), device)?,
        })
    }

    /// The bank's contents as named tensors and its cursor, for a checkpoint.
    pub fn snapshot(&self, patch_size: usize) -> Result<BankSnapshot> {
        let dev = Device::Cpu;
        let shape = (self.capacity, 3, patch_size, patch_size);
        let mut out = vec![
            (
                "bank.anchors".to_string(),
                Tensor::from_slice(&self.anchors, shape, &dev)?,
            ),
            (
                "bank.features".to_string(),
                Tensor::from_slice(&self.features, (self.capacity, self.feature_len), &dev)?,
            ),
        ];
        if let Some((pos, neg)) = &self.triplets {
            out.push((
                "bank.positives".to_string(),
                Tensor::from_slice(pos, shape, &dev)?,
            ));
            out.push((
                "bank.negatives".to_string(),
                Tensor::from_slice(neg, shape, &dev)?,
            ));
        }
        Ok(BankSnapshot {
            tensors: out,
            len: self.len,
            next: self.next,
        })
    }

    /// Restores the contents of a [`DistillationBank::snapshot`]; `get` looks tensors up
    /// by name, `what` names the file in errors.
    pub fn restore(
        &mut self,
        get: impl Fn(&str) -> Option<Tensor>,
        len: usize,
        next: usize,
        what: &std::path::Path,
    ) -> Result<()> {
        if len > self.capacity || next >= self.capacity.max(1) {
            return Err(DetectorError::bad_file(
                what,
                format!(
                    "bank cursor (len {len}, next {next}) does not fit a bank of {}",
                    self.capacity
                ),
            ));
        }
        let load = |name: &str, expected: usize| -> Result<Vec<f32>> {
            let t = get(name)
                .ok_or_else(|| DetectorError::bad_file(what, format!("missing tensor {name}")))?;
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            if v.len() != expected {
                return Err(DetectorError::bad_file(
                    what,
                    format!(
                        "tensor {name} holds {} values, the bank needs {expected}",
                        v.len()
                    ),
                ));
            }
            Ok(v)
        };
        let patches = self.capacity * self.patch_len;
        self.anchors = load("bank.anchors", patches)?;
        self.features = load("bank.features", self.capacity * self.feature_len)?;
        if self.triplets.is_some() {
            self.triplets = Some((
                load("bank.positives", patches)?,
                load("bank.negatives", patches)?,
            ));
        }
        self.len = len;
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patch side 1 (3 values per patch), 2 features: entry k holds anchor (k, k, k), features
    /// (10k, 10k+1).
    fn entries(range: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>) {
        let a = range.clone().flat_map(|k| [k as f32; 3]).collect();
        let f = range
            .flat_map(|k| [10.0 * k as f32, 10.0 * k as f32 + 1.0])
            .collect();
        (a, f)
    }

    #[test]
    fn ring_replaces_the_oldest_and_gathers_what_was_put() {
        let mut bank = DistillationBank::new(4, 1, 2, false);
        let (a, f) = entries(0..3);
        bank.insert(&a, &[], &[], &f).unwrap();
        assert_eq!((bank.len(), bank.is_full()), (3, false));
        let (a, f) = entries(3..6);
        bank.insert(&a, &[], &[], &f).unwrap();
        // Slots: 0 ← 4, 1 ← 5, 2 = 2, 3 = 3.
        assert!(bank.is_full());
        let batch = bank.gather(&[0, 1, 2, 3], 1, &Device::Cpu).unwrap();
        let anchors: Vec<f32> = batch.anchor.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(anchors, [4., 4., 4., 5., 5., 5., 2., 2., 2., 3., 3., 3.]);
        let feats: Vec<Vec<f32>> = batch.features.to_vec2().unwrap();
        assert_eq!(feats, [[40., 41.], [50., 51.], [20., 21.], [30., 31.]]);
        assert!(batch.positive.is_none());
        // Wrong sizes are refused.
        assert!(bank.insert(&[1.0, 2.0], &[], &[], &[0.0, 0.0]).is_err());
    }

    #[test]
    fn draws_are_distinct_seeded_and_round_trip() {
        let mut bank = DistillationBank::new(8, 1, 2, true);
        let (a, f) = entries(0..8);
        let p: Vec<f32> = a.iter().map(|x| x + 0.5).collect();
        let n: Vec<f32> = a.iter().map(|x| -x).collect();
        bank.insert(&a, &p, &n, &f).unwrap();
        let d = bank.draw_indices(5, 42).unwrap();
        assert_eq!(d, bank.draw_indices(5, 42).unwrap());
        assert_ne!(d, bank.draw_indices(5, 43).unwrap());
        let mut sorted = d.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
        assert!(bank.draw_indices(9, 0).is_err());
        let batch = bank.gather(&d, 1, &Device::Cpu).unwrap();
        let pos: Vec<f32> = batch
            .positive
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(pos[0], d[0] as f32 + 0.5);

        let BankSnapshot { tensors, len, next } = bank.snapshot(1).unwrap();
        let mut restored = DistillationBank::new(8, 1, 2, true);
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, t)| t.clone())
        };
        restored
            .restore(get, len, next, std::path::Path::new("ckpt"))
            .unwrap();
        assert_eq!(restored, bank);
        let err = DistillationBank::new(8, 1, 3, true)
            .restore(get, len, next, std::path::Path::new("ckpt"))
            .unwrap_err();
        assert!(err.to_string().contains("bank.features"), "{err}");
    }
}
