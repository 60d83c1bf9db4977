"""The run report prints what the plan predicted next to what the run measured (pure)."""

from __future__ import annotations

import re

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


def _rung_table(report: str) -> list[dict[str, str]]:
    """The report's rung table, one dict per rung keyed by the header's column names.

    Names are separated by two or more spaces (a name may hold one: ``planned end``); no
    value holds a space, so a row splits on whitespace, and must give one value per name.
    """
    lines = report.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("rung "))
    names = re.split(r" {2,}", lines[at].strip())
    rows = []
    for line in lines[at + 1 :]:
        if not line.strip():
            break
        values = line.split()
        assert len(values) == len(names), f"{line!r} does not fit the header {names}"
        rows.append(dict(zip(names, values)))
    return rows


def test_report_prints_predicted_next_to_measured() -> None:
    report = format_report(_result())
    (rung,) = _rung_table(report)
    # Planned 15.0 s/epoch (10 s at 1.5x contention) next to the measured 18.0.
    assert rung["planned s/epoch"] == "15.0"
    assert rung["s/epoch"] == "18.0"
    assert rung["trials"] == "2" and rung["epochs"] == "2" and rung["workers/trial"] == "1"
    assert rung["actual end"] == "0:00:45"
    assert "time: predicted 0:00:38, actual 0:00:45 (actual/predicted 1.200)" in report
    assert "cost: predicted $0.0750, actual $0.0900 (actual/predicted 1.200;" in report


def test_the_report_names_the_accelerator_when_given() -> None:
    first = format_report(_result(), accelerator="NVIDIA H200").splitlines()[0]
    assert first.endswith("slots on NVIDIA H200")
    assert " on " not in format_report(_result()).splitlines()[0]
