"""Who holds a place in a rung of an asynchronous SEER study: displacement and the last
rung's seats.

A trial promoted early, on the values seen so far, gives its place back once the plan's
survivors of a rung it passed beat it (:func:`displaced`, :func:`displacement`). A trial
entering the last rung records a seat (:data:`SEAT`) in its last-but-one rung-end record and
reads the study again; :func:`seat_holders` says who holds one, so that no more than the last
rung's width do at once (the last of an over-full group to read steps back).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from optuna_seer.integration.admission import stopped
from optuna_seer.integration.keys import (
    TRIAL_RERUN_OF,
    RungRank,
    counted_rank,
    rung_end_key,
    rung_rank,
)
from optuna_seer.planning.plan import Plan, Rung

SEAT = "seat"
"""Key in a trial's last-but-one rung-end record: the trial holds a seat in the final rung."""


def displaced(
    plan: Plan, trial: FrozenTrial, values: list[list[RungRank]], maximize: bool
) -> str | None:
    """Why ``trial`` lost its promotion (``values``: every value seen per promoting rung,
    sorted), or ``None``: at a rung it passed, the plan's survivors beat it."""
    own = {
        rung.index: value
        for rung in plan.rungs[:-1]
        if (value := rung_rank(trial.system_attrs, rung.index)) is not None
    }
    better = {
        index: len(values[index]) - bisect.bisect_right(values[index], value)
        if maximize
        else bisect.bisect_left(values[index], value)
        for index, value in own.items()
    }
    return displacement(plan.rungs, own, better)


def displacement(
    rungs: Sequence[Rung], values: dict[int, RungRank], better: dict[int, int]
) -> str | None:
    """Why a trial with ``values`` at rungs it passed, which ``better`` values beat there, no
    longer ranks within the plan's survivors of one of them (``None`` if it does)."""
    for index, own in values.items():
        keep = rungs[index + 1].n_trials
        if better[index] >= keep:
            return (
                f"rung {index}: displaced, {better[index]} trials beat {own[0]:.6g} and the plan "
                f"keeps {keep}"
            )
    return None


def seat_holders(plan: Plan, trials: list[FrozenTrial], maximize: bool) -> list[int]:
    """Trial numbers holding a place in the final rung: a seat in their last-but-one rung-end
    record, not given back, not failed, not stopped before the last epoch, and not displaced
    (beaten by the plan's survivors at a rung it passed, after which it stops at its next
    report or, finished already, is no longer among the plan's finalists)."""
    if len(plan.rungs) < 2:
        return []
    key = rung_end_key(plan.rungs[-2].index)
    values: list[list[RungRank]] = [[] for _ in plan.rungs[:-1]]
    for t in trials:
        for rung in plan.rungs[:-1]:
            value = counted_rank(t.system_attrs, rung.index)
            if value is not None:
                values[rung.index].append(value)
    for seen in values:
        seen.sort()
    holders = []
    for t in trials:
        record = t.system_attrs.get(key)
        if record is None or not record.get(SEAT) or "stop" in record:
            continue
        if t.state == TrialState.FAIL or (
            t.system_attrs.get(TRIAL_RERUN_OF) is None and displaced(plan, t, values, maximize)
        ):  # a re-run took its parked trial's certain place
            continue
        if (t.last_step or 0) < plan.max_epochs and stopped(t):
            continue
        holders.append(t.number)
    return holders
