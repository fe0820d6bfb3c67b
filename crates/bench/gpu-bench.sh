#!/usr/bin/env bash
# One unattended run on a GPU machine: build oml-bench for the GPU backend, check its numbers
# against the CPU backend, then time retrieval metrics up to 1M x 1M x 128 (blocked), the loss
# steps at large batches and extractor throughput, and print a Markdown table.
#
# usage: bash crates/bench/gpu-bench.sh [cuda|wgpu] [--quick]
#   backend   default wgpu (Vulkan: NVIDIA's driver ships a Vulkan ICD; lavapipe without a GPU).
#             cuda needs network access at build time (Burn's CUDA stack downloads an LLVM
#             bundle in a build script), so it is opt-in.
#   --quick   small sizes: proves the whole script in a few minutes, e.g. on Mesa's software
#             Vulkan driver (lavapipe) without a GPU
# environment:
#   OML_BENCH_BIN  a prebuilt oml-bench (built with `--features <backend>`): skips the build,
#                  for machines without the crates.io registry
#   OUT            results directory (default: target/gpu-bench/<backend>-<time>)
#   BLOCK          kNN block rows on the device (default 8192; 1024 with --quick)
# Exit status is non-zero when a check fails; the table covers what ran.
set -euo pipefail
cd "$(dirname "$0")/../.."

backend=""
quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    cuda|wgpu) backend="$a" ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
backend="${backend:-wgpu}"
out="${OUT:-target/gpu-bench/$backend-$(date +%Y%m%dT%H%M%S)}"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

if [[ -n ${OML_BENCH_BIN:-} ]]; then
  bin="$OML_BENCH_BIN"
else
  echo "== build: cargo build -p oml-bench --features $backend" >&2
  cargo build -p oml-bench --features "$backend" >&2
  bin="${CARGO_TARGET_DIR:-target}/debug/oml-bench"
fi
{ echo "backend: $backend"; date; uname -a; nvidia-smi -L 2>/dev/null || true; } > "$out/machine.txt"

bench() {
  echo "== oml-bench --device $backend $*" >&2
  "$bin" --device "$backend" "$@" | tee -a "$results"
}

if (( quick )); then
  block="${BLOCK:-1024}"
  check_n=3000; sizes=3000,10000; batches="8:8 32:8"; models=resnet18; model_batch=4; size=64
else
  block="${BLOCK:-8192}"
  check_n=20000; sizes=20000,100000,1000000; batches="8:8 32:8 64:8 128:8"; models=resnet18,resnet50,vits16; model_batch=16; size=224
fi

echo "== checks against the CPU backend" >&2
bench metrics --n "$check_n" --dim 128 --block-size "$block" --fmr 0.1 --warmup 0 --repeats 1 --check-max-n "$check_n"
for miner in all hard nhard cluster; do
  bench loss --p 8 --k 4 --dim 64 --miner "$miner" --warmup 0 --repeats 1 --check
done

echo "== retrieval metrics (cmc@1,5 precision@5 map@5 pcf@0.5; all items query and gallery)" >&2
bench metrics --sizes "$sizes" --dim 128 --block-size "$block" --warmup 0 --repeats 1

echo "== loss steps (forward + backward, 512-d)" >&2
for pk in $batches; do
  for miner in all hard nhard cluster; do
    bench loss --p "${pk%:*}" --k "${pk#*:}" --dim 512 --miner "$miner" --warmup 2 --repeats 5
  done
done

echo "== extractor throughput" >&2
bench models --models "$models" --batch "$model_batch" --size "$size" --warmup 2 --repeats 5

echo "== extractor training steps (forward, triplet loss with the hard miner, backward, Adam)" >&2
if (( quick )); then
  bench train-step --model resnet18 --p 2 --k 2 --size 64 --warmup 1 --repeats 2
else
  bench train-step --model resnet18,resnet50,vits16 --p 8 --k 4 --size 224 --warmup 2 --repeats 5
fi

"$bin" table "$results" | tee "$out/table.md"
echo "results: $results, table: $out/table.md" >&2
