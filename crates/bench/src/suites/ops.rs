//! Raw tensor ops, to compare backends on the operations oml-rs leans on.

use crate::report::measure;
use burn::prelude::*;
use burn::tensor::Distribution;

/// Arguments of the `ops` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rows of each operand.
    #[arg(long, default_value_t = 2048)]
    pub n: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Neighbours for top-k.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// Times matmul, the matmul-form cdist, and top-k over a distance matrix.
pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    let (n, d, k) = (args.n, args.dim, args.k);
    let a = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), device);
    let backend = format!("{device:?}");
    let params =
        |op: &str| serde_json::json!({"op": op, "n": n, "dim": d, "k": k, "device": backend});
    measure("ops", params("matmul"), 1, args.repeats, || {
        let _ = a.clone().matmul(b.clone().transpose()).into_data();
    });
    // The fixed host GEMM the CPU paths use (kNN blocks, miners), on the same operands.
    let (ah, bh): (Vec<f32>, Vec<f32>) =
        (a.to_data().iter().collect(), b.to_data().iter().collect());
    let mut out = vec![0f32; n * n];
    measure("ops", params("host_matmul"), 1, args.repeats, || {
        let _ = oml::interfaces::linalg::matmul_nt(&ah, &bh, d, &mut out);
    });
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
