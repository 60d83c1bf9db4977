#!/usr/bin/env bash
# The main job from a fresh machine: virtualenv, then a real SEER tuning run on this machine
# (SQLite storage, a torch model on scikit-learn's bundled digits, nothing downloaded).
# Slots: one per visible GPU, else one per CPU core up to 8 (add --slots N to choose).
# SEER_PYTHON=/path/to/python: use that interpreter (with the package's dependencies
# importable) instead of creating ./.venv, e.g. on a machine without network access.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SEER_PYTHON:-}" ]; then
  python=$SEER_PYTHON
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  bash scripts/venv.sh
  python=${SEER_VENV:-.venv}/bin/python
fi
mkdir -p runs
export OMP_NUM_THREADS=1
exec "$python" examples/lightning_digits.py \
  --deadline 5m --budget 1.0 --storage sqlite:///runs/seer.db --out runs/ "$@"
