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
# The slowest tests are listed at the end, so a CI run that grows slower says where.
"$py/python" -m pytest tests optuna_seer --doctest-modules --durations=25 "$@"
# The oldest Optuna pyproject.toml claims: the fast tests again with it first on the path.
floor=$(sed -n 's/^ *"optuna>=\([0-9.]*\)".*/\1/p' pyproject.toml)
if [ "${SEER_SKIP_OPTUNA_FLOOR:-0}" != 1 ] && [ $# -eq 0 ]; then
  target="${SEER_VENV:-.venv}/optuna-$floor"
  [ -d "$target/optuna" ] || "$py/python" -m pip install -q --no-deps --target "$target" "optuna==$floor.0"
  echo "[tests] fast tests on optuna==$floor.0"
  PYTHONPATH="$target" "$py/python" -m pytest tests optuna_seer --doctest-modules -m "not slow" -q -p no:cacheprovider
fi
