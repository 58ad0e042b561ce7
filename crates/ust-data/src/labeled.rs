//! Small labelled images held in memory as bytes (MNIST, CIFAR-10).

use std::path::PathBuf;

use candle_core::{DType, Tensor};

use crate::error::{DataError, Result};
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

    /// Images given as candle tensors the way candle-datasets returns them: `images` with
    /// `N · channels · height · width` values in `[0, 1]` (`byte / 255`), each image planar
    /// C×H×W (any shape, e.g. `N×784` or `N×C×H×W`, as long as the elements are in that
    /// order), and `labels` with `N` integers below `class_names.len()`. The values go back to
    /// bytes by rounding `255 · v`; a value outside `[0, 1]` (or NaN) or more than 1 % of a
    /// step away from a byte is an error, as are a wrong element count and a label out of
    /// range. `source` names the data in messages.
    pub fn from_unit_tensors(
        source: impl Into<PathBuf>,
        images: &Tensor,
        labels: &Tensor,
        (channels, height, width): (usize, usize, usize),
        class_names: &[&str],
    ) -> Result<Self> {
        let source = source.into();
        let tensor_error = |cause| DataError::Tensor {
            path: source.clone(),
            cause,
        };
        let labels: Vec<u8> = labels
            .flatten_all()
            .and_then(|l| l.to_dtype(DType::U32))
            .and_then(|l| l.to_vec1::<u32>())
            .map_err(tensor_error)?
            .into_iter()
            .enumerate()
            .map(|(i, l)| match u8::try_from(l) {
                Ok(l) if usize::from(l) < class_names.len() => Ok(l),
                _ => Err(DataError::invalid(
                    &source,
                    format!("label {l} of item {i} is not below {}", class_names.len()),
                )),
            })
            .collect::<Result<_>>()?;
        let per_image = channels * height * width;
        let expected = labels.len() * per_image;
        if images.elem_count() != expected {
            return Err(DataError::invalid(
                &source,
                format!(
                    "{} pixel values for {} images of {channels}x{height}x{width} ({expected})",
                    images.elem_count(),
                    labels.len()
                ),
            ));
        }
        let values = images
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensor_error)?;
        let mut pixels = Vec::with_capacity(values.len());
        for (i, &v) in values.iter().enumerate() {
            let scaled = v * 255.0;
            let byte = scaled.round();
            if !(0.0..=255.0).contains(&byte) || (scaled - byte).abs() > 0.01 {
                return Err(DataError::invalid(
                    &source,
                    format!(
                        "value {v} of image {} is not a byte / 255 in [0, 1]",
                        i / per_image.max(1)
                    ),
                ));
            }
            pixels.push(byte as u8);
        }
        Ok(LabeledImages {
            source,
            channels,
            height,
            width,
            pixels,
            labels,
            class_names: class_names.iter().map(|s| s.to_string()).collect(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn unit_tensors_go_back_to_the_bytes() {
        let bytes: Vec<u8> = (0..=255).chain(0..=255).collect(); // 2 images of 2x2x64
        let images = (Tensor::from_vec(bytes.clone(), (2, 256), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            / 255.0)
            .unwrap();
        let labels = Tensor::new(&[3u8, 0], &Device::Cpu).unwrap();
        let names = ["a", "b", "c", "d"];
        let set =
            LabeledImages::from_unit_tensors("t", &images, &labels, (2, 2, 64), &names).unwrap();
        assert_eq!(set.pixels, bytes);
        assert_eq!(set.labels, vec![3, 0]);
        assert_eq!((set.channels, set.height, set.width), (2, 2, 64));
        assert_eq!(set.class_names, names);

        // Wrong count, label out of range, values that are not bytes / 255.
        let err = LabeledImages::from_unit_tensors("t", &images, &labels, (1, 2, 64), &names);
        assert!(err.unwrap_err().to_string().contains("512 pixel values"));
        let err = LabeledImages::from_unit_tensors("t", &images, &labels, (2, 2, 64), &names[..3]);
        assert!(err.unwrap_err().to_string().contains("label 3 of item 0"));
        for bad in [1.5f32, -0.1, 0.5, f32::NAN] {
            let t = Tensor::new(&[[0.0f32, bad]], &Device::Cpu).unwrap();
            let l = Tensor::new(&[0u8], &Device::Cpu).unwrap();
            let err = LabeledImages::from_unit_tensors("t", &t, &l, (1, 1, 2), &names);
            assert!(err.unwrap_err().to_string().contains("not a byte"), "{bad}");
        }
    }
}
