"""oml-rs and OML 4.0 side by side in one run: same inputs, runs interleaved, medians, ratios.

usage: python side_by_side.py [--suites eval,loss,models,train] [--rounds 3] [--quick]
                              [--models resnet18,vits16] [--batches 16,1]
                              [--train-models resnet18,resnet50,vits16] [--train-batch 8x4]
                              [--oml-bench-dir crates/bench/python/oml] [--bin target/debug]

Run it with the Python that has OML 4.0 (`crates/bench/python/oml/setup_oml_reference.sh` makes one), after
`cargo build -p oml-cli -p oml-bench`. It prints one JSON line per measurement pair and then a
Markdown table; it exits non-zero when the two sides' retrieval metrics differ by more than 1e-5.

- eval: `oml eval` on a 20k x 128 data set (every item query and gallery, cmc@1,5 precision@5
  map@5 pcf@0.5) against `oml_eval.py` on the same files, both as process wall time (reading the
  files, starting the interpreter or binary, everything).
- loss: `oml-bench loss` against `oml_losses.py`: median forward + backward step of
  TripletLossWithMiner (margin 0.2) on a 32 x 8 batch of 512-d features, per miner.
- models: `oml-bench models` against `oml_models.py` (images/s, batches 16 and 1, 224 x 224).
- train (not in the default list: minutes per model): `oml-bench train-step` against
  `oml_train_step.py`: one training step (forward, TripletLossWithMiner with the hard miner,
  backward, Adam) on a P x K batch at 224 x 224, images/s, and both peak RSS figures.

An AVX2-only CPU, emulated on an AVX-512 one (docs/backends.md, "Figures"): an oml-rs build
without AVX-512 kernels passed as --bin, and PyTorch held to AVX2 by the environment
(ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

ap = argparse.ArgumentParser()
ap.add_argument("--suites", default="eval,loss,models")
ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
ap.add_argument("--quick", action="store_true", help="5k items, fewer repeats, resnet18 only")
ap.add_argument("--models", default="resnet18,vits16", help="models suite: the extractors")
ap.add_argument("--batches", default="16,1", help="models suite: the batch sizes")
ap.add_argument("--train-models", default="resnet18,resnet50,vits16", help="train suite: the extractors")
ap.add_argument("--train-batch", default="8x4", help="train suite: P x K")
ap.add_argument("--train-size", default="224", help="train suite: image side")
ap.add_argument("--oml-bench-dir", default=os.path.join(REPO, "crates", "bench", "python", "oml"))
ap.add_argument(
    "--bin",
    default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "debug"),
)
args = ap.parse_args()
OML, BENCH = os.path.join(args.bin, "oml"), os.path.join(args.bin, "oml-bench")
needed = ([OML] if "eval" in args.suites else []) + ([BENCH] if {"loss", "models", "train"} & set(args.suites.split(",")) else [])
for b in needed:
    if not os.path.exists(b):
        sys.exit(f"{b} is missing: run `cargo build -p oml-cli -p oml-bench` first (or pass --bin)")
if not os.path.isdir(args.oml_bench_dir):
    sys.exit(f"{args.oml_bench_dir} is missing: pass --oml-bench-dir (OML's scripts, crates/bench/python/oml)")
rows = []


def run(cmd):
    """Runs cmd; returns (wall seconds, stdout). Fails loudly."""
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, p.stdout


def last_json(out, key=None):
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    if key:
        lines = [l for l in lines if key(l)]
    return lines[-1]


def record(work, oml, ours, unit, lower_is_better=True):
    o, r = statistics.median(oml), statistics.median(ours)
    ratio = o / r if lower_is_better else r / o
    row = {"work": work, "oml": oml, "oml_rs": ours, "unit": unit, "ratio": ratio}
    print(json.dumps(row), flush=True)
    rows.append(row)


def close(a, b, path=""):
    """Differences above 1e-5 between two metric trees (OML's null = NaN is skipped)."""
    bad = []
    if isinstance(a, dict):
        for k, v in a.items():
            if k in b:
                bad += close(v, b[k], f"{path}/{k}")
            else:
                bad.append(f"{path}/{k} missing in oml-rs")
    elif a is not None and (b is None or abs(a - b) > 1e-5):
        bad.append(f"{path}: OML {a} vs oml-rs {b}")
    return bad


suites = args.suites.split(",")
status = 0
if "eval" in suites:
    n = 5000 if args.quick else 20000
    tmp = tempfile.mkdtemp(prefix="oml-side-by-side-")
    prefix = os.path.join(tmp, f"r{n}")
    run([sys.executable, os.path.join(args.oml_bench_dir, "make_retrieval_data.py"), prefix, str(n), "128"])
    flags = ["--cmc", "1,5", "--precision", "5", "--map", "5", "--pcf", "0.5"]
    oml_t, ours_t = [], []
    for _ in range(args.rounds):
        w, out = run([sys.executable, os.path.join(args.oml_bench_dir, "oml_eval.py"), prefix + ".csv", prefix + ".npy", *flags])
        oml_t.append(w)
        oml_metrics = last_json(out)["metrics"]
        w, out = run([OML, "eval", "--embeddings", prefix + ".npy", "--dataset", prefix + ".csv", *flags, "--format", "json"])
        ours_t.append(w)
        ours_metrics = last_json(out)
    diffs = close(oml_metrics, ours_metrics)
    if diffs:
        print("metrics differ:\n  " + "\n  ".join(diffs), file=sys.stderr)
        status = 1
    record(f"`oml eval`, {n} x 128, process wall", oml_t, ours_t, "s")

if "loss" in suites:
    reps = 20 if args.quick else 100
    for miner in ["all", "hard", "nhard", "cluster"]:
        # OML's AllTriplets step takes 10-30 s here: one timed step per round is plenty.
        oml_reps = 1 if miner == "all" else reps
        oml_t, ours_t = [], []
        for _ in range(args.rounds):
            _, out = run([sys.executable, os.path.join(args.oml_bench_dir, "oml_losses.py"), "32", "8", "512", miner, str(oml_reps)])
            oml_t.append(last_json(out)["median_s"])
            _, out = run([BENCH, "loss", "--p", "32", "--k", "8", "--dim", "512", "--miner", miner, "--repeats", str(reps)])
            ours_t.append(last_json(out, lambda l: l.get("suite") == "loss")["median_s"])
        record(f"TripletLossWithMiner step, {miner}, 32x8x512", oml_t, ours_t, "s")

if "models" in suites:
    models = "resnet18" if args.quick else args.models
    for batch in args.batches.split(","):
        # A batch of one is timed over more repeats: each is short and noisier.
        reps = "3" if int(batch) >= 8 else "15"
        for model in models.split(","):
            oml_r, ours_r = [], []
            for _ in range(args.rounds):
                common = ["--models", model, "--batch", batch, "--repeats", reps]
                _, out = run([sys.executable, os.path.join(HERE, "oml_models.py"), *common])
                oml_r.append(last_json(out)["images_per_s"])
                _, out = run([BENCH, "models", *common])
                l = last_json(out, lambda l: l.get("suite") == "models")
                ours_r.append(l["params"]["batch"] / l["median_s"])
            record(f"{model} inference, batch {batch}, 224^2", oml_r, ours_r, "images/s", lower_is_better=False)

if "train" in suites:
    p, k = args.train_batch.split("x")
    models = "resnet18" if args.quick else args.train_models
    reps = "2" if args.quick else "3"
    for model in models.split(","):
        oml_r, ours_r, rss = [], [], {}
        for _ in range(args.rounds):
            _, out = run([sys.executable, os.path.join(args.oml_bench_dir, "oml_train_step.py"),
                          model, p, k, args.train_size, reps])
            o = last_json(out)
            oml_r.append(o["images_per_s"])
            _, out = run([BENCH, "train-step", "--model", model, "--p", p, "--k", k,
                          "--size", args.train_size, "--repeats", reps])
            r = last_json(out, lambda l: l.get("suite") == "train-step")
            ours_r.append(r["images_per_s"])
            rss = {"oml_peak_rss_mb": o["peak_rss_mb"], "oml_rs_peak_rss_mb": r["peak_rss_mb"]}
        print(json.dumps({"work": f"{model} train step", **rss}), flush=True)
        record(f"{model} training step, {p}x{k}, {args.train_size}^2", oml_r, ours_r, "images/s",
               lower_is_better=False)

print("\n| work | OML 4.0 / PyTorch (median) | oml-rs (median) | oml-rs vs OML |")
print("|---|---:|---:|---:|")
for r in rows:
    o, m = statistics.median(r["oml"]), statistics.median(r["oml_rs"])
    verdict = f"{r['ratio']:.2f}x faster" if r["ratio"] >= 1 else f"{1 / r['ratio']:.2f}x slower"
    print(f"| {r['work']} | {o:.4g} {r['unit']} | {m:.4g} {r['unit']} | {verdict} |")
sys.exit(status)
