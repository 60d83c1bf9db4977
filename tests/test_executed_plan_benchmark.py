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


def test_per_hour_headroom_quick_measures_search_rounding_and_kept_nodes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    executed_plan_per_hour.main(["--quick", "--samples", "100"])
    out = capsys.readouterr().out
    gaps = [float(line.split("planner ÷ exhaustive ")[1]) for line in out.splitlines()
            if "planner ÷ exhaustive " in line]  # fmt: skip
    assert len(gaps) == 3 and all(gap >= 1 - 1e-9 for gap in gaps)  # exhaustive is the floor
    for name in ("hourly leases ÷ static", "static ÷ nodes kept", "ceiling"):
        assert f"{name}: min" in out


def test_kept_nodes_bill_each_node_its_own_whole_hours() -> None:
    from optuna_seer.planning.prices import PriceQuote
    from optuna_seer.planning.simulator import SimulationResult
    from optuna_seer.planning.stage_plan import ElasticPlan, Stage

    quote = PriceQuote("g1", "V100", 1, 2.0)
    plan = ElasticPlan((Stage(4, 1, 1, quote, 4), Stage(2, 3, 1, quote, 2)))
    # 4 nodes for 0.5 h, then 2 of them kept to 2.5 h: 2 × 1 h + 2 × 3 h, at $2/h.
    result = SimulationResult((9000.0,), (0.0,), (0.0, 1800.0), (1800.0, 9000.0), (0.0, 0.0), 0)
    assert executed_plan_per_hour.kept_nodes_bill(plan, result, 120.0) == 16.0
