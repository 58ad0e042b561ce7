//! Throughput of the data pipelines on the shared data (skipped when it is absent):
//! - `triplets/p{65,17}`: patch triplets per second of the background sampler at batch 64
//!   (criterion's throughput counts patches: 3 per triplet);
//! - `mvtec_decode/magnetic_tile_train_256`: decoding the 761 training images of
//!   magnetic_tile to 256×256, with a cold cache (a fresh one each iteration) and a warm one.
//!
//! Run: `cargo bench -p ust-data --bench pipelines` (set `UST_SHARED` if the shared folder is
//! not beside the checkout).

use std::time::Duration;

use candle_core::Device;
use criterion::{BatchSize, Criterion, Throughput};
use ust_data::mvtec::DEFAULT_IMAGE_SIZE;
use ust_data::{ImageCache, MvtecCategory, TripletConfig, TripletSampler};

fn bench_triplets(c: &mut Criterion, natural: &std::path::Path) {
    let mut group = c.benchmark_group("triplets");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    for p in [65, 17] {
        for threads in [1, 2] {
            let cfg = TripletConfig {
                decode_threads: threads,
                ..TripletConfig::new(p)
            };
            let batch = cfg.batch_size as u64;
            let mut sampler = TripletSampler::from_folder(natural, cfg).expect("sampler");
            group.throughput(Throughput::Elements(3 * batch));
            group.bench_function(format!("p{p}_batch{batch}_decoders{threads}"), |b| {
                b.iter(|| sampler.next_batch(&Device::Cpu).expect("batch"))
            });
        }
    }
    group.finish();
}

fn bench_mvtec(c: &mut Criterion, category_root: &std::path::Path) {
    let category = MvtecCategory::open(category_root).expect("category");
    let train = category.train_images().to_vec();
    let mut group = c.benchmark_group("mvtec_decode");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(train.len() as u64));
    group.bench_function("magnetic_tile_train_256_cold", |b| {
        b.iter_batched(
            ImageCache::new,
            |cache| {
                cache
                    .load_many(&train, Some(DEFAULT_IMAGE_SIZE))
                    .expect("load")
            },
            BatchSize::PerIteration,
        )
    });
    let warm = ImageCache::new();
    warm.load_many(&train, Some(DEFAULT_IMAGE_SIZE))
        .expect("load");
    group.bench_function("magnetic_tile_train_256_warm", |b| {
        b.iter(|| {
            warm.load_many(&train, Some(DEFAULT_IMAGE_SIZE))
                .expect("load")
        })
    });
    group.finish();
}

fn main() {
    let Some(shared) = ust_data::shared::shared_dir_for_tests(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let natural = shared.join("data/natural-images");
    let tile = shared.join("data/mvtec-layout/magnetic_tile");
    if !natural.is_dir() || !tile.is_dir() {
        eprintln!(
            "skipping: {} or {} not found (set UST_SHARED)",
            natural.display(),
            tile.display()
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench_triplets(&mut c, &natural);
    bench_mvtec(&mut c, &tile);
    c.final_summary();
}
