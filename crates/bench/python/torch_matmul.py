"""PyTorch CPU's GEMM rate at given MxKxN shapes, the counterpart of `oml-bench ops --gemm`.

    python crates/bench/python/torch_matmul.py 3152x384x1152 3152x1536x384 [--repeats 9]

Prints one line per shape: median and best GFLOP/s of `x @ w` (`[M, K] @ [K, N]`), torch's
default threads, after 3 warm-up products.
"""
import argparse
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("shapes", nargs="+", help="MxKxN, e.g. 3152x384x1152")
ap.add_argument("--repeats", type=int, default=9)
args = ap.parse_args()

for shape in args.shapes:
    m, k, n = (int(v) for v in shape.split("x"))
    x, w = torch.randn(m, k), torch.randn(k, n)
    with torch.inference_mode():
        for _ in range(3):
            x @ w
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            x @ w
            times.append(time.perf_counter() - t)
    times.sort()
    flop = 2.0 * m * k * n
    print(f"torch GEMM {shape}: {flop / times[len(times) // 2] / 1e9:.0f} GFLOP/s (median), "
          f"{flop / times[0] / 1e9:.0f} (best), threads {torch.get_num_threads()}")
