//! The one-class protocol of METHOD.md §7 for labelled datasets (MNIST, CIFAR-10): train on
//! the training images of one class; test on the whole test set, that class normal and every
//! other class anomalous.

use crate::error::{DataError, Result};
use crate::labeled::LabeledImages;
use crate::split::{fraction_ok, seeded_split};

/// Indices into a dataset's training and test sets for one normal class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneClassSplit {
    pub normal_class: u8,
    /// Training images of the normal class to train on.
    pub train: Vec<usize>,
    /// Training images of the normal class held out for score calibration (empty when the
    /// validation fraction is 0).
    pub validation: Vec<usize>,
    /// Every test image, in order (`0..test.len()`).
    pub test: Vec<usize>,
    /// For each entry of `test`: true when its class is not the normal one.
    pub test_is_anomalous: Vec<bool>,
}

impl OneClassSplit {
    /// Builds the split for `normal_class`, holding out `validation_fraction` (in `[0, 1)`) of
    /// its training images, chosen by a shuffle seeded with `seed`.
    /// Errors: a class outside the dataset's classes, a bad fraction, a class with no
    /// training image.
    pub fn new(
        train: &LabeledImages,
        test: &LabeledImages,
        normal_class: u8,
        validation_fraction: f64,
        seed: u64,
    ) -> Result<Self> {
        if normal_class as usize >= train.class_names.len() {
            return Err(DataError::config(
                &train.source,
                format!(
                    "normal class {normal_class} is not one of the {} classes",
                    train.class_names.len()
                ),
            ));
        }
        if !fraction_ok(validation_fraction) {
            return Err(DataError::config(
                &train.source,
                format!("validation fraction {validation_fraction} is not in [0, 1)"),
            ));
        }
        let of_class = train.indices_of_class(normal_class);
        if of_class.is_empty() {
            return Err(DataError::invalid(
                &train.source,
                format!("no training image of class {normal_class}"),
            ));
        }
        let split = seeded_split(of_class.len(), validation_fraction, seed);
        Ok(OneClassSplit {
            normal_class,
            train: split.train.iter().map(|&i| of_class[i]).collect(),
            validation: split.validation.iter().map(|&i| of_class[i]).collect(),
            test: (0..test.len()).collect(),
            test_is_anomalous: test.labels.iter().map(|&l| l != normal_class).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn labeled(labels: Vec<u8>) -> LabeledImages {
        LabeledImages {
            source: PathBuf::from("fixture"),
            channels: 1,
            height: 1,
            width: 1,
            pixels: (0..labels.len() as u8).collect(),
            labels,
            class_names: (0..3).map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn trains_on_one_class_tests_on_all() {
        let train = labeled(vec![0, 1, 1, 2, 1, 0, 1]);
        let test = labeled(vec![2, 1, 0, 1]);
        let s = OneClassSplit::new(&train, &test, 1, 0.0, 3).unwrap();
        assert_eq!(s.train, vec![1, 2, 4, 6]);
        assert!(s.validation.is_empty());
        assert_eq!(s.test, vec![0, 1, 2, 3]);
        assert_eq!(s.test_is_anomalous, vec![true, false, true, false]);

        let s = OneClassSplit::new(&train, &test, 1, 0.25, 3).unwrap();
        assert_eq!(s.validation.len(), 1);
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 4, 6]);
        assert_eq!(OneClassSplit::new(&train, &test, 1, 0.25, 3).unwrap(), s);
    }

    #[test]
    fn rejects_bad_class_and_fraction() {
        let train = labeled(vec![0, 1]);
        let test = labeled(vec![0]);
        assert!(matches!(
            OneClassSplit::new(&train, &test, 3, 0.0, 0).unwrap_err(),
            DataError::InvalidConfig { .. }
        ));
        assert!(OneClassSplit::new(&train, &test, 0, 1.0, 0).is_err());
        assert!(matches!(
            OneClassSplit::new(&train, &test, 2, 0.0, 0).unwrap_err(),
            DataError::InvalidFormat { .. }
        ));
    }
}
