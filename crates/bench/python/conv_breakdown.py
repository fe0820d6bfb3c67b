"""Where a ResNet training step's convolution time goes, Burn (through `oml-bench conv`) beside
PyTorch CPU (`torch_conv.py`): every convolution of resnet18 or resnet50 at batch B and 224²,
its forward, weight gradient and input gradient, summed over the network with each shape's
count (the stem's input gradient is not needed: images take no gradient). 1×1 convolutions are
taken as the extractors train them (`oml_models::ops::conv2d`: a matrix product). Each
convolution is followed by BatchNorm (training) and, counted here for every one, ReLU.

    python crates/bench/python/conv_breakdown.py --model resnet18 [--bin target/debug] [--repeats 3]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def resnet_convs(model, b):
    """(shape BxCINxCOUTxSIZExKERNELxSTRIDE, count, input gradient needed) of torchvision's net."""
    convs = [(f"{b}x3x64x224x7x2", 1, False)]
    bottleneck = model == "resnet50"
    blocks = {"resnet18": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3]}[model]
    cin, size = 64, 56
    for stage, (planes, n) in enumerate(zip([64, 128, 256, 512], blocks)):
        out = planes * 4 if bottleneck else planes
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            osize = size // stride
            if bottleneck:
                convs += [(f"{b}x{cin}x{planes}x{size}x1x1", 1, True),
                          (f"{b}x{planes}x{planes}x{size}x3x{stride}", 1, True),
                          (f"{b}x{planes}x{out}x{osize}x1x1", 1, True)]
            else:
                convs += [(f"{b}x{cin}x{planes}x{size}x3x{stride}", 1, True),
                          (f"{b}x{planes}x{planes}x{osize}x3x1", 1, True)]
            if i == 0 and (stride != 1 or cin != out):
                convs.append((f"{b}x{cin}x{out}x{size}x1x{stride}", 1, True))
            cin, size = out, osize
    merged = {}
    for shape, count, grad in convs:
        c, g = merged.get(shape, (0, grad))
        merged[shape] = (c + count, g)
    return [(s, c, g) for s, (c, g) in merged.items()]


NORM = re.compile(r"conv (\S+?) then BatchNorm \+ ReLU: forward (-?\d+) ms, gradients (-?\d+) ms")
LINE = re.compile(r"conv (\S+?)( as a product)?: forward (-?\d+) ms.*?weight grad (-?\d+) ms.*?input grad (-?\d+) ms")


def parse(text):
    """{shape: (forward, weight grad, input grad, BatchNorm+ReLU forward, its gradients) ms}; a
    product line wins over Burn's."""
    out, product = {}, set()
    for m in LINE.finditer(text):
        shape, is_product = m.group(1), bool(m.group(2))
        if shape in product:
            continue
        out[shape] = tuple(int(m.group(i)) for i in (3, 4, 5))
        if is_product:
            product.add(shape)
    for m in NORM.finditer(text):
        if m.group(1) in out:
            out[m.group(1)] += (int(m.group(2)), int(m.group(3)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["resnet18", "resnet50"], default="resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    convs = resnet_convs(args.model, args.batch)
    shapes = [s for s, _, _ in convs]
    burn = subprocess.run([os.path.join(args.bin, "oml-bench"), "conv", "--repeats", str(args.repeats),
                           "--shapes", ",".join(shapes)], capture_output=True, text=True, check=True).stderr
    torch = subprocess.run([sys.executable, os.path.join(HERE, "torch_conv.py"), *shapes,
                            "--repeats", str(args.repeats)], capture_output=True, text=True, check=True).stdout
    sides = {"oml-rs (Burn Flex)": parse(burn), "PyTorch": parse(torch)}
    print(f"| {args.model}, batch {args.batch}, 224² | conv forward | weight grad | input grad | "
          "conv total | BatchNorm + ReLU forward | its gradients | all, ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, times in sides.items():
        missing = [s for s in shapes if len(times.get(s, ())) != 5]
        if missing:
            sys.exit(f"{name}: no figure for {missing}")
        f = sum(times[s][0] * c for s, c, _ in convs)
        w = sum(times[s][1] * c for s, c, _ in convs)
        i = sum(times[s][2] * c for s, c, g in convs if g)
        bf = sum(times[s][3] * c for s, c, _ in convs)
        bg = sum(times[s][4] * c for s, c, _ in convs)
        print(f"| {name} | {f} | {w} | {i} | {f + w + i} | {bf} | {bg} | {f + w + i + bf + bg} |")


if __name__ == "__main__":
    main()
