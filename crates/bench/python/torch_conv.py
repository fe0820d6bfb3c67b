"""PyTorch CPU's side of `oml-bench conv`: a 2-D convolution's forward, forward + weight
gradient and forward + input gradient at the same shapes (BxCINxCOUTxSIZExKERNELxSTRIDE,
padding KERNEL/2), then BatchNorm (batch statistics) + ReLU on the output's shape, forward and
backward; torch's default threads, 1 warm-up then the median of --repeats.

    python crates/bench/python/torch_conv.py 32x64x64x56x3x1 [--repeats 3]
"""
import argparse

import torch

from bench_common import timed

ap = argparse.ArgumentParser()
ap.add_argument("shapes", nargs="*", default=[
    "32x3x64x224x7x2", "32x64x64x56x3x1", "32x128x128x28x3x1", "32x256x256x14x3x1", "32x512x512x7x3x1"])
ap.add_argument("--repeats", type=int, default=3)
args = ap.parse_args()


for shape in args.shapes:
    b, cin, cout, s, k, stride = (int(v) for v in shape.split("x"))
    x, w = torch.rand(b, cin, s, s), torch.rand(cout, cin, k, k)
    conv = lambda x, w: torch.nn.functional.conv2d(x, w, stride=stride, padding=k // 2)
    out = (s + 2 * (k // 2) - k) // stride + 1
    gflop = 2.0 * b * cout * out * out * cin * k * k / 1e9

    def forward():
        with torch.no_grad():
            conv(x, w)

    def weight_grad():
        wg = w.clone().requires_grad_()
        conv(x, wg).sum().backward()

    def input_grad():
        xg = x.clone().requires_grad_()
        conv(xg, w).sum().backward()

    f, wgt, inp = (timed(g, args.repeats) for g in (forward, weight_grad, input_grad))
    print(f"conv {shape}: forward {f * 1e3:.0f} ms ({gflop / f:.1f} GFLOP/s), "
          f"weight grad {(wgt - f) * 1e3:.0f} ms ({gflop / (wgt - f):.1f}), "
          f"input grad {(inp - f) * 1e3:.0f} ms ({gflop / (inp - f):.1f})", flush=True)

    y = torch.rand(b, cout, out, out, requires_grad=True)
    bn = torch.nn.BatchNorm2d(cout)

    def bn_forward():
        with torch.no_grad():
            torch.relu(bn(y))

    def bn_grads():
        torch.relu(bn(y)).sum().backward()

    bf, bg = (timed(g, args.repeats) for g in (bn_forward, bn_grads))
    print(f"conv {shape} then BatchNorm + ReLU: forward {bf * 1e3:.0f} ms, gradients {(bg - bf) * 1e3:.0f} ms",
          flush=True)
