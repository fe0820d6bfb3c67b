//! A 2-D convolution's forward and each half of its backward through Burn's autodiff, at given
//! shapes, then the BatchNorm + ReLU that follow it: where a training step of a convolutional
//! extractor spends its time (`train-step`).
//! `crates/bench/python/torch_conv.py` times the same on PyTorch CPU.

use anyhow::Result;
use burn::module::Param;
use burn::nn::BatchNormConfig;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use crate::report::measure;

/// Arguments of the `conv` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Shapes `BxCINxCOUTxSIZExKERNELxSTRIDE` (padding KERNEL/2), comma-separated; the default
    /// is resnet18's stem and one 3×3 convolution of each stage at batch 32, 224².
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "32x3x64x224x7x2,32x64x64x56x3x1,32x128x128x28x3x1,32x256x256x14x3x1,32x512x512x7x3x1"
    )]
    pub shapes: Vec<String>,
    /// Timed repetitions.
    #[arg(long, default_value_t = 3, value_parser = super::positive)]
    pub repeats: usize,
}

fn parse(shape: &str) -> Result<[usize; 6]> {
    let v: Vec<usize> = shape
        .split('x')
        .map(|p| p.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--shapes `{shape}`: {e}"))?;
    match v[..] {
        [b, ci, co, s, k, st] if v.iter().all(|&x| x > 0) && k <= s => Ok([b, ci, co, s, k, st]),
        _ => anyhow::bail!(
            "--shapes `{shape}`: expected BxCINxCOUTxSIZExKERNELxSTRIDE, all positive, KERNEL <= SIZE"
        ),
    }
}

/// A 1×1 convolution as the extractors train it (`oml_models::ops::conv2d`: a matrix product
/// when the weight takes gradients), beside Burn's convolution above. Its forward is timed on
/// the autodiff device too: the product path needs a weight that takes gradients.
fn pointwise(
    shape: &str,
    x: &Tensor<4>,
    w: &Tensor<4>,
    stride: usize,
    args: &Args,
    params: &dyn Fn(&str) -> serde_json::Value,
) {
    let [cout, cin, ..] = w.dims();
    let mut layer = Conv2dConfig::new([cin, cout], [1, 1])
        .with_stride([stride, stride])
        .with_bias(false)
        .init(&x.device().autodiff());
    layer.weight = Param::from_tensor(w.clone().autodiff());
    let conv = |x: &Tensor<4>| oml::models::ops::conv2d(&layer, x.clone());
    let (xa, xg) = (x.clone().autodiff(), x.clone().autodiff().require_grad());
    let time = |part: &str, f: &dyn Fn()| measure("conv", params(part), 1, args.repeats, f);
    let forward = time("product_forward", &|| {
        let _ = conv(&xa).into_data();
    });
    let weight = time("product_forward+weight_grad", &|| {
        let grads = conv(&xa).sum().backward();
        let _ = layer.weight.grad(&grads).map(Tensor::into_data);
    });
    // The weight takes gradients on this path, so both gradients are computed here.
    let both = time("product_forward+both_grads", &|| {
        let grads = conv(&xg).sum().backward();
        let _ = layer.weight.grad(&grads).map(Tensor::into_data);
        let _ = xg.grad(&grads).map(Tensor::into_data);
    });
    eprintln!(
        "conv {shape} as a product: forward {:.0} ms, weight grad {:.0} ms, input grad {:.0} ms",
        forward * 1e3,
        (weight - forward) * 1e3,
        (both - weight) * 1e3,
    );
}

/// What follows each of the extractors' convolutions in training: BatchNorm with the batch's
/// statistics, then ReLU, forward and backward (input, scale and shift gradients) on the
/// convolution's output shape.
fn batch_norm_relu(
    shape: &str,
    dims: [usize; 4],
    device: &Device,
    args: &Args,
    params: &dyn Fn(&str) -> serde_json::Value,
) {
    let device = device.clone().autodiff();
    let bn = BatchNormConfig::new(dims[1]).init(&device);
    let y = Tensor::<4>::random(dims, Distribution::Default, &device).require_grad();
    let forward = measure("conv", params("bn_relu_forward"), 1, args.repeats, || {
        let _ = relu(bn.forward(y.clone())).into_data();
    });
    let backward = measure(
        "conv",
        params("bn_relu_forward+grads"),
        1,
        args.repeats,
        || {
            let grads = relu(bn.forward(y.clone())).sum().backward();
            let _ = y.grad(&grads).map(Tensor::into_data);
            let _ = bn.gamma.grad(&grads).map(Tensor::into_data);
        },
    );
    eprintln!(
        "conv {shape} then BatchNorm + ReLU: forward {:.0} ms, gradients {:.0} ms",
        forward * 1e3,
        (backward - forward) * 1e3
    );
}

/// Times the forward, forward + weight gradient and forward + input gradient of each shape.
pub fn run(args: Args, device: &Device) -> Result<()> {
    for shape in &args.shapes {
        let [b, cin, cout, s, k, stride] = parse(shape)?;
        let options = || ConvOptions::new([stride, stride], [k / 2, k / 2], [1, 1], 1);
        let x = Tensor::<4>::random([b, cin, s, s], Distribution::Default, device);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Default, device);
        let out = (s + 2 * (k / 2) - k) / stride + 1;
        let gflop = 2.0 * (b * cout * out * out * cin * k * k) as f64 / 1e9;
        let params = |part: &str| {
            serde_json::json!({"op": "conv2d", "part": part, "shape": shape, "gflop": gflop,
                "device": format!("{device:?}")})
        };
        let forward = measure("conv", params("forward"), 1, args.repeats, || {
            let _ = conv2d(x.clone(), w.clone(), None, options()).into_data();
        });
        let (xa, wa) = (x.clone().autodiff(), w.clone().autodiff().require_grad());
        let weight = measure(
            "conv",
            params("forward+weight_grad"),
            1,
            args.repeats,
            || {
                let grads = conv2d(xa.clone(), wa.clone(), None, options())
                    .sum()
                    .backward();
                let _ = wa.grad(&grads).map(Tensor::into_data);
            },
        );
        let (xa, wa) = (x.clone().autodiff().require_grad(), w.clone().autodiff());
        let input = measure(
            "conv",
            params("forward+input_grad"),
            1,
            args.repeats,
            || {
                let grads = conv2d(xa.clone(), wa.clone(), None, options())
                    .sum()
                    .backward();
                let _ = xa.grad(&grads).map(Tensor::into_data);
            },
        );
        if k == 1 {
            pointwise(shape, &x, &w, stride, &args, &params);
        }
        batch_norm_relu(shape, [b, cout, out, out], device, &args, &params);
        // Each gradient costs a forward's FLOPs again.
        eprintln!(
            "conv {shape}: forward {:.0} ms ({:.1} GFLOP/s), weight grad {:.0} ms ({:.1}), input grad {:.0} ms ({:.1})",
            forward * 1e3,
            gflop / forward,
            (weight - forward) * 1e3,
            gflop / (weight - forward),
            (input - forward) * 1e3,
            gflop / (input - forward),
        );
    }
    Ok(())
}
