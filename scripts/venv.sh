#!/usr/bin/env bash
# Creates ./.venv on first use and installs optuna-seer with its dev extras into it.
# torch is pinned to 2.13.0 for the dev/test install (a CPU build on these machines); the
# library itself only asks for a range, so GPU users get their CUDA build. The dev install also
# takes scripts/constraints-dev.txt (one botocore range that boto3 and s3fs both accept).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SEER_VENV:-.venv}
stamp="$venv/.optuna-seer-installed"
want=$(cat pyproject.toml scripts/constraints-dev.txt | sha256sum | cut -c1-16)
quiet() { { grep -v "is ignored: it is neither a file nor a directory" || true; } }
if [ ! -x "$venv/bin/python" ]; then
  echo "[venv] creating $venv"
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[venv] installing torch==2.13.0 and optuna-seer[dev] (first run: a few minutes)"
  "$venv/bin/python" -m pip install -q "torch==2.13.0" 2>&1 | quiet
  "$venv/bin/python" -m pip install -q -c scripts/constraints-dev.txt -e ".[dev]" 2>&1 | quiet
  echo "$want" > "$stamp"
fi
