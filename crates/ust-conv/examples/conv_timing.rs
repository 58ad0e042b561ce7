//! Minimum-of-N wall-clock timings of single convolution layers, fast path vs candle's
//! reference (quicker than the criterion bench; for tuning on a shared machine).
//!
//! `cargo run --release -p ust-conv --example conv_timing -- [REPS] [--no-reference] [LAYER..]`
//! with LAYER as `B,Cin,H,W,Cout,K[,d][,nograd]` (nograd: the input needs no gradient).

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use ust_conv::{ConvBackend, conv2d_with};

struct Layer {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    d: usize,
    input_grad: bool,
}

fn parse(s: &str) -> Layer {
    let parts: Vec<&str> = s.split(',').collect();
    let num = |i: usize| parts[i].parse::<usize>().expect("layer: numbers expected");
    let d = parts.get(6).and_then(|p| p.parse().ok()).unwrap_or(1);
    Layer {
        b: num(0),
        cin: num(1),
        h: num(2),
        w: num(3),
        cout: num(4),
        k: num(5),
        d,
        input_grad: !parts.contains(&"nograd"),
    }
}

type TensorFn = dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

/// Seconds of CPU time used by this process so far (all threads).
fn process_cpu_time() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// (minimum wall time, minimum CPU time / threads) over `reps` runs after one warm-up run.
/// On a loaded machine the second figure approximates the wall time on idle cores.
fn min_time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let threads = rayon::current_num_threads() as f64;
    (0..reps)
        .map(|_| {
            let (t, c) = (Instant::now(), process_cpu_time());
            f();
            (
                t.elapsed().as_secs_f64(),
                (process_cpu_time() - c) / threads,
            )
        })
        .fold((f64::INFINITY, f64::INFINITY), |(a, b), (x, y)| {
            (a.min(x), b.min(y))
        })
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps = args.first().and_then(|a| a.parse().ok()).unwrap_or(5usize);
    let with_reference = !args.iter().any(|a| a == "--no-reference");
    let explicit_layers = args.iter().any(|a| a.contains(','));
    let mut layers: Vec<Layer> = args
        .iter()
        .filter(|a| a.contains(','))
        .map(|a| parse(a))
        .collect();
    if !explicit_layers && !args.iter().any(|a| a == "--pool" || a == "--gemm") {
        layers = [
            "1,128,128,128,128,5",
            "1,3,256,256,128,5,1,nograd",
            "64,128,36,36,256,4",
            "64,128,4,4,256,4",
        ]
        .iter()
        .map(|s| parse(s))
        .collect();
    }
    let dev = Device::Cpu;
    println!("threads: {}", rayon::current_num_threads());
    if args.iter().any(|a| a == "--gemm") {
        // The ceiling: one plain matrix product of the 5x5 128->128 layer's im2col size.
        let a = Tensor::randn(0f32, 1.0, (128, 3200), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (3200, 15376), &dev)?;
        let (t, c) = min_time(reps, || {
            a.matmul(&b).unwrap();
        });
        let gflop = 2.0 * 128.0 * 3200.0 * 15376.0 / 1e9;
        println!(
            "candle matmul 128x3200 @ 3200x15376: wall {:.2} ms, cpu/threads {:.2} ms ({:.1} GFLOP/s)",
            t * 1e3,
            c * 1e3,
            gflop / c
        );
    }
    if args.iter().any(|a| a == "--pool") {
        // Pooling and activation on the p = 65 dense network's first feature map.
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 128, 316, 316), &dev)?)?;
        for (name, backend) in [
            ("fast", ConvBackend::Fast),
            ("reference", ConvBackend::Reference),
        ] {
            let ops: [(&str, Box<TensorFn>); 3] = [
                (
                    "max_pool_2x2",
                    Box::new(move |t| match backend {
                        ConvBackend::Fast | ConvBackend::Direct => ust_conv::max_pool_2x2(t),
                        ConvBackend::Reference => ust_conv::max_pool_2x2_reference(t),
                    }),
                ),
                (
                    "max_pool_2x2_dilated(1)",
                    Box::new(move |t| ust_conv::max_pool_2x2_dilated(t, 1)),
                ),
                (
                    "leaky_relu",
                    Box::new(move |t| ust_conv::leaky_relu_with(backend, t, 5e-3)),
                ),
            ];
            for (op, f) in &ops {
                let fwd = min_time(reps, || {
                    f(x.as_tensor()).unwrap();
                });
                let fwd_bwd = min_time(reps, || {
                    f(x.as_tensor())
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .backward()
                        .unwrap();
                });
                println!(
                    "{op:<24} 1x128x316x316 {name:<9} fwd {:7.2} ms [cpu {:7.2} ms]  fwd+bwd {:7.2} ms [cpu {:7.2} ms]",
                    fwd.0 * 1e3,
                    fwd.1 * 1e3,
                    fwd_bwd.0 * 1e3,
                    fwd_bwd.1 * 1e3
                );
            }
        }
    }
    for l in &layers {
        let x = Tensor::randn(0f32, 1.0, (l.b, l.cin, l.h, l.w), &dev)?;
        let w = (Tensor::randn(0f32, 1.0, (l.cout, l.cin, l.k, l.k), &dev)?
            / ((l.cin * l.k * l.k) as f64).sqrt())?;
        let bias = Tensor::zeros(l.cout, DType::F32, &dev)?;
        let (xv, wv, bv) = (
            Var::from_tensor(&x)?,
            Var::from_tensor(&w)?,
            Var::from_tensor(&bias)?,
        );
        let xt = if l.input_grad {
            xv.as_tensor().clone()
        } else {
            x.clone()
        };
        let (ho, wo) = (l.h - l.d * (l.k - 1), l.w - l.d * (l.k - 1));
        let gflop = 2.0 * (l.b * l.cout * ho * wo * l.cin * l.k * l.k) as f64 / 1e9;
        // `fast` forwards plain tensors through Winograd where it applies, `direct` never.
        let mut backends = vec![("fast", ConvBackend::Fast), ("direct", ConvBackend::Direct)];
        if with_reference {
            backends.push(("reference", ConvBackend::Reference));
        }
        for (name, backend) in backends {
            let fwd = min_time(reps, || {
                conv2d_with(backend, &x, &w, Some(&bias), l.d).unwrap();
            });
            let fwd_bwd = min_time(reps, || {
                let y = conv2d_with(backend, &xt, &wv, Some(&bv), l.d).unwrap();
                y.sum_all().unwrap().backward().unwrap();
            });
            let breakdown = if args.iter().any(|a| a == "--split") {
                // Backward with only the weight gradient, then with only the input gradient.
                let w_only = min_time(reps, || {
                    let y = conv2d_with(backend, &x, &wv, None, l.d).unwrap();
                    y.sum_all().unwrap().backward().unwrap();
                });
                let x_only = min_time(reps, || {
                    let y = conv2d_with(backend, &xv, &w, None, l.d).unwrap();
                    y.sum_all().unwrap().backward().unwrap();
                });
                format!(
                    "  [cpu: fwd+wgrad {:8.2} ms, fwd+igrad {:8.2} ms]",
                    w_only.1 * 1e3,
                    x_only.1 * 1e3
                )
            } else {
                String::new()
            };
            println!(
                "{}x{} {}->{} d{} in {}x{}x{}x{}{}  {:<9} fwd {:8.2} ms [cpu {:8.2} ms, {:5.1} GFLOP/s]  fwd+bwd {:8.2} ms [cpu {:8.2} ms]{}",
                l.k,
                l.k,
                l.cin,
                l.cout,
                l.d,
                l.b,
                l.cin,
                l.h,
                l.w,
                if l.input_grad { "" } else { " (no input grad)" },
                name,
                fwd.0 * 1e3,
                fwd.1 * 1e3,
                gflop / fwd.1,
                fwd_bwd.0 * 1e3,
                fwd_bwd.1 * 1e3,
                breakdown
            );
        }
    }
    Ok(())
}
