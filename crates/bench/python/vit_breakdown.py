"""Where a ViT training step's time goes, Burn (through `oml-bench vit-block`) beside PyTorch CPU
(`torch_vit_block.py`): each part of a block timed alone, forward and gradients, times the
network's depth (ViT-S/16 at 224²: 12 blocks, 197 tokens, width 384, 6 heads; each block has
two LayerNorms). Patch embedding, the loss and Adam are left out.

    python crates/bench/python/vit_breakdown.py [--bin target/debug] [--batch 32] [--repeats 3]
"""
import argparse
import os
import re
import subprocess
import sys

from bench_common import add_vit_block_args

HERE = os.path.dirname(os.path.abspath(__file__))
LINE = re.compile(r"vit (\w+): forward (-?[\d.]+) ms, gradients (-?[\d.]+) ms")
# Uses of each part per block.
PER_BLOCK = {"layernorm": 2, "qkv": 1, "attention": 1, "proj": 1, "fc1": 1, "gelu": 1, "fc2": 1}


def parse(text):
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in LINE.finditer(text)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug"))
    add_vit_block_args(ap)
    ap.add_argument("--depth", type=int, default=12)
    args = ap.parse_args()
    shape = ["--batch", str(args.batch), "--tokens", str(args.tokens), "--dim", str(args.dim),
             "--heads", str(args.heads), "--repeats", str(args.repeats)]
    burn = subprocess.run([os.path.join(args.bin, "oml-bench"), "vit-block", *shape],
                          capture_output=True, text=True, check=True).stderr
    torch = subprocess.run([sys.executable, os.path.join(HERE, "torch_vit_block.py"), *shape],
                           capture_output=True, text=True, check=True).stdout
    sides = {"oml-rs (Burn Flex)": parse(burn), "PyTorch": parse(torch)}
    for name, times in sides.items():
        if set(times) != set(PER_BLOCK):
            sys.exit(f"{name}: parts {sorted(times)}, expected {sorted(PER_BLOCK)}")
    print(f"| part × uses per block × {args.depth} blocks, batch {args.batch}, ms | "
          + " | ".join(f"{s} forward | {s} gradients" for s in sides) + " |")
    print("|---|" + "---:|" * (2 * len(sides)))
    totals = {s: [0.0, 0.0] for s in sides}
    for part, uses in PER_BLOCK.items():
        cells = []
        for s, times in sides.items():
            f, g = (v * uses * args.depth for v in times[part])
            totals[s][0] += f
            totals[s][1] += g
            cells += [f"{f:.0f}", f"{g:.0f}"]
        print(f"| {part} × {uses} | " + " | ".join(cells) + " |")
    cells = [f"{v:.0f}" for s in sides for v in totals[s]]
    print("| all | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
