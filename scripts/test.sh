#!/usr/bin/env bash
# The whole test suite from a fresh machine: virtualenv, lint, types, tests (slow ones too).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
py=${SEER_VENV:-.venv}/bin
dirs=$(ls -d optuna_seer tests examples benchmarks launchers 2>/dev/null)
echo "[lint] ruff"; "$py/ruff" check $dirs; "$py/ruff" format --check $dirs
echo "[types] mypy --strict optuna_seer"; "$py/mypy" --strict optuna_seer
echo "[layers] lint-imports (contracts in pyproject.toml)"; "$py/lint-imports" --no-cache
echo "[tests] pytest"
export OMP_NUM_THREADS=1 HOME="${SEER_TEST_HOME:-$(mktemp -d)}"
"$py/python" -m pytest tests optuna_seer --doctest-modules "$@"
