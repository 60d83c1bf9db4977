"""The executed-plan and spot-plan benchmarks run end to end (quick, one or two seeds)."""

from __future__ import annotations

import pytest

from benchmarks import executed_plan, spot_plans


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
