"""The executed-plan and spot-plan benchmarks run end to end (quick, one or two seeds)."""

from __future__ import annotations

import pytest

from benchmarks import executed_plan, executed_plan_per_hour, spot_plans


def test_executed_plan_quick_prints_both_billings(capsys: pytest.CaptureFixture[str]) -> None:
    executed_plan.main(["--quick", "--seeds", "2", "--samples", "100"])
    out = capsys.readouterr().out
    assert "per-second: static/plan executed cost over 8 runs" in out
    assert "per-hour: static/plan executed cost over 8 runs" in out
    assert "runs dearer than static: 0" in out.split("per-hour:")[0]


def test_spot_plans_quick_executes_the_mix_and_its_baselines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spot_plans.main(["--quick", "--seeds", "1", "--samples", "100"])
    out = capsys.readouterr().out
    assert "mix: planned" in out and "on-demand: planned" in out
    assert "effective $/h" in out


def test_per_hour_quick_measures_the_search_and_both_lease_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    executed_plan_per_hour.main(["--quick", "--samples", "100"])
    out = capsys.readouterr().out
    gaps = [float(line.split("planner ÷ exhaustive ")[1]) for line in out.splitlines()
            if "planner ÷ exhaustive " in line]  # fmt: skip
    assert len(gaps) == 3 and all(gap >= 1 - 1e-9 for gap in gaps)  # exhaustive is the floor
    for name in (
        "per-second plan, cluster leases",
        "per-second plan, node leases",
        "per-hour plan, cluster leases",
        "per-hour plan, node leases",
        "ceiling",
    ):
        assert f"static ÷ {name}: min" in out
    # The planner's per-hour plan under node leases is never dearer than the static cluster.
    summary = next(line for line in out.splitlines() if "÷ per-hour plan, node leases" in line)
    assert summary.endswith("below 1 in 0 of 3")
