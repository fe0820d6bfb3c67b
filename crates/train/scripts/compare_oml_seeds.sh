#!/usr/bin/env bash
# The Fashion-MNIST demo with several seeds, oml-rs then OML 4.0 for each seed (same machine,
# interleaved so both see the same load). One JSON line per run.
# usage: crates/train/scripts/compare_oml_seeds.sh "1 2 3" [OML_VENV]   (from the repository root)
set -euo pipefail
seeds=${1:-"1 2 3"}
venv=${2:-$HOME/.cache/oml-reference/venv}
oml=${CARGO_TARGET_DIR:-target}/debug/oml
out=$(mktemp -d /tmp/oml-seeds-XXXX)
for s in $seeds; do
  sed "s/^seed: .*/seed: $s/" examples/configs/fashion_mnist.yaml > "$out/fm_$s.yaml"
  t0=$(date +%s.%N)
  "$oml" train "$out/fm_$s.yaml" --run-dir "$out/ours_$s" > /dev/null
  t1=$(date +%s.%N)
  "$venv/bin/python" - "$out/ours_$s" "$s" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, re, sys, datetime
t = {}
for line in open(sys.argv[1] + "/experiment.log"):
    m = re.match(r"(\S+)Z .*Executing training step for epoch (\d+)", line)
    if m:
        t[int(m.group(2))] = datetime.datetime.fromisoformat(m.group(1))
ep = sorted(t)
d = sorted((t[b] - t[a]).total_seconds() for a, b in zip(ep, ep[1:]))
r = json.load(open(sys.argv[1] + "/metrics.json"))["OVERALL"]
print(json.dumps({"impl": "oml-rs", "seed": int(sys.argv[2]), "cmc1": r["cmc"]["1"], "map5": r["map"]["5"],
                  "epoch_s_median": d[len(d) // 2], "epoch_s_mean": sum(d) / len(d), "wall_s": float(sys.argv[3])}))
PY
  "$venv/bin/python" crates/train/scripts/oml_fashion_mnist.py runs/data/fashion-mnist 100 20 "$s" 2>/dev/null | tail -1 \
    | "$venv/bin/python" -c "import json,sys; o=json.load(sys.stdin)['OML']; m=o['metrics']; print(json.dumps({'impl':'OML','seed':$s,'cmc1':m['OVERALL/cmc/1'],'map5':m['OVERALL/map/5'],'epoch_s_median':o['epoch_s_median'],'epoch_s_mean':o['epoch_s_mean'],'wall_s':o['fit_s']}))"
done
