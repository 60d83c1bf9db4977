"""Where a trial sits in the SEER plan: its GPUs and end epoch per rung, and since when.

A trial's *placement* is ``{"gpus": [...], "ends": [...], "placed_at": t}``: the GPUs the plan
gives it in each rung, each rung's end (cumulative epochs) and when it was placed (its cost
accrues from then). It is stored in one of two ways:

* **explicitly**, in the trial's ``seer:placement`` system attr: when the study runs on a
  simulated clock (replays), when an executor re-places the trial, or when the storage cannot
  be trusted to give every reader a trial's true start time (:func:`keeps_true_start_times`);
* **implicitly**, for free: on the wall clock, :class:`~optuna_seer.SeerSampler` writes the
  plan's GPUs and ends once per study (``seer:implicit_placement``) and a trial without its own
  attr is placed at its ``datetime_start``, which Optuna's storage writes when it creates the
  trial. Asking for a trial then costs the same storage writes as under Optuna's own pruners.

:func:`placement_of` reads either; :func:`gpus_for` is what training code calls.

Through Optuna's gRPC proxy a start time arrives as the proxy server's local time: run the
server in the clients' time zone (UTC everywhere is simplest), as every Optuna datetime read
through it already needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import threading
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optuna_seer._optuna import storage_of, study_id_of, trial_id_of, unwrap_storage
from optuna_seer.integration.keys import (
    STUDY_IMPLICIT_PLACEMENT,
    STUDY_STARTED_AT,
    TRIAL_AWAITING_RERUN,
    TRIAL_BEYOND_PLAN,
    TRIAL_PLACEMENT,
    TRIAL_STOP_REASON,
)
from optuna_seer.planning.plan import Plan


def placement(
    gpus_per_rung: list[int], rung_ends: list[int], placed_at: float
) -> dict[str, list[int] | float]:
    """A trial's explicit placement: GPUs and end epoch of every rung, and when the trial was
    placed (its cost accrues from then)."""
    return {"gpus": gpus_per_rung, "ends": rung_ends, "placed_at": placed_at}


def keeps_true_start_times(storage: optuna.storages.BaseStorage) -> bool:
    """Whether every reader of ``storage`` gets a trial's ``datetime_start`` as the true
    moment, so that it can stand for the trial's placement time.

    Journal storages keep UTC; in-memory storages live in one process; RDB storages keep UTC
    and hand it out in the reader's local time since Optuna 5 (Optuna 4 kept the writer's local
    time, which a reader in another time zone would misread). Any other storage: no.
    """
    # Optuna hands studies an RDB storage wrapped in a cache that holds it as ``_backend``.
    for candidate in (storage, unwrap_storage(storage)):
        if isinstance(candidate, optuna.storages.JournalStorage | optuna.storages.InMemoryStorage):
            return True
        if isinstance(candidate, optuna.storages.RDBStorage):
            return int(optuna.__version__.split(".")[0]) >= 5
    return False


@dataclass(frozen=True)
class ImplicitPlacement:
    """The placement every trial of a wall-clock study has unless it carries its own.

    Args:
        gpus: GPUs per trial in each rung of the plan.
        ends: Each rung's end, in cumulative epochs.

    Example:
        >>> rule = ImplicitPlacement(gpus=(1, 2), ends=(3, 9))
        >>> ImplicitPlacement.from_dict(rule.to_dict()) == rule
        True
    """

    gpus: tuple[int, ...]
    ends: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.gpus) != len(self.ends) or not self.gpus:
            raise ValueError(
                f"gpus={self.gpus} and ends={self.ends} must give one entry per rung, at least one."
            )

    @classmethod
    def for_plan(cls, plan: Plan) -> ImplicitPlacement:
        """The rule for trials placed in ``plan``."""
        return cls(
            gpus=tuple(r.gpus_per_trial for r in plan.rungs),
            ends=tuple(r.resource for r in plan.rungs),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": list(self.gpus), "ends": list(self.ends)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImplicitPlacement:
        return cls(
            gpus=tuple(int(g) for g in data["gpus"]), ends=tuple(int(e) for e in data["ends"])
        )


def placement_of(trial: FrozenTrial, implicit: ImplicitPlacement | None) -> dict[str, Any] | None:
    """``trial``'s placement (see the module docstring), or ``None`` if SEER did not place it
    (no attr and no implicit rule, beyond the plan's width, or not started).

    Args:
        trial: A trial of the study.
        implicit: The study's rule (:func:`implicit_placement`), ``None`` if it has none.
    """
    attrs = trial.system_attrs
    placed: dict[str, Any] | None = attrs.get(TRIAL_PLACEMENT)
    if placed is not None or implicit is None or attrs.get(TRIAL_BEYOND_PLAN):
        return placed
    if attrs.get(TRIAL_AWAITING_RERUN):  # waiting, not training (integration/reruns.py)
        return None
    if trial.datetime_start is None:
        return None
    # Aware (journal storages) or naive in this process's local time: the true moment on every
    # storage the sampler places implicitly on (see keeps_true_start_times).
    placed_at = trial.datetime_start.timestamp()
    return placement(list(implicit.gpus), list(implicit.ends), placed_at)


def implicit_placement_in(study_attrs: Mapping[str, Any]) -> ImplicitPlacement | None:
    """The implicit-placement rule among a study's system attrs, if it has one."""
    data = study_attrs.get(STUDY_IMPLICIT_PLACEMENT)
    return None if data is None else ImplicitPlacement.from_dict(data)


_known: dict[tuple[int, int], tuple[optuna.storages.BaseStorage, ImplicitPlacement | None]] = {}
_known_lock = threading.Lock()


def implicit_placement(
    storage: optuna.storages.BaseStorage, study_id: int
) -> ImplicitPlacement | None:
    """The study's implicit-placement rule, ``None`` if it has none.

    The sampler writes the rule before it starts the study's deadline clock and never after,
    so once the clock runs the answer is final and each process reads it once.
    """
    key = (id(storage), study_id)
    with _known_lock:
        known = _known.get(key)
    if known is not None and known[0] is storage:
        return known[1]
    attrs = storage.get_study_system_attrs(study_id)
    rule = implicit_placement_in(attrs)
    if STUDY_STARTED_AT in attrs:
        with _known_lock:
            _known[key] = (storage, rule)  # the storage is held, so its id is not reused
    return rule


def gpus_for(
    trial: optuna.trial.BaseTrial | FrozenTrial,
    step: int | None = None,
    *,
    study: optuna.Study | None = None,
) -> int:
    """GPUs (data-parallel workers) the plan gives ``trial`` for its next epoch.

    Args:
        trial: A trial placed by :class:`~optuna_seer.SeerSampler`: the live trial in an
            objective, or a ``FrozenTrial``.
        step: Epochs the trial has trained; defaults to its last reported step.
        study: The trial's study; needed only for a ``FrozenTrial`` placed implicitly (see the
            module docstring), whose study is not otherwise known.

    Raises:
        optuna.TrialPruned: ``trial`` is a live trial that ``SeerSampler`` refused (beyond the
            plan's width or the budget), as its first ``suggest_*`` would: it must not train.
        ValueError: The trial was not placed by ``SeerSampler`` under a ``SeerPruner``, or is
            a refused ``FrozenTrial``.

    Example:
        >>> def objective(trial):  # doctest: +SKIP
        ...     trainer = L.Trainer(devices=optuna_seer.gpus_for(trial), strategy="ddp")
    """
    if isinstance(trial, optuna.Trial):
        frozen = trial.storage.get_trial(trial_id_of(trial))
        rule = implicit_placement(trial.storage, study_id_of(trial.study))
    elif isinstance(trial, FrozenTrial):
        frozen = trial
        rule = None if study is None else implicit_placement(storage_of(study), study_id_of(study))
    else:
        raise TypeError(f"trial={trial!r} must be an optuna Trial or FrozenTrial.")
    placed = placement_of(frozen, rule)
    refused = frozen.system_attrs.get(TRIAL_BEYOND_PLAN)
    if placed is None and refused:
        why = frozen.system_attrs.get(TRIAL_STOP_REASON, "beyond the plan")
        if isinstance(trial, optuna.Trial):
            # In an objective, as at its first suggest_*: the trial is pruned before training.
            raise optuna.TrialPruned(f"SeerSampler refused trial {trial.number}: {why}")
        raise ValueError(
            f"trial {trial.number} has no GPUs: SeerSampler refused it ({why}), so it never "
            "trained."
        )
    if placed is None:
        hint = (
            " (for a FrozenTrial of a study that places trials implicitly, pass study=)"
            if isinstance(trial, FrozenTrial) and study is None
            else ""
        )
        raise ValueError(
            f"trial {trial.number} has no SEER placement{hint}: create the study with "
            "sampler=SeerSampler(...) and pruner=SeerPruner(...)."
        )
    return gpus_at(placed, frozen.last_step if step is None else step)


def gpus_at(placed: Mapping[str, Any], step: int | None) -> int:
    """GPUs a trial with placement ``placed`` holds for its next epoch after ``step`` epochs
    (``None``: none yet)."""
    done = 0 if step is None else step
    for gpus, end in zip(placed["gpus"], placed["ends"]):
        if done < end:
            return int(gpus)
    return int(placed["gpus"][-1])
