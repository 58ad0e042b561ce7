//! Patch networks, exact dense extraction and pretrained backbones for the student–teacher
//! anomaly detector ("Uninformed Students", Bergmann et al., CVPR 2020).
//!
//! - [`patch_net`]: the patch networks of METHOD.md §2 (receptive field p ∈ {17, 33, 65}),
//!   saved and loaded as safetensors that carry their own configuration;
//! - [`pool`]: 2×2 max pooling with correct gradients (candle's `max_pool2d` backward is wrong);
//! - [`dense`]: exact one-pass dense extraction of METHOD.md §3 (multi-pool/unwarp or dilated),
//!   one descriptor per pixel, differentiable so students train through it;
//! - [`backbone`], [`efficientnet_lite`], [`resnet`]: frozen ImageNet classifiers whose pooled
//!   features the teacher distils (METHOD.md §4).
//!
//! Patch-network convolutions go through `ust_conv::conv2d`, so its fast kernels (and its
//! process-wide backend switch) apply here.

pub mod backbone;
pub mod dense;
pub mod efficientnet_lite;
pub mod error;
pub mod patch_net;
/// 2×2 max pooling, implemented in `ust-conv` beside the convolution (re-exported).
pub use ust_conv::pool;
pub mod resnet;

#[cfg(test)]
pub(crate) mod test_support;

pub use backbone::{Backbone, resize_bilinear};
pub use dense::{BorderPadding, DenseConfig, DenseExtractor, DenseMethod};
pub use efficientnet_lite::{EfficientNetLite0, EfficientNetLite0Config, EfficientNetOutputs};
pub use error::{ModelError, Result};
pub use patch_net::{LayerSpec, PatchNet, PatchNetConfig, SUPPORTED_PATCH_SIZES};
pub use pool::{MaxPool2x2, max_pool_2x2, max_pool_2x2_all_offsets, max_pool_2x2_dilated};
pub use resnet::{HubFile, ResNet18, ResNet18Config, WeightOrigin, WeightSource};
