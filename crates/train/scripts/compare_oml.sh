#!/usr/bin/env bash
# The Fashion-MNIST demo through oml-rs and through OML 4.0, one after the other on this machine.
# usage: crates/train/scripts/compare_oml.sh [OML_VENV]   (from the repository root, after `cargo build -p oml-cli`)
# OML_VENV: made by ../bench/python/oml/setup_oml_reference.sh (default ~/.cache/oml-reference/venv).
set -euo pipefail
venv=${1:-$HOME/.cache/oml-reference/venv}
oml=${CARGO_TARGET_DIR:-target}/debug/oml
out=$(mktemp -d /tmp/oml-compare-XXXX)
echo "== oml-rs ($oml)"
/usr/bin/time -f "oml-rs wall %e s" "$oml" train examples/configs/fashion_mnist.yaml --run-dir "$out/ours" | tail -12
"$venv/bin/python" - "$out/ours" <<'PY'
import json, re, sys, datetime
# per-epoch wall time from Burn's experiment.log: training start of epoch N to training start of N+1
t = {}
for line in open(sys.argv[1] + "/experiment.log"):
    m = re.match(r"(\S+)Z .*Executing training step for epoch (\d+)", line)
    if m:
        t[int(m.group(2))] = datetime.datetime.fromisoformat(m.group(1))
ep = sorted(t)
d = [(t[b] - t[a]).total_seconds() for a, b in zip(ep, ep[1:])]
report = json.load(open(sys.argv[1] + "/metrics.json"))["OVERALL"]
print(json.dumps({"oml-rs": {"metrics": report, "epoch_s_mean": sum(d) / len(d), "epoch_s_median": sorted(d)[len(d) // 2]}}))
PY
echo "== OML 4.0"
/usr/bin/time -f "OML wall %e s" "$venv/bin/python" crates/train/scripts/oml_fashion_mnist.py runs/data/fashion-mnist 2>/dev/null | tail -1
