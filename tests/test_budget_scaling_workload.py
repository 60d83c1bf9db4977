"""Inputs: durations, budgets, scaling curves and workloads reject bad values by name."""

from __future__ import annotations

import math

import pytest

from optuna_seer import Budget, ScalingCurve, Workload
from optuna_seer.planning.budget import parse_duration
from optuna_seer.planning.cost_model import ClusterLimits


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12h", 43200.0),
        ("90m", 5400.0),
        ("1h30m", 5400.0),
        ("45s", 45.0),
        ("1d", 86400.0),
        (3600, 3600.0),
        (1.5, 1.5),
        ("7200", 7200.0),
        (" 2h ", 7200.0),
    ],
)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", "soon", "12x", "h", "-1h", "0", 0, -5, math.nan, math.inf, "1h-30m"]
)
def test_parse_duration_rejects_with_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="deadline="):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, [1], True])
def test_parse_duration_rejects_types(bad: object) -> None:
    with pytest.raises(TypeError, match="deadline="):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"deadline": "0h", "dollars": 1, "price_per_gpu_hour": 1}, "deadline="),
        ({"deadline": "1h", "dollars": 0, "price_per_gpu_hour": 1}, "dollars=0"),
        ({"deadline": "1h", "dollars": -3, "price_per_gpu_hour": 1}, "dollars=-3"),
        ({"deadline": "1h", "dollars": 1, "price_per_gpu_hour": math.nan}, "price_per_gpu_hour"),
        ({"deadline": "1h", "dollars": math.inf, "price_per_gpu_hour": 1}, "dollars=inf"),
    ],
)
def test_budget_rejects(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Budget(**kwargs)  # type: ignore[arg-type]


def test_budget_rejects_text_dollars() -> None:
    with pytest.raises(TypeError, match="dollars='400'"):
        Budget(deadline="1h", dollars="400", price_per_gpu_hour=3.0)  # type: ignore[arg-type]


def test_budget_units() -> None:
    budget = Budget(deadline="2h", dollars=10, price_per_gpu_hour=3.6)
    assert budget.deadline_seconds == 7200.0
    assert budget.price_per_gpu_second == pytest.approx(0.001)


def test_scaling_formulas() -> None:
    assert ScalingCurve.parse("linear").speedup(8) == 8.0
    assert ScalingCurve.parse("amdahl:0.95").speedup(8) == pytest.approx(1 / (0.05 + 0.95 / 8))
    assert ScalingCurve.parse("power:0.6").speedup(4) == pytest.approx(4**0.6)
    assert ScalingCurve.parse("amdahl:1").speedup(1) == 1.0


def test_scaling_table_interpolates_and_flattens() -> None:
    curve = ScalingCurve.parse({1: 1.0, 2: 1.9, 4: 3.5, 8: 6.2})
    assert curve.speedup(3) == pytest.approx(2.7)
    assert curve.speedup(8) == 6.2
    assert curve.speedup(64) == 6.2
    assert curve.max_useful_gpus == 8


def test_babi_preset_stops_at_its_peak() -> None:
    curve = ScalingCurve.parse("babi")
    assert curve.max_useful_gpus == 8
    assert curve.speedup(16) == curve.speedup(8) == 2.75


def test_spec_round_trip() -> None:
    for spec in ("linear", "amdahl:0.9", "power:0.6", {1: 1.0, 2: 1.5}):
        curve = ScalingCurve.parse(spec)
        assert ScalingCurve.parse(curve.to_spec()) == curve


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({1: 1.0, 2: 1.9, 4: 1.5}, "not increasing"),
        ({1: 1.0, 2: 2.5}, "cannot exceed"),
        ({2: 1.9, 4: 3.0}, "must start with 1: 1.0"),
        ({1: 1.0, 0: 0.5}, "key 0"),
        ({1: 1.0, 2: math.nan}, "nan"),
        ("amdahl:1.5", "amdahl:1.5"),
        ("amdahl:x", "'x' is not a number"),
        ("power:0", "power:0"),
        ("quadratic", "'quadratic' is not known"),
    ],
)
def test_scaling_rejects(spec: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ScalingCurve.parse(spec)  # type: ignore[arg-type]


def test_scaling_rejects_types() -> None:
    with pytest.raises(TypeError, match="scaling=3"):
        ScalingCurve.parse(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'fast'"):
        ScalingCurve.parse({1: 1.0, 2: "fast"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"epoch_seconds": 0.0}, ValueError, "epoch_seconds=0.0"),
        ({"epoch_seconds": -1.0}, ValueError, "epoch_seconds=-1.0"),
        ({"max_epochs": 0}, ValueError, "max_epochs=0"),
        ({"max_epochs": 2.5}, TypeError, "max_epochs=2.5"),
        ({"gpus_per_node": 0}, ValueError, "gpus_per_node=0"),
        ({"startup_seconds": -2.0}, ValueError, "startup_seconds=-2.0"),
        ({"scaling": "nope"}, ValueError, "'nope'"),
    ],
)
def test_workload_rejects(kwargs: dict[str, object], error: type[Exception], needle: str) -> None:
    base: dict[str, object] = {"epoch_seconds": 60.0, "scaling": "linear", "max_epochs": 10}
    base.update(kwargs)
    with pytest.raises(error, match=needle):
        Workload(**base)  # type: ignore[arg-type]


def test_cluster_limits_reject() -> None:
    with pytest.raises(ValueError, match="max_gpus=0"):
        ClusterLimits(max_gpus=0)
    with pytest.raises(ValueError, match="provisioning_seconds=-1"):
        ClusterLimits(provisioning_seconds=-1)
