#!/usr/bin/env bash
# Runs every example at a small size, from the binaries a workspace build left in DIR
# (`cargo test --workspace` builds them): bash examples/run-all.sh target/debug/examples
set -euo pipefail
dir="${1:?usage: run-all.sh DIR, the examples folder of a build}"
cd "$(dirname "$0")/.."
"$dir/train_learner" --epochs 3 --per-class 100
"$dir/eval_embeddings"
"$dir/custom_miner" --steps 20
fixtures="${OML_FIXTURES_DIR:-../shared/fixtures}"
if [ -f "$fixtures/extractors/resnet18.pth" ]; then
  "$dir/checkpoint_knn" --checkpoint "$fixtures/extractors/resnet18.pth"
else
  echo "SKIPPED checkpoint_knn: no resnet18.pth under $fixtures/extractors (set OML_FIXTURES_DIR)"
fi
