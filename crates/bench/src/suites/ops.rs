//! Raw tensor ops, to compare backends on the operations oml-rs leans on.

use crate::report::measure;
use burn::prelude::*;
use burn::tensor::Distribution;
use oml::interfaces::cpu::{self, host_f32};

/// Arguments of the `ops` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rows of each operand.
    #[arg(long, default_value_t = 2048, value_parser = super::positive)]
    pub n: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 128, value_parser = super::positive)]
    pub dim: usize,
    /// Neighbours for top-k.
    #[arg(long, default_value_t = 10, value_parser = super::positive)]
    pub k: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = super::positive)]
    pub repeats: usize,
    /// Also time `x·W` (a linear layer's product) at these `MxKxN` shapes, on the host GEMM and
    /// with the backend's `matmul`, e.g. `3152x384x1152` (ViT-S/16's qkv at batch 16); prints
    /// GFLOP/s on stderr.
    #[arg(long, value_delimiter = ',')]
    pub gemm: Vec<String>,
}

/// Times matmul, the matmul-form cdist, and top-k over a distance matrix.
pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    let (n, d, k) = (args.n, args.dim, args.k);
    if k > n {
        anyhow::bail!("--k {k}: the top-k of {n} items (--n) needs k at most {n}");
    }
    let a = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
    let backend = format!("{device:?}");
    let params =
        |op: &str| serde_json::json!({"op": op, "n": n, "dim": d, "k": k, "device": backend});
    measure("ops", params("matmul"), 1, args.repeats, || {
        let _ = a.clone().matmul(b.clone().transpose()).into_data();
    });
    // The fixed host GEMM the CPU paths use (kNN blocks, miners), on the same operands.
    let read = |t: &Tensor<2>| {
        host_f32(t.clone()).map_err(|e| anyhow::anyhow!("operand not readable: {e:?}"))
    };
    let (ah, bh) = (read(&a)?, read(&b)?);
    let mut out = vec![0f32; n * n];
    measure("ops", params("host_matmul"), 1, args.repeats, || {
        let _ = cpu::matmul_nt(&ah, &bh, d, &mut out);
    });
    for shape in &args.gemm {
        gemm_at(shape, args.repeats, device)?;
    }
    let cdist = |a: Tensor<2>, b: Tensor<2>| {
        let an = a.clone().square().sum_dim(1);
        let bn = b.clone().square().sum_dim(1).transpose();
        (a.matmul(b.transpose()) * -2.0 + an + bn)
            .clamp_min(0.0)
            .sqrt()
    };
    measure("ops", params("cdist"), 1, args.repeats, || {
        let _ = cdist(a.clone(), b.clone()).into_data();
    });
    let dist = cdist(a.clone(), b.clone());
    measure("ops", params("topk_smallest"), 1, args.repeats, || {
        let _ = dist.clone().neg().topk_with_indices(k, 1).1.into_data();
    });
    measure("ops", params("argsort"), 1, args.repeats, || {
        let _ = dist.clone().argsort(1).into_data();
    });
    Ok(())
}

/// Times `cpu::matmul` (`[M, K] · [K, N]`, as a linear layer at inference) and the backend's
/// own `matmul` (what Burn's layers and their gradients run, in training too) at one `MxKxN`.
fn gemm_at(shape: &str, repeats: usize, device: &Device) -> anyhow::Result<()> {
    let dims: Vec<usize> = shape
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow::anyhow!("--gemm {shape:?}: {e} (expected MxKxN, e.g. 3152x384x1152)")
        })?;
    let &[m, k, n] = dims.as_slice() else {
        anyhow::bail!("--gemm {shape:?}: expected three sizes MxKxN");
    };
    // Deterministic operands; the values do not matter to the speed.
    let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..k * n).map(|i| (i % 17) as f32 * 0.1).collect();
    let mut out = vec![0f32; m * n];
    let params = serde_json::json!({"op": "host_gemm", "m": m, "k": k, "n": n});
    let median = measure("ops", params, 1, repeats, || {
        let _ = cpu::matmul(&x, &w, k, &mut out);
    });
    let gflops = |median: f64| 2.0 * (m * k * n) as f64 / median / 1e9;
    eprintln!(
        "ops: host GEMM {m}x{k}x{n}: {:.0} GFLOP/s (median)",
        gflops(median)
    );
    let xt = Tensor::<2>::from_data(TensorData::new(x, [m, k]), device);
    let wt = Tensor::<2>::from_data(TensorData::new(w, [k, n]), device);
    let params = serde_json::json!({"op": "backend_gemm", "m": m, "k": k, "n": n, "device": format!("{device:?}")});
    let median = measure("ops", params, 1, repeats, || {
        // One value read back: the product is complete, without timing a copy of all of it.
        let _ = xt
            .clone()
            .matmul(wt.clone())
            .slice([0..1, 0..1])
            .into_data();
    });
    eprintln!(
        "ops: backend matmul {m}x{k}x{n}: {:.0} GFLOP/s (median)",
        gflops(median)
    );
    Ok(())
}
