//! Fast CPU convolution, max pooling and leaky ReLU for the patch networks of the
//! student–teacher anomaly detector, as candle ops with forward and backward passes.
//!
//! candle's own CPU `conv2d` is several times slower than PyTorch's (a scalar im2col and a
//! backward that always runs a naive transposed convolution), and its `max_pool2d` backward is
//! wrong. This crate provides the layers the patch networks need with a fast f32 CPU path, and
//! keeps candle's plain ops as the reference path behind a process-wide switch
//! ([`set_backend`], or the environment variable `UST_CONV=reference`). Tensors that are not
//! f32 on the CPU always take the reference path.
//! The pooling has one CPU implementation (f32 and f64) for both settings; candle's reshape +
//! `max` formulation, [`max_pool_2x2_reference`], is its reference in the tests.
//!
//! | op | what it is for |
//! |---|---|
//! | [`conv2d`] | every convolution of the patch networks: valid padding, stride 1, any KH×KW, optional bias; `dilation > 1` for the dense formulation with dilated kernels |
//! | [`max_pool_2x2`] | the patch networks' 2×2 / stride-2 pooling |
//! | [`max_pool_2x2_all_offsets`] | the same at the four offsets, stacked into the batch (the multi-pool dense construction) |
//! | [`max_pool_2x2_dilated`] | the same pooling evaluated at every position (stride 1, taps `d` apart), for the dilated dense formulation |
//! | [`leaky_relu`] | the activation after every convolution but the last (one pass forward, one backward) |
//!
//! # How the convolution is computed
//! Forward, weight gradient and input gradient are matrix products through the `gemm` crate
//! (the same version candle uses; it selects AVX2/FMA or other SIMD levels at run time), on
//! tiles that rayon spreads over the threads, with per-thread scratch reused across tiles.
//! Wide layers on large maps use *shifted views*: the output is computed on the input's full row
//! width, so that each kernel tap reads the input at a constant offset and the convolution is a
//! sum of KH·KW products with no im2col copy. Narrow inputs (RGB) and small maps use a tiled
//! im2col. See `kernels.rs` for the details and the choice rules.
//!
//! # Gradients only where needed
//! candle calls a custom op's backward whenever *any* argument tracks gradients and keeps every
//! gradient returned. The convolution's backward therefore checks each argument itself and skips
//! the input gradient when the input is neither a variable nor computed from one (the image fed
//! to the first layer), and the weight and bias gradients for frozen parameters (the teacher).
//! When no argument tracks gradients, no graph is recorded at all.

use std::sync::atomic::{AtomicU8, Ordering};

mod activation;
mod conv;
mod kernels;
pub mod pool;
mod winograd;

pub use activation::{leaky_relu, leaky_relu_with};
pub use conv::{conv2d, conv2d_with};
pub use pool::{
    MaxPool2x2, max_pool_2x2, max_pool_2x2_all_offsets, max_pool_2x2_dilated,
    max_pool_2x2_reference,
};

/// Which implementation [`conv2d`] and the other ops of this crate use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvBackend {
    /// The crate's own f32 CPU kernels (falls back to `Reference` for other dtypes/devices),
    /// with Winograd's minimal filtering for the forward of a convolution that no gradient
    /// will be asked of (frozen networks: scoring, teacher targets; `winograd.rs`).
    Fast,
    /// The crate's own direct kernels everywhere (`UST_CONV=direct`): what `Fast` computed
    /// before the Winograd path, to compare with or to reproduce older results bit for bit.
    Direct,
    /// candle's own ops (`Tensor::conv2d`, reshape + max), kept as the reference path.
    Reference,
}

const BACKEND_UNSET: u8 = 0;
const BACKEND_FAST: u8 = 1;
const BACKEND_REFERENCE: u8 = 2;
const BACKEND_DIRECT: u8 = 3;

static BACKEND: AtomicU8 = AtomicU8::new(BACKEND_UNSET);

/// Sets the process-wide backend (overrides the `UST_CONV` environment variable).
pub fn set_backend(b: ConvBackend) {
    let v = match b {
        ConvBackend::Fast => BACKEND_FAST,
        ConvBackend::Reference => BACKEND_REFERENCE,
        ConvBackend::Direct => BACKEND_DIRECT,
    };
    BACKEND.store(v, Ordering::Relaxed);
}

/// The process-wide backend: the one last given to [`set_backend`], else `Reference` or
/// `Direct` when the environment variable `UST_CONV` is `reference` or `direct`, else `Fast`.
pub fn backend() -> ConvBackend {
    match BACKEND.load(Ordering::Relaxed) {
        BACKEND_FAST => ConvBackend::Fast,
        BACKEND_REFERENCE => ConvBackend::Reference,
        BACKEND_DIRECT => ConvBackend::Direct,
        _ => {
            let v = match std::env::var("UST_CONV") {
                Ok(v) if v.eq_ignore_ascii_case("reference") => BACKEND_REFERENCE,
                Ok(v) if v.eq_ignore_ascii_case("direct") => BACKEND_DIRECT,
                _ => BACKEND_FAST,
            };
            // Only the first reader decides; a concurrent set_backend wins.
            let _ =
                BACKEND.compare_exchange(BACKEND_UNSET, v, Ordering::Relaxed, Ordering::Relaxed);
            backend()
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use candle_core::{Device, Result, Tensor};

    /// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        /// Uniform in [-1, 1).
        pub fn uniform(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub fn tensor(&mut self, dims: &[usize]) -> Result<Tensor> {
            let n = dims.iter().product();
            let v: Vec<f32> = (0..n).map(|_| self.uniform()).collect();
            Tensor::from_vec(v, dims, &Device::Cpu)
        }
    }

    /// Asserts `|a − b| ≤ tol · max(1, max|b|)` elementwise (`b` is the reference).
    pub fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let (mut worst, mut at) = (0.0f32, 0);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let e = (x - y).abs();
            assert!(e.is_finite(), "{what}: non-finite at {i}: {x} vs {y}");
            if e > worst {
                (worst, at) = (e, i);
            }
        }
        assert!(
            worst <= tol * scale,
            "{what}: max error {worst} at {at} ({} vs {}), allowed {}",
            a[at],
            b[at],
            tol * scale
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_switch_round_trips() {
        set_backend(ConvBackend::Reference);
        assert_eq!(backend(), ConvBackend::Reference);
        set_backend(ConvBackend::Direct);
        assert_eq!(backend(), ConvBackend::Direct);
        set_backend(ConvBackend::Fast);
        assert_eq!(backend(), ConvBackend::Fast);
    }
}
