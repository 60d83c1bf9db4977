"""A command that needs a missing optional extra refuses up front, in one line, naming it.

The missing module is simulated by ``sys.modules[name] = None`` (``import`` then fails as if it
were not installed); everything else is the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys

import pytest

from optuna_seer.cli.main import main


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"epoch_seconds": 600, "scaling": "linear", "epoch_cv": 0.05}))
    return path


def _plan_args(profile: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "plan", "--deadline", "20h", "--budget", "500", "--profile", str(profile),
        "--objective", "max-accuracy", "--configs", "9", "--max-epochs", "9",
        "--price-per-slot-hour", "0.5", "--samples", "50", *extra,
    ]  # fmt: skip


def test_plan_png_without_matplotlib_refuses_before_planning(
    tmp_path: Path,
    profile_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "plan.json"
    code = main(
        _plan_args(profile_path, tmp_path, "--png", str(tmp_path / "p.png"), "--out", str(out))
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # no plan was computed or printed
    assert not out.exists()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert "plan --png needs matplotlib" in lines[0]
    assert "pip install '.[plot]' in an optuna-seer clone" in lines[0]
    assert "(or pip install 'matplotlib>=3.7')" in lines[0]


def test_simulate_png_without_matplotlib_refuses_before_simulating(
    tmp_path: Path,
    profile_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = tmp_path / "plan.json"
    assert main(_plan_args(profile_path, tmp_path, "--out", str(saved))) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = main(
        ["simulate", "--plan", str(saved), "--profile", str(profile_path), "--png", "x.png"]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "pip install '.[plot]' in an optuna-seer clone" in captured.err


def test_profile_without_torch_names_the_worker_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    out = tmp_path / "profile.json"
    code = main(["profile", "--out", str(out), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and not out.exists()
    assert captured.err.count("\n") == 1
    assert "profile needs torch" in captured.err and "pip install '.[worker]'" in captured.err


def test_plan_with_matplotlib_still_writes_its_chart(tmp_path: Path, profile_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "p.png"
    assert main(_plan_args(profile_path, tmp_path, "--png", str(chart))) == 0
    assert chart.stat().st_size > 0
