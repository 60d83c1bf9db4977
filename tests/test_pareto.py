"""The accuracy–cost front over SEER plans (planning/pareto.py) and `optuna-seer plan --pareto`."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from optuna_seer import Budget, Workload
from optuna_seer.cli.main import main
from optuna_seer.planning.accuracy_model import AccuracyModel
from optuna_seer.planning.pareto import FrontPoint, pareto, plan_front

BUDGET = Budget(deadline=7200.0, dollars=24.0, price_per_gpu_hour=3.0)
WORKLOAD = Workload(epoch_seconds=60.0, scaling="resnet50", max_epochs=40, startup_seconds=30.0)


def _curves(n: int = 60, epochs: int = 20) -> list[list[float]]:
    rng = np.random.default_rng(3)
    finals = rng.uniform(0.5, 0.95, n)
    noise = rng.normal(0.0, 0.03, (n, epochs))
    return [
        list(f * (1 - np.exp(-0.3 * np.arange(1, epochs + 1))) + z) for f, z in zip(finals, noise)
    ]


def test_the_front_is_what_each_budget_buys_and_never_gets_worse() -> None:
    points = plan_front(BUDGET, WORKLOAD, scales=(0.05, 0.25, 0.5, 1.0, 2.0))
    assert points[0].dollars > 1.2  # $1.20 cannot train one configuration
    assert all(p.plan.predicted_cost <= p.dollars + 1e-9 for p in points)
    front = pareto(points)
    assert [p.expected for p in front] == sorted(p.expected for p in front)
    costs = [p.plan.predicted_cost for p in front]
    assert costs == sorted(costs)
    for point in points:  # every point is on the front or beaten by a cheaper front point
        assert point in front or any(
            f.plan.predicted_cost <= point.plan.predicted_cost and f.expected >= point.expected
            for f in front
        )


def test_front_against_the_deadline_with_an_accuracy_model() -> None:
    model = AccuracyModel(_curves())
    points = plan_front(BUDGET, WORKLOAD, axis="deadline", scales=(0.2, 0.5, 1.0), accuracy=model)
    assert {p.dollars for p in points} == {24.0}
    assert [p.deadline_s for p in points] == [1440.0, 3600.0, 7200.0]
    assert all(0.5 < p.expected < 1.0 and p.stderr > 0 for p in points)
    front = pareto(points, "deadline")
    assert front[0].deadline_s == 1440.0
    assert all(b.expected > a.expected for a, b in itertools.pairwise(front))


def test_pareto_drops_dominated_points() -> None:
    plan = plan_front(BUDGET, WORKLOAD, scales=(1.0,))[0].plan
    cheap_good = FrontPoint(7200.0, 10.0, plan, 0.9, 0.0)
    dear_bad = FrontPoint(7200.0, 20.0, plan, 0.8, 0.0)
    assert pareto([dear_bad, cheap_good], "deadline") == [cheap_good]
    with pytest.raises(ValueError, match="axis='money'"):
        plan_front(BUDGET, WORKLOAD, axis="money")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scales"):
        plan_front(BUDGET, WORKLOAD, scales=(0.0,))


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(
        json.dumps(
            {"epoch_seconds": 60, "scaling": "resnet50", "epoch_cv": 0.1, "startup_seconds": 30}
        )
    )
    return path


def _pareto_args(profile: Path, *extra: str) -> list[str]:
    return [
        "plan", "--pareto", "--deadline", "2h", "--budget", "24", "--profile", str(profile),
        "--price-per-slot-hour", "3", "--max-epochs", "40", "--configs", "150", *extra,
    ]  # fmt: skip


def test_cli_pareto_prints_both_fronts_with_the_proxy(
    profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_pareto_args(profile_path)) == 0
    out = capsys.readouterr().out
    assert "proxy" in out and "give --curves" in out and "hold at p95" in out
    assert "Front against dollars" in out and "Front against the deadline" in out
    assert "proxy (percentile)" in out


def test_cli_pareto_scores_with_recorded_curves_and_charts(
    tmp_path: Path, profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    curves = tmp_path / "curves.json.gz"
    records = [{"val_acc": c, "test_acc": c} for c in _curves()]
    records[0]["val_acc"][3] = None  # a diverged epoch
    with gzip.open(curves, "wt", encoding="utf-8") as handle:
        json.dump({"curves": records}, handle)
    chart = tmp_path / "front.png"
    assert main(_pareto_args(profile_path, "--curves", str(curves), "--png", str(chart))) == 0
    out = capsys.readouterr().out
    assert "expected accuracy from 60 recorded curves" in out and " ± " in out
    assert chart.stat().st_size > 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("not json", "is not JSON"),
        ('{"curves": []}', "no list of curves"),
        ('{"curves": [["a"]]}', "not a number"),
        ('{"curves": [5]}', "curve 0 is 5"),
    ],
)
def test_cli_pareto_refuses_bad_curves_in_one_line(
    tmp_path: Path,
    profile_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    needle: str,
) -> None:
    curves = tmp_path / "curves.json"
    curves.write_text(content)
    assert main(_pareto_args(profile_path, "--curves", str(curves))) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_cli_pareto_needs_a_budget(profile_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _pareto_args(profile_path)
    del args[args.index("--budget") : args.index("--budget") + 2]
    assert main(args) == 2
    assert "--pareto needs --budget" in capsys.readouterr().err
