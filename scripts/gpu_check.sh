#!/usr/bin/env bash
# The GPU check: everything that needs a GPU, on the GPUs this machine has, in one go.
#
#   bash scripts/gpu_check.sh [--out DIR] [--system-python [PYTHON]] [--wheels DIR]
#                             [--demo-deadline 3m] [--fast-tests "PYTEST ARGS"]
#                             [--rehearse-on-cpu]
#
# Steps (each logged to DIR/NN-step.log, timed; a summary ends DIR/summary.txt):
#   machine   date, nvidia-smi -L, python/torch/CUDA/Lightning/Optuna versions, GPU count
#   profile   optuna-seer profile (built-in probe) at 1, 2, 4 ... workers up to the GPU count;
#             the profile must record the GPU model (torch.cuda.get_device_name), not "cpu"
#   demo      scripts/demo.sh --fresh with the machine's default slots (one per GPU) and a
#             shorter deadline (--demo-deadline, 3m by default); the report must say the
#             deadline was met and name a best trial
#   tests     pytest -m "not slow" (by default the whole fast suite, doctests included;
#             --fast-tests narrows it, e.g. where moto, boto3 or SkyPilot are missing), then
#             the slow tests of tests/test_local_backend.py (a CPU gloo world, and one NCCL
#             world over every visible GPU)
#   scaling   benchmarks/ddp_scaling.py --accelerator gpu at 1, 2, 4 ... GPUs (NCCL for k > 1)
# Budget: a 1-GPU machine finishes in under 8 minutes (measured: 196 s on 1 x H200 with the
# narrowed --fast-tests of docs/gpu.md, 2026-12-04). Exit status 0 only when every step passed.
#
# Assumptions:
#   * One node with at least one NVIDIA GPU that torch sees (torch.cuda.device_count() >= 1);
#     CUDA_VISIBLE_DEVICES, if set, is honoured (the check uses the GPUs it names).
#   * Python: by default ./.venv from scripts/venv.sh (which needs network access on first
#     use, and installs a CPU torch on machines without a CUDA build on the index: prefer
#     --system-python on GPU machines). --system-python [PYTHON] uses that interpreter
#     (python3 by default) as it is: it must import torch (a CUDA build), pytorch_lightning,
#     numpy, sklearn and matplotlib; the rest (optuna and its pure-Python dependencies,
#     pytest, pytest-timeout, hypothesis, ...) may come as wheels in --wheels DIR, installed
#     with `pip install --no-index --no-deps --target DIR/pydeps` (nothing is downloaded).
#     Make such wheels on a connected machine for the same Python version; docs/gpu.md
#     gives the command for an image that lacks only Optuna (optuna, alembic, sqlalchemy,
#     mako, colorlog: 5.4 MB).
#     The package itself is used from this checkout (PYTHONPATH), not installed.
#   * The step checks a missing module up front and stops with its name.
#   * --rehearse-on-cpu runs the same steps on a machine without GPUs (CPU slots, gloo) to
#     check the script itself; it proves nothing about GPUs and its output is no GPU record.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out="gpu-check-$(date -u +%Y%m%dT%H%M%SZ)"
python=""
wheels=""
demo_deadline=3m
rehearse=0
fast_tests="tests optuna_seer --doctest-modules"
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --system-python)
      if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then python=$2; shift 2; else python=python3; shift; fi ;;
    --wheels) wheels=$2; shift 2 ;;
    --demo-deadline) demo_deadline=$2; shift 2 ;;
    --rehearse-on-cpu) rehearse=1; shift ;;
    --fast-tests) fast_tests=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
export OMP_NUM_THREADS=1
if [ -z "$python" ]; then
  bash scripts/venv.sh
  python=$repo/${SEER_VENV:-.venv}/bin/python
