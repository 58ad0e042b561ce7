//! Patch triplets from natural images for teacher pretraining (METHOD.md §4).
//!
//! A source image is rescaled to a random square side `s` in `[4p, 16p]` (every integer in
//! that range; the factors are configurable) and kept in a *pool* of such rescaled images.
//! Each triplet takes a random pool image and:
//! - the anchor is a random p×p crop of it;
//! - the positive is the crop shifted by `(dy, dx)`, each uniform in `[-(p-1)/4, (p-1)/4]`,
//!   plus Gaussian noise of σ = 0.1, clamped to `[0, 1]`; the anchor position is drawn so that
//!   every shift stays inside the image;
//! - the negative is a random p×p crop of another pool image whose *source* image differs;
//! - each of the three patches independently becomes grey (ITU-R 601 luma replicated to the
//!   three channels) with probability 0.1, after the noise.
//!
//! Decoding dominates the cost, so each source image is decoded and rescaled once and then
//! sampled many times: every batch replaces the `refresh_per_batch` oldest pool images by new
//! ones. Sources come in seeded random passes over the folder. Everything random derives from
//! one seed, so a run is reproducible, whether the triplets are built inline
//! ([`TripletStream`]) or on background threads ([`TripletSampler`]: decoder threads feeding a
//! batching thread, a few batches prepared ahead) — both give identical batches. The generator
//! is xoshiro256++ (a fixed algorithm, unlike `StdRng`), so a seed's batches only change when
//! this crate's sampling code does.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::{DataError, Result};
use crate::folder::find_images_recursive;
use crate::image_io::{Size, decode_image, to_chw_rgb};

/// Sampling parameters (defaults: the paper's, with a pool sized for 2 CPU cores).
#[derive(Clone, Debug, PartialEq)]
pub struct TripletConfig {
    /// Patch side `p` (the receptive field of the teacher: 17, 33, 65).
    pub patch_size: usize,
    /// Triplets per batch.
    pub batch_size: usize,
    /// Rescaled sides are drawn uniformly from `[min_side_factor · u, max_side_factor · u]`,
    /// `u` = [`TripletConfig::side_unit`] (by default the patch side `p`).
    pub min_side_factor: usize,
    pub max_side_factor: usize,
    /// The length the side factors multiply; `None`: `patch_size`. Dense teacher training
    /// crops windows larger than the teacher's receptive field and sets this to the receptive
    /// field, so that the image scales match those of patch-wise training.
    pub side_unit: Option<usize>,
    /// Largest shift of the positive in each axis; `None`: `(p - 1) / 4`.
    pub max_shift: Option<usize>,
    /// Standard deviation of the positive's Gaussian noise (pixels in `[0, 1]`).
    pub noise_std: f32,
    /// Probability that a patch is turned grey.
    pub grayscale_prob: f64,
    /// Rescaled images kept for sampling.
    pub pool_size: usize,
    /// Pool images replaced by new ones before each batch after the first.
    pub refresh_per_batch: usize,
    /// Batches prepared ahead by [`TripletSampler`].
    pub prefetch_batches: usize,
    /// Threads decoding and rescaling source images in [`TripletSampler`].
    pub decode_threads: usize,
    pub seed: u64,
    /// Skip source images that fail to decode (with a warning) instead of failing.
    pub skip_unreadable: bool,
}

impl TripletConfig {
    /// The paper's sampling for patch side `p`, batch 64, a pool of 64 images of which 2 are
    /// replaced per batch (each pool image serves about 32 batches), seed 0.
    pub fn new(patch_size: usize) -> Self {
        TripletConfig {
            patch_size,
            batch_size: 64,
            min_side_factor: 4,
            max_side_factor: 16,
            side_unit: None,
            max_shift: None,
            noise_std: 0.1,
            grayscale_prob: 0.1,
            pool_size: 64,
            refresh_per_batch: 2,
            prefetch_batches: 4,
            decode_threads: 1,
            seed: 0,
            skip_unreadable: false,
        }
    }

    /// The shift bound in use.
    pub fn max_shift(&self) -> usize {
        self.max_shift
            .unwrap_or(self.patch_size.saturating_sub(1) / 4)
    }

