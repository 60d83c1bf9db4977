"""A core install (``pip install .`` from a clone, no extras) plans without torch.

Builds a wheel of this checkout, installs it into a fresh virtualenv with its declared
dependencies only (from the package registry), and runs ``optuna-seer plan`` there.
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess
import sys
import venv

import pytest

REPO = Path(__file__).resolve().parent.parent
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info")


@pytest.mark.slow
def test_a_core_install_plans_without_torch(tmp_path: Path) -> None:
    source = tmp_path / "source"  # setuptools writes build/ beside the sources: not in the repo
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "optuna_seer", source / "optuna_seer", ignore=IGNORED)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("optuna_seer-*.whl")
    env_dir = tmp_path / "core"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    probe = (
        "import importlib.util, sys, optuna_seer\n"
        "from optuna_seer import plan_seer, SeerPruner, SeerSampler\n"
        "print([m for m in ('torch', 'pytorch_lightning', 'matplotlib', 'sky', 'boto3')"
        " if importlib.util.find_spec(m)])\n"
    )
    installed = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert installed.stdout.strip() == "[]", installed.stdout  # none of the extras came along

    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"epoch_seconds": 600, "scaling": "amdahl:0.95"}))
    cli = env_dir / "bin" / "optuna-seer"
    args = ["plan", "--deadline", "2h", "--budget", "500", "--profile", str(profile)]
    planned = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=300)
    assert planned.returncode == 0, planned.stderr
    assert "P(finish by deadline)" in planned.stdout

    png = subprocess.run(
        [str(cli), *args, "--png", str(tmp_path / "plan.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert png.returncode == 2
    assert "pip install '.[plot]'" in png.stderr and "Traceback" not in png.stderr
