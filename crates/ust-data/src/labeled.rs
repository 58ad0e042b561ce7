//! Small labelled images held in memory as bytes (MNIST, CIFAR-10).

use std::path::PathBuf;

use crate::image_io::{ChwImage, Size};

/// `len()` images of one shape with a class label each, pixels as bytes, each image stored
/// planar (C×H×W) one after the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledImages {
    /// Where the images were read from (for messages).
    pub source: PathBuf,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `len() · channels · height · width` bytes.
    pub pixels: Vec<u8>,
    /// One label per image, `< class_names.len()`.
    pub labels: Vec<u8>,
    pub class_names: Vec<String>,
}

impl LabeledImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }

    /// Bytes of image `i`, C×H×W.
    pub fn image_bytes(&self, i: usize) -> &[u8] {
        let n = self.channels * self.height * self.width;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Image `i` as `f32` in `[0, 1]` with its own channel count (1 for MNIST).
    pub fn image(&self, i: usize) -> ChwImage {
        ChwImage::from_u8(self.channels, self.height, self.width, self.image_bytes(i))
    }

    /// Image `i` with three channels (grey replicated), resized bilinearly to `size` when
    /// given: the input of the patch networks.
    pub fn image_rgb(&self, i: usize, size: Option<Size>) -> ChwImage {
        let image = self.image(i).to_rgb();
        match size {
            Some(size) => image.resize_bilinear(size),
            None => image,
        }
    }

    /// Number of images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Indices of the images of class `label`, increasing.
    pub fn indices_of_class(&self, label: u8) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.labels[i] == label)
            .collect()
    }
}
