"""Synchronous rung decisions: keep exactly the top ``n_{r+1}`` of a rung (the elastic executor).

:meth:`optuna_seer.SeerPruner.decide_rung` calls :func:`decide_rung` once every trial of a rung
has reported; asynchronous pruning (plain ``study.optimize``) lives in the pruner itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._optuna import storage_of, study_id_of, trial_id_of
from optuna_seer.integration.keys import promoted_key, rung_value_key
from optuna_seer.integration.ranking import RankKey
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of
from optuna_seer.planning.plan import Plan, Rung

Rank = Callable[[FrozenTrial, int, int, StudyDirection], RankKey]
"""``rank(trial, since_step, rung_end, direction)``: the promotion key, best first."""
Stop = Callable[[optuna.Study, FrozenTrial, str], bool]
"""``stop(study, trial, reason)``: record why SEER stops a trial."""


@dataclass(frozen=True)
class RungDecision:
    """Who survived a rung, by trial number, best first."""

    rung: int
    promoted: tuple[int, ...]
    eliminated: tuple[int, ...]


def check_rung_index(plan: Plan, rung_index: int) -> None:
    """Raise ``ValueError`` unless ``rung_index`` is a rung of ``plan`` that promotes."""
    if not (0 <= rung_index < len(plan.rungs) - 1):
        raise ValueError(
            f"rung_index={rung_index}: rungs that promote are 0..{len(plan.rungs) - 2}."
        )


def decide_rung(
    study: optuna.Study, plan: Plan, rung_index: int, rank: Rank, stop: Stop
) -> RungDecision:
    """Keep the top ``n_{r+1}`` trials of ``rung_index`` by ``rank``; record each trial's
    value and verdict in its system attrs (see :meth:`optuna_seer.SeerPruner.decide_rung`).

    Raises:
        ValueError: ``rung_index`` is not a rung that promotes (the last one does not).
    """
    check_rung_index(plan, rung_index)
    rungs = plan.rungs
    rung: Rung = rungs[rung_index]
    keep = rungs[rung_index + 1].n_trials
    since = plan.epochs_before(rung_index)
    contenders: list[tuple[RankKey, int, float, FrozenTrial]] = []
    implicit = implicit_placement(storage_of(study), study_id_of(study))
    for t in study.get_trials(deepcopy=False):
        if placement_of(t, implicit) is None:
            continue
        if any(t.system_attrs.get(promoted_key(r)) is False for r in range(rung_index)):
            continue
        steps = [s for s in t.intermediate_values if s >= rung.resource]
        if not steps or t.state not in (
            TrialState.RUNNING,
            TrialState.WAITING,
            TrialState.COMPLETE,
        ):
            continue
        value = t.intermediate_values[min(steps)]
        if not math.isfinite(value):  # diverged: eliminated, as prune() stops it
            storage_of(study).set_trial_system_attr(trial_id_of(t), promoted_key(rung_index), False)
            stop(study, t, f"reported {value!r} at rung {rung_index}'s end")
            continue
        contenders.append((rank(t, since, rung.resource, study.direction), t.number, value, t))
    contenders.sort(key=lambda c: c[0])
    promoted = {c[1] for c in contenders[:keep]}
    for _, number, value, t in contenders:
        storage_of(study).set_trial_system_attr(trial_id_of(t), rung_value_key(rung_index), value)
        storage_of(study).set_trial_system_attr(
            trial_id_of(t), promoted_key(rung_index), number in promoted
        )
        if number not in promoted:
            stop(study, t, f"rung {rung_index}: not in the top {keep} of {len(contenders)}")
    return RungDecision(
        rung=rung_index,
        promoted=tuple(c[1] for c in contenders[:keep]),
        eliminated=tuple(c[1] for c in contenders[keep:]),
    )


def eliminated(plan: Plan, trial: FrozenTrial, step: int) -> bool:
    """Whether a synchronous decision of a rung ``trial`` reached by ``step`` eliminated it."""
    for rung in plan.rungs[:-1]:
        if step < rung.resource:
            return False
        if trial.system_attrs.get(promoted_key(rung.index)) is False:
            return True
    return False
