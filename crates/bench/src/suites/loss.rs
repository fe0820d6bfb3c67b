//! The `loss` suite: forward + backward of `TripletLossWithMiner` (margin 0.2, mean) on a P×K
//! batch of random features on an autodiff device: the work `crates/bench/python/oml/oml_losses.py P K DIM
//! MINER` times for OML 4.0.

use burn::prelude::*;
use oml::interfaces::Criterion;
use oml::mining::{
    AllTripletsMiner, HardClusterMiner, HardTripletsMiner, Miner, NHardTripletsMiner,
    TripletLossWithMiner,
};

/// The miners of the comparison (OML's script uses the same four).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinerKind {
    /// `AllTripletsMiner()` (here: the distance-matrix path).
    All,
    /// `HardTripletsMiner()`.
    Hard,
    /// `NHardTripletsMiner(2, 3)`.
    Nhard,
    /// `HardClusterMiner()`.
    Cluster,
}

impl MinerKind {
    fn name(self) -> &'static str {
        match self {
            MinerKind::All => "all",
            MinerKind::Hard => "hard",
            MinerKind::Nhard => "nhard",
            MinerKind::Cluster => "cluster",
        }
    }

    fn build(self) -> anyhow::Result<Miner> {
        Ok(match self {
            MinerKind::All => Miner::All(AllTripletsMiner::unlimited()),
            MinerKind::Hard => Miner::Hard(HardTripletsMiner),
            MinerKind::Nhard => Miner::NHard(NHardTripletsMiner::new(2usize, 3usize)?),
            MinerKind::Cluster => Miner::HardCluster(HardClusterMiner),
        })
    }
}

/// Arguments of the `loss` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Labels per batch (P).
    #[arg(long, default_value_t = 32, value_parser = super::positive)]
    pub p: usize,
    /// Instances per label (K).
    #[arg(long, default_value_t = 8, value_parser = super::positive)]
    pub k: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 512, value_parser = super::positive)]
    pub dim: usize,
    /// Miner.
    #[arg(long, value_enum, default_value_t = MinerKind::All)]
    pub miner: MinerKind,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = super::positive)]
    pub repeats: usize,
    /// Untimed warm-up steps (OML's script drops its first 2).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Seed of the random features.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also run one step on the CPU backend with the same features and fail when the loss
    /// (relative) or a gradient value (absolute) differs by more than 1e-4 (the check of a GPU
    /// run).
    #[arg(long)]
    pub check: bool,
}

/// Loss value and feature gradient of one step on `device` (autodiff added here).
fn step(
    criterion: &TripletLossWithMiner,
    data: &[f32],
    shape: [usize; 2],
    labels: &[i64],
    device: &Device,
) -> anyhow::Result<(f32, Vec<f32>)> {
    let device = device.clone().autodiff();
    let x = Tensor::<2>::from_data(TensorData::new(data.to_vec(), shape), &device).require_grad();
    let out = criterion.forward(x.clone(), labels)?;
    let loss = out.loss.clone().into_scalar::<f32>();
    let grads = out.loss.backward();
    let g = x
        .grad(&grads)
        .ok_or_else(|| anyhow::anyhow!("no gradient for the features"))?;
    let g = oml::interfaces::cpu::host_f32(g)
        .map_err(|e| anyhow::anyhow!("the gradient is not readable: {e:?}"))?;
    Ok((loss, g))
}

/// Runs the suite: prints one JSON line.
pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.p >= 2,
        "--p must be at least 2 (triplets need two labels)"
    );
    anyhow::ensure!(
        args.k >= 2,
        "--k must be at least 2 (triplets need two instances)"
    );
    anyhow::ensure!(args.dim >= 1, "--dim must be at least 1");
    let device = device.clone().autodiff();
    let b = args.p * args.k;
    // labels 0,0,…,1,1,… like `torch.arange(p).repeat_interleave(k)`
    let labels: Vec<i64> = (0..args.p as i64)
        .flat_map(|l| std::iter::repeat_n(l, args.k))
        .collect();
    let criterion = TripletLossWithMiner::new(
        Some(0.2),
        args.miner.build()?,
        oml::interfaces::Reduction::Mean,
        false,
    )?;

    // Fresh features for every step, generated before timing (as OML's script does).
    let steps = args.warmup + args.repeats.max(1);
    let mut rng = SplitMix64(args.seed);
    let mut inputs: Vec<Tensor<2>> = (0..steps)
        .map(|_| {
            let data = rng.normal_vec(b * args.dim);
            Tensor::<2>::from_data(TensorData::new(data, [b, args.dim]), &device).require_grad()
        })
        .collect();
    inputs.reverse();

    let mut failure: Option<anyhow::Error> = None;
    let params = serde_json::json!({
        "p": args.p,
        "k": args.k,
        "dim": args.dim,
        "miner": args.miner.name(),
        "margin": 0.2,
        "batch": b,
        "device": format!("{device:?}"),
    });
    crate::report::measure("loss", params, args.warmup, args.repeats, || {
        let Some(features) = inputs.pop() else { return };
        match criterion.forward(features.clone(), &labels) {
            Ok(out) => {
                let grads = out.loss.backward();
                // read the gradient back so the whole step is counted
                if let Some(g) = features.grad(&grads) {
                    let _ = g.into_data();
                }
            }
            Err(e) => failure = Some(e.into()),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if args.check {
        let data = SplitMix64(args.seed ^ 0xC4EC).normal_vec(b * args.dim);
        let shape = [b, args.dim];
        let (loss, grad) = step(&criterion, &data, shape, &labels, &device)?;
        let cpu = oml::interfaces::device::select_device(Some("cpu"))?;
        let (want_loss, want_grad) = step(&criterion, &data, shape, &labels, &cpu)?;
        let loss_rel = ((loss - want_loss) / want_loss.abs().max(1e-12)).abs();
        let grad_abs = grad
            .iter()
            .zip(&want_grad)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{}",
            serde_json::json!({"suite": "loss", "op": "check", "miner": args.miner.name(),
                "against": "cpu", "loss": loss, "loss_rel_diff": loss_rel, "grad_max_abs_diff": grad_abs})
        );
        anyhow::ensure!(
            loss_rel <= 1e-4 && grad_abs <= 1e-4,
            "loss on {device:?} differs from the CPU backend's: loss {loss} vs {want_loss}, gradient by {grad_abs}"
        );
    }
    Ok(())
}

/// A tiny seeded generator (SplitMix64) with Box–Muller normals: reproducible inputs without
/// an extra dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let r = (-2.0 * self.uniform().ln()).sqrt();
            let t = std::f64::consts::TAU * self.uniform();
            out.push((r * t.cos()) as f32);
            out.push((r * t.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}