    /// Smallest and largest rescaled side.
    pub fn side_range(&self) -> (usize, usize) {
        let unit = self.side_unit.unwrap_or(self.patch_size);
        (
            self.min_side_factor.saturating_mul(unit),
            self.max_side_factor.saturating_mul(unit),
        )
    }

    /// Checks the parameters against a folder of `image_count` images (`root` names it in the
    /// error).
    pub fn check(&self, root: &Path, image_count: usize) -> Result<()> {
        let fail = |reason: String| Err(DataError::config(root, reason));
        let p = self.patch_size;
        let (min_side, max_side) = self.side_range();
        if p == 0 || self.batch_size == 0 {
            return fail("patch_size and batch_size must be positive".into());
        }
        if self.min_side_factor == 0 || min_side > max_side {
            return fail(format!(
                "side factors {}..{} must satisfy 1 <= min <= max",
                self.min_side_factor, self.max_side_factor
            ));
        }
        if min_side < p + 2 * self.max_shift() {
            return fail(format!(
                "the smallest side {min_side} cannot hold a {p}x{p} patch shifted by ±{}",
                self.max_shift()
            ));
        }
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
            return fail(format!(
                "noise_std {} must be finite and >= 0",
                self.noise_std
            ));
        }
        if !(0.0..=1.0).contains(&self.grayscale_prob) {
            return fail(format!(
                "grayscale_prob {} is not in [0, 1]",
                self.grayscale_prob
            ));
        }
        if self.pool_size < 3 || self.refresh_per_batch > self.pool_size {
            return fail(format!(
                "pool_size {} must be >= 3 and >= refresh_per_batch {}",
                self.pool_size, self.refresh_per_batch
            ));
        }
        if self.prefetch_batches == 0 || self.decode_threads == 0 {
            return fail("prefetch_batches and decode_threads must be positive".into());
        }
        if image_count < 2 {
            return fail(format!(
                "{image_count} image(s): negatives need at least two source images"
            ));
        }
        Ok(())
    }
}

/// Where one triplet's patches came from (pixel coordinates in the rescaled images).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TripletGeometry {
    /// Index of the anchor's source image in the sampler's image list.
    pub anchor_source: usize,
    /// Side of the rescaled anchor image.
    pub anchor_side: usize,
    /// Top-left corner of the anchor crop.
    pub anchor_y: usize,
    pub anchor_x: usize,
    /// Offset of the positive crop from the anchor crop.
    pub shift_y: isize,
    pub shift_x: isize,
    pub negative_source: usize,
    pub negative_side: usize,
    pub negative_y: usize,
    pub negative_x: usize,
    /// Which patches were turned grey.
    pub anchor_gray: bool,
    pub positive_gray: bool,
    pub negative_gray: bool,
}

/// One batch as plain vectors: each is N×3×p×p, `f32` in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTripletBatch {
    pub patch_size: usize,
    pub anchor: Vec<f32>,
    pub positive: Vec<f32>,
    pub negative: Vec<f32>,
    pub geometry: Vec<TripletGeometry>,
}

/// One batch as tensors, each N×3×p×p `f32` in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct TripletBatch {
    pub anchor: Tensor,
    pub positive: Tensor,
    pub negative: Tensor,
    pub geometry: Vec<TripletGeometry>,
}

impl RawTripletBatch {
    /// Number of triplets.
    pub fn len(&self) -> usize {
        self.geometry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.geometry.is_empty()
    }

    /// Moves the vectors into N×3×p×p tensors on `device`.
    pub fn into_tensors(self, device: &Device) -> candle_core::Result<TripletBatch> {
        let shape = (self.len(), 3, self.patch_size, self.patch_size);
        Ok(TripletBatch {
            anchor: Tensor::from_vec(self.anchor, shape, device)?,
            positive: Tensor::from_vec(self.positive, shape, device)?,
            negative: Tensor::from_vec(self.negative, shape, device)?,
            geometry: self.geometry,
        })
    }
}

/// A source image rescaled to `side`×`side`, interleaved RGB bytes.
#[derive(Debug)]
struct PoolImage {
    source: usize,
    side: usize,
    pixels: Vec<u8>,
}

