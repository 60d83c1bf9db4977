"""Launch start-ups in the asynchronous budget guard's measured slowdown.

The ledger charges a leased trial from its workers' grant, start-up included; the plan times
a start-up at each launch (``Rung.startup_s``, ``Plan.launch_starts``). Before both sides
counted it, the guard read start-ups as slower epochs: on the replayed ``seer-pool`` arm
(30 s start-up, 60 s epochs) the study's slowdown read 1.13 and rung 0's 1.5 with epochs
exactly as planned, so every running trial's commitment was inflated by that much.
"""

from __future__ import annotations

import pytest

from benchmarks import seer_pool
from benchmarks.baselines import Scenario
from benchmarks.curves import CurveSet
from optuna_seer.backends.replay import RecordedCurve
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.reruns import rerun_cost

EPOCHS = 9


def _curve(final: float, speed: float) -> RecordedCurve:
    val = tuple(round(final * (1 - (1 - speed) ** (e + 1)), 4) for e in range(EPOCHS))
    return RecordedCurve(val_acc=val, test_acc=val)


CURVES = CurveSet(
    dataset="synthetic",
    configs=tuple({"config_id": i} for i in range(40)),
    curves=tuple(_curve(0.5 + 0.01 * i, 0.2 + 0.03 * (i % 7)) for i in range(40)),
    epoch_seconds=tuple(0.01 for _ in range(40)),
)


@pytest.mark.parametrize("startup", [0.0, 30.0, 120.0])
def test_start_ups_as_long_as_planned_do_not_read_as_slower_epochs(startup: float) -> None:
    scenario = Scenario(
        "exact",
        deadline_s=1800.0,
        dollars=6.0,
        scaling="babi",
        startup_seconds=startup,
        straggler_cv=0.0,
    )
    run = seer_pool.play_seer_pool(scenario, CURVES, seed=0)
    assert run.outcome.within_budget and run.outcome.within_deadline
    pruner = run.study.pruner
    assert isinstance(pruner, SeerPruner)
    assert {r.startup_s for r in pruner.plan.rungs} == {startup}
    view, _ = pruner.spend_view(run.study, run.ended_at, None)
    assert view.scale == pytest.approx(1.0, abs=0.01)
    assert view.scales == pytest.approx([1.0] * len(view.scales), abs=0.01)


def test_a_rerun_is_priced_with_a_start_up_per_launch() -> None:
    plan = seer_pool.pool_plan(
        Scenario("s", deadline_s=1800.0, dollars=6.0, scaling="babi", startup_seconds=30.0),
        CURVES,
    )
    launches = sorted(plan.launch_starts)
    assert launches[0] == 0
    extra = sum(plan.rungs[i].startup_s for i in launches)
    assert rerun_cost(plan, 1.0)[0] == pytest.approx(
        sum((r.resource - plan.epochs_before(r.index)) * r.epoch_seconds for r in plan.rungs)
        + extra
    )


def test_the_slowdown_script_reads_about_one_on_the_replay(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import pool_slowdown

    assert pool_slowdown.main(["--seeds", "1", "--datasets", "wine"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == 3
    for row in rows:
        assert abs(float(row[5]) - 1.0) < 0.05, row
