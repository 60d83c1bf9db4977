"""The re-planner: measured workload and where the run stands in, the remaining rungs out."""

from __future__ import annotations

import ast
from dataclasses import replace
import math
from pathlib import Path
import sys

import pytest

from optuna_seer.execution import replanner as replanner_module
from optuna_seer.execution.replanner import Policy, Standing, replan
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.workload import Workload

PRICE = 1.0 / 3600
LIMITS = ClusterLimits(max_gpus=4)
PLANNED = Workload(epoch_seconds=10.0, scaling="linear", max_epochs=9, startup_seconds=20.0)
SLOW = replace(PLANNED, epoch_seconds=20.0)
# 9 trials x 1 epoch on 1 worker (0-90 s), 3 x 3 on 2 (90-150 s), 1 x 9 on 4 (150-185 s).
RUNGS = schedule(
    [RungShape(9, 1, 1), RungShape(3, 3, 2), RungShape(1, 9, 4)], PLANNED, PRICE, LIMITS
)


def _policy(deadline_s: float = 3600.0, drift: float = 0.25) -> Policy:
    return Policy(
        deadline_s=deadline_s,
        price_per_gpu_second=PRICE,
        limits=LIMITS,
        min_marginal_speedup=0.2,
        drift_tolerance=drift,
        planned=PLANNED,
    )


def _standing(epoch_s: float, dollars: float = 10.0, alive: int = 3) -> Standing:
    return Standing(
        done=0,
        alive=alive,
        elapsed_s=RUNGS[0].end_s,
        left_dollars=dollars,
        epoch_seconds=epoch_s,
        startup_seconds=20.0,
    )


def test_the_plan_is_kept_silently_when_the_measurements_match_it() -> None:
    out = replan(RUNGS, _standing(10.0), PLANNED, _policy())
    assert out.note == "" and not out.revised
    assert out.rungs == RUNGS  # re-timed from where the run stands: the same times here


def test_the_rest_is_re_timed_from_the_time_already_spent() -> None:
    late = replace(_standing(10.0), elapsed_s=100.0)  # rung 0 ended 10 s late
    out = replan(RUNGS, late, PLANNED, _policy())
    assert out.rungs[0] == RUNGS[0] and not out.revised
    assert [(r.start_s, r.end_s) for r in out.rungs[1:]] == [(100.0, 160.0), (160.0, 195.0)]
    assert [r.index for r in out.rungs] == [0, 1, 2]


def test_drift_re_plans_on_the_cheapest_workers_that_still_meet_the_deadline() -> None:
    out = replan(RUNGS, _standing(20.0), SLOW, _policy())
    assert out.revised
    assert out.note.startswith("re-plan after rung 0: measured 20.00 s/epoch on 1 worker(s)")
    assert "(plan 10.00)" in out.note
    assert out.workers == [1, 1, 1]  # linear scaling: one worker is as cheap and in time
    assert out.rungs[-1].end_s <= 3600.0


def test_without_a_drift_tolerance_a_slower_run_that_still_fits_keeps_its_plan() -> None:
    out = replan(RUNGS, _standing(20.0), SLOW, _policy(drift=math.inf))
    assert out.note == "" and not out.revised
    assert out.workers == [r.gpus_per_trial for r in RUNGS]
    assert out.rungs[-1].end_s > RUNGS[-1].end_s  # re-timed: later than planned


def test_a_deadline_at_risk_keeps_fewer_survivors() -> None:
    tight = _policy(deadline_s=RUNGS[-1].end_s, drift=math.inf)
    out = replan(RUNGS, _standing(20.0), SLOW, tight)
    assert out.revised
    assert "only 2 survivor(s) can finish in time and budget" in out.note
    assert [r.n_trials for r in out.rungs[1:]] == [2, 1]
    assert out.rungs[-1].end_s <= tight.deadline_s


def test_exactly_the_deadline_still_fits() -> None:
    exact = _policy(deadline_s=RUNGS[-1].end_s, drift=math.inf)
    out = replan(RUNGS, _standing(10.0), PLANNED, exact)
    assert out.note == "" and out.rungs[-1].end_s == exact.deadline_s


def test_exactly_the_dollars_left_still_fit() -> None:
    left = sum(r.cost for r in RUNGS[1:])
    out = replan(RUNGS, _standing(10.0, dollars=left), PLANNED, _policy())
    assert out.note == "" and not out.revised
    short = replan(RUNGS, _standing(10.0, dollars=left * 0.99), PLANNED, _policy())
    assert short.revised


def test_when_even_one_finalist_cannot_finish_it_trains_on_the_fastest_workers() -> None:
    out = replan(RUNGS, _standing(20.0, dollars=1e-4), SLOW, _policy())
    assert out.revised
    assert "even one finalist cannot finish" in out.note
    assert [r.n_trials for r in out.rungs[1:]] == [1, 1]
    assert out.workers[1:] == [4, 4]


def test_fewer_trials_alive_than_planned_are_re_timed_for_what_is_left() -> None:
    out = replan(RUNGS, _standing(10.0, alive=2), PLANNED, _policy())
    assert out.rungs[1].n_trials == 2 and out.rungs[2].n_trials == 1
    assert out.rungs[1].end_s <= RUNGS[1].end_s


@pytest.mark.parametrize("done", [-1, 2, 3])
def test_only_a_rung_before_the_last_can_be_re_planned_after(done: int) -> None:
    with pytest.raises(ValueError, match=rf"standing.done={done} must index a rung before"):
        replan(RUNGS, replace(_standing(10.0), done=done), PLANNED, _policy())


def test_nothing_alive_is_refused() -> None:
    with pytest.raises(ValueError, match=r"standing.alive=0"):
        replan(RUNGS, _standing(10.0, alive=0), PLANNED, _policy())


@pytest.mark.parametrize("drift", [0.0, -0.5, float("nan")])
def test_a_drift_tolerance_that_is_not_positive_is_refused(drift: float) -> None:
    with pytest.raises(ValueError, match=r"drift_tolerance=.* must be a positive fraction"):
        _policy(drift=drift)


def test_the_re_planner_uses_only_the_planning_core() -> None:
    tree = ast.parse(Path(replanner_module.__file__).read_text())
    modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    for module in modules:
        top = module.split(".")[0]
        assert (
            top in sys.stdlib_module_names
            or top == "__future__"
            or module.startswith("optuna_seer.planning.")
        ), module
