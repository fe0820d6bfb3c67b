"""Time OML 4.0's extractors (PyTorch CPU) the way `oml-bench models` times ours.

usage: python oml_models.py [--models resnet18,vits16,vits14,vitb32_224,vitb32_unicom] [--batch 16] [--size 224] [--warmup 2] [--repeats 5]
Prints one JSON line per model with the median seconds per batch and images/s.
Random weights (no download); `torch.inference_mode()`; torch's default thread count.
"""
import argparse, json, statistics, time

import torch
from oml.models import ResnetExtractor, ViTCLIPExtractor, ViTExtractor, ViTUnicomExtractor

ap = argparse.ArgumentParser()
ap.add_argument("--models", default="resnet18,vits16")
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--repeats", type=int, default=5)
args = ap.parse_args()


def build(name):
    if name.startswith("resnet"):
        return ResnetExtractor(weights=None, arch=name, gem_p=None, remove_fc=True, normalise_features=False)
    if name in ViTCLIPExtractor.constructors:  # vitb32_224, ...: OML's zoo uses unnormalised features
        return ViTCLIPExtractor(weights=None, arch=name, normalise_features=False)
    if name in ViTUnicomExtractor.constructors:
        return ViTUnicomExtractor(weights=None, arch=name, normalise_features=True, use_gradient_ckpt=False)
    return ViTExtractor(weights=None, arch=name, normalise_features=False)


torch.manual_seed(0)
for name in args.models.split(","):
    model = build(name).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    times = []
    with torch.inference_mode():
        for r in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    med = statistics.median(times[args.warmup:])
    print(json.dumps({"suite": "models", "impl": "oml-4.0-torch", "model": name, "batch": args.batch,
                      "size": args.size, "median_s": med, "images_per_s": args.batch / med,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