else
  python=$(command -v "$python") || { echo "gpu_check: no interpreter $python" >&2; exit 2; }
  pythonpath=$repo
  if [ -n "$wheels" ]; then
    "$python" -m pip install -q --no-index --no-deps --target "$out/pydeps" "$wheels"/*.whl
    pythonpath=$out/pydeps:$pythonpath
  fi
  export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$python" - <<'PY'
import importlib.util
need = ["torch", "pytorch_lightning", "optuna", "numpy", "sklearn", "matplotlib", "pytest",
        "pytest_timeout", "hypothesis"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "gpu_check: $python cannot import: $missing (see the assumptions at the top of $0)" >&2
  exit 3
fi

summary=$out/summary.txt
failed=0
n=0
: > "$summary"
# step NAME COMMAND...: run it with its output in DIR/NN-NAME.log, note its time and status.
step() {
  local name=$1 log start rc
  shift
  n=$((n + 1))
  log=$out/$(printf '%02d' "$n")-$name.log
  echo "[gpu_check] $name: $* (log $log)"
  start=$(date +%s)
  # In the background, not under `if`, so `set -e` stops the step at its first failure.
  ("$@") > "$log" 2>&1 &
  if wait $!; then rc=0; else rc=$?; fi
  local took=$(($(date +%s) - start))
  if [ "$rc" = 0 ]; then status=passed; else status="FAILED (exit $rc)"; failed=1; fi
  printf '%-8s %5d s  %s\n' "$name" "$took" "$status" | tee -a "$summary"
  [ "$rc" = 0 ] || tail -n 25 "$log" | sed 's/^/    /'
}

machine() {
  date -u +"date: %Y-%m-%d %H:%M:%S UTC"
  if [ "$rehearse" = 1 ]; then
    echo "CPU REHEARSAL: no GPU is checked"
    nvidia-smi -L || true
  else
    nvidia-smi -L
  fi
  SEER_REHEARSE=$rehearse "$python" - <<'PY'
import os, platform, sys
import optuna, pytorch_lightning, torch
from optuna_seer.backends.local import accelerator_name, machine_slots, visible_gpus
print(f"python {platform.python_version()} ({sys.executable})")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), lightning "
      f"{pytorch_lightning.__version__}, optuna {optuna.__version__}")
print(f"visible GPUs: {len(visible_gpus())} {list(visible_gpus())}; accelerator "
      f"{accelerator_name()!r}; machine slots {machine_slots()}")
if not visible_gpus() and os.environ["SEER_REHEARSE"] != "1":
    sys.exit("no GPU visible to torch (torch.cuda.device_count() == 0): nothing to check")
PY
}
step machine machine
if [ "$failed" = 1 ]; then echo "gpu_check: no usable GPU; stopping" >&2; exit 1; fi
gpus=$("$python" -c "from optuna_seer.backends.local import visible_gpus; print(len(visible_gpus()))")
slots=$("$python" -c "from optuna_seer.backends.local import machine_slots; print(machine_slots())")
counts=$("$python" -c "
k, c = $slots, [1]
while c[-1] * 2 < k: c.append(c[-1] * 2)
print(' '.join(map(str, c if c[-1] == k else c + [k])))")

profile() {
  # shellcheck disable=SC2086
  "$python" -m optuna_seer.cli profile --out "$out/profile.json" --workers $counts --epochs 3
  "$python" - "$out/profile.json" "$rehearse" <<'PY'
import json, sys
from optuna_seer.backends.local import accelerator_name
recorded = json.load(open(sys.argv[1]))["accelerator"]
print(f"profile accelerator: {recorded!r}")
assert recorded == accelerator_name(), f"expected {accelerator_name()!r}"
assert recorded != "cpu" or sys.argv[2] == "1", "a GPU machine recorded 'cpu'"
PY
}
step profile profile

demo() {
  SEER_PYTHON=$python bash scripts/demo.sh --fresh --deadline "$demo_deadline" \
    --storage "sqlite:///$out/demo/seer.db" --out "$out/demo/"
  grep -E "deadline .*\(met\)" "$out/demo/report.txt"
  grep -E "^best: trial" "$out/demo/report.txt"
}
step demo demo

tests() {
  local home
  home=$(mktemp -d)
  # shellcheck disable=SC2086
  HOME=$home "$python" -m pytest $fast_tests -m "not slow" -q -p no:cacheprovider
  HOME=$home "$python" -m pytest tests/test_local_backend.py -m slow -v -p no:cacheprovider -rs
}
step tests tests

accelerator=gpu
[ "$rehearse" = 1 ] && [ "$gpus" = 0 ] && accelerator=cpu
scaling() {
  # shellcheck disable=SC2086
  "$python" benchmarks/ddp_scaling.py --accelerator "$accelerator" --workers $counts \
    --out "$out/ddp_scaling.json"
}
step scaling scaling

{
  echo
  echo "GPUs: $gpus; slots: $slots; worker counts: $counts"
  grep -h -E "^(date|python|torch|visible GPUs|GPU [0-9])" "$out"/*-machine.log || true
  grep -h -E "worker\(s\)|accelerator:|scaling:" "$out"/*-profile.log 2>/dev/null || true
  grep -h -E "slot\(s\) on|^time:|^cost:|^launches:|^best:" "$out"/*-demo.log 2>/dev/null \
    | awk '!seen[$0]++' || true
  grep -h -E "(passed|failed|error).* in [0-9.]+s" "$out"/*-tests.log 2>/dev/null || true
  grep -h -A20 "data-parallel scaling" "$out"/*-scaling.log 2>/dev/null || true
} | tee -a "$summary"
if [ "$failed" = 0 ]; then
  echo "gpu_check: PASSED ($out)" | tee -a "$summary"
else
  echo "gpu_check: FAILED ($out)" | tee -a "$summary"
fi
exit "$failed"