/// Decodes `path` and rescales it (bilinear, anti-aliased when shrinking) to a `side`×`side`
/// square of interleaved RGB bytes (H×W×3). The pool keeps bytes (a quarter of the memory of
/// `f32`), interleaved so that a patch row is one contiguous run of memory: cropping from a
/// pool of large images is bound by memory access, not arithmetic.
pub fn rescale_source(path: &Path, side: usize) -> Result<Vec<u8>> {
    let image = to_chw_rgb(&decode_image(path)?);
    let square = image.resize_bilinear(Size::square(side as u32));
    let mut pixels = vec![0u8; 3 * side * side];
    // Round half up; the clamp keeps the float-to-byte cast exact. (`f32::round` is a library
    // call on baseline x86-64 and took a third of the time here.)
    let to_byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
    for (((px, &r), &g), &b) in pixels
        .chunks_exact_mut(3)
        .zip(square.plane(0))
        .zip(square.plane(1))
        .zip(square.plane(2))
    {
        px[0] = to_byte(r);
        px[1] = to_byte(g);
        px[2] = to_byte(b);
    }
    Ok(pixels)
}

/// Derives independent generator seeds from the user's seed.
fn sub_seed(seed: u64, stream: u64) -> u64 {
    seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The sequence of (source index, rescaled side): seeded random passes over all images.
#[derive(Debug)]
struct SourcePlanner {
    rng: Xoshiro256PlusPlus,
    order: Vec<usize>,
    next: usize,
    sides: (usize, usize),
}

impl SourcePlanner {
    fn new(image_count: usize, cfg: &TripletConfig) -> Self {
        SourcePlanner {
            rng: Xoshiro256PlusPlus::seed_from_u64(sub_seed(cfg.seed, 1)),
            order: (0..image_count).collect(),
            next: image_count,
            sides: cfg.side_range(),
        }
    }

    fn next_item(&mut self) -> (usize, usize) {
        if self.next == self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.next = 0;
        }
        let source = self.order[self.next];
        self.next += 1;
        (source, self.rng.random_range(self.sides.0..=self.sides.1))
    }
}

type FeedItem = (usize, Result<Vec<u8>>, usize);

/// Where new pool images come from.
enum Feed {
    /// Decoded on the calling thread.
    Inline(Box<SourcePlanner>),
    /// From decoder threads: item `i` of the plan arrives on channel `i % n`.
    Threads {
        receivers: Vec<Receiver<FeedItem>>,
        next: usize,
    },
}

/// The deterministic triplet generator, building batches on the calling thread.
pub struct TripletStream {
    cfg: TripletConfig,
    root: PathBuf,
    images: Arc<Vec<PathBuf>>,
    feed: Feed,
    pool: VecDeque<PoolImage>,
    rng: Xoshiro256PlusPlus,
}

impl std::fmt::Debug for TripletStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TripletStream")
            .field("root", &self.root)
            .field("images", &self.images.len())
            .field("pool", &self.pool.len())
            .finish()
    }
}

impl TripletStream {
    /// A generator over `images` (`root` names the folder in errors), decoding on the calling
    /// thread. Checks `cfg` first.
    pub fn new(root: &Path, images: Vec<PathBuf>, cfg: TripletConfig) -> Result<Self> {
        cfg.check(root, images.len())?;
        let planner = SourcePlanner::new(images.len(), &cfg);
        Ok(Self::with_feed(
            root,
            Arc::new(images),
            cfg,
            Feed::Inline(Box::new(planner)),
        ))
    }

    /// [`TripletStream::new`] over the images found recursively under `root`.
    pub fn from_folder(root: &Path, cfg: TripletConfig) -> Result<Self> {
        Self::new(root, find_images_recursive(root)?, cfg)
    }

    fn with_feed(root: &Path, images: Arc<Vec<PathBuf>>, cfg: TripletConfig, feed: Feed) -> Self {
        TripletStream {
            rng: Xoshiro256PlusPlus::seed_from_u64(sub_seed(cfg.seed, 2)),
            pool: VecDeque::with_capacity(cfg.pool_size),
            root: root.to_path_buf(),
            images,
            feed,
            cfg,
        }
    }

    /// The source images, in the order [`TripletGeometry`] indexes them.
    pub fn images(&self) -> &[PathBuf] {
        &self.images
    }

    pub fn config(&self) -> &TripletConfig {
        &self.cfg
    }

