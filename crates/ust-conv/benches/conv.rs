//! The convolution alone, fast path vs candle's reference conv2d, on the patch networks' layer
//! shapes: forward, and forward + backward (gradients for every argument that is a variable).
//!
//! `cargo bench -p ust-conv --bench conv [-- FILTER]`; criterion prints the time per iteration
//! of each `{fast, reference}` pair.

use std::hint::black_box;

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use ust_conv::{ConvBackend, conv2d_with};

struct Layer {
    name: &'static str,
    input: [usize; 4],
    cout: usize,
    k: usize,
    /// Whether the input needs a gradient (false for the first layer, fed an image).
    input_grad: bool,
}

const LAYERS: &[Layer] = &[
    Layer {
        name: "5x5_128to128_128x128_b1",
        input: [1, 128, 128, 128],
        cout: 128,
        k: 5,
        input_grad: true,
    },
    Layer {
        name: "5x5_3to128_256x256_b1",
        input: [1, 3, 256, 256],
        cout: 128,
        k: 5,
        input_grad: false,
    },
    // The p = 65 descriptor layer in dense extraction (a quarter of the 64 stacked pooling
    // offsets of a 256x256 image, to keep the reference path's iterations short).
    Layer {
        name: "4x4_128to256_36x36_b16",
        input: [16, 128, 36, 36],
        cout: 256,
        k: 4,
        input_grad: true,
    },
    // The same layer in patch training (batch of 64 patches).
    Layer {
        name: "4x4_128to256_4x4_b64",
        input: [64, 128, 4, 4],
        cout: 256,
        k: 4,
        input_grad: true,
    },
];

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    for layer in LAYERS {
        let [b, cin, h, w] = layer.input;
        let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
        let scale = 1.0 / ((cin * layer.k * layer.k) as f64).sqrt();
        let wt = (Tensor::randn(0f32, 1.0, (layer.cout, cin, layer.k, layer.k), &dev).unwrap()
            * scale)
            .unwrap();
        let bias = Tensor::zeros(layer.cout, candle_core::DType::F32, &dev).unwrap();
        let (xv, wv, bv) = (
            Var::from_tensor(&x).unwrap(),
            Var::from_tensor(&wt).unwrap(),
            Var::from_tensor(&bias).unwrap(),
        );
        let x_train = if layer.input_grad {
            xv.as_tensor().clone()
        } else {
            x.clone()
        };

        let mut group = c.benchmark_group(format!("conv/{}", layer.name));
        group.sample_size(10);
        // The forward on plain tensors is the inference path: `fast` takes Winograd there
        // where it applies, `direct` the direct kernels (the backward is the same for both).
        for (label, backend) in [
            ("fast", ConvBackend::Fast),
            ("direct", ConvBackend::Direct),
            ("reference", ConvBackend::Reference),
        ] {
            group.bench_function(format!("fwd/{label}"), |bench| {
                bench.iter(|| black_box(conv2d_with(backend, &x, &wt, Some(&bias), 1).unwrap()))
            });
            group.bench_function(format!("fwd+bwd/{label}"), |bench| {
                bench.iter(|| {
                    let y = conv2d_with(backend, &x_train, &wv, Some(&bv), 1).unwrap();
                    black_box(y.sum_all().unwrap().backward().unwrap())
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
