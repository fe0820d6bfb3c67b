#!/usr/bin/env bash
# Prepares what the oml-logging integration tests need and starts an MLflow tracking server.
#
#   eval "$(bash crates/logging/ci/setup-services.sh)"
#   cargo test -p oml-logging
#   bash crates/logging/ci/stop-services.sh
#
# - Installs `tensorboard` and `mlflow` (pip, quietly) into a venv under
#   ${OML_CI_CACHE:-$HOME/.cache/oml-ci}/venv, reused when it already has both.
# - Starts `mlflow server` on 127.0.0.1 (free port, SQLite store, local artifact root served by
#   the server's artifact proxy) in its own process group, and waits until /health answers.
# - Prints `export` lines on stdout (everything else goes to stderr):
#     OML_TEST_PYTHON       python that has tensorboard and mlflow
#     OML_TEST_MLFLOW_URI   http://127.0.0.1:PORT
#     OML_MLFLOW_STATE_DIR  server state (mlflow.db, artifacts/, server.log, mlflow.pid)
# Exits non-zero (printing the server log) if the install or the server fails.
set -euo pipefail

cache="${OML_CI_CACHE:-$HOME/.cache/oml-ci}"
venv="$cache/venv"
py="$venv/bin/python"

if ! "$py" -c 'import tensorboard, mlflow' >/dev/null 2>&1; then
    echo "setup-services: installing tensorboard and mlflow into $venv" >&2
    mkdir -p "$cache"
    python3 -m venv "$venv" >&2
    "$py" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || true
    "$py" -m pip install --quiet --disable-pip-version-check tensorboard mlflow >&2
fi
"$py" -c 'import tensorboard, mlflow; print("setup-services: tensorboard", tensorboard.__version__, "mlflow", mlflow.__version__)' >&2

state="${OML_MLFLOW_STATE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/oml-mlflow.XXXXXX")}"
mkdir -p "$state/artifacts"
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"

# A subshell without job control is not a process-group leader, so setsid does not fork:
# the PID recorded is the server's, and its process group holds the server's workers too.
( exec setsid "$venv/bin/mlflow" server --host 127.0.0.1 --port "$port" --workers 1 \
    --backend-store-uri "sqlite:///$state/mlflow.db" \
    --artifacts-destination "$state/artifacts" \
    >"$state/server.log" 2>&1 </dev/null ) &
echo $! >"$state/mlflow.pid"

uri="http://127.0.0.1:$port"
for _ in $(seq 1 180); do
    if "$py" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$uri/health', timeout=2).status == 200 else 1)" >/dev/null 2>&1; then
        echo "setup-services: mlflow server up at $uri (pid $(cat "$state/mlflow.pid"), state $state)" >&2
        echo "export OML_TEST_PYTHON='$py'"
        echo "export OML_TEST_MLFLOW_URI='$uri'"
        echo "export OML_MLFLOW_STATE_DIR='$state'"
        exit 0
    fi
    if ! kill -0 "$(cat "$state/mlflow.pid")" 2>/dev/null; then
        break
    fi
    sleep 1
done
echo "setup-services: mlflow server did not come up; its log:" >&2
cat "$state/server.log" >&2 || true
kill -- "-$(cat "$state/mlflow.pid")" 2>/dev/null || true
exit 1
