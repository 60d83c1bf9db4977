#!/usr/bin/env bash
# The main job from a fresh machine: virtualenv, then a real SEER tuning run on this machine
# (SQLite storage, a torch model on scikit-learn's bundled digits, nothing downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
mkdir -p runs
export OMP_NUM_THREADS=1
exec "${SEER_VENV:-.venv}/bin/python" examples/digits_study.py \
  --deadline 2m --budget 0.1 --price 3.0 --workers 2 --storage sqlite:///runs/seer.db "$@"
