"""The deadline and budget guard: when a rung stops launching, stops its launches, admits one."""

from __future__ import annotations

import ast
from pathlib import Path
import sys

import pytest

from optuna_seer.execution import guard as guard_module
from optuna_seer.execution.guard import (
    Guard,
    Running,
    grace_seconds,
    predicted_launch_seconds,
)

# Binary-exact numbers, so that "exactly at the budget" is exact.
GUARD = Guard(deadline_at=1000.0, budget_dollars=10.0, price_per_gpu_second=0.5, grace_s=20.0)


def test_grace_is_two_epochs_and_5_s_at_least_10_s_at_most_a_quarter_of_the_deadline() -> None:
    assert grace_seconds(1.0, 3600.0) == 10.0
    assert grace_seconds(30.0, 3600.0) == 65.0
    assert grace_seconds(30.0, 200.0) == 50.0


def test_a_launch_is_predicted_from_its_resume_point_to_the_rung_end() -> None:
    assert predicted_launch_seconds(20.0, 3.0, target_epochs=9, done_epochs=3) == 38.0
    assert predicted_launch_seconds(20.0, 3.0, target_epochs=9, done_epochs=0) == 47.0
    # A trial already past the rung's epochs only pays the start-up.
    assert predicted_launch_seconds(20.0, 3.0, target_epochs=3, done_epochs=9) == 20.0


def test_spent_counts_the_charged_and_the_in_flight_worker_seconds() -> None:
    running = [Running(started_at=90.0, workers=2), Running(started_at=95.0, workers=1)]
    assert GUARD.spent(100.0, charged_gpu_s=4.0, running=running) == (4.0 + 20.0 + 5.0) * 0.5
    assert GUARD.spent(100.0, charged_gpu_s=0.0, running=[]) == 0.0


def test_the_deadline_stops_the_rung_exactly_at_the_grace_period() -> None:
    assert GUARD.stop_reason(979.5, spent=0.0, running=[]) == ""
    assert GUARD.stop_reason(980.0, spent=0.0, running=[]) == "deadline"
    assert GUARD.stop_reason(2000.0, spent=100.0, running=[]) == "deadline"  # deadline first


def test_the_budget_stops_the_rung_when_spent_plus_the_grace_burn_reaches_it() -> None:
    # Two launches of 2 workers burn 4 * 0.5 * 20 = $40 over the grace period: far too much.
    running = [Running(0.0, 2), Running(0.0, 2)]
    assert GUARD.stop_reason(0.0, spent=0.0, running=running) == "budget"
    # One worker burns 1 * 0.5 * 20 = $10 over the grace period.
    one = [Running(0.0, 1)]
    assert GUARD.stop_reason(0.0, spent=0.0, running=one) == "budget"  # exactly the budget
    assert GUARD.stop_reason(0.0, spent=9.5, running=[]) == ""
    assert GUARD.stop_reason(0.0, spent=10.0, running=[]) == "budget"  # exactly the budget


def test_a_launch_about_to_end_burns_only_until_its_predicted_end_give_or_take_an_epoch() -> None:
    # Predicted to cost $4 on 1 worker (8 s), started 6 s ago: 2 s left, counted as half the
    # grace (10 s, about an epoch, in case it runs late), not the whole 20 s: $5, not $10.
    ending = [Running(started_at=94.0, workers=1, predicted_dollars=4.0)]
    assert GUARD.stop_reason(100.0, spent=4.5, running=ending) == ""
    assert GUARD.stop_reason(100.0, spent=5.0, running=ending) == "budget"  # exactly
    # A long launch burns the whole grace, as one without a prediction does.
    long = [Running(started_at=94.0, workers=1, predicted_dollars=400.0)]
    assert GUARD.stop_reason(100.0, spent=4.5, running=long) == "budget"
    assert GUARD.stop_reason(100.0, spent=4.5, running=[Running(94.0, 1)]) == "budget"
    # One that overran its prediction still burns half the grace.
    late = [Running(started_at=0.0, workers=1, predicted_dollars=4.0)]
    assert GUARD.stop_reason(100.0, spent=5.0, running=late) == "budget"


def test_spent_between_rungs_is_the_launches_worker_seconds_or_the_bill() -> None:
    assert guard_module.spent_dollars(10.0, 0.5, None) == 5.0
    assert guard_module.spent_dollars(10.0, 0.5, lambda: 6.0) == 6.0  # the bill is larger
    assert guard_module.spent_dollars(10.0, 0.5, lambda: None) == 5.0


def test_running_launches_are_stopped_only_once_the_limit_itself_is_reached() -> None:
    assert not GUARD.past_limit("deadline", 999.5, spent=50.0)  # the budget is not its limit
    assert GUARD.past_limit("deadline", 1000.0, spent=0.0)
    assert not GUARD.past_limit("budget", 5000.0, spent=9.5)  # the deadline is not its limit
    assert GUARD.past_limit("budget", 0.0, spent=10.0)


def test_a_launch_that_lands_exactly_on_the_budget_is_admitted() -> None:
    admission = GUARD.admit(0.0, spent=6.0, running=[], cost=4.0)
    assert admission.admitted
    assert (admission.spent, admission.committed, admission.cost) == (6.0, 0.0, 4.0)


def test_a_launch_that_would_overrun_the_budget_is_refused() -> None:
    admission = GUARD.admit(0.0, spent=6.0, running=[], cost=4.5)
    assert not admission.admitted


def test_admission_counts_what_the_running_launches_still_commit() -> None:
    # Predicted $6; 4 s on 2 workers at $0.5 = $4 already spent of it: $2 still committed.
    running = [Running(started_at=100.0, workers=2, predicted_dollars=6.0)]
    refused = GUARD.admit(104.0, spent=5.0, running=running, cost=3.5)
    assert not refused.admitted and refused.committed == 2.0
    assert GUARD.admit(104.0, spent=5.0, running=running, cost=3.0).admitted  # exactly $10
    # A launch running past its prediction commits nothing more (not a negative amount).
    late = [Running(started_at=100.0, workers=2, predicted_dollars=1.0)]
    assert GUARD.committed(104.0, late) == 0.0
    assert GUARD.admit(104.0, spent=6.0, running=late, cost=4.0).admitted


def test_a_zero_budget_refuses_every_launch_that_costs_anything() -> None:
    broke = Guard(deadline_at=1000.0, budget_dollars=0.0, price_per_gpu_second=0.5, grace_s=20.0)
    assert not broke.admit(0.0, spent=0.0, running=[], cost=0.5).admitted
    assert broke.admit(0.0, spent=0.0, running=[], cost=0.0).admitted
    assert broke.stop_reason(0.0, spent=0.0, running=[]) == "budget"


@pytest.mark.parametrize("name", ["budget_dollars", "price_per_gpu_second", "grace_s"])
@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_bad_limits_are_refused_by_name(name: str, value: float) -> None:
    fields = {
        "deadline_at": 1000.0,
        "budget_dollars": 10.0,
        "price_per_gpu_second": 0.5,
        "grace_s": 20.0,
    }
    with pytest.raises(ValueError, match=rf"{name}=.* must be a number >= 0"):
        Guard(**{**fields, name: value})


def test_the_guard_is_pure_standard_library() -> None:
    tree = ast.parse(Path(guard_module.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
