"""The run report prints what the plan predicted next to what the run measured (pure)."""

from __future__ import annotations

from optuna_seer.execution.report import format_report
from optuna_seer.execution.tuner import LaunchRecord, RungRecord, TuningResult
from optuna_seer.integration.ledger import Ledger
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload

PRICE = 3.6 / 3600.0


def _result() -> TuningResult:
    """Two one-slot trials at once on 2 slots, slowed 1.5x each: 1.5 × (5 + 2 × 10) = 37.5 s."""
    workload = Workload(
        epoch_seconds=10.0, scaling="linear", max_epochs=2, startup_seconds=5.0, contention=1.5
    )
    rungs = schedule([RungShape(2, 2, 1)], workload, PRICE, ClusterLimits(max_gpus=2))
    plan = Plan(rungs, 2, 600.0, 1.0, PRICE, 0.2)
    launches = tuple(
        LaunchRecord(n, 0, 1, (n,), 0.0, 45.0, "succeeded", train_seconds=36.0, epochs=2)
        for n in (0, 1)
    )
    record = RungRecord(rungs[0], 0.0, 45.0, (0, 1), (), (), 90.0, launches)
    ledger = Ledger(0.0, 45.0, 90.0, 600.0, 1.0, PRICE)
    return TuningResult("s", plan, plan, None, (record,), launches, ledger, 2, 45.0)


def test_report_prints_predicted_next_to_measured() -> None:
    report = format_report(_result())
    assert "planned s/epoch" in report
    rung_row = report.splitlines()[3].split()
    # Planned 15.0 s/epoch (10 s at 1.5x contention) next to the measured 18.0.
    assert rung_row[6:8] == ["15.0", "18.0"]
    assert "time: predicted 0:00:38, actual 0:00:45 (actual/predicted 1.200)" in report
    assert "cost: predicted $0.0750, actual $0.0900 (actual/predicted 1.200;" in report
