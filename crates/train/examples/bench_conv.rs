//! Times the layers of the small CNN on a device, forward and forward+backward:
//! `cargo run -p oml-train --example bench_conv [DEVICE]`.
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use std::time::Instant;

fn time<F: FnMut() -> f32>(name: &str, mut f: F) {
    for _ in 0..2 {
        f();
    }
    let t = Instant::now();
    for _ in 0..10 {
        f();
    }
    println!("{name}: {:.1} ms", t.elapsed().as_secs_f64() * 100.0);
}

fn main() {
    let device = oml_interfaces::device::select_device(std::env::args().nth(1).as_deref()).unwrap();
    let ad = device.clone().autodiff();
    for (cin, cout, s) in [(3usize, 32usize, 28usize), (32, 64, 14), (64, 128, 7)] {
        let x = Tensor::<4>::random([160, cin, s, s], burn::tensor::Distribution::Default, &ad);
        let conv = Conv2dConfig::new([cin, cout], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&ad)
            .train();
        let bn = BatchNormConfig::new(cout).init(&ad).train();
        let pool = MaxPool2dConfig::new([2, 2]).init();
        time(&format!("{cin}->{cout}@{s} conv fwd"), || {
            conv.forward(x.clone()).sum().into_scalar::<f32>()
        });
        let y = conv.forward(x.clone()).detach().require_grad();
        time(&format!("{cin}->{cout}@{s} bn fwd"), || {
            bn.forward(y.clone()).sum().into_scalar::<f32>()
        });
        time(&format!("{cin}->{cout}@{s} pool fwd"), || {
            pool.forward(y.clone()).sum().into_scalar::<f32>()
        });
        time(&format!("{cin}->{cout}@{s} conv fwd+bwd"), || {
            let g = conv.forward(x.clone()).sum().backward();
            conv.weight.grad(&g).unwrap().sum().into_scalar::<f32>()
        });
        time(&format!("{cin}->{cout}@{s} bn fwd+bwd"), || {
            let g = bn.forward(y.clone()).sum().backward();
            y.grad(&g).unwrap().sum().into_scalar::<f32>()
        });
        time(&format!("{cin}->{cout}@{s} relu+pool fwd+bwd"), || {
            let g = pool
                .forward(burn::tensor::activation::relu(y.clone()))
                .sum()
                .backward();
            y.grad(&g).unwrap().sum().into_scalar::<f32>()
        });
    }
}
