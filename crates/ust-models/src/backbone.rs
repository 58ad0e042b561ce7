//! Pretrained backbones for knowledge distillation (METHOD.md §4): a patch batch in, a pooled
//! feature vector per patch out.

use candle_core::Tensor;

use crate::error::{ModelError, Result};

/// A frozen, pretrained image classifier used as the distillation target P.
///
/// Input patches are (N, 3, p, p) RGB with values in [0, 1], any p the network can take; each
/// implementation applies its own input normalisation.
pub trait Backbone {
    /// A short name (`efficientnet-lite0`, `resnet18`).
    fn name(&self) -> &str;

    /// Dimension of the pooled feature vector.
    fn feature_dim(&self) -> usize;

    /// The input side the network was trained at.
    fn preferred_input_size(&self) -> usize;

    /// The side patches are resized to before the network, if configured.
    fn resize_to(&self) -> Option<usize>;

    /// Pooled features of patches at their own size.
    ///
    /// # Shapes
    /// (N, 3, p, p) in [0, 1] -> (N, feature_dim)
    fn pooled_features_native(&self, patches: &Tensor) -> Result<Tensor>;

    /// The total stride of [`Backbone::feature_map_native`] in input pixels.
    fn feature_stride(&self) -> usize {
        32
    }

    /// Centre of the feature map's cell 0 on an input of `input_side` pixels, in continuous
    /// input coordinates (pixel i spans [i, i + 1)); cell j lies `feature_stride()·j` further.
    fn feature_cell_origin(&self, input_side: usize) -> f64 {
        let _ = input_side;
        self.feature_stride() as f64 / 2.0
    }

    /// The last feature map before pooling, of images at their own size (dense distillation,
    /// where every cell is the target of one teacher output). Backbones that do not offer it
    /// say so.
    ///
    /// # Shapes
    /// (N, 3, H, W) in [0, 1] -> (N, feature_dim, ⌈H/stride⌉, ⌈W/stride⌉)
    fn feature_map_native(&self, images: &Tensor) -> Result<Tensor> {
        let _ = images;
        Err(ModelError::InvalidConfig(format!(
            "{} offers no dense feature map: dense distillation needs efficientnet-lite0",
            self.name()
        )))
    }

    /// Pooled features, after resizing the patches to [`Backbone::resize_to`] when configured.
    ///
    /// # Shapes
    /// (N, 3, p, p) in [0, 1] -> (N, feature_dim)
    fn pooled_features(&self, patches: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = patches.dims4()?;
        if c != 3 {
            return Err(ModelError::BadInput(format!(
                "{} takes RGB patches (3 channels), got {c}",
                self.name()
            )));
        }
        match self.resize_to() {
            Some(s) if (s, s) != (h, w) => {
                self.pooled_features_native(&resize_bilinear(patches, s, s)?)
            }
            _ => self.pooled_features_native(patches),
        }
    }
}

/// Interpolation matrix (out × in) of 1-D bilinear resampling with half-pixel centres
/// (PyTorch `align_corners=False`, no antialiasing).
fn bilinear_matrix(input: usize, output: usize) -> Vec<f32> {
    let mut m = vec![0f32; output * input];
    let scale = input as f64 / output as f64;
    for o in 0..output {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let frac = (src - i0 as f64) as f32;
        m[o * input + i0] += 1.0 - frac;
        m[o * input + i1] += frac;
    }
    m
}

/// Bilinear resize (half-pixel centres, as PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)` without antialiasing), as two matrix products.
///
/// # Shapes
/// (N, C, H, W) -> (N, C, out_h, out_w)
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h == 0 || w == 0 || out_h == 0 || out_w == 0 {
        return Err(ModelError::BadInput(format!(
            "cannot resize {h}x{w} to {out_h}x{out_w}"
        )));
    }
    let dev = x.device();
    let dtype = x.dtype();
    let mx = Tensor::from_vec(bilinear_matrix(w, out_w), (out_w, w), dev)?.to_dtype(dtype)?;
    let my = Tensor::from_vec(bilinear_matrix(h, out_h), (out_h, h), dev)?.to_dtype(dtype)?;
    // Columns: (N·C·H, W) · (W, W').
    let y = x.reshape((n * c * h, w))?.matmul(&mx.t()?)?;
    // Rows: (N·C, H, W') -> (N·C·W', H) · (H, H').
    let y = y
        .reshape((n * c, h, out_w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n * c * out_w, h))?
        .matmul(&my.t()?)?;
    let y = y
        .reshape((n, c, out_w, out_h))?
        .transpose(2, 3)?
        .contiguous()?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn bilinear_matches_a_hand_computation() {
        // 1-D: 2 -> 4 with half-pixel centres: sources -0.25 (clamped 0), 0.25, 0.75, 1.25.
        // values a=1, b=3: 1, 1.5, 2.5, 3 (the last clamps at the edge).
        let x = Tensor::new(&[[[[1f32, 3.0], [5.0, 7.0]]]], &Device::Cpu).unwrap();
        let y = resize_bilinear(&x, 4, 4).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let row0 = [1.0, 1.5, 2.5, 3.0];
        let row1 = [2.0, 2.5, 3.5, 4.0]; // y source 0.25: 0.75·row(1,3) + 0.25·row(5,7)
        let row3 = [5.0, 5.5, 6.5, 7.0];
        for (k, want) in row0.iter().chain(&row1).enumerate() {
            assert!((y[k] - want).abs() < 1e-6, "{k}: {} vs {want}", y[k]);
        }
        for (k, want) in row3.iter().enumerate() {
            assert!((y[12 + k] - want).abs() < 1e-6);
        }
    }

    #[test]
    fn resize_to_same_size_is_identity_and_shapes_are_right() {
        let x = Tensor::rand(0f32, 1f32, (2, 3, 5, 7), &Device::Cpu).unwrap();
        let y = resize_bilinear(&x, 5, 7).unwrap();
        let d = (y - &x).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        assert_eq!(resize_bilinear(&x, 11, 4).unwrap().dims(), &[2, 3, 11, 4]);
        // Constant images stay constant under any resize.
        let ones = Tensor::ones((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let r = resize_bilinear(&ones, 8, 2).unwrap().flatten_all().unwrap();
        assert!(
            r.to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|v| (v - 1.0).abs() < 1e-6)
        );
    }
}