    /// The next pool image from the feed, skipping unreadable sources when configured.
    fn next_pool_image(&mut self) -> Result<PoolImage> {
        let mut failures = 0;
        loop {
            let (source, result, side) = match &mut self.feed {
                Feed::Inline(planner) => {
                    let (source, side) = planner.next_item();
                    (source, rescale_source(&self.images[source], side), side)
                }
                Feed::Threads { receivers, next } => {
                    let k = *next % receivers.len();
                    *next += 1;
                    receivers[k].recv().map_err(|_| DataError::SamplerStopped {
                        path: self.root.clone(),
                        reason: "a decoder thread ended".into(),
                    })?
                }
            };
            match result {
                Ok(pixels) => {
                    return Ok(PoolImage {
                        source,
                        side,
                        pixels,
                    });
                }
                Err(e) if self.cfg.skip_unreadable && failures < self.images.len() => {
                    tracing::warn!("skipping unreadable source image: {e}");
                    failures += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The next batch as vectors.
    pub fn next_raw(&mut self) -> Result<RawTripletBatch> {
        if self.pool.is_empty() {
            while self.pool.len() < self.cfg.pool_size {
                let image = self.next_pool_image()?;
                self.pool.push_back(image);
            }
        } else {
            for _ in 0..self.cfg.refresh_per_batch {
                let image = self.next_pool_image()?;
                self.pool.pop_front();
                self.pool.push_back(image);
            }
        }
        let first = self.pool[0].source;
        if self.pool.iter().all(|im| im.source == first) {
            return Err(DataError::config(
                &self.root,
                "the pool holds a single source image (too few readable images for negatives)",
            ));
        }
        let p = self.cfg.patch_size;
        let patch_len = 3 * p * p;
        let n = self.cfg.batch_size;
        let mut batch = RawTripletBatch {
            patch_size: p,
            anchor: vec![0.0; n * patch_len],
            positive: vec![0.0; n * patch_len],
            negative: vec![0.0; n * patch_len],
            geometry: Vec::with_capacity(n),
        };
        for i in 0..n {
            let range = i * patch_len..(i + 1) * patch_len;
            let g = self.sample_triplet(
                &mut batch.anchor[range.clone()],
                &mut batch.positive[range.clone()],
                &mut batch.negative[range],
            );
            batch.geometry.push(g);
        }
        Ok(batch)
    }

    /// The next batch as tensors on `device`.
    pub fn next_batch(&mut self, device: &Device) -> Result<TripletBatch> {
        let root = self.root.clone();
        self.next_raw()?
            .into_tensors(device)
            .map_err(|cause| DataError::Tensor { path: root, cause })
    }

    /// Draws one triplet into the three 3×p×p slices. The order of the random draws is part
    /// of the reproducibility contract: changing it changes every batch of a seed.
    fn sample_triplet(
        &mut self,
        anchor: &mut [f32],
        positive: &mut [f32],
        negative: &mut [f32],
    ) -> TripletGeometry {
        let p = self.cfg.patch_size;
        let m = self.cfg.max_shift();
        let rng = &mut self.rng;
        let a = rng.random_range(0..self.pool.len());
        let a_img = &self.pool[a];
        let anchor_y = rng.random_range(m..=a_img.side - p - m);
        let anchor_x = rng.random_range(m..=a_img.side - p - m);
        // (isize has no uniform sampler in rand 0.10; i64 does.)
        let shift_y = rng.random_range(-(m as i64)..=m as i64) as isize;
        let shift_x = rng.random_range(-(m as i64)..=m as i64) as isize;
        let neg = loop {
            let k = rng.random_range(0..self.pool.len());
            if self.pool[k].source != a_img.source {
                break k;
            }
        };
        let n_img = &self.pool[neg];
        let negative_y = rng.random_range(0..=n_img.side - p);
        let negative_x = rng.random_range(0..=n_img.side - p);
        let prob = self.cfg.grayscale_prob;
        let (anchor_gray, positive_gray, negative_gray) = (
            rng.random_bool(prob),
            rng.random_bool(prob),
            rng.random_bool(prob),
        );

        crop(a_img, anchor_y, anchor_x, p, anchor);
        let pos_y = (anchor_y as isize + shift_y) as usize;
        let pos_x = (anchor_x as isize + shift_x) as usize;
        crop(a_img, pos_y, pos_x, p, positive);
        if self.cfg.noise_std > 0.0 {
            let std = self.cfg.noise_std;
            for v in positive.iter_mut() {
                let z: f32 = rng.sample(StandardNormal);
                *v = (*v + std * z).clamp(0.0, 1.0);
            }
        }
        crop(n_img, negative_y, negative_x, p, negative);
        for (patch, gray) in [
            (&mut *anchor, anchor_gray),
            (&mut *positive, positive_gray),
            (&mut *negative, negative_gray),
        ] {
            if gray {
                to_gray(patch, p * p);
            }
        }
        TripletGeometry {
            anchor_source: a_img.source,
            anchor_side: a_img.side,
            anchor_y,
            anchor_x,
            shift_y,
            shift_x,
            negative_source: n_img.source,
            negative_side: n_img.side,
            negative_y,
            negative_x,
            anchor_gray,
            positive_gray,
            negative_gray,
        }
    }
}

/// `v / 255` for every byte (a table: exact, and cheaper than a division per pixel).
const BYTE_TO_UNIT: [f32; 256] = {
    let mut table = [0.0; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as f32 / 255.0;
        i += 1;
    }
    table
};

/// Copies the p×p window at (y, x) of an interleaved pool image into `out` (planar 3×p×p),
/// bytes to `[0, 1]`.
fn crop(image: &PoolImage, y: usize, x: usize, p: usize, out: &mut [f32]) {
    let s = image.side;
    let (red, rest) = out.split_at_mut(p * p);
    let (green, blue) = rest.split_at_mut(p * p);
    for r in 0..p {
        let src = &image.pixels[3 * ((y + r) * s + x)..][..3 * p];
        let row = r * p..(r + 1) * p;
        for (((px, dr), dg), db) in src
            .chunks_exact(3)
            .zip(&mut red[row.clone()])
            .zip(&mut green[row.clone()])
            .zip(&mut blue[row])
        {
            *dr = BYTE_TO_UNIT[px[0] as usize];
            *dg = BYTE_TO_UNIT[px[1] as usize];
            *db = BYTE_TO_UNIT[px[2] as usize];
        }
    }
}

/// Replaces the three planes of `patch` (3 × `n` values) by their ITU-R 601 luma.
fn to_gray(patch: &mut [f32], n: usize) {
    for i in 0..n {
        let y = 0.299 * patch[i] + 0.587 * patch[n + i] + 0.114 * patch[2 * n + i];
        patch[i] = y;
        patch[n + i] = y;
        patch[2 * n + i] = y;
    }
}

/// Triplet batches built on background threads: `decode_threads` threads decode and rescale
/// source images, one thread assembles batches, `prefetch_batches` batches wait ready. The
/// batches are those of a [`TripletStream`] with the same images and configuration.
/// Dropping the sampler stops and joins its threads.
pub struct TripletSampler {
    root: PathBuf,
    images: Arc<Vec<PathBuf>>,
    batches: Option<Receiver<Result<RawTripletBatch>>>,
    threads: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl std::fmt::Debug for TripletSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TripletSampler")
            .field("root", &self.root)
            .field("images", &self.images.len())
            .finish()
    }
}

impl TripletSampler {
    /// Starts the threads over `images` (`root` names the folder in errors). Checks `cfg`
    /// first; decoding errors arrive with the batches.
    pub fn new(root: &Path, images: Vec<PathBuf>, cfg: TripletConfig) -> Result<Self> {
        cfg.check(root, images.len())?;
        let images = Arc::new(images);
        let spawn_error = |e: std::io::Error| DataError::io(root, e);
        let mut threads = Vec::new();
        let mut receivers = Vec::new();
        let n_threads = cfg.decode_threads;
        for k in 0..n_threads {
            let (tx, rx) = sync_channel::<FeedItem>(4);
            receivers.push(rx);
            let images = Arc::clone(&images);
            let cfg = cfg.clone();
            let handle = std::thread::Builder::new()
                .name(format!("triplet-decode-{k}"))
                .spawn(move || decode_worker(k, n_threads, &images, &cfg, tx))
                .map_err(spawn_error)?;
            threads.push(handle);
        }
        let (tx, rx) = sync_channel(cfg.prefetch_batches);
        let mut stream = TripletStream::with_feed(
            root,
            Arc::clone(&images),
            cfg,
            Feed::Threads { receivers, next: 0 },
        );
        let handle = std::thread::Builder::new()
            .name("triplet-batch".into())
            .spawn(move || {
                loop {
                    let batch = stream.next_raw();
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(spawn_error)?;
        threads.push(handle);
        Ok(TripletSampler {
            root: root.to_path_buf(),
            images,
            batches: Some(rx),
            threads,
            stopped: false,
        })
    }

    /// [`TripletSampler::new`] over the images found recursively under `root`.
    pub fn from_folder(root: &Path, cfg: TripletConfig) -> Result<Self> {
        Self::new(root, find_images_recursive(root)?, cfg)
    }

    /// The source images, in the order [`TripletGeometry`] indexes them.
    pub fn images(&self) -> &[PathBuf] {
        &self.images
    }

    /// The next batch as vectors (waits when none is ready).
    pub fn next_raw(&mut self) -> Result<RawTripletBatch> {
        let received = match (&self.batches, self.stopped) {
            (Some(rx), false) => rx.recv().ok(),
            _ => None,
        };
        match received {
            Some(Ok(batch)) => Ok(batch),
            Some(Err(e)) => {
                self.stopped = true;
                Err(e)
            }
            None => {
                self.stopped = true;
                Err(DataError::SamplerStopped {
                    path: self.root.clone(),
                    reason: "the batching thread ended (after an error or a panic)".into(),
                })
            }
        }
    }

    /// The next batch as tensors on `device`.
    pub fn next_batch(&mut self, device: &Device) -> Result<TripletBatch> {
        let root = self.root.clone();
        self.next_raw()?
            .into_tensors(device)
            .map_err(|cause| DataError::Tensor { path: root, cause })
    }
}

impl Drop for TripletSampler {
    fn drop(&mut self) {
        // Closing the batch channel makes the batching thread's send fail; it then drops its
        // receivers, which stops the decoders at their next send.
        self.batches = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Decoder thread `k` of `n`: walks the whole plan, decodes items `k, k + n, …`.
fn decode_worker(
    k: usize,
    n: usize,
    images: &[PathBuf],
    cfg: &TripletConfig,
    tx: SyncSender<FeedItem>,
) {
    let mut planner = SourcePlanner::new(images.len(), cfg);
    let mut index = 0usize;
    loop {
        let (source, side) = planner.next_item();
        if index % n == k {
            let pixels = rescale_source(&images[source], side);
            if tx.send((source, pixels, side)).is_err() {
                return;
            }
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` RGB images of 24×20 with pseudo-random pixels (distinct per image).
    fn noise_images(dir: &Path, n: usize) -> Vec<PathBuf> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(99);
        (0..n)
            .map(|i| {
                let path = dir.join(format!("img{i}.png"));
                let pixels: Vec<u8> = (0..24 * 20 * 3).map(|_| rng.random()).collect();
                image::RgbImage::from_raw(24, 20, pixels)
                    .unwrap()
                    .save(&path)
                    .unwrap();
                path
            })
            .collect()
    }

    fn plain_config(p: usize) -> TripletConfig {
        TripletConfig {
            batch_size: 32,
            noise_std: 0.0,
            grayscale_prob: 0.0,
            pool_size: 4,
            refresh_per_batch: 1,
            seed: 5,
            ..TripletConfig::new(p)
        }
    }

    /// The p×p crop at (y, x) of `path` rescaled to `side`, computed independently of the
    /// pool.
    fn expected_crop(path: &Path, side: usize, y: usize, x: usize, p: usize) -> Vec<f32> {
        let pixels = rescale_source(path, side).unwrap();
        let mut out = Vec::with_capacity(3 * p * p);
        for c in 0..3 {
            for r in 0..p {
                for col in 0..p {
                    out.push(f32::from(pixels[3 * ((y + r) * side + x + col) + c]) / 255.0);
                }
            }
        }
        out
    }

    #[test]
    fn geometry_patch_contents_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let images = noise_images(dir.path(), 5);
        let p = 9;
        let mut stream = TripletStream::new(dir.path(), images.clone(), plain_config(p)).unwrap();
        let m = (p - 1) / 4;
        let mut shifts_seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let batch = stream.next_raw().unwrap();
            assert_eq!(batch.anchor.len(), 32 * 3 * p * p);
            for (i, g) in batch.geometry.iter().enumerate() {
                assert!((4 * p..=16 * p).contains(&g.anchor_side), "{g:?}");
                assert!(g.shift_y.unsigned_abs() <= m && g.shift_x.unsigned_abs() <= m);
                shifts_seen.insert(g.shift_y);
                assert_ne!(g.negative_source, g.anchor_source);
                let py = (g.anchor_y as isize + g.shift_y) as usize;
                let px = (g.anchor_x as isize + g.shift_x) as usize;
                assert!(py + p <= g.anchor_side && px + p <= g.anchor_side);
                assert!(g.negative_y + p <= g.negative_side);
                let r = i * 3 * p * p..(i + 1) * 3 * p * p;
                let src = &images[g.anchor_source];
                assert_eq!(
                    batch.anchor[r.clone()],
                    expected_crop(src, g.anchor_side, g.anchor_y, g.anchor_x, p)
                );
                assert_eq!(
                    batch.positive[r.clone()],
                    expected_crop(src, g.anchor_side, py, px, p)
                );
                let neg = &images[g.negative_source];
                assert_eq!(
                    batch.negative[r],
                    expected_crop(neg, g.negative_side, g.negative_y, g.negative_x, p)
                );
            }
        }
        // Every shift in [-m, m] occurs over 96 triplets.
        assert_eq!(
            shifts_seen.into_iter().collect::<Vec<_>>(),
            vec![-2, -1, 0, 1, 2]
        );
    }

    #[test]
    fn tensors_have_patch_shape_and_unit_range() {
        let dir = tempfile::tempdir().unwrap();
        let images = noise_images(dir.path(), 3);
        let cfg = TripletConfig {
            pool_size: 3,
            batch_size: 8,
            ..TripletConfig::new(9)
        };
        let mut stream = TripletStream::new(dir.path(), images, cfg).unwrap();
        let batch = stream.next_batch(&Device::Cpu).unwrap();
        for t in [&batch.anchor, &batch.positive, &batch.negative] {
            assert_eq!(t.dims(), &[8, 3, 9, 9]);
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }

    #[test]
    fn same_seed_same_batches_inline_and_background() {
        let dir = tempfile::tempdir().unwrap();
        let images = noise_images(dir.path(), 6);
        let cfg = TripletConfig {
            batch_size: 16,
            pool_size: 4,
            refresh_per_batch: 2,
            decode_threads: 2,
            seed: 42,
            ..TripletConfig::new(9)
        };
        let mut a = TripletStream::new(dir.path(), images.clone(), cfg.clone()).unwrap();
        let mut b = TripletSampler::new(dir.path(), images.clone(), cfg.clone()).unwrap();
        let mut c = TripletStream::new(
            dir.path(),
            images.clone(),
            TripletConfig { seed: 43, ..cfg },
        )
        .unwrap();
        for _ in 0..5 {
            let (x, y) = (a.next_raw().unwrap(), b.next_raw().unwrap());
            assert_eq!(x, y);
            assert_ne!(x, c.next_raw().unwrap());
        }
    }

    #[test]
    fn noise_has_the_configured_deviation() {
        // Mid-grey images: the positive minus its clean crop is the noise (no clamping).
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<PathBuf> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("{i}.png"));
                image::RgbImage::from_pixel(16, 16, image::Rgb([128, 128, 128]))
                    .save(&path)
                    .unwrap();
                path
            })
            .collect();
        let cfg = TripletConfig {
            noise_std: 0.1,
            ..plain_config(9)
        };
        let mut stream = TripletStream::new(dir.path(), images, cfg).unwrap();
        let batch = stream.next_raw().unwrap();
        let diffs: Vec<f64> = batch
            .positive
            .iter()
            .map(|&v| f64::from(v) - 128.0 / 255.0)
            .collect();
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / n;
        let std = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 0.003, "mean {mean}");
        assert!((std - 0.1).abs() < 0.004, "std {std}");
        assert!(batch.anchor.iter().all(|&v| v == 128.0 / 255.0));
    }

    #[test]
    fn grayscale_happens_with_the_configured_probability() {
        let dir = tempfile::tempdir().unwrap();
        let images = noise_images(dir.path(), 4);
        let cfg = TripletConfig {
            grayscale_prob: 0.1,
            batch_size: 64,
            ..plain_config(9)
        };
        let mut stream = TripletStream::new(dir.path(), images, cfg).unwrap();
        let (mut gray, mut total) = (0usize, 0usize);
        let n = 81;
        for _ in 0..4 {
            let batch = stream.next_raw().unwrap();
            for (i, g) in batch.geometry.iter().enumerate() {
                for (flag, data) in [
                    (g.anchor_gray, &batch.anchor),
                    (g.positive_gray, &batch.positive),
                    (g.negative_gray, &batch.negative),
                ] {
                    let patch = &data[i * 3 * n..(i + 1) * 3 * n];
                    let equal =
                        (0..n).all(|j| patch[j] == patch[n + j] && patch[j] == patch[2 * n + j]);
                    assert_eq!(flag, equal, "flag and content disagree");
                    gray += usize::from(flag);
                    total += 1;
                }
            }
        }
        // 768 draws of p = 0.1: the standard deviation of the fraction is 0.011.
        let fraction = gray as f64 / total as f64;
        assert!((fraction - 0.1).abs() < 0.045, "{fraction}");
    }

    #[test]
    fn config_errors_before_any_work() {
        let root = Path::new("/nonexistent");
        let two = vec![PathBuf::from("a.png"), PathBuf::from("b.png")];
        let bad = [
            TripletConfig {
                patch_size: 0,
                ..TripletConfig::new(9)
            },
            TripletConfig {
                min_side_factor: 1,
                ..TripletConfig::new(9)
            },
            TripletConfig {
                max_side_factor: 3,
                ..TripletConfig::new(9)
            },
            TripletConfig {
                grayscale_prob: 1.5,
                ..TripletConfig::new(9)
            },
            TripletConfig {
                noise_std: f32::NAN,
                ..TripletConfig::new(9)
            },
            TripletConfig {
                pool_size: 2,
                ..TripletConfig::new(9)
            },
        ];
        for cfg in bad {
            let err = TripletStream::new(root, two.clone(), cfg.clone()).unwrap_err();
            assert!(
                matches!(err, DataError::InvalidConfig { .. }),
                "{cfg:?}: {err}"
            );
            assert_eq!(err.path(), root);
        }
        let err = TripletSampler::new(root, two[..1].to_vec(), TripletConfig::new(9)).unwrap_err();
        assert!(err.to_string().contains("at least two"), "{err}");
    }

    #[test]
    fn unreadable_source_fails_or_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut images = noise_images(dir.path(), 3);
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        images.push(bad.clone());
        let cfg = plain_config(9);
        let mut strict = TripletSampler::new(dir.path(), images.clone(), cfg.clone()).unwrap();
        // The pool's first fill reads all four images, so the first batch fails.
        let err = strict.next_raw().unwrap_err();
        assert_eq!(err.path(), bad.as_path());
        assert!(matches!(
            strict.next_raw().unwrap_err(),
            DataError::SamplerStopped { .. }
        ));
        let cfg = TripletConfig {
            skip_unreadable: true,
            ..cfg
        };
        let mut lenient = TripletStream::new(dir.path(), images, cfg).unwrap();
        for _ in 0..3 {
            let batch = lenient.next_raw().unwrap();
            assert!(
                batch
                    .geometry
                    .iter()
                    .all(|g| g.anchor_source != 3 && g.negative_source != 3)
            );
        }
    }

    #[test]
    fn shared_natural_images_batch() {
        let Some(root) = crate::test_support::shared_path("data/natural-images") else {
            return;
        };
        let cfg = TripletConfig {
            pool_size: 4,
            batch_size: 16,
            ..TripletConfig::new(17)
        };
        let mut sampler = TripletSampler::from_folder(&root, cfg).unwrap();
        assert_eq!(sampler.images().len(), 1000);
        let batch = sampler.next_batch(&Device::Cpu).unwrap();
        assert_eq!(batch.anchor.dims(), &[16, 3, 17, 17]);
        let mean = batch.anchor.mean_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((0.05..0.95).contains(&mean), "{mean}");
    }
}
