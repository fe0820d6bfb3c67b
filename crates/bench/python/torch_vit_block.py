"""PyTorch CPU's side of `oml-bench vit-block`: the parts of one ViT block in training (LayerNorm,
the qkv / proj / fc1 / fc2 linear layers, the attention core as OML's DINO computes it, GELU),
each alone on its input's shape, forward and forward + backward with the input and the
parameters taking gradients; torch's default threads, 1 warm-up then the median of --repeats.

    python crates/bench/python/torch_vit_block.py [--batch 32] [--tokens 197] [--dim 384] [--heads 6]
"""
import argparse

import torch

from bench_common import add_vit_block_args, timed

ap = argparse.ArgumentParser()
add_vit_block_args(ap)
args = ap.parse_args()
b, n, d, h = args.batch, args.tokens, args.dim, args.heads


def attention(qkv):
    # OML's DINO `Attention.forward` after its qkv layer.
    qkv = qkv.reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)) * (d // h) ** -0.5
    return (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)


parts = [
    ("layernorm", d, torch.nn.LayerNorm(d)),
    ("qkv", d, torch.nn.Linear(d, 3 * d)),
    ("attention", 3 * d, attention),
    ("proj", d, torch.nn.Linear(d, d)),
    ("fc1", d, torch.nn.Linear(d, 4 * d)),
    ("gelu", 4 * d, torch.nn.GELU()),
    ("fc2", 4 * d, torch.nn.Linear(4 * d, d)),
]
for name, width, f in parts:
    x = torch.randn(b, n, width, requires_grad=True)

    def forward():
        with torch.no_grad():
            f(x)

    def grads():
        f(x).sum().backward()

    fw, both = timed(forward, args.repeats), timed(grads, args.repeats)
    print(f"vit {name}: forward {fw * 1e3:.1f} ms, gradients {(both - fw) * 1e3:.1f} ms", flush=True)
