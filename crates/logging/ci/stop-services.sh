#!/usr/bin/env bash
# Stops the MLflow server that setup-services.sh started (its whole process group).
#   bash crates/logging/ci/stop-services.sh [STATE_DIR]    (default: $OML_MLFLOW_STATE_DIR)
set -uo pipefail
state="${1:-${OML_MLFLOW_STATE_DIR:-}}"
if [ -z "$state" ] || [ ! -f "$state/mlflow.pid" ]; then
    echo "stop-services: no mlflow.pid (state dir '${state}'), nothing to stop" >&2
    exit 0
fi
pid="$(cat "$state/mlflow.pid")"
kill -TERM -- "-$pid" 2>/dev/null || true
# Wait for the whole group (server and workers) to exit, then make sure of it.
for _ in $(seq 1 30); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.5
done
kill -KILL -- "-$pid" 2>/dev/null || true
rm -f "$state/mlflow.pid"
echo "stop-services: stopped mlflow server (pid $pid)" >&2
