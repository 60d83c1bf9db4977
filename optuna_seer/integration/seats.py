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
    ranked_by_tie_break,
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
    attrs = trial.system_attrs
    own = {
        rung.index: value
        for rung in plan.rungs[:-1]
        if (value := rung_rank(attrs, rung.index)) is not None
    }
    better = {
        index: len(values[index]) - bisect.bisect_right(values[index], value)
        if maximize
        else bisect.bisect_left(values[index], value)
        for index, value in own.items()
    }
    by_value = not any(ranked_by_tie_break(attrs, index) for index in own)
    return displacement(plan.rungs, own, better, by_value=by_value)


def displacement(
    rungs: Sequence[Rung],
    values: dict[int, RungRank],
    better: dict[int, int],
    *,
    by_value: bool = True,
) -> str | None:
    """Why a trial with ``values`` at rungs it passed, which ``better`` values beat there, no
    longer ranks within the plan's survivors of one of them (``None`` if it does);
    ``by_value``: the ranks are values, else tie-break ranks (``promote_by="tie_break"``)."""
    for index, own in values.items():
        keep = rungs[index + 1].n_trials
        if better[index] >= keep:
            return (
                f"rung {index}: displaced, {better[index]} trials beat {shown(own, by_value)} "
                f"and the plan keeps {keep}"
            )
    return None


def shown(rank: RungRank, by_value: bool) -> str:
    """A trial's rank at a rung end as a stop reason names it: its value, never the signed
    tie-break metric a tie-break rank starts with.

    Example:
        >>> shown((0.75, 0.7), by_value=True), shown((-0.31, 0.75), by_value=False)
        ('0.75', '0.75 (ranked by its tie-break metric first)')
    """
    if by_value:
        return f"{rank[0]:.6g}"
    return f"{rank[1]:.6g} (ranked by its tie-break metric first)"


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
